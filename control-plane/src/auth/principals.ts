import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { A4cError, notFound } from '@a4c/common';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { tokenMatches } from './token.js';

export type Role = 'user' | 'lead' | 'admin';

/** Who is calling: resolved once per request from the bearer token. */
export interface Principal {
  id: string;
  role: Role;
  teamId: string | null;
}

export interface TokenView {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * Turns a bearer token into a principal: the configured admin token, or a user's API
 * token, looked up by its hash on every request (so a revocation takes effect at once),
 * refused when expired or revoked.
 */
export async function authenticate(db: Db, adminToken: string, token: string): Promise<Principal | undefined> {
  if (tokenMatches(token, adminToken)) return { id: 'admin', role: 'admin', teamId: null };
  if (!token.startsWith('a4c_u_')) return undefined;
  const hash = sha256(token);
  const { rows } = await db.query<{ user_id: string; role: Role; team_id: string | null; stale: boolean }>(
    `SELECT t.user_id, u.role, u.team_id, (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds') AS stale
       FROM api_tokens t JOIN users u ON u.id = t.user_id
      WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())`,
    [hash],
  );
  const r = rows[0];
  // last_used_at is for people deciding which tokens to revoke: a minute's precision is
  // plenty, and it keeps a write off the path of every request.
  if (r?.stale) await db.query('UPDATE api_tokens SET last_used_at = now() WHERE token_hash = $1', [hash]);
  return r ? { id: r.user_id, role: r.role, teamId: r.team_id } : undefined;
}

export async function issueToken(db: Db, userId: string, name: string, ttlSeconds: number | undefined, actor: string): Promise<TokenView & { token: string }> {
  const token = `a4c_u_${randomBytes(32).toString('base64url')}`;
  return inTx(db, async (tx) => {
    const { rows } = await tx.query<TokenRow>(
      `INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, expires_at)
       SELECT $1, u.id, $3, $4, $5, CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(secs => $6::int) END
         FROM users u WHERE u.id = $2
       RETURNING *`,
      [randomUUID(), userId, name, sha256(token), token.slice(0, 12), ttlSeconds ?? null],
    );
    const row = rows[0];
    if (!row) throw notFound('user', userId, 'create the user first (POST /v1/users)');
    await appendEvent(tx, {
      kind: 'user.token_issued',
      actor,
      reason: `API token ${JSON.stringify(name)} issued`,
      userId,
      data: { userId, tokenId: row.id, name, prefix: row.prefix, expiresAt: row.expires_at?.toISOString() ?? null },
    });
    return { ...toTokenView(row), token };
  });
}

export async function listTokens(db: Db, userId: string): Promise<TokenView[]> {
  const { rows } = await db.query<TokenRow>('SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id', [userId]);
  return rows.map(toTokenView);
}

export async function revokeToken(db: Db, userId: string, tokenId: string, actor: string): Promise<TokenView> {
  if (!/^[0-9a-f-]{36}$/.test(tokenId)) throw notFound('token', tokenId);
  return inTx(db, async (tx) => {
    const { rows } = await tx.query<TokenRow & { was_revoked: boolean }>(
      `UPDATE api_tokens t SET revoked_at = COALESCE(t.revoked_at, now())
         FROM (SELECT revoked_at IS NOT NULL AS was_revoked FROM api_tokens WHERE id = $1 AND user_id = $2 FOR UPDATE) old
        WHERE t.id = $1 AND t.user_id = $2 RETURNING t.*, old.was_revoked`,
      [tokenId, userId],
    );
    const row = rows[0];
    if (!row) throw notFound('token', tokenId, `list the user's tokens with GET /v1/users/${userId}/tokens`);
    if (!row.was_revoked) {
      await appendEvent(tx, {
        kind: 'user.token_revoked',
        actor,
        reason: `API token ${JSON.stringify(row.name)} revoked`,
        userId,
        changes: { revokedAt: { from: null, to: row.revoked_at?.toISOString() ?? null } },
        data: { userId, tokenId, name: row.name, prefix: row.prefix },
      });
    }
    return toTokenView(row);
  });
}

interface TokenRow {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

function toTokenView(r: TokenRow): TokenView {
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    prefix: r.prefix,
    createdAt: r.created_at.toISOString(),
    expiresAt: r.expires_at?.toISOString() ?? null,
    revokedAt: r.revoked_at?.toISOString() ?? null,
    lastUsedAt: r.last_used_at?.toISOString() ?? null,
  };
}

/**
 * Authorization, in one place. Every route asks one of these before it acts:
 *  - admins may do everything;
 *  - a user reads and changes only their own workspaces, builds and tokens;
 *  - a lead also reads (never changes) what belongs to members of their team.
 * Whatever a principal may not read does not exist for them: 404, not 403, so ids of
 * other users' resources leak nothing.
 */
export class Policy {
  constructor(private readonly db: Db) {}

  admin(p: Principal): void {
    if (p.role !== 'admin') throw new A4cError('PERMISSION_DENIED', 'only an admin may do this', { suggestion: 'ask an admin' });
  }

  /** May p act for userId (create, change, delete their things)? */
  write(p: Principal, userId: string, kind = 'user', id = userId): void {
    if (p.role === 'admin' || p.id === userId) return;
    throw notFound(kind, id);
  }

  /** May p read userId's things? */
  async read(p: Principal, userId: string, kind = 'user', id = userId): Promise<void> {
    if (p.role === 'admin' || p.id === userId) return;
    if (p.role === 'lead' && p.teamId) {
      const { rows } = await this.db.query<{ team_id: string | null }>('SELECT team_id FROM users WHERE id = $1', [userId]);
      if (rows[0]?.team_id === p.teamId) return;
    }
    throw notFound(kind, id);
  }
}
