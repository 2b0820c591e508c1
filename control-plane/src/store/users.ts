import type { Role } from '../auth/principals.js';
import { inTx, type Db } from './db.js';
import { appendEvent, changesOf } from './events.js';

export interface UserView {
  id: string;
  teamId: string | null;
  role: Role;
}

/** A user; one who has only ever been named in a request has no row yet and shows as a plain user. */
export async function getUser(db: Db, id: string): Promise<UserView> {
  const { rows } = await db.query<{ team_id: string | null; role: Role }>('SELECT team_id, role FROM users WHERE id = $1', [id]);
  return { id, teamId: rows[0]?.team_id ?? null, role: rows[0]?.role ?? 'user' };
}

export async function listUsers(db: Db, limit = 10_000): Promise<UserView[]> {
  const { rows } = await db.query<{ id: string; team_id: string | null; role: Role }>('SELECT id, team_id, role FROM users ORDER BY id LIMIT $1', [limit]);
  return rows.map((u) => ({ id: u.id, teamId: u.team_id, role: u.role }));
}

/** Creates a user with its event; false if the id is taken. */
export async function createUser(db: Db, u: { id: string; teamId: string | null; role: Role }, actor: string): Promise<boolean> {
  return inTx(db, async (tx) => {
    const { rowCount } = await tx.query('INSERT INTO users (id, team_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [u.id, u.teamId, u.role]);
    if (rowCount) {
      await appendEvent(tx, {
        kind: 'user.created',
        actor,
        reason: `created by ${actor}`,
        userId: u.id,
        changes: changesOf({}, { teamId: u.teamId, role: u.role }),
        data: { userId: u.id, teamId: u.teamId, role: u.role },
      });
    }
    return Boolean(rowCount);
  });
}

/** Creates or changes a user's team (when teamId is given, null clearing it) and role, with its event. */
export async function putUser(db: Db, id: string, change: { teamId?: string | null | undefined; role?: Role | undefined }, actor: string): Promise<void> {
  await inTx(db, async (tx) => {
    const before = (await tx.query<{ team_id: string | null; role: Role }>('SELECT team_id, role FROM users WHERE id = $1 FOR UPDATE', [id])).rows[0];
    const { rows } = await tx.query<{ team_id: string | null; role: Role }>(
      `INSERT INTO users (id, team_id, role) VALUES ($1, $2, COALESCE($3, 'user'))
       ON CONFLICT (id) DO UPDATE SET team_id = CASE WHEN $4 THEN EXCLUDED.team_id ELSE users.team_id END,
                                      role = COALESCE($3, users.role), updated_at = now()
       RETURNING team_id, role`,
      [id, change.teamId ?? null, change.role ?? null, change.teamId !== undefined],
    );
    const after = rows[0] as { team_id: string | null; role: Role };
    const changes = changesOf(before ? { teamId: before.team_id, role: before.role } : {}, { teamId: after.team_id, role: after.role });
    if (before && !Object.keys(changes).length) return; // nothing changed
    await appendEvent(tx, {
      kind: before ? 'user.updated' : 'user.created',
      actor,
      reason: before ? `changed by ${actor}` : `created by ${actor}`,
      userId: id,
      changes,
      data: { userId: id, ...change },
    });
  });
}
