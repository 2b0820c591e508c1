import type { BuildRow } from '../builds/queue.js';
import type { Tx } from './db.js';

/**
 * Cancels a queued or running build: CANCELLED with the reason as its error. The claim
 * id stays, so a late progress report or result of the worker is recognised as
 * belonging to a build that is no longer running (the worker is told to stop, the
 * result discarded). undefined: no such build; { row, was } with was = the status it
 * had, which is the row unchanged when it had already finished.
 */
export async function cancelBuildRow(tx: Tx, id: string, reason: string): Promise<{ row: BuildRow; was: BuildRow['status'] } | undefined> {
  const cur = (await tx.query<BuildRow>('SELECT * FROM image_builds WHERE id = $1 FOR UPDATE', [id])).rows[0];
  if (!cur) return undefined;
  if (cur.status !== 'SCHEDULED' && cur.status !== 'IN_PROGRESS') return { row: cur, was: cur.status };
  const { rows } = await tx.query<BuildRow>(
    `UPDATE image_builds SET status = 'CANCELLED', error = $2, finished_at = now(), updated_at = now() WHERE id = $1 RETURNING *`,
    [id, reason],
  );
  return { row: rows[0] as BuildRow, was: cur.status };
}

/**
 * Builds claimed longer ago than maxSeconds become FAILED, whether or not their worker
 * still reports progress. One statement, SKIP LOCKED: safe on every replica at once.
 */
export async function failOverlongBuilds(tx: Tx, maxSeconds: number): Promise<BuildRow[]> {
  const { rows } = await tx.query<BuildRow>(
    `WITH overlong AS (
       SELECT id FROM image_builds
        WHERE status = 'IN_PROGRESS' AND claimed_at < now() - make_interval(secs => $1)
        ORDER BY claimed_at LIMIT 500 FOR UPDATE SKIP LOCKED)
     UPDATE image_builds b
        SET status = 'FAILED',
            error = format('the build ran longer than the maximum of %s s (A4C_BUILD_MAX_SECONDS) on host %s and was stopped', $1::int, b.worker_host_id),
            finished_at = now(), updated_at = now()
       FROM overlong WHERE b.id = overlong.id
     RETURNING b.*`,
    [maxSeconds],
  );
  return rows;
}

/**
 * A build requeued after a silent lease whose worker (the same host) reports progress
 * again before anyone else claimed it: claimed again for that host with a new claim id,
 * so the run in flight goes on instead of being aborted and started over. undefined:
 * not SCHEDULED any more, or last held by another host.
 */
export async function reclaimForSameWorker(tx: Tx, buildId: string, hostId: string): Promise<BuildRow | undefined> {
  const { rows } = await tx.query<BuildRow>(
    `UPDATE image_builds
        SET status = 'IN_PROGRESS', claim_id = gen_random_uuid(), attempts = attempts + 1,
            claimed_at = now(), heartbeat_at = now(), error = NULL, updated_at = now()
      WHERE id = $1 AND status = 'SCHEDULED' AND worker_host_id = $2
      RETURNING *`,
    [buildId, hostId],
  );
  return rows[0];
}
