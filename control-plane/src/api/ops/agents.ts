import { z } from 'zod';
import { notFound } from '@a4c/common';
import type { CertificateAuthority } from '../../pki/ca.js';
import { createJoinToken, enroll, JOIN_TOKEN_DEFAULT_TTL_SECONDS, JOIN_TOKEN_MAX_TTL_SECONDS, removeHost } from '../../pki/enrollment.js';
import type { Db } from '../../store/db.js';
import { op, type Operation } from '../operation.js';
import { id, params, time } from '../schemas.js';

export interface EnrollDeps {
  db: Db;
  ca: CertificateAuthority;
  /** Closes the live session of a removed host on this replica (others see it at the next heartbeat). */
  disconnectHost(hostId: string, reason: string): void;
}

const TAG = 'Agents';
const hostId = id('a host id');
const enrollBody = z.strictObject({
  joinToken: z.string().min(1).max(200),
  hostId,
  csr: z.string().min(1).max(16_384).meta({ description: 'PKCS#10 certificate signing request, PEM' }),
});
const joinTokenBody = z.strictObject({
  hostId: hostId.optional().meta({ description: 'only this host may enroll with the token' }),
  ttlSeconds: z.number().int('ttlSeconds must be a whole number').min(1).max(JOIN_TOKEN_MAX_TTL_SECONDS).optional(),
});
const enrolled = z
  .strictObject({ certificate: z.string(), ca: z.string(), serial: z.string(), expiresAt: time })
  .meta({ id: 'AgentCertificate' });
const joinToken = z.strictObject({ token: z.string(), expiresAt: time, hostId: z.string().nullable() }).meta({ id: 'JoinToken' });
const removed = z.strictObject({
  hostId: z.string(),
  removed: z.literal(true),
  revokedSerials: z.array(z.string()),
  lostWorkspaces: z.array(z.string()).meta({ description: 'the workspaces that were on it, now LOST (retry or delete them)' }),
});

/** POST /v1/agents/enroll: no bearer token; the join token in the body is the credential. */
export function enrollOperations(d: EnrollDeps): Operation[] {
  return [
    op({
      method: 'post',
      path: '/v1/agents/enroll',
      operationId: 'enrollAgent',
      summary: "Enroll an agent: a join token and a CSR buy a certificate bound to the host id",
      description: 'The join token in the body is the credential; it is single use. Earlier certificates of the host are revoked.',
      tag: TAG,
      access: 'public',
      body: enrollBody,
      responses: { 201: { description: "The agent's certificate and the CA", schema: enrolled } },
      errors: [401, 403],
      handle: async (ctx, { body }) => {
        const out = await enroll(d.db, d.ca, body);
        ctx.status = 201;
        ctx.body = { certificate: out.certificate, ca: out.ca, serial: out.serial, expiresAt: out.expiresAt };
      },
    }),
  ];
}

/** Join tokens and host removal: admin only. */
export function adminPkiOperations(d: EnrollDeps): Operation[] {
  return [
    op({
      method: 'post',
      path: '/v1/join-tokens',
      operationId: 'createJoinToken',
      summary: 'Create a join token for enrolling an agent',
      tag: TAG,
      access: 'admin',
      body: joinTokenBody,
      responses: { 201: { description: 'The token: shown once', schema: joinToken } },
      errors: [403],
      handle: async (ctx, { body }) => {
        const t = await createJoinToken(d.db, { hostId: body.hostId, ttlSeconds: body.ttlSeconds ?? JOIN_TOKEN_DEFAULT_TTL_SECONDS, actor: ctx.state.actor });
        ctx.status = 201;
        ctx.set('cache-control', 'no-store');
        ctx.body = t;
      },
    }),
    op({
      method: 'delete',
      path: '/v1/hosts/{id}',
      operationId: 'removeHost',
      summary: "Remove a host and revoke its agent's certificates; its workspaces become LOST",
      tag: 'Hosts',
      access: 'admin',
      params: params.hostId,
      responses: { 200: { description: 'Removed', schema: removed } },
      errors: [403, 404],
      handle: async (ctx, { params: p }) => {
        const out = await removeHost(d.db, p.id, ctx.state.actor);
        if (!out) throw notFound('host', p.id, 'list hosts with `a4c hosts`');
        d.disconnectHost(p.id, `host ${p.id} was removed by ${ctx.state.actor}; its certificate is revoked`);
        ctx.body = { hostId: p.id, removed: true, revokedSerials: out.revokedSerials, lostWorkspaces: out.lostWorkspaces };
      },
    }),
  ];
}
