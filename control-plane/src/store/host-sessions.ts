import type { Db, Tx } from './db.js';
import { inTx } from './db.js';
import { appendEvent, changesOf } from './events.js';

/** An image as the agent reported it, already checked (ref present, at most 512 characters). */
export interface HostImageRow {
  ref: string;
  imageId: string;
  project: string;
  arch: string;
  changeNumber: string;
  createdUnix: number;
}

/** What placement filters and sorts on, and the stats JSON the API shows. */
export interface HostStatsColumns {
  json: string | null;
  diskPercent: number;
  memoryPercent: number;
  dockerReady: boolean;
}

export interface HelloRow {
  hostId: string;
  arch: string;
  agentVersion: string;
  memoryBytes: number;
  cpus: number;
  diskBytes: number;
  stats: HostStatsColumns;
  images: HostImageRow[];
  /** For the host.connected event. */
  containers: number;
  lastAppliedRevision: number;
}

/**
 * Claims the host for a new agent session, in one transaction with its host row, its
 * image inventory and the host.connected event. False: a live session (its last
 * heartbeat within liveWithinSeconds) holds the host and keeps it.
 */
export async function openHostSession(db: Db, h: HelloRow, sessionId: string, liveWithinSeconds: number): Promise<boolean> {
  return inTx(db, async (tx) => {
    await tx.query(
      `INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (id) DO NOTHING`,
      [h.hostId, h.arch, h.agentVersion, h.memoryBytes, h.cpus, h.diskBytes],
    );
    // Never two writers for one host: a live session elsewhere keeps the host. The
    // upsert's row lock makes the check and the claim one step.
    const { rows } = await tx.query(
      `INSERT INTO host_status AS s (host_id, arch, session_id, connected, connected_at, last_heartbeat_at, stats, disk_percent, memory_percent, docker_ready)
       VALUES ($1, $8, $2, true, now(), now(), $3, $5, $6, $7)
       ON CONFLICT (host_id) DO UPDATE SET arch = EXCLUDED.arch, session_id = EXCLUDED.session_id, connected = true, connected_at = now(),
         last_heartbeat_at = now(), stats = EXCLUDED.stats, disk_percent = EXCLUDED.disk_percent,
         memory_percent = EXCLUDED.memory_percent, docker_ready = EXCLUDED.docker_ready
       WHERE NOT (s.connected AND s.last_heartbeat_at > now() - make_interval(secs => $4))
       RETURNING host_id`,
      [h.hostId, sessionId, h.stats.json, liveWithinSeconds, h.stats.diskPercent, h.stats.memoryPercent, h.stats.dockerReady, h.arch],
    );
    if (!rows[0]) return false;
    const before = (
      await tx.query<{ arch: string; agent_version: string; memory_bytes: number; cpus: number; disk_bytes: number }>(
        'SELECT arch, agent_version, memory_bytes, cpus, disk_bytes FROM hosts WHERE id = $1',
        [h.hostId],
      )
    ).rows[0];
    await tx.query(
      'UPDATE hosts SET arch = $2, agent_version = $3, memory_bytes = $4, cpus = $5, disk_bytes = $6, updated_at = now() WHERE id = $1',
      [h.hostId, h.arch, h.agentVersion, h.memoryBytes, h.cpus, h.diskBytes],
    );
    await replaceImages(tx, h.hostId, h.images);
    const was = before && { arch: before.arch, agentVersion: before.agent_version, memoryBytes: before.memory_bytes, cpus: before.cpus, diskBytes: before.disk_bytes };
    await appendEvent(tx, {
      kind: 'host.connected',
      actor: `agent:${h.hostId}`,
      reason: 'its agent opened a session',
      hostId: h.hostId,
      changes: changesOf(
        { connected: false, ...was },
        { connected: true, arch: h.arch, agentVersion: h.agentVersion, memoryBytes: h.memoryBytes, cpus: h.cpus, diskBytes: h.diskBytes },
      ),
      data: { sessionId, agentVersion: h.agentVersion, containers: h.containers, lastAppliedRevision: h.lastAppliedRevision },
    });
    return true;
  });
}

/**
 * A heartbeat of the host's live session: liveness, stats and (if they changed) images.
 * False: the session is not the host's any more, or its certificate was revoked (a host
 * removed on any replica ends the session here).
 */
export async function recordHeartbeat(
  db: Db,
  hostId: string,
  sessionId: string,
  stats: HostStatsColumns,
  serial: string | null,
  images: HostImageRow[] | undefined,
): Promise<boolean> {
  return inTx(db, async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE host_status SET last_heartbeat_at = now(), stats = $3, connected = true, disk_percent = $4, memory_percent = $5, docker_ready = $6
        WHERE host_id = $1 AND session_id = $2 AND NOT EXISTS (SELECT 1 FROM revoked_certificates WHERE serial = $7)`,
      [hostId, sessionId, stats.json, stats.diskPercent, stats.memoryPercent, stats.dockerReady, serial],
    );
    if (!rowCount) return false;
    if (images) await replaceImages(tx, hostId, images);
    return true;
  });
}

/** The session ended: the host is disconnected, with its event, unless a newer session holds it. */
export async function closeHostSession(db: Db, hostId: string, sessionId: string): Promise<boolean> {
  return inTx(db, async (tx) => {
    const { rowCount } = await tx.query('UPDATE host_status SET connected = false WHERE host_id = $1 AND session_id = $2', [hostId, sessionId]);
    if (!rowCount) return false;
    await appendEvent(tx, {
      kind: 'host.disconnected',
      actor: 'control-plane',
      reason: "its agent's session ended",
      hostId,
      changes: { connected: { from: true, to: false } },
      data: { sessionId },
    });
    return true;
  });
}

/** The host's image inventory becomes exactly `images`. */
export async function replaceImages(tx: Tx, hostId: string, images: HostImageRow[]): Promise<void> {
  await tx.query('DELETE FROM host_images WHERE host_id = $1', [hostId]);
  if (!images.length) return;
  await tx.query(
    `INSERT INTO host_images (host_id, ref, image_id, project, arch, change_number, created_at)
     SELECT $1, ref, image_id, NULLIF(project, ''), NULLIF(arch, ''), NULLIF(change, ''), to_timestamp(created)
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[])
            AS t(ref, image_id, project, arch, change, created)
     ON CONFLICT DO NOTHING`,
    [
      hostId,
      images.map((i) => i.ref),
      images.map((i) => i.imageId),
      images.map((i) => i.project),
      images.map((i) => i.arch),
      images.map((i) => i.changeNumber),
      images.map((i) => i.createdUnix),
    ],
  );
}
