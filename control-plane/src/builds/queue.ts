import { randomUUID } from 'node:crypto';
import type { Arch, Build, BuildStatus } from '@a4c/common';
import pg from 'pg';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent } from '../store/events.js';

export interface BuildRow {
  id: string;
  user_id: string;
  image_name: string;
  project: string;
  arch: string;
  change_number: string;
  image_tag: string;
  status: BuildStatus;
  worker_host_id: string | null;
  claim_id: string | null;
  attempts: number;
  retry_count: number;
  progress: number;
  image_id: string | null;
  error: string | null;
  created_at: Date;
  claimed_at: Date | null;
  heartbeat_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

export function toBuild(r: BuildRow, logTail: string[] = []): Build {
  return {
    id: r.id,
    userId: r.user_id,
    imageName: r.image_name,
    project: r.project,
    arch: r.arch as Arch,
    changeNumber: r.change_number,
    status: r.status,
    worker: r.worker_host_id,
    attempts: r.attempts,
    retryCount: r.retry_count,
    progress: r.progress,
    imageTag: r.image_tag,
    imageId: r.image_id,
    error: r.error,
    createdAt: r.created_at.toISOString(),
    claimedAt: r.claimed_at?.toISOString() ?? null,
    heartbeatAt: r.heartbeat_at?.toISOString() ?? null,
    finishedAt: r.finished_at?.toISOString() ?? null,
    updatedAt: r.updated_at.toISOString(),
    logTail,
  };
}

/** A build's tag: <imageName>:<changeNumber>-<arch>. */
export function imageTag(imageName: string, changeNumber: string, arch: string): string {
  return `${imageName}:${changeNumber}-${arch}`.slice(0, 255);
}

export async function insertBuild(
  tx: Tx,
  b: { userId: string; imageName: string; project: string; arch: string; changeNumber: string },
): Promise<BuildRow> {
  const { rows } = await tx.query<BuildRow>(
    `INSERT INTO image_builds (id, user_id, image_name, project, arch, change_number, image_tag, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'SCHEDULED') RETURNING *`,
    [randomUUID(), b.userId, b.imageName, b.project, b.arch, b.changeNumber, imageTag(b.imageName, b.changeNumber, b.arch)],
  );
  return rows[0] as BuildRow;
}

/**
 * Claims the oldest SCHEDULED builds of the arch for a host: as many as it has slots
 * free, counting the builds it already holds in the database.
 *
 * Why no build runs twice: the candidate rows are locked with FOR UPDATE SKIP LOCKED
 * inside the statement that claims them, so two claimers running at once lock
 * disjoint rows (the second skips what the first holds, no waiting, no deadlock), and
 * a row is only claimed while it is still SCHEDULED. Every claim gets a fresh
 * claim_id, and every later write about the build (progress, result) must carry it.
 */
export async function claimBuilds(db: Db | Tx, hostId: string, arch: string, slots: number): Promise<BuildRow[]> {
  if (slots <= 0) return [];
  // The claims and their events commit together.
  if (db instanceof pg.Pool) return inTx(db, (tx) => claimBuilds(tx, hostId, arch, slots));
  const { rows } = await db.query<BuildRow>(
    `UPDATE image_builds b
        SET status = 'IN_PROGRESS', worker_host_id = $1, claim_id = gen_random_uuid(), attempts = attempts + 1,
            progress = 0, claimed_at = now(), heartbeat_at = now(), updated_at = now()
      WHERE b.id IN (SELECT id FROM image_builds
                      WHERE status = 'SCHEDULED' AND arch = $2
                      ORDER BY created_at, id
                      -- the host's free slots: its slots less the builds it holds
                      LIMIT GREATEST(0, $3 - (SELECT count(*) FROM image_builds WHERE status = 'IN_PROGRESS' AND worker_host_id = $1))
                      FOR UPDATE SKIP LOCKED)
        AND b.status = 'SCHEDULED'
      RETURNING b.*`,
    [hostId, arch, slots],
  );
  rows.sort((a, b) => a.created_at.getTime() - b.created_at.getTime());
  for (const b of rows) {
    await appendEvent(db, {
      kind: 'build.claimed',
      actor: `agent:${hostId}`,
      reason: `host ${hostId} had a free build slot`,
      hostId,
      buildId: b.id,
      changes: { status: { from: 'SCHEDULED', to: 'IN_PROGRESS' }, worker: { from: null, to: hostId } },
      data: { buildId: b.id, claimId: b.claim_id, attempts: b.attempts },
    });
  }
  return rows;
}

/** Progress from the claim holder: heartbeat, percent, log lines. False if the claim is not theirs any more. */
export async function recordProgress(db: Db | Tx, buildId: string, claimId: string, percent: number, lines: string[]): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE image_builds SET heartbeat_at = now(), progress = GREATEST(progress, $3), updated_at = now()
      WHERE id = $1 AND claim_id = $2 AND status = 'IN_PROGRESS'`,
    [buildId, claimId, Math.max(0, Math.min(100, Math.round(percent)))],
  );
  if (!rowCount) return false;
  if (lines.length) await appendLogs(db, buildId, lines);
  return true;
}

export async function appendLogs(db: Db | Tx, buildId: string, lines: string[]): Promise<void> {
  const clean = lines.map((l) => l.replace(/\u0000/g, '').slice(0, 4000)).slice(-1000);
  await db.query('INSERT INTO build_logs (build_id, line) SELECT $1, unnest($2::text[])', [buildId, clean]);
}

export type CompletionOutcome = 'completed' | 'failed' | 'discarded';

/**
 * The claim holder's result. Applied only if the claim is still the one it was given:
 * a worker that lost its claim (requeued after a silent lease) and finishes late has
 * its result discarded, and says so in the activity log.
 */
export async function completeBuild(
  tx: Tx,
  hostId: string,
  r: { buildId: string; claimId: string; success: boolean; imageId: string; error: string; logLines: string[]; pushedRef?: string },
): Promise<{ outcome: CompletionOutcome; row?: BuildRow }> {
  const { rows } = await tx.query<BuildRow>(
    `UPDATE image_builds
        SET status = $3, image_id = NULLIF($4, ''), error = NULLIF($5, ''), progress = CASE WHEN $3 = 'COMPLETED' THEN 100 ELSE progress END,
            finished_at = now(), heartbeat_at = now(), updated_at = now()
      WHERE id = $1 AND claim_id = $2 AND status = 'IN_PROGRESS'
      RETURNING *`,
    [r.buildId, r.claimId, r.success ? 'COMPLETED' : 'FAILED', r.imageId, r.success ? '' : r.error || 'the build failed without a message'],
  );
  const row = rows[0];
  if (!row) {
    const known = (await tx.query<{ id: string }>('SELECT id FROM image_builds WHERE id = $1', [r.buildId])).rows[0];
    await appendEvent(tx, {
      kind: 'build.result_discarded',
      actor: `agent:${hostId}`,
      reason: "the claim is no longer this worker's",
      hostId,
      buildId: known ? r.buildId : null,
      data: { buildId: r.buildId, claimId: r.claimId, success: r.success, reason: 'the claim is no longer this worker\'s' },
    });
    return { outcome: 'discarded' };
  }
  if (r.logLines.length) await appendLogs(tx, row.id, r.logLines);
  await appendEvent(tx, {
    kind: r.success ? 'build.completed' : 'build.failed',
    actor: `agent:${hostId}`,
    reason: r.success ? `built ${row.image_tag} on host ${hostId}` : `the build failed on host ${hostId}: ${row.error}`,
    hostId,
    buildId: row.id,
    userId: row.user_id,
    changes: { status: { from: 'IN_PROGRESS', to: row.status }, ...(row.error ? { error: { from: null, to: row.error } } : {}) },
    data: { buildId: row.id, imageTag: row.image_tag, imageId: row.image_id, error: row.error, attempts: row.attempts },
  });
  if (r.success) {
    // The builder holds the image now: make it placeable at once, not at its next heartbeat.
    await tx.query(
      `INSERT INTO host_images (host_id, ref, image_id, project, arch, change_number, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, now())
       ON CONFLICT (host_id, ref) DO UPDATE SET image_id = EXCLUDED.image_id, project = EXCLUDED.project, arch = EXCLUDED.arch,
         change_number = EXCLUDED.change_number, created_at = EXCLUDED.created_at`,
      [hostId, row.image_tag, r.imageId || row.image_tag, row.project, row.arch, row.change_number],
    );
    if (r.pushedRef) {
      // In a registry: every host of the arch can pull it.
      await tx.query(
        `INSERT INTO registry_images (ref, pull_ref, project, arch, change_number, build_id) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (ref) DO UPDATE SET pull_ref = EXCLUDED.pull_ref, build_id = EXCLUDED.build_id, created_at = now()`,
        [row.image_tag, r.pushedRef, row.project, row.arch, row.change_number, row.id],
      );
    }
  }
  return { outcome: r.success ? 'completed' : 'failed', row };
}

/**
 * Builds whose claim holder has been silent longer than the lease go back to the
 * queue with retry_count + 1 (a new claim will get a new claim_id); past maxRetries
 * they are FAILED with the reason. One statement, SKIP LOCKED: safe on every replica.
 */
export async function expireLeases(db: Db, leaseMs: number, maxRetries: number): Promise<BuildRow[]> {
  // The requeues and their events commit together.
  return inTx(db, async (tx) => {
    const { rows } = await tx.query<BuildRow>(
      `WITH stale AS (
         SELECT id FROM image_builds
          WHERE status = 'IN_PROGRESS' AND heartbeat_at < now() - make_interval(secs => $1 / 1000.0)
          ORDER BY heartbeat_at LIMIT 500 FOR UPDATE SKIP LOCKED)
       UPDATE image_builds b
          SET retry_count = b.retry_count + 1,
              status = CASE WHEN b.retry_count + 1 > $2 THEN 'FAILED' ELSE 'SCHEDULED' END,
              claim_id = NULL,
              error = CASE WHEN b.retry_count + 1 > $2
                           THEN format('worker %s went silent for over %s s and the build was already retried %s times', b.worker_host_id, $1 / 1000, $2)
                           ELSE format('requeued: worker %s went silent for over %s s', b.worker_host_id, $1 / 1000) END,
              finished_at = CASE WHEN b.retry_count + 1 > $2 THEN now() END,
              updated_at = now()
         FROM stale WHERE b.id = stale.id
       RETURNING b.*`,
      [leaseMs, maxRetries],
    );
    for (const r of rows) {
      await appendEvent(tx, {
        kind: r.status === 'FAILED' ? 'build.failed' : 'build.requeued',
        actor: 'control-plane',
        reason: r.error ?? 'lease expired',
        hostId: r.worker_host_id,
        buildId: r.id,
        userId: r.user_id,
        changes: { status: { from: 'IN_PROGRESS', to: r.status }, retryCount: { from: r.retry_count - 1, to: r.retry_count } },
        data: { buildId: r.id, retryCount: r.retry_count, reason: r.error },
      });
    }
    return rows;
  });
}
