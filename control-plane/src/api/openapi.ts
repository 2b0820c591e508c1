import { z } from 'zod';
import { HTTP_STATUS, type ErrorCode } from '@a4c/common';
import { ACCESS_TEXT, type Operation } from './operation.js';
import { MAX_BODY_BYTES } from './http.js';
import { errorBody } from './schemas.js';

type JsonSchema = Record<string, unknown>;

/** Statuses any operation may answer: bad input, no credential, rate limits, our failure, overload. */
const COMMON_ERRORS = [400, 401, 429, 500, 503];

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted: the change is under way',
  400: 'Invalid input: `field` names it, `message` says why',
  401: 'Missing, invalid, expired or revoked credential',
  403: 'Not allowed for this principal',
  404: 'Does not exist, or not visible to this principal',
  409: 'Conflicts with the current state',
  413: 'Body larger than 64 KiB',
  415: 'Body is not JSON',
  429: 'Quota or rate limit reached (see Retry-After when present)',
  500: 'Internal error: the request id identifies it in the logs',
  503: 'No capacity, or the control plane is overloaded or its database unreachable: retry later',
};

/**
 * The OpenAPI 3.1 document of the operations, generated from the same zod schemas that
 * validate requests. Named schemas (`.meta({ id })`) become components.
 */
export function openApiDocument(ops: readonly Operation[], info: { version: string }): JsonSchema {
  const components: Record<string, JsonSchema> = {};
  const convert = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
    const out = z.toJSONSchema(schema, {
      target: 'draft-2020-12',
      io,
      unrepresentable: 'any',
      override: (ctx) => {
        // zod spells date-times out as a long regular expression; the format says it.
        const s = ctx.jsonSchema as JsonSchema;
        if (s.format === 'date-time') delete s.pattern;
      },
    }) as JsonSchema;
    const defs = (out.$defs ?? {}) as Record<string, JsonSchema>;
    delete out.$defs;
    delete out.$schema;
    for (const [name, def] of Object.entries(defs)) components[name] = relink(def) as JsonSchema;
    return relink(out) as JsonSchema;
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const o of ops) {
    const parameters: unknown[] = [];
    for (const [where, schema] of [['path', o.params], ['query', o.query]] as const) {
      if (!schema) continue;
      const s = convert(schema, 'input');
      const props = (s.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((s.required ?? []) as string[]);
      for (const [name, p] of Object.entries(props)) {
        const { description, ...rest } = p;
        parameters.push({ name, in: where, required: where === 'path' || required.has(name), ...(description ? { description } : {}), schema: rest });
      }
    }
    const responses: Record<string, unknown> = {};
    for (const [status, r] of Object.entries(o.responses)) {
      responses[status] = {
        description: r.description,
        ...(r.headers ? { headers: Object.fromEntries(Object.entries(r.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])) } : {}),
        ...(r.schema ? { content: { [r.contentType ?? 'application/json']: { schema: convert(r.schema, 'output') } } } : {}),
      };
    }
    const errors = new Set([...(o.access === 'public' ? COMMON_ERRORS.filter((s) => s !== 401) : COMMON_ERRORS), ...(o.errors ?? [])]);
    if (o.body) errors.add(413).add(415);
    for (const status of [...errors].sort()) {
      responses[String(status)] = {
        description: STATUS_TEXT[status] ?? 'Error',
        ...(status === 429 || status === 503 ? { headers: { 'Retry-After': { description: 'seconds to wait before trying again', schema: { type: 'integer' } } } } : {}),
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    const operation = {
      operationId: o.operationId,
      summary: o.summary,
      description: [o.description, `**Who:** ${ACCESS_TEXT[o.access]}`].filter(Boolean).join('\n\n'),
      tags: [o.tag],
      'x-a4c-access': o.access,
      ...(o.access === 'public' ? { security: [] } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(o.body ? { requestBody: { required: true, content: { 'application/json': { schema: convert(o.body, 'input') } } } } : {}),
      // The largest body it reads; past it the answer is 413 PAYLOAD_TOO_LARGE.
      ...(o.body ? { 'x-a4c-max-body-bytes': o.maxBodyBytes ?? MAX_BODY_BYTES } : {}),
      responses,
    };
    (paths[o.path] ??= {})[o.method] = operation;
  }
  convert(errorBody, 'output');

  return {
    openapi: '3.1.0',
    info: {
      title: 'A4C control plane',
      version: info.version,
      description:
        'Isolated developer workspaces on bare-metal Docker hosts. Errors share one envelope (`Error`); ' +
        `codes: ${(Object.keys(HTTP_STATUS) as ErrorCode[]).map((c) => `${c} (${HTTP_STATUS[c]})`).join(', ')}.`,
    },
    jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: [...new Set(ops.map((o) => o.tag))].map((name) => ({ name })),
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'The admin token, a user API token (a4c_u_…), or a JWT from the configured OIDC issuer.',
        },
      },
    },
  };
}

/** Points zod's local `#/$defs/X` references at the document's components. */
function relink(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(relink);
  if (!v || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    out[k] = k === '$ref' && typeof x === 'string' ? x.replace(/^#\/\$defs\//, '#/components/schemas/') : relink(x);
  }
  return out;
}
