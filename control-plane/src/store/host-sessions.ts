import type { Db, Tx } from './db.js';
import { inTx } from './db.js';

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

/** An agent stream that ended, as its host's session. */
export interface EndedSession {
  hostId: string;
  sessionId: string;
}

/**
 * Sessions that ended, in one transaction: each host is disconnected, with its
 * host.disconnected event, unless a newer session holds it (then nothing changes for
 * that host). A replica whose thousands of agents leave at once (a network cut, its own
 * shutdown) records them in a few statements, not one transaction each.
 */
export async function closeHostSessions(db: Db, ended: EndedSession[]): Promise<void> {
  await db.query(
    `WITH closed AS (
       UPDATE host_status s SET connected = false
         FROM unnest($1::text[], $2::text[]) AS x(host_id, session_id)
        WHERE s.host_id = x.host_id AND s.session_id = x.session_id
        RETURNING s.host_id, s.session_id)
     INSERT INTO events (kind, actor, reason, host_id, changes, data)
     SELECT 'host.disconnected', 'control-plane', 'its agent''s session ended', host_id,
            '{"connected":{"from":true,"to":false}}'::jsonb, jsonb_build_object('sessionId', session_id)
       FROM closed`,
    [ended.map((e) => e.hostId), ended.map((e) => e.sessionId)],
  );
}

/** The host's image inventory becomes exactly `images`. */
export function replaceImages(tx: Tx, hostId: string, images: HostImageRow[]): Promise<void> {
  return replaceImagesOf(tx, [{ hostId, images }]);
}

/** Each host's image inventory becomes exactly what is given for it: two statements for all of them. */
export async function replaceImagesOf(tx: Tx, hosts: { hostId: string; images: HostImageRow[] }[]): Promise<void> {
  await tx.query('DELETE FROM host_images WHERE host_id = ANY($1::text[])', [hosts.map((h) => h.hostId)]);
  const images = hosts.flatMap((h) => h.images.map((i) => ({ hostId: h.hostId, ...i })));
  if (!images.length) return;
  await tx.query(
    `INSERT INTO host_images (host_id, ref, image_id, project, arch, change_number, created_at)
     SELECT host_id, ref, image_id, NULLIF(project, ''), NULLIF(arch, ''), NULLIF(change, ''), to_timestamp(created)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[])
            AS t(host_id, ref, image_id, project, arch, change, created)
     ON CONFLICT DO NOTHING`,
    [
      images.map((i) => i.hostId),
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
 * heartbeat applied: the others are no longer their host's session, their session's
 * end was already recorded (a beat sent just before the stream closed must not mark the
 * host connected again), or their certificate was revoked. Rows are locked in host id order, so concurrent batches
 * (on this replica or another) never deadlock on each other.
 */
export async function recordHeartbeats(db: Db, beats: HeartbeatRow[]): Promise<Set<string>> {
  const sorted = [...beats].sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  return inTx(db, async (tx) => {
    const { rows } = await tx.query<{ session_id: string }>(
      `UPDATE host_status s SET last_heartbeat_at = now(), stats = t.stats::jsonb,
              disk_percent = t.disk, memory_percent = t.mem, docker_ready = t.ready
         FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], $6::bool[], $7::text[])
                 AS u(host_id, session_id, stats, disk, mem, ready, serial)
                WHERE NOT EXISTS (SELECT 1 FROM revoked_certificates r WHERE r.serial = u.serial)) t
        WHERE s.host_id = t.host_id AND s.session_id = t.session_id AND s.connected
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
