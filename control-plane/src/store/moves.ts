import { A4cError, conflict } from '@a4c/common';
import type { Db, Tx } from './db.js';
import type { WorkspaceRow } from './workspaces.js';

export type MoveStatus = 'STOPPING' | 'COPYING' | 'VERIFYING' | 'STARTING' | 'SUCCEEDED' | 'FAILED';

export interface MoveRow {
  id: string;
  workspace_id: string;
  from_host_id: string;
  to_host_id: string;
  actor: string;
  drain_id: string | null;
  status: MoveStatus;
  error: string | null;
  was_running: boolean;
  image_ref: string;
  bytes_done: number;
  image_bytes: number | null;
  image_sha256: string | null;
  volume_bytes: number | null;
  volume_sha256: string | null;
  hold_memory_mb: number;
  hold_millicpus: number;
  hold_disk_mb: number;
  held: boolean;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

export interface MoveView {
  id: string;
  workspaceId: string;
  fromHostId: string;
  toHostId: string;
  actor: string;
  drainId: string | null;
  status: MoveStatus;
  error: string | null;
  wasRunning: boolean;
  bytesDone: number;
  image: { bytes: number | null; sha256: string | null };
  volume: { bytes: number | null; sha256: string | null };
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export function toMoveView(r: MoveRow): MoveView {
  return {
    id: r.id,
    workspaceId: r.workspace_id,
    fromHostId: r.from_host_id,
    toHostId: r.to_host_id,
    actor: r.actor,
    drainId: r.drain_id,
    status: r.status,
    error: r.error,
    wasRunning: r.was_running,
    bytesDone: r.bytes_done,
    image: { bytes: r.image_bytes, sha256: r.image_sha256 },
    volume: { bytes: r.volume_bytes, sha256: r.volume_sha256 },
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
  };
}

export interface DestinationPolicy {
  liveWithinSeconds: number;
  headroom: number;
  maxDiskPercent: number;
  maxMemoryPercent: number;
}

/** A destination must be live, answering, not draining, under the thresholds, and have room for the workspace's tier. */
const FITS = `s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($2, s.live_within_seconds))
     AND s.docker_ready AND NOT h.draining
     AND s.disk_percent < $3 AND s.memory_percent < $4
     AND h.reserved_memory_mb + $6 <= floor(h.memory_bytes / 1048576.0 * $5)
     AND h.reserved_millicpus + $7 <= floor(h.cpus * 1000 * $5)
     AND h.reserved_disk_mb + $8 <= floor(h.disk_bytes / 1048576.0 * $5)`;

/**
 * Chooses (or checks) the destination of a move and holds the workspace's resources
 * there, in the caller's transaction: the same capacity check as placement, in the
 * WHERE clause of the statement that locks the host row. No image is needed there:
 * the move carries it. Without a named host, hosts already holding the user's volume
 * for the project come first, then the least disk usage.
 */
/** A move reads the files at the source: its agent must be connected and its engine answering. */
export async function checkSourceLive(tx: Tx, ws: WorkspaceRow, liveWithinSeconds: number): Promise<void> {
  const { rows } = await tx.query<{ live: boolean }>(
    `SELECT COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($2, s.live_within_seconds)) AND s.docker_ready, false) AS live
       FROM hosts h LEFT JOIN host_status s ON s.host_id = h.id WHERE h.id = $1`,
    [ws.host_id, liveWithinSeconds],
  );
  if (!rows[0]?.live) {
    throw new A4cError('UNAVAILABLE', `workspace ${ws.id}'s host ${ws.host_id} is not connected (or its Docker Engine does not answer): its files cannot be read from there now`, {
      suggestion: `check the host with \`a4c hosts get ${ws.host_id}\` and try again once it is healthy`,
    });
  }
}

export async function holdDestination(tx: Tx, ws: WorkspaceRow, toHostId: string | undefined, p: DestinationPolicy): Promise<string> {
  const hold = [ws.memory_mb, Math.round(ws.cpus * 1000), Math.round(ws.disk_gb * 1024)];
  const base = [ws.arch, p.liveWithinSeconds, p.maxDiskPercent, p.maxMemoryPercent, 1 - p.headroom, ...hold];
  let hostId: string | undefined;
  if (toHostId) {
    if (toHostId === ws.host_id) throw conflict(`workspace ${ws.id} is already on host ${toHostId}`, 'choose another host, or leave --to out to let A4C choose');
    const { rows } = await tx.query<{ id: string; arch: string; fits: boolean; draining: boolean; live: boolean }>(
      `SELECT h.id, h.arch, h.draining, COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($2, s.live_within_seconds)) AND s.docker_ready, false) AS live,
              COALESCE(h.arch = $1 AND ${FITS}, false) AS fits
         FROM hosts h LEFT JOIN host_status s ON s.host_id = h.id WHERE h.id = $9 FOR UPDATE OF h`,
      [...base, toHostId],
    );
    const h = rows[0];
    if (!h) throw new A4cError('NOT_FOUND', `host ${toHostId} not found`, { suggestion: 'list hosts with `a4c hosts`' });
    const refuse = (why: string, suggestion: string) => new A4cError('CAPACITY_EXHAUSTED', `cannot move workspace ${ws.id} to host ${toHostId}: ${why}`, { suggestion });
    if (h.arch !== ws.arch) throw refuse(`it is ${h.arch}, the workspace is ${ws.arch}`, `choose a ${ws.arch} host`);
    if (!h.live) throw refuse('its agent is not connected or its Docker Engine does not answer', 'check it with `a4c hosts get ' + toHostId + '`, or choose another host');
    if (h.draining) throw refuse('it is draining', 'choose another host, or activate it first');
    if (!h.fits) throw refuse(`it is above its disk or memory threshold, or lacks ${ws.memory_mb} MB memory, ${ws.cpus} CPUs and ${ws.disk_gb} GB disk unreserved`, 'choose another host, or leave --to out');
    hostId = h.id;
  } else {
    const { rows } = await tx.query<{ id: string }>(
      `SELECT h.id FROM host_status s JOIN hosts h ON h.id = s.host_id
        WHERE s.arch = $1 AND h.arch = $1 AND h.id <> $9 AND ${FITS}
        ORDER BY EXISTS (SELECT 1 FROM volumes v WHERE v.host_id = h.id AND v.user_id = $10 AND v.project = $11) DESC,
                 s.disk_percent, s.memory_percent, h.reserved_workspaces, h.id
        LIMIT 1 FOR UPDATE OF h SKIP LOCKED`,
      [...base, ws.host_id, ws.user_id, ws.project_name],
    );
    hostId = rows[0]?.id;
    if (!hostId) {
      throw new A4cError('CAPACITY_EXHAUSTED', `no other ${ws.arch} host is connected, active and has room for workspace ${ws.id} (tier ${ws.tier})`, {
        suggestion: 'add or activate a host, free some room, or try again later; the workspace stays where it is',
      });
    }
  }
  await tx.query(
    `UPDATE hosts SET reserved_memory_mb = reserved_memory_mb + $2, reserved_millicpus = reserved_millicpus + $3,
                      reserved_disk_mb = reserved_disk_mb + $4, updated_at = now() WHERE id = $1`,
    [hostId, ...hold],
  );
  return hostId;
}

export async function insertMove(
  tx: Tx,
  m: { id: string; ws: WorkspaceRow; toHostId: string; actor: string; drainId: string | null; wasRunning: boolean; imageRef: string },
): Promise<MoveRow> {
  try {
    const { rows } = await tx.query<MoveRow>(
      `INSERT INTO workspace_moves (id, workspace_id, from_host_id, to_host_id, actor, drain_id, status, was_running, image_ref,
                                    hold_memory_mb, hold_millicpus, hold_disk_mb)
       VALUES ($1, $2, $3, $4, $5, $6, 'STOPPING', $7, $8, $9, $10, $11) RETURNING *`,
      [m.id, m.ws.id, m.ws.host_id, m.toHostId, m.actor, m.drainId, m.wasRunning, m.imageRef, m.ws.memory_mb, Math.round(m.ws.cpus * 1000), Math.round(m.ws.disk_gb * 1024)],
    );
    return rows[0] as MoveRow;
  } catch (e) {
    if ((e as { code?: string }).code === '23505') throw conflict(`workspace ${m.ws.id} is already being moved`, `follow it with \`a4c ws get ${m.ws.id}\``);
    throw e;
  }
}

/** Gives the destination's held resources back; idempotent. */
export async function releaseHold(tx: Tx, moveId: string): Promise<void> {
  const { rows } = await tx.query<MoveRow>('UPDATE workspace_moves SET held = false WHERE id = $1 AND held RETURNING *', [moveId]);
  const m = rows[0];
  if (!m) return;
  await tx.query(
    `UPDATE hosts SET reserved_memory_mb = reserved_memory_mb - $2, reserved_millicpus = reserved_millicpus - $3,
                      reserved_disk_mb = reserved_disk_mb - $4, updated_at = now() WHERE id = $1`,
    [m.to_host_id, m.hold_memory_mb, m.hold_millicpus, m.hold_disk_mb],
  );
}

export async function setMoveStatus(db: Db | Tx, id: string, status: MoveStatus, error: string | null = null): Promise<void> {
  await db.query(
    `UPDATE workspace_moves SET status = $2, error = COALESCE($3, error), updated_at = now(),
            finished_at = CASE WHEN $2 IN ('SUCCEEDED', 'FAILED') THEN now() END
      WHERE id = $1`,
    [id, status, error],
  );
}

export async function recordProgress(db: Db, id: string, bytesDone: number): Promise<void> {
  await db.query('UPDATE workspace_moves SET bytes_done = $2, updated_at = now() WHERE id = $1', [id, bytesDone]);
}

export async function recordSums(db: Db | Tx, id: string, s: { imageBytes: number; imageSha256: string; volumeBytes: number; volumeSha256: string }): Promise<void> {
  await db.query('UPDATE workspace_moves SET image_bytes = $2, image_sha256 = $3, volume_bytes = $4, volume_sha256 = $5, updated_at = now() WHERE id = $1', [
    id,
    s.imageBytes,
    s.imageSha256,
    s.volumeBytes,
    s.volumeSha256,
  ]);
}

export async function getMove(db: Db | Tx, id: string): Promise<MoveRow | undefined> {
  const { rows } = await db.query<MoveRow>('SELECT * FROM workspace_moves WHERE id = $1', [id]);
  return rows[0];
}

/** The workspace's latest move (the open one if any). */
export async function latestMoveOf(db: Db, workspaceId: string): Promise<MoveRow | undefined> {
  const { rows } = await db.query<MoveRow>('SELECT * FROM workspace_moves WHERE workspace_id = $1 ORDER BY created_at DESC LIMIT 1', [workspaceId]);
  return rows[0];
}

/** Moves not finished and not touched for this long: their control plane died mid-way. */
export async function staleMoves(db: Db, olderThanSeconds: number): Promise<MoveRow[]> {
  const { rows } = await db.query<MoveRow>(
    `SELECT * FROM workspace_moves WHERE status NOT IN ('SUCCEEDED', 'FAILED') AND updated_at < now() - make_interval(secs => $1)`,
    [olderThanSeconds],
  );
  return rows;
}

/** Records that the user's volume is on this host for the project (placed or moved there). */
export async function touchVolume(tx: Tx | Db, userId: string, hostId: string, project: string, name: string): Promise<void> {
  await tx.query(
    `INSERT INTO volumes (user_id, host_id, project, name) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, project, host_id) DO UPDATE SET last_used_at = now(), name = EXCLUDED.name`,
    [userId, hostId, project, name],
  );
}

/** The user's volume on the host as a move measured it (the tar's length), for every project row sharing it. */
export async function recordVolumeSize(tx: Tx | Db, userId: string, hostId: string, bytes: number): Promise<void> {
  await tx.query('UPDATE volumes SET size_bytes = $3, measured_at = now() WHERE user_id = $1 AND host_id = $2', [userId, hostId, bytes]);
}
