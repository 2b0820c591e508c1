import type { Db, Tx } from './db.js';
import { appendEvent } from './events.js';

export type DrainStatus = 'ACTIVE' | 'DONE' | 'DEADLINE_REACHED' | 'CANCELLED';

export interface DrainRow {
  id: string;
  host_id: string;
  actor: string;
  migrate: boolean;
  parallelism: number;
  deadline_at: Date | null;
  status: DrainStatus;
  force_stopped: number;
  created_at: Date;
  finished_at: Date | null;
}

export interface DrainView {
  id: string;
  status: DrainStatus;
  migrate: boolean;
  parallelism: number;
  deadlineAt: string | null;
  actor: string;
  /** Workspaces still on the host (not deleted or failed). */
  remaining: number;
  /** Moves of this drain under way now. */
  moving: number;
  moved: number;
  moveFailures: number;
  forceStopped: number;
  startedAt: string;
  finishedAt: string | null;
}

/** Workspaces that are on a host in the sense a drain cares about: they hold it. */
export const ON_HOST_STATUSES = ['CREATING', 'RUNNING', 'STARTING', 'STOPPING', 'STOPPED'];

/**
 * Opens a drain (or changes the open one) and tells each owner of a workspace on the
 * host, in the caller's transaction (which also sets hosts.draining).
 */
export async function openDrain(
  tx: Tx,
  d: { id: string; hostId: string; actor: string; migrate: boolean; parallelism: number; deadlineAt: Date | null },
): Promise<DrainRow> {
  const { rows } = await tx.query<DrainRow>(
    `INSERT INTO host_drains (id, host_id, actor, migrate, parallelism, deadline_at) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (host_id) WHERE status = 'ACTIVE'
     DO UPDATE SET actor = EXCLUDED.actor, migrate = EXCLUDED.migrate, parallelism = EXCLUDED.parallelism, deadline_at = EXCLUDED.deadline_at
     RETURNING *`,
    [d.id, d.hostId, d.actor, d.migrate, d.parallelism, d.deadlineAt],
  );
  const drain = rows[0] as DrainRow;
  const { rows: ws } = await tx.query<{ id: string; user_id: string; status: string }>(
    'SELECT id, user_id, status FROM workspaces WHERE host_id = $1 AND status = ANY($2) ORDER BY created_at, id',
    [d.hostId, ON_HOST_STATUSES],
  );
  for (const w of ws) {
    const when = d.deadlineAt ? ` by ${d.deadlineAt.toISOString()}` : '';
    await appendEvent(tx, {
      kind: 'workspace.drain_notice',
      actor: d.actor,
      reason: d.migrate
        ? `host ${d.hostId} is being drained: this workspace will be moved to another host${when}${d.deadlineAt ? ', or stopped then if it is still there' : ''}`
        : `host ${d.hostId} is being drained${d.deadlineAt ? `: this workspace will be stopped at ${d.deadlineAt.toISOString()}` : ''}; move it with \`a4c ws move ${w.id}\``,
      workspaceId: w.id,
      hostId: d.hostId,
      userId: w.user_id,
      data: { drainId: drain.id, deadlineAt: d.deadlineAt?.toISOString() ?? null, migrate: d.migrate, status: w.status },
    });
  }
  return drain;
}

/** The host was activated: its open drain ends. */
export async function cancelDrain(tx: Tx, hostId: string, actor: string): Promise<void> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE host_drains SET status = 'CANCELLED', finished_at = now() WHERE host_id = $1 AND status = 'ACTIVE' RETURNING id`,
    [hostId],
  );
  if (rows[0]) await finishedEvent(tx, hostId, rows[0].id, 'CANCELLED', actor, `activated by ${actor}; the drain ends`);
}

export async function finishDrain(tx: Tx, drain: DrainRow, status: 'DONE' | 'DEADLINE_REACHED', forceStopped: number, reason: string): Promise<void> {
  await tx.query(`UPDATE host_drains SET status = $2, force_stopped = force_stopped + $3, finished_at = now() WHERE id = $1`, [drain.id, status, forceStopped]);
  await finishedEvent(tx, drain.host_id, drain.id, status, 'control-plane', reason);
}

async function finishedEvent(tx: Tx, hostId: string, drainId: string, status: DrainStatus, actor: string, reason: string): Promise<void> {
  await appendEvent(tx, { kind: 'host.drain_finished', actor, reason, hostId, data: { drainId, status } });
}

/** Open drains this replica may work on now (none another replica is ticking). */
export async function lockOpenDrains(tx: Tx): Promise<DrainRow[]> {
  // NO KEY UPDATE: a move inserted meanwhile (its drain_id foreign key takes KEY SHARE) never waits on it.
  const { rows } = await tx.query<DrainRow>(`SELECT * FROM host_drains WHERE status = 'ACTIVE' ORDER BY created_at FOR NO KEY UPDATE SKIP LOCKED`);
  return rows;
}

export interface DrainWork {
  /** Workspaces still on the host. */
  remaining: { id: string; status: string }[];
  /** Open moves of this drain. */
  moving: number;
  /** Workspaces a move of this drain already failed for: not tried again by the drain. */
  failed: Set<string>;
}

export async function drainWork(db: Db | Tx, drain: DrainRow): Promise<DrainWork> {
  const { rows: remaining } = await db.query<{ id: string; status: string }>(
    'SELECT id, status FROM workspaces WHERE host_id = $1 AND status = ANY($2) ORDER BY created_at, id',
    [drain.host_id, ON_HOST_STATUSES],
  );
  const { rows: moves } = await db.query<{ workspace_id: string; status: string }>('SELECT workspace_id, status FROM workspace_moves WHERE drain_id = $1', [drain.id]);
  return {
    remaining,
    moving: moves.filter((m) => m.status !== 'SUCCEEDED' && m.status !== 'FAILED').length,
    failed: new Set(moves.filter((m) => m.status === 'FAILED').map((m) => m.workspace_id)),
  };
}

/** The host's latest drain with its progress, for GET /v1/hosts/{id}; null if it was never drained with a deadline or --migrate. */
export async function latestDrainView(db: Db, hostId: string): Promise<DrainView | null> {
  const { rows } = await db.query<DrainRow & { remaining: number; moving: number; moved_n: number; failed_n: number }>(
    `SELECT d.*,
            (SELECT count(*)::int FROM workspaces w WHERE w.host_id = d.host_id AND w.status = ANY($2)) AS remaining,
            (SELECT count(*)::int FROM workspace_moves m WHERE m.drain_id = d.id AND m.status NOT IN ('SUCCEEDED', 'FAILED')) AS moving,
            (SELECT count(*)::int FROM workspace_moves m WHERE m.drain_id = d.id AND m.status = 'SUCCEEDED') AS moved_n,
            (SELECT count(*)::int FROM workspace_moves m WHERE m.drain_id = d.id AND m.status = 'FAILED') AS failed_n
       FROM host_drains d WHERE d.host_id = $1 ORDER BY d.created_at DESC LIMIT 1`,
    [hostId, ON_HOST_STATUSES],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    id: r.id,
    status: r.status,
    migrate: r.migrate,
    parallelism: r.parallelism,
    deadlineAt: r.deadline_at?.toISOString() ?? null,
    actor: r.actor,
    remaining: r.remaining,
    moving: r.moving,
    moved: r.moved_n,
    moveFailures: r.failed_n,
    forceStopped: r.force_stopped,
    startedAt: r.created_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
  };
}
