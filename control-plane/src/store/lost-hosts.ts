import type { WorkspaceStatus } from '@a4c/common';
import { ON_HOST_STATUSES, sqlList, stateOf } from '../workspaces/states.js';
import type { Db, Tx } from './db.js';

/** A host has a live agent session: connected, and a heartbeat within the window ($liveWithin seconds, database time). */
const LIVE = (liveWithin: string) => `(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST(${liveWithin}, s.live_within_seconds)))`;

/** What each status whose host matters becomes when the host is lost: the state table's onHostLost. */
const ON_HOST_LOST_SQL = `CASE w.status ${ON_HOST_STATUSES.map((s) => `WHEN '${s}' THEN '${stateOf(s).onHostLost as WorkspaceStatus}'`).join(' ')} END`;

/**
 * The lost-host sweep's bookkeeping, in database time for liveness and in the sweep's
 * clock (`now`) for how long: a host live again forgets its outage; a host seen without
 * a live session for the first time starts one now. Idempotent, so every replica may run it.
 */
export async function recordHostHealth(db: Db, now: Date, liveWithinSeconds: number): Promise<void> {
  await db.query(
    `UPDATE host_status s SET unhealthy_since = NULL, lost_at = NULL
      WHERE (s.unhealthy_since IS NOT NULL OR s.lost_at IS NOT NULL) AND ${LIVE('$1')}`,
    [liveWithinSeconds],
  );
  await db.query(`UPDATE host_status s SET unhealthy_since = $2 WHERE s.unhealthy_since IS NULL AND NOT ${LIVE('$1')}`, [liveWithinSeconds, now]);
}

/** Hosts unhealthy since before now − lostAfterSeconds, not yet declared lost, not removed (removal handles its own). */
export async function overdueHosts(db: Db, now: Date, lostAfterSeconds: number, liveWithinSeconds: number): Promise<string[]> {
  const { rows } = await db.query<{ host_id: string }>(
    `SELECT s.host_id FROM host_status s JOIN hosts h ON h.id = s.host_id
      WHERE s.lost_at IS NULL AND h.removed_at IS NULL AND s.unhealthy_since < $2::timestamptz - make_interval(secs => $3)
        AND NOT ${LIVE('$1')}
      ORDER BY s.host_id LIMIT 100`,
    [liveWithinSeconds, now, lostAfterSeconds],
  );
  return rows.map((r) => r.host_id);
}

/**
 * Declares the host lost, if it still is overdue and nobody did yet: false otherwise (it
 * came back, or another replica was first). Call after lockWorkspacesOnHost: lock order
 * is workspace rows, then host_status, then hosts.
 */
export async function claimLostHost(tx: Tx, hostId: string, now: Date, lostAfterSeconds: number, liveWithinSeconds: number): Promise<Date | undefined> {
  const { rows } = await tx.query<{ unhealthy_since: Date }>(
    `UPDATE host_status s SET lost_at = $3
      WHERE s.host_id = $2 AND s.lost_at IS NULL AND s.unhealthy_since < $3::timestamptz - make_interval(secs => $4) AND NOT ${LIVE('$1')}
      RETURNING s.unhealthy_since`,
    [liveWithinSeconds, hostId, now, lostAfterSeconds],
  );
  return rows[0]?.unhealthy_since;
}

export interface LostWorkspace {
  id: string;
  was: WorkspaceStatus;
  status: WorkspaceStatus;
  container_id: string | null;
  error: string | null;
  prev_error: string | null;
}

/** Locks the host's workspaces whose fate depends on it (the first lock of a lost-host transaction). */
export async function lockWorkspacesOnHost(tx: Tx, hostId: string): Promise<number> {
  const { rowCount } = await tx.query(`SELECT id FROM workspaces WHERE host_id = $1 AND status IN (${sqlList(ON_HOST_STATUSES)}) ORDER BY id FOR UPDATE`, [hostId]);
  return rowCount ?? 0;
}

/**
 * Moves the host's workspaces to what the state table says a lost host makes of them
 * (LOST; DELETING settles as DELETED), with `error` saying why. Call after
 * lockWorkspacesOnHost in the same transaction.
 */
export async function settleWorkspacesOfLostHost(tx: Tx, hostId: string, error: string): Promise<LostWorkspace[]> {
  const { rows } = await tx.query<LostWorkspace>(
    `WITH on_host AS (SELECT id, status AS was, container_id AS was_container, error AS prev_error FROM workspaces
                       WHERE host_id = $1 AND status IN (${sqlList(ON_HOST_STATUSES)}))
     UPDATE workspaces w
        SET status = ${ON_HOST_LOST_SQL},
            error = CASE WHEN ${ON_HOST_LOST_SQL} = 'LOST' THEN $2 ELSE w.error END,
            container_id = CASE WHEN ${ON_HOST_LOST_SQL} = 'DELETED' THEN NULL ELSE w.container_id END,
            failed_step = NULL, current_step = NULL, updated_at = now()
       FROM on_host WHERE w.id = on_host.id
     RETURNING w.id, on_host.was, w.status, on_host.was_container AS container_id, w.error, on_host.prev_error`,
    [hostId, error],
  );
  return rows;
}
