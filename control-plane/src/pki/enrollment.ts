import { createHash, randomBytes } from 'node:crypto';
import { A4cError } from '@a4c/common';
import { notifyHost } from '../events/notify.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { lockHostWorkspaces, loseWorkspacesOfHost } from '../workspaces/lost-hosts.js';
import { CsrError, signAgentCsr, type CertificateAuthority } from './ca.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export const JOIN_TOKEN_DEFAULT_TTL_SECONDS = 3600;
export const JOIN_TOKEN_MAX_TTL_SECONDS = 7 * 86_400;

/** A single-use join token; only its sha256 is stored, the token itself is shown once. */
export async function createJoinToken(db: Db, o: { hostId: string | undefined; ttlSeconds: number; actor: string }): Promise<{ token: string; expiresAt: string; hostId: string | null }> {
  const token = `a4cj_${randomBytes(32).toString('base64url')}`;
  const { rows } = await inTx(db, async (tx) => {
    const r = await tx.query<{ expires_at: Date }>(
      `INSERT INTO join_tokens (token_sha256, host_id, created_by, expires_at) VALUES ($1, $2, $3, now() + make_interval(secs => $4))
       RETURNING expires_at`,
      [sha256(token), o.hostId ?? null, o.actor, o.ttlSeconds],
    );
    await appendEvent(tx, {
      kind: 'join_token.created',
      actor: o.actor,
      reason: o.hostId ? `a join token for host ${o.hostId}` : 'a join token for any host id',
      hostId: o.hostId ?? null,
      data: { expiresAt: r.rows[0]?.expires_at },
    });
    return r;
  });
  return { token, expiresAt: (rows[0] as { expires_at: Date }).expires_at.toISOString(), hostId: o.hostId ?? null };
}

/**
 * Enrollment: the join token (unused, unexpired, for this host id if it names one) is
 * consumed and the agent's CSR signed, in one transaction. Earlier certificates of the
 * host are revoked: a host has one valid certificate, the newest.
 */
export async function enroll(db: Db, ca: CertificateAuthority, o: { joinToken: string; hostId: string; csr: string }): Promise<{ certificate: string; ca: string; serial: string; expiresAt: string }> {
  let issued;
  try {
    issued = signAgentCsr(ca, o.csr, o.hostId);
  } catch (e) {
    if (e instanceof CsrError) throw new A4cError('INVALID_ARGUMENT', e.message, { field: 'csr' });
    throw e;
  }
  await inTx(db, async (tx) => {
    const { rows } = await tx.query<{ host_id: string | null; expired: boolean; used_at: Date | null }>(
      'SELECT host_id, expires_at <= now() AS expired, used_at FROM join_tokens WHERE token_sha256 = $1 FOR UPDATE',
      [sha256(o.joinToken)],
    );
    const t = rows[0];
    const fix = 'create a new one with POST /v1/join-tokens (admin) and start the agent with A4C_JOIN_TOKEN set to it';
    if (!t) throw new A4cError('UNAUTHENTICATED', 'invalid join token', { suggestion: fix });
    if (t.used_at) throw new A4cError('UNAUTHENTICATED', `this join token was already used (at ${t.used_at.toISOString()}); a join token enrolls one agent once`, { suggestion: fix });
    if (t.expired) throw new A4cError('UNAUTHENTICATED', 'this join token has expired', { suggestion: fix });
    if (t.host_id !== null && t.host_id !== o.hostId) {
      throw new A4cError('PERMISSION_DENIED', `this join token is for host ${t.host_id}, not ${o.hostId}`, { suggestion: 'start the agent with that A4C_HOST_ID, or create a token for this host' });
    }
    await tx.query('UPDATE join_tokens SET used_at = now(), used_by_host = $2 WHERE token_sha256 = $1', [sha256(o.joinToken), o.hostId]);
    const superseded = await revokeCertificatesOfHost(tx, o.hostId, `agent:${o.hostId}`, 'superseded by a new enrollment');
    await tx.query('INSERT INTO agent_certificates (serial, host_id, expires_at) VALUES ($1, $2, $3)', [issued.serial, o.hostId, issued.notAfter]);
    const { rowCount: restored } = await tx.query('UPDATE hosts SET removed_at = NULL, draining = false, updated_at = now() WHERE id = $1 AND removed_at IS NOT NULL', [o.hostId]);
    await appendEvent(tx, {
      kind: 'host.enrolled',
      actor: `agent:${o.hostId}`,
      reason: superseded.length ? `enrolled again with a join token; ${superseded.length} older certificate(s) revoked` : 'enrolled with a join token',
      hostId: o.hostId,
      changes: restored ? { removed: { from: true, to: false }, draining: { from: true, to: false } } : {},
      data: { serial: issued.serial, expiresAt: issued.notAfter, superseded },
    });
  });
  return { certificate: issued.certPem, ca: ca.certPem, serial: issued.serial, expiresAt: issued.notAfter.toISOString() };
}

async function revokeCertificatesOfHost(tx: Tx, hostId: string, actor: string, reason: string): Promise<string[]> {
  const { rows } = await tx.query<{ serial: string }>(
    `INSERT INTO revoked_certificates (serial, host_id, revoked_by, reason)
     SELECT c.serial, c.host_id, $2, $3 FROM agent_certificates c WHERE c.host_id = $1
     ON CONFLICT (serial) DO NOTHING RETURNING serial`,
    [hostId, actor, reason],
  );
  return rows.map((r) => r.serial);
}

/**
 * Removes a host: marks it removed (and draining, so placement skips it), revokes
 * every certificate issued to it, marks it disconnected, and its workspaces LOST (the
 * state table's onHostLost). False if the control plane has never heard of the host id.
 */
export async function removeHost(db: Db, hostId: string, actor: string): Promise<{ revokedSerials: string[]; lostWorkspaces: string[] } | undefined> {
  return inTx(db, async (tx) => {
    // Lock order everywhere: workspace rows, then their host's rows.
    await lockHostWorkspaces(tx, hostId);
    const lost = await loseWorkspacesOfHost(tx, hostId, actor, `its host ${hostId} was removed by ${actor}`);
    const { rowCount: hosts } = await tx.query('UPDATE hosts SET removed_at = now(), draining = true, updated_at = now() WHERE id = $1', [hostId]);
    const revokedSerials = await revokeCertificatesOfHost(tx, hostId, actor, 'host removed');
    const { rowCount: certs } = await tx.query('SELECT 1 FROM agent_certificates WHERE host_id = $1', [hostId]);
    if (!hosts && !certs) return undefined;
    await tx.query('UPDATE host_status SET connected = false WHERE host_id = $1', [hostId]);
    await appendEvent(tx, {
      kind: 'host.removed',
      actor,
      reason: `removed by ${actor}: ${revokedSerials.length} certificate(s) revoked`,
      hostId,
      changes: hosts ? { removed: { from: false, to: true }, draining: { from: null, to: true } } : {},
      data: { revokedSerials, lostWorkspaces: lost.map((w) => w.id) },
    });
    if (hosts) await notifyHost(tx, hostId);
    return { revokedSerials, lostWorkspaces: lost.map((w) => w.id) };
  });
}

export type CertificateCheck = { ok: true } | { ok: false; reason: string };

/** A certificate as enrollment recorded it, with its revocation if any. */
export interface CertificateRow {
  host_id: string;
  revoked_at: Date | null;
  reason: string | null;
}

/** Whether a session may use this certificate for this host id. */
export async function checkCertificate(db: Db | Tx, serial: string, hostId: string): Promise<CertificateCheck> {
  return certificateVerdict((await certificateRows(db, [serial])).get(serial), serial, hostId);
}

/** The certificates with these serials, by serial (one statement for a batch of Hellos). */
export async function certificateRows(db: Db | Tx, serials: string[]): Promise<Map<string, CertificateRow>> {
  const { rows } = await db.query<CertificateRow & { serial: string }>(
    `SELECT c.serial, c.host_id, r.revoked_at, r.reason FROM agent_certificates c LEFT JOIN revoked_certificates r ON r.serial = c.serial WHERE c.serial = ANY($1::text[])`,
    [serials],
  );
  return new Map(rows.map((r) => [r.serial, r]));
}

export function certificateVerdict(c: CertificateRow | undefined, serial: string, hostId: string): CertificateCheck {
  if (!c) return { ok: false, reason: `client certificate ${serial} was not issued by this control plane's enrollment; enroll the agent with a join token` };
  if (c.host_id !== hostId) return { ok: false, reason: `client certificate ${serial} was issued to host ${c.host_id}, not ${hostId}` };
  if (c.revoked_at) {
    return { ok: false, reason: `client certificate ${serial} of host ${hostId} was revoked at ${c.revoked_at.toISOString()} (${c.reason}); enroll again with a new join token` };
  }
  return { ok: true };
}
