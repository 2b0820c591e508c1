import { z } from 'zod';
import { ARCHES, ID_PATTERN, ID_RULE, invalidArgument } from '@a4c/common';

const id = (what: string) => z.string().regex(ID_PATTERN, `${what} must ${ID_RULE}`);

/** Docker image reference: [registry/]repository[:tag][@digest], conservatively. */
const IMAGE_REF = /^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$/;

const limit = (what: string, int: boolean) =>
  (int ? z.number().int(`${what} must be a whole number`) : z.number()).min(0, `${what} cannot be negative`).max(1e9).nullable().optional();

export const schemas = {
  userId: id('a user id'),
  teamId: id('a team id'),
  hostId: id('a host id'),
  quota: z.strictObject({
    maxWorkspaces: limit('maxWorkspaces', true),
    maxDiskGb: limit('maxDiskGb', false),
    maxConcurrentBuilds: limit('maxConcurrentBuilds', true),
  }),
  user: z.strictObject({ teamId: id('a team id').nullable().optional(), role: z.enum(['user', 'lead', 'admin']).optional() }),
  newUser: z.strictObject({ id: id('a user id'), teamId: id('a team id').nullable().optional(), role: z.enum(['user', 'lead', 'admin']).optional() }),
  newToken: z.strictObject({
    name: z.string().min(1).max(100),
    ttlSeconds: z.number().int().min(60, 'a token lives at least 60 s').max(10 * 365 * 86400).optional(),
  }),
  auditQuery: z.strictObject({
    actor: z.string().max(100).optional(),
    after: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
  }),
  scheduleBuild: z.strictObject({
    imageName: z.string().regex(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, 'an image name is lowercase letters, digits and . _ - / separators').max(128),
    project: id('a project name'),
    arch: z.enum(ARCHES, { error: `must be one of ${ARCHES.join(', ')}` }),
    changeNumber: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a change number is 1-64 letters, digits, ".", "_" or "-"'),
  }),
  buildFilter: z.strictObject({
    status: z.enum(['SCHEDULED', 'IN_PROGRESS', 'COMPLETED', 'FAILED']).optional(),
    project: id('a project name').optional(),
    arch: z.enum(ARCHES).optional(),
    userId: id('a user id').optional(),
    limit: z.coerce.number().int().min(1).max(1000).optional(),
  }),
  logQuery: z.strictObject({
    after: z.coerce.number().int().min(0).optional(),
    limit: z.coerce.number().int().min(1).max(5000).optional(),
  }),
  reject: z.strictObject({ reason: z.string().max(500).optional() }),
  createWorkspace: z.strictObject({
    projectName: id('a project name'),
    arch: z.enum(ARCHES, { error: `must be one of ${ARCHES.join(', ')}` }),
    tier: z.string().min(1).max(32),
    name: id('a workspace name').optional(),
    changeNumber: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'a change number is 1-64 letters, digits, ".", "_" or "-"').optional(),
    image: z.string().max(255).regex(IMAGE_REF, 'must be a Docker image reference such as a4c-base:latest').optional(),
  }),
};

/**
 * Parses input with a schema; the first problem becomes a 400 that names the field and
 * says what is wrong with it.
 */
export function parse<T>(schema: z.ZodType<T>, input: unknown, where = ''): T {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (!issue) throw invalidArgument(where || 'body', 'is invalid');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '?';
    return fail(where ? `${where}.${key}` : key, 'is not a known field');
  }
  const field = [where, ...issue.path.map(String)].filter(Boolean).join('.') || 'body';
  const value = issue.path.reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<PropertyKey, unknown>)[k] : undefined), input);
  if (issue.code === 'invalid_type' && value === undefined && issue.path.length) return fail(field, 'is required');
  if (issue.code === 'invalid_type' && !issue.path.length) return fail(field, `must be a JSON ${issue.expected}`);
  if (issue.code === 'invalid_type') return fail(field, `must be a ${issue.expected}`);
  return fail(field, issue.message);
}

function fail(field: string, reason: string): never {
  throw invalidArgument(field, reason);
}

/** ?wait=<seconds>: a whole number from 0 to max. */
export function parseWait(raw: string | string[] | undefined, max: number): number {
  if (raw === undefined) return 0;
  const s = Array.isArray(raw) ? raw[0] : raw;
  if (s === undefined || !/^\d{1,6}$/.test(s) || Number(s) > max) fail('wait', `must be a whole number of seconds from 0 to ${max}`);
  return Number(s);
}
