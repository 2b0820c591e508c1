/**
 * The statements of an agent-feedback batch (workspaces/agent-feedback.ts): status
 * reports and acks of many sessions, each statement reading or writing one table for
 * the whole batch (arrays through unnest).
 */
import type { WorkspaceStatus } from '@a4c/common';
import type { Tx } from './db.js';
import type { WorkspaceRow } from './workspaces.js';

/**
 * Which of these (host, session) pairs are still their host's session, as `host\0session`.
 * FOR KEY SHARE holds each live host_status row until commit, as sessionGuard does for
 * one write (store/host-sessions.ts): a newer session's Hello waits for the batch, so
 * no write of an old session lands after the new one took over. Rows are locked in host
 * id order, so two batches never wait on each other in a cycle.
 */
export async function liveSessions(tx: Tx, hostIds: string[], sessionIds: string[]): Promise<Set<string>> {
  const { rows } = await tx.query<{ host_id: string; session_id: string }>(
    `SELECT s.host_id, s.session_id FROM host_status s
       JOIN (SELECT DISTINCT h, sid FROM unnest($1::text[], $2::text[]) u(h, sid)) u ON s.host_id = u.h AND s.session_id = u.sid
      ORDER BY s.host_id FOR KEY SHARE OF s`,
    [hostIds, sessionIds],
  );
  return new Set(rows.map((r) => `${r.host_id}\u0000${r.session_id}`));
}

/** The hosts' current desired-state revisions (a host never seen is absent). */
export async function hostRevisions(tx: Tx, hostIds: string[]): Promise<Map<string, number>> {
  if (!hostIds.length) return new Map();
  const { rows } = await tx.query<{ id: string; revision: number }>('SELECT id, revision FROM hosts WHERE id = ANY($1::text[])', [hostIds]);
  return new Map(rows.map((r) => [r.id, Number(r.revision)]));
}

/** The workspaces, locked for update in id order. */
export async function lockWorkspaces(tx: Tx, ids: string[]): Promise<Map<string, WorkspaceRow>> {
  if (!ids.length) return new Map();
  const { rows } = await tx.query<WorkspaceRow>('SELECT * FROM workspaces WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE', [ids]);
  return new Map(rows.map((r) => [r.id, r]));
}

/** The step each workspace on its way up is at, as its agent reported it. */
export async function setCurrentSteps(tx: Tx, ids: string[], steps: string[]): Promise<void> {
  if (!ids.length) return;
  await tx.query('UPDATE workspaces w SET current_step = u.step FROM unnest($1::uuid[], $2::text[]) u(id, step) WHERE w.id = u.id', [ids, steps]);
}

export interface ReportedStatus {
  id: string;
  status: WorkspaceStatus;
  containerId: string | null;
  failedStep: string | null;
  error: string | null;
  revision: number;
}

/** The statuses agents' reports move workspaces to (the row triggers keep reservations and volumes). */
export async function setReportedStatuses(tx: Tx, s: ReportedStatus[]): Promise<void> {
  if (!s.length) return;
  await tx.query(
    `UPDATE workspaces w SET status = u.status, container_id = u.container_id, failed_step = u.failed_step, error = u.error,
            desired_revision = u.revision, updated_at = now()
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) u(id, status, container_id, failed_step, error, revision)
      WHERE w.id = u.id`,
    [s.map((x) => x.id), s.map((x) => x.status), s.map((x) => x.containerId), s.map((x) => x.failedStep), s.map((x) => x.error), s.map((x) => x.revision)],
  );
}

export interface AckedDeletion {
  id: string;
  user_id: string;
  host_id: string;
  container_id: string | null;
  desired_revision: number;
}

/**
 * Each host's DELETING workspaces whose removal its acked revision carried become
 * DELETED; returns them as they were. Locked in id order; lock order everywhere:
 * workspace rows, then their host row.
 */
export async function deleteAcked(tx: Tx, hostIds: string[], revisions: number[]): Promise<AckedDeletion[]> {
  if (!hostIds.length) return [];
  const { rows } = await tx.query<AckedDeletion>(
    `WITH a AS (SELECT h, max(rev) AS rev FROM unnest($1::text[], $2::bigint[]) u(h, rev) GROUP BY h),
          gone AS (SELECT w.id, w.container_id FROM workspaces w JOIN a ON w.host_id = a.h
                    WHERE w.status = 'DELETING' AND w.desired_revision <= a.rev ORDER BY w.id FOR UPDATE OF w)
     UPDATE workspaces w SET status = 'DELETED', container_id = NULL, updated_at = now()
       FROM gone WHERE w.id = gone.id RETURNING w.id, w.user_id, w.host_id, gone.container_id, w.desired_revision`,
    [hostIds, revisions],
  );
  return rows;
}

/** Each host's agent has applied its revision. */
export async function recordAppliedRevisions(tx: Tx, hostIds: string[], revisions: number[]): Promise<void> {
  if (!hostIds.length) return;
  await tx.query(
    `UPDATE hosts h SET applied_revision = a.rev
       FROM (SELECT x, max(rev) AS rev FROM unnest($1::text[], $2::bigint[]) u(x, rev) GROUP BY x ORDER BY x) a
      WHERE h.id = a.x AND h.applied_revision < a.rev`,
    [hostIds, revisions],
  );
}
