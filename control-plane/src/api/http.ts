import { randomUUID } from 'node:crypto';
import type Koa from 'koa';
import { A4cError, type Logger } from '@a4c/common';
import { authenticateJwt, looksLikeJwt, type OidcVerifier } from '../auth/oidc.js';
import { authenticate, type Principal } from '../auth/principals.js';
import { tokenFromSubprotocols } from '../access/subprotocol.js';
import { recordAudits } from '../store/audit.js';
import { GroupCommit } from '../store/group-commit.js';
import type { Db } from '../store/db.js';

export interface State {
  requestId: string;
  /** The principal's id, for the activity log. */
  actor: string;
  principal: Principal;
  /** Set for refusals that must not cost a database write each (rate limits, shedding). */
  unaudited?: boolean;
}
export type Ctx = Koa.ParameterizedContext<State>;

/** The most a request body may hold unless its operation says more (Operation.maxBodyBytes). */
export const MAX_BODY_BYTES = 64 * 1024;

/** Request id, access log, and the one place errors become the JSON envelope. */
export function errors(log: Logger): Koa.Middleware<State> {
  return async (ctx, next) => {
    const requestId = (ctx.get('x-request-id') || randomUUID()).slice(0, 64);
    ctx.state.requestId = requestId;
    ctx.set('x-request-id', requestId);
    const started = performance.now();
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new A4cError('NOT_FOUND', `no route for ${ctx.method} ${ctx.path}`, { suggestion: 'see docs/api.md for the routes' });
      }
    } catch (e) {
      const err = toA4cError(e);
      if (err.code === 'INTERNAL') log.error({ err: e, requestId, path: ctx.path }, 'request failed');
      ctx.status = err.status;
      ctx.body = { ...err.toBody(), requestId };
      const retry = err.details.retryAfterSeconds;
      if (typeof retry === 'number') ctx.set('retry-after', String(retry));
    }
    log.debug({ requestId, method: ctx.method, path: ctx.path, status: ctx.status, ms: Math.round(performance.now() - started) }, 'request');
  };
}

/** Any error as the API answers it: A4cError as is, a database that cannot be reached UNAVAILABLE, anything else INTERNAL. */
export function toA4cError(e: unknown): A4cError {
  if (e instanceof A4cError) return e;
  const status = (e as { status?: number }).status;
  if (status === 405) return new A4cError('METHOD_NOT_ALLOWED', (e as Error).message);
  if (status === 501) return new A4cError('METHOD_NOT_ALLOWED', (e as Error).message);
  const pgCode = (e as { code?: string }).code;
  // Database unreachable or overloaded: the caller can retry; nothing was changed.
  if (pgCode === 'ECONNREFUSED' || pgCode === '57P01' || pgCode === '53300' || /timeout exceeded when trying to connect/.test(String((e as Error).message))) {
    return new A4cError('UNAVAILABLE', 'the database is unreachable; nothing was changed', { suggestion: 'retry in a few seconds' });
  }
  return new A4cError('INTERNAL', 'internal error; the request id identifies it in the control plane logs');
}

/**
 * Every /v1 call carries `Authorization: Bearer <token>`: the admin token, a user's API
 * token, or (single sign-on) a JWT from the OIDC issuer, refused with its reason.
 */
export function requireToken(db: Db, adminToken: string, sso?: OidcVerifier): Koa.Middleware<State> {
  return async (ctx, next) => {
    // Browsers cannot set headers on a WebSocket: they offer the token as a subprotocol.
    const offered = ctx.get('authorization') ? undefined : tokenFromSubprotocols(ctx.get('sec-websocket-protocol'));
    const m = offered ? [offered, offered] : /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
    if (!m) {
      throw new A4cError('UNAUTHENTICATED', 'missing bearer token', { suggestion: 'send "Authorization: Bearer <token>" (the CLI reads A4C_TOKEN)' });
    }
    const token = m[1] as string;
    const principal = (await authenticate(db, adminToken, token)) ?? (looksLikeJwt(token) ? await authenticateJwt(sso, token) : undefined);
    if (!principal) {
      throw new A4cError('UNAUTHENTICATED', 'invalid, expired or revoked token', { suggestion: 'check A4C_TOKEN, or ask an admin for a new token' });
    }
    ctx.state.principal = principal;
    ctx.state.actor = principal.id;
    await next();
  };
}

/**
 * An audit row for every mutating call, whatever its outcome: who, what (method and
 * route template), on what (the path), the status, and the request id. Written after
 * the response is decided and before it is sent, so whoever got the answer finds its
 * row; a failure to write it is logged, never turned into an error. Rows of concurrent
 * requests are written together, one statement and one commit per round.
 */
export function audit(db: Db, log: Logger): Koa.Middleware<State> {
  const writer = new GroupCommit((es: Parameters<typeof recordAudits>[1]) => recordAudits(db, es));
  return async (ctx, next) => {
    try {
      await next();
    } finally {
      if (!['GET', 'HEAD', 'OPTIONS'].includes(ctx.method) && ctx.path.startsWith('/v1/') && !ctx.state.unaudited) {
        const body = ctx.body as { error?: string; message?: string } | undefined;
        const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? ctx.path;
        await writer.add({
          requestId: ctx.state.requestId ?? '',
          actor: ctx.state.actor ?? 'anonymous',
          action: `${ctx.method} ${String(route).slice(0, 200)}`,
          target: ctx.path.slice(0, 500).replace(/\u0000/g, ''),
          outcome: ctx.status,
          error: ctx.status >= 400 && body?.error ? `${body.error}: ${String(body.message ?? '').slice(0, 500)}` : null,
        }).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not write the audit log'));
      }
    }
  };
}

/** Reads a JSON object body: at most maxBytes (64 KiB unless the operation says), application/json, and well-formed. */
export async function readJson(ctx: Ctx, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      throw new A4cError('PAYLOAD_TOO_LARGE', `request body is larger than ${maxBytes} bytes`, { suggestion: 'send a smaller request' });
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  if (!ctx.is('application/json')) {
    throw new A4cError('UNSUPPORTED_MEDIA_TYPE', 'request body must be JSON', { suggestion: 'send Content-Type: application/json' });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new A4cError('INVALID_JSON', `request body is not valid JSON: ${(e as Error).message}`);
  }
  checkText(value, '');
  return value;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const MAX_DEPTH = 16;

/**
 * PostgreSQL text and jsonb cannot hold NUL, and jsonb refuses unpaired UTF-16
 * surrogates: such strings are refused here, naming the field, for every route at
 * once (bodies here; path and query parameters in api/operation.ts), instead of
 * failing deep in a query. No request of this API nests deeper than
 * a few levels, so deeper bodies are refused too. Iterative: a hostile body must not
 * be able to exhaust the stack.
 */
export function checkText(root: unknown, rootAt: string): void {
  // The error names the request's own field; the message says where inside it.
  const refuse = (at: string, reason: string): never => {
    const field = at.split(/[.[]/)[0] || 'body';
    throw new A4cError('INVALID_ARGUMENT', `${at || 'body'}: ${reason}`, { field });
  };
  const stack: [unknown, string, number][] = [[root, rootAt, 0]];
  while (stack.length) {
    const [v, at, depth] = stack.pop() as [unknown, string, number];
    if (typeof v === 'string') {
      if (v.includes('\u0000')) refuse(at, 'must not contain NUL characters');
      if (LONE_SURROGATE.test(v)) refuse(at, 'must be valid Unicode text (it has an unpaired surrogate)');
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_DEPTH) refuse(at, `is nested more than ${MAX_DEPTH} levels deep`);
    if (Array.isArray(v)) {
      v.forEach((x, i) => stack.push([x, `${at}[${i}]`, depth + 1]));
      continue;
    }
    for (const [k, x] of Object.entries(v)) {
      const here = at ? `${at}.${k}` : k;
      stack.push([k, here, depth + 1], [x, here, depth + 1]);
    }
  }
}
