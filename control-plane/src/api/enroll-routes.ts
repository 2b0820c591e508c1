import Router from '@koa/router';
import { z } from 'zod';
import { A4cError, ID_PATTERN, ID_RULE } from '@a4c/common';
import type { CertificateAuthority } from '../pki/ca.js';
import { createJoinToken, enroll, JOIN_TOKEN_DEFAULT_TTL_SECONDS, JOIN_TOKEN_MAX_TTL_SECONDS, removeHost } from '../pki/enrollment.js';
import type { Db } from '../store/db.js';
import { readJson, type Ctx, type State } from './http.js';
import { parse } from './validate.js';

export interface EnrollDeps {
  db: Db;
  ca: CertificateAuthority;
  /** Closes the live session of a removed host on this replica (others see it at the next heartbeat). */
  disconnectHost(hostId: string, reason: string): void;
}

const hostId = z.string().regex(ID_PATTERN, `a host id must ${ID_RULE}`);
const enrollBody = z.strictObject({
  joinToken: z.string().min(1).max(200),
  hostId,
  csr: z.string().min(1).max(16_384),
});
const joinTokenBody = z.strictObject({
  hostId: hostId.optional(),
  ttlSeconds: z.number().int('ttlSeconds must be a whole number').min(1).max(JOIN_TOKEN_MAX_TTL_SECONDS).optional(),
});

/** POST /v1/agents/enroll: no bearer token; the join token in the body is the credential. */
export function enrollRoutes(d: EnrollDeps): Router<State> {
  const r = new Router<State>({ prefix: '/v1' });
  r.post('/agents/enroll', async (ctx) => {
    const body = parse(enrollBody, await readJson(ctx));
    const out = await enroll(d.db, d.ca, body);
    ctx.status = 201;
    ctx.body = { certificate: out.certificate, ca: out.ca, serial: out.serial, expiresAt: out.expiresAt };
  });
  return r;
}

/**
 * Join tokens and host removal: admin only. Mounted behind the bearer-token check;
 * the actor check below keeps them admin-only once other principals exist.
 */
export function adminPkiRoutes(d: EnrollDeps): Router<State> {
  const r = new Router<State>({ prefix: '/v1' });
  // The principal's role where the bearer check resolves one (user tokens); the admin
  // token alone otherwise.
  const admin = (ctx: Ctx) => {
    const principal = (ctx.state as { principal?: { role?: string } }).principal;
    if (principal ? principal.role !== 'admin' : ctx.state.actor !== 'admin') {
      throw new A4cError('PERMISSION_DENIED', 'only an admin may create join tokens or remove hosts');
    }
  };
  r.post('/join-tokens', async (ctx) => {
    admin(ctx);
    const body = parse(joinTokenBody, await readJson(ctx));
    const t = await createJoinToken(d.db, { hostId: body.hostId, ttlSeconds: body.ttlSeconds ?? JOIN_TOKEN_DEFAULT_TTL_SECONDS, actor: ctx.state.actor });
    ctx.status = 201;
    ctx.set('cache-control', 'no-store');
    ctx.body = t;
  });
  r.delete('/hosts/:id', async (ctx) => {
    admin(ctx);
    const id = parse(hostId, ctx.params.id, 'hostId');
    const out = await removeHost(d.db, id, ctx.state.actor);
    if (!out) throw new A4cError('NOT_FOUND', `host ${id} not found`, { suggestion: 'list hosts with `a4c hosts`' });
    d.disconnectHost(id, `host ${id} was removed by ${ctx.state.actor}; its certificate is revoked`);
    ctx.body = { hostId: id, removed: true, revokedSerials: out.revokedSerials };
  });
  return r;
}
