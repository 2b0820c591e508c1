import type { Db, Tx } from './db.js';

export type AccessKind = 'exec' | 'shell' | 'port-forward' | 'ssh';

/** A replica refreshes seen_at of its live sessions this often; a session unseen for 3 periods does not count. */
export const SESSION_SEEN_INTERVAL_MS = 30_000;
const LIVE_WITHIN = `make_interval(secs => ${(3 * SESSION_SEEN_INTERVAL_MS) / 1000})`;

export interface AccessSessionRow {
  id: string;
  workspace_id: string;
  host_id: string;
  actor: string;
  kind: AccessKind;
  command: string[] | null;
  tty: boolean;
  port: number | null;
  terminal: { cols: number; rows: number; env: string[] } | null;
  replica: string;
  opened_at: Date;
  attached_at: Date | null;
  ended_at: Date | null;
  exit_code: number | null;
  end_reason: string | null;
  bytes_in: string;
  bytes_out: string;
}

export interface NewAccessSession {
  id: string;
  workspaceId: string;
  hostId: string;
  actor: string;
  kind: AccessKind;
  command: string[] | null;
  tty: boolean;
  port: number | null;
  terminal: { cols: number; rows: number; env: string[] } | null;
  replica: string;
}

export interface OpenSessionCounts {
  workspace: number;
  actor: number;
}

/**
 * Counts the live sessions of a workspace and of a principal, serialised against other
 * openers of the same workspace or principal (advisory locks held to commit), so two
 * replicas admitting at once cannot both take the last place.
 */
export async function lockAndCountOpenSessions(tx: Tx, workspaceId: string, actor: string): Promise<OpenSessionCounts> {
  await tx.query("SELECT pg_advisory_xact_lock(hashtext('a4c.access.ws:' || $1)), pg_advisory_xact_lock(hashtext('a4c.access.actor:' || $2))", [
    workspaceId,
    actor,
  ]);
  const { rows } = await tx.query<{ workspace: string; actor: string }>(
    `SELECT count(*) FILTER (WHERE workspace_id = $1) AS workspace, count(*) FILTER (WHERE actor = $2) AS actor
       FROM access_sessions
      WHERE ended_at IS NULL AND seen_at > now() - ${LIVE_WITHIN} AND (workspace_id = $1 OR actor = $2)`,
    [workspaceId, actor],
  );
  return { workspace: Number(rows[0]?.workspace ?? 0), actor: Number(rows[0]?.actor ?? 0) };
}

export async function insertAccessSession(tx: Tx, s: NewAccessSession): Promise<void> {
  await tx.query(
    `INSERT INTO access_sessions (id, workspace_id, host_id, actor, kind, command, tty, port, terminal, replica)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [s.id, s.workspaceId, s.hostId, s.actor, s.kind, s.command ? JSON.stringify(s.command) : null, s.tty, s.port, s.terminal ? JSON.stringify(s.terminal) : null, s.replica],
  );
  await touchWorkspaceActivity(tx, [s.workspaceId]);
}

export async function getAccessSession(db: Db | Tx, id: string): Promise<AccessSessionRow | undefined> {
  const { rows } = await db.query<AccessSessionRow>('SELECT * FROM access_sessions WHERE id = $1', [id]);
  return rows[0];
}

export async function markAttached(db: Db, id: string): Promise<void> {
  await db.query('UPDATE access_sessions SET attached_at = now(), seen_at = now() WHERE id = $1', [id]);
}

export interface SessionEnd {
  exitCode: number | null;
  reason: string;
  bytesIn: number;
  bytesOut: number;
}

/** Closes the session's audit row (once) and counts the end as activity on its workspace. */
export async function endAccessSession(db: Db, id: string, end: SessionEnd): Promise<void> {
  await db.query(
    `WITH ended AS (
       UPDATE access_sessions SET ended_at = now(), exit_code = $2, end_reason = $3, bytes_in = $4, bytes_out = $5
        WHERE id = $1 AND ended_at IS NULL RETURNING workspace_id)
     UPDATE workspaces SET last_activity_at = now() WHERE id IN (SELECT workspace_id FROM ended)`,
    [id, end.exitCode, end.reason.slice(0, 1000), end.bytesIn, end.bytesOut],
  );
}

/** The holding replica's periodic refresh: its sessions still live, and activity on the workspaces that had traffic. */
export async function refreshSessions(db: Db, live: { id: string; bytesIn: number; bytesOut: number }[], activeWorkspaces: string[]): Promise<void> {
  if (live.length) {
    await db.query(
      `UPDATE access_sessions a SET seen_at = now(), bytes_in = t.bytes_in, bytes_out = t.bytes_out
         FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS t(id, bytes_in, bytes_out)
        WHERE a.id = t.id AND a.ended_at IS NULL`,
      [live.map((s) => s.id), live.map((s) => s.bytesIn), live.map((s) => s.bytesOut)],
    );
  }
  if (activeWorkspaces.length) await touchWorkspaceActivity(db, activeWorkspaces);
}

async function touchWorkspaceActivity(db: Db | Tx, workspaceIds: string[]): Promise<void> {
  await db.query('UPDATE workspaces SET last_activity_at = now() WHERE id = ANY($1::uuid[])', [workspaceIds]);
}

/** A workspace's sessions, newest first: the audit of who got in, how, for how long. */
export async function listAccessSessions(db: Db, workspaceId: string, limit: number): Promise<AccessSessionRow[]> {
  const { rows } = await db.query<AccessSessionRow>('SELECT * FROM access_sessions WHERE workspace_id = $1 ORDER BY opened_at DESC, id LIMIT $2', [
    workspaceId,
    limit,
  ]);
  return rows;
}
