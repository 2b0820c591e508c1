import type { z } from 'zod';
import { invalidArgument } from '@a4c/common';

/**
 * Parses input with a schema; the first problem becomes a 400 that names the field and
 * says what is wrong with it. `where` prefixes field names (e.g. a nested object);
 * `unknown` names what an unrecognised key is not (a field, a query parameter).
 */
export function parse<T>(schema: z.ZodType<T>, input: unknown, where = '', unknown = 'field'): T {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (!issue) throw invalidArgument(where || 'body', 'is invalid');
  if (issue.code === 'unrecognized_keys') {
    const key = [where, ...issue.path.map(String), issue.keys[0] ?? '?'].filter(Boolean).join('.');
    return fail(key, `is not a known ${unknown}`);
  }
  const field = [where, ...issue.path.map(String)].filter(Boolean).join('.') || 'body';
  const value = issue.path.reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<PropertyKey, unknown>)[k] : undefined), input);
  if (issue.code === 'invalid_type' && value === undefined && issue.path.length) return fail(field, 'is required');
  if (issue.code === 'invalid_type' && !issue.path.length) return fail(field, `must be a JSON ${issue.expected}`);
  if (issue.code === 'invalid_type' && issue.expected === 'string' && Array.isArray(value)) return fail(field, 'must be given once');
  if (issue.code === 'invalid_type') return fail(field, `must be a ${issue.expected}`);
  return fail(field, issue.message);
}

function fail(field: string, reason: string): never {
  throw invalidArgument(field, reason);
}
