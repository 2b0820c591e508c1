import type { Db, Tx } from './db.js';
import { inTx } from './db.js';
import { appendEvent } from './events.js';

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

/* Opening a session (the Hello): store/session-claims.ts, batched. */

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

/** A write of a session that is not its host's session any more. */
export class SessionSuperseded extends Error {
  constructor(
    readonly hostId: string,
    readonly sessionId: string,
  ) {
    super(`session ${sessionId} is no longer host ${hostId}'s session: a newer session for the same host replaced it`);
  }
}

/**
 * Run in an agent write's transaction: throws SessionSuperseded unless the session is
 * still the host's. FOR KEY SHARE holds the host_status row until the write commits: a
 * newer session's Hello (which first locks the row FOR UPDATE) waits for it, so no write
 * of an old session lands after the new one took over; heartbeats, the lost-host sweep
 * and host removal only update the row (FOR NO KEY UPDATE), which KEY SHARE does not
 * block, so the guard adds no lock-order cycle with them.
 */
export type SessionGuard = (tx: Tx) => Promise<void>;

export function sessionGuard(hostId: string, sessionId: string): SessionGuard {
  return async (tx) => {
    const { rows } = await tx.query('SELECT 1 FROM host_status WHERE host_id = $1 AND session_id = $2 FOR KEY SHARE', [hostId, sessionId]);
    if (!rows[0]) throw new SessionSuperseded(hostId, sessionId);
  };
}

/** The host's current desired-state revision (0 for a host never seen). */
export async function hostRevision(tx: Tx | Db, hostId: string): Promise<number> {
  const { rows } = await tx.query<{ revision: number }>('SELECT revision FROM hosts WHERE id = $1', [hostId]);
  return rows[0]?.revision ?? 0;
}

export interface HeartbeatRow {
  hostId: string;
  sessionId: string;
  stats: HostStatsColumns;
  serial: string | null;
  /** Set only when the host's images changed since its last Hello or Heartbeat. */
  images: HostImageRow[] | undefined;
}

/**
 * Heartbeats of many sessions in one transaction and one statement (images, which
 * rarely change, one statement per host that sent them). Returns the session ids whose
 * heartbeat applied: the others are no longer their host's session, or their
 * certificate was revoked. Rows are locked in host id order, so concurrent batches
 * (on this replica or another) never deadlock on each other.
 */
export async function recordHeartbeats(db: Db, beats: HeartbeatRow[]): Promise<Set<string>> {
  const sorted = [...beats].sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  return inTx(db, async (tx) => {
    const { rows } = await tx.query<{ session_id: string }>(
      `UPDATE host_status s SET last_heartbeat_at = now(), stats = t.stats::jsonb, connected = true,
              disk_percent = t.disk, memory_percent = t.mem, docker_ready = t.ready
         FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::bool[], $7::text[])
                 AS u(host_id, session_id, stats, disk, mem, ready, serial)
                WHERE NOT EXISTS (SELECT 1 FROM revoked_certificates r WHERE r.serial = u.serial)) t
        WHERE s.host_id = t.host_id AND s.session_id = t.session_id
        RETURNING s.session_id`,
      [
        sorted.map((b) => b.hostId),
        sorted.map((b) => b.sessionId),
        sorted.map((b) => b.stats.json),
        sorted.map((b) => b.stats.diskPercent),
        sorted.map((b) => b.stats.memoryPercent),
        sorted.map((b) => b.stats.dockerReady),
        sorted.map((b) => b.serial),
      ],
    );
    const applied = new Set(rows.map((r) => r.session_id));
    for (const b of sorted) if (b.images && applied.has(b.sessionId)) await replaceImages(tx, b.hostId, b.images);
    return applied;
  });
}
