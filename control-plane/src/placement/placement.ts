import { A4cError } from '@a4c/common';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import type { Tx } from '../store/db.js';

/** What a workspace needs from a host. */
export interface Demand {
  arch: string;
  image: string;
  memoryMb: number;
  cpus: number;
  diskGb: number;
  tier: string;
  /** Whose workspace, of which project: a host already holding the user's volume for the project is preferred. */
  userId?: string;
  project?: string;
}

export interface PlacementPolicy {
  /** Hosts whose last heartbeat is older than this are not candidates. */
  liveWithinSeconds: number;
  /** Share of reported capacity kept back (0.2 = 20 %). */
  headroom: number;
  maxDiskPercent: number;
  maxMemoryPercent: number;
}

/**
 * Candidates: live hosts of the arch, Docker answering, not draining, under the disk
 * and memory thresholds, holding the image (or able to pull it: it is in a registry),
 * with unreserved capacity for the demand
 * (capacity less headroom, less what placed workspaces reserve).
 * Order: least disk usage, then least memory usage, then fewest workspaces.
 */
/**
 * Which hosts (h, joined with their status s) can take a workspace, for both the single
 * and the batched placement: $1 arch, $2 image, $3 liveness seconds, $4/$5 disk and
 * memory thresholds, $6 the share of capacity that may be reserved, $7-$9 the demand
 * (memory MB, millicpus, disk MB).
 */
export const HOST_FITS = `s.arch = $1 AND h.arch = $1
     AND s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($3, s.live_within_seconds))
     AND s.docker_ready AND NOT h.draining
     AND s.disk_percent < $4 AND s.memory_percent < $5
     AND h.reserved_memory_mb + $7 <= floor(h.memory_bytes / 1048576.0 * $6)
     AND h.reserved_millicpus + $8 <= floor(h.cpus * 1000 * $6)
     AND h.reserved_disk_mb + $9 <= floor(h.disk_bytes / 1048576.0 * $6)
     AND (EXISTS (SELECT 1 FROM host_images i WHERE i.host_id = h.id AND i.ref = $2)
          OR EXISTS (SELECT 1 FROM registry_images r WHERE r.ref = $2 AND r.arch = $1))`;

const CANDIDATES = `
  SELECT h.id FROM host_status s JOIN hosts h ON h.id = s.host_id
   WHERE ${HOST_FITS}
   ORDER BY s.disk_percent, s.memory_percent, h.reserved_workspaces, h.id
   LIMIT 1`;

/**
 * Chooses a host for the demand and takes its reservation, inside the caller's
 * transaction; returns the host and its new desired-state revision. The caller then
 * inserts or updates the workspace row in the same transaction, and the
 * workspaces_reservation trigger adds its resources to the host's reserved_* columns.
 *
 * Placement locks the hosts row only; liveness and stats are in host_status, which
 * heartbeats update without ever waiting behind a placement.
 *
 * Why no host is ever over-committed, even with a hundred concurrent requests: the
 * capacity check is in the WHERE clause of the statement that locks the host row
 * (FOR UPDATE). When PostgreSQL (READ COMMITTED) locks a row that changed since the
 * statement's snapshot, it re-evaluates the WHERE clause against the newest committed
 * version, so the check counts every reservation committed before the lock was
 * granted; ours is added before the lock is released at commit.
 *
 * Why it never deadlocks: placement never waits for a host row. It locks with SKIP
 * LOCKED, so concurrent requests take the next-best free host instead of queueing. (A
 * row whose newest version fails the re-check stays locked until commit, so one
 * transaction may hold more than one host row: waiting for a host while holding one
 * could close a cycle, which is why there is no waiting variant.) If every host that
 * fits is locked at this instant by other placements, a non-locking read tells that
 * apart from real exhaustion, and the attempt is repeated after a short random pause;
 * a request is refused CAPACITY_EXHAUSTED only when nothing fits, and UNAVAILABLE
 * ("busy, retry") if the contention outlasts PLACEMENT_PATIENCE_MS.
 */
export async function reserveHost(tx: Tx, d: Demand, p: PlacementPolicy, observe: Observer = NO_OBSERVER): Promise<{ hostId: string; revision: number }> {
  const params = [
    d.arch,
    d.image,
    p.liveWithinSeconds,
    p.maxDiskPercent,
    p.maxMemoryPercent,
    1 - p.headroom,
    d.memoryMb,
    Math.round(d.cpus * 1000),
    Math.round(d.diskGb * 1024),
  ];
  if (d.userId && d.project) {
    // The user's files for this project are there: take that host if it fits. Usually
    // none or one host, so this costs one indexed lookup before the ordinary walk.
    const { rows } = await tx.query<{ id: string; revision: number }>(
      `UPDATE hosts SET revision = revision + 1, updated_at = now()
        WHERE id = (${CANDIDATES.replace('ORDER BY', 'AND h.id IN (SELECT v.host_id FROM volumes v WHERE v.user_id = $10 AND v.project = $11) ORDER BY')} FOR UPDATE OF h SKIP LOCKED)
        RETURNING id, revision`,
      [...params, d.userId, d.project],
    );
    if (rows[0]) {
      observe.placement('placed');
      return { hostId: rows[0].id, revision: rows[0].revision };
    }
  }
  const deadline = Date.now() + PLACEMENT_PATIENCE_MS;
  for (let attempt = 0; ; attempt++) {
    const { rows } = await tx.query<{ id: string; revision: number }>({
      name: 'a4c-reserve', // prepared once per connection: planning costs as much as running it
      text: `UPDATE hosts SET revision = revision + 1, updated_at = now()
              WHERE id = (${CANDIDATES} FOR UPDATE OF h SKIP LOCKED)
              RETURNING id, revision`,
      values: params,
    });
    if (rows[0]) {
      observe.placement('placed');
      return { hostId: rows[0].id, revision: rows[0].revision };
    }
    const why = await explainNoHost(tx, d, p);
    if (why) {
      observe.placement('no_capacity');
      throw why;
    }
    observe.placementConflict();
    if (Date.now() > deadline) {
      observe.placement('busy');
      throw new A4cError('UNAVAILABLE', `every ${d.arch} host with room is being placed on by other requests right now`, {
        suggestion: 'retry in a moment; nothing was created',
      });
    }
    observe.placementRetry();
    await new Promise((r) => setTimeout(r, Math.random() * Math.min(50, 2 ** attempt)));
  }
}

/** How long a placement keeps retrying while every fitting host is locked by others. */
export const PLACEMENT_PATIENCE_MS = 10_000;

/**
 * Says why nothing fits, at the first stage that rules out every host, so the user
 * knows whether to wait, build an image, pick another tier, or call an operator.
 * Undefined when some host does fit: the hosts that fit are locked by concurrent
 * placements (a non-locking read, so it never waits either). full: hosts the caller
 * holds and has filled itself (a placement batch), which fit only on paper.
 */
export async function explainNoHost(tx: Tx, d: Demand, p: PlacementPolicy, full: string[] = []): Promise<A4cError | undefined> {
  const { rows } = await tx.query<Record<'total' | 'live' | 'ready' | 'active' | 'image' | 'room' | 'fits', number>>(
    `SELECT count(*)::int AS total,
            count(*) FILTER (WHERE live)::int AS live,
            count(*) FILTER (WHERE live AND docker_ready)::int AS ready,
            count(*) FILTER (WHERE live AND docker_ready AND NOT draining)::int AS active,
            count(*) FILTER (WHERE live AND docker_ready AND NOT draining AND has_image)::int AS image,
            count(*) FILTER (WHERE live AND docker_ready AND NOT draining AND has_image AND under)::int AS room,
            count(*) FILTER (WHERE live AND docker_ready AND NOT draining AND has_image AND under AND fits)::int AS fits
       FROM (SELECT COALESCE(s.docker_ready, false) AS docker_ready, h.draining,
                    COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($3, s.live_within_seconds)), false) AS live,
                    (EXISTS (SELECT 1 FROM host_images i WHERE i.host_id = h.id AND i.ref = $2)
                     OR EXISTS (SELECT 1 FROM registry_images r WHERE r.ref = $2 AND r.arch = $1)) AS has_image,
                    COALESCE(s.disk_percent < $4 AND s.memory_percent < $5, false) AS under,
                    (h.reserved_memory_mb + $7 <= floor(h.memory_bytes / 1048576.0 * $6)
                     AND h.reserved_millicpus + $8 <= floor(h.cpus * 1000 * $6)
                     AND h.reserved_disk_mb + $9 <= floor(h.disk_bytes / 1048576.0 * $6)
                     AND NOT (h.id = ANY($10::text[]))) AS fits
               FROM hosts h LEFT JOIN host_status s ON s.host_id = h.id WHERE h.arch = $1) c`,
    [d.arch, d.image, p.liveWithinSeconds, p.maxDiskPercent, p.maxMemoryPercent, 1 - p.headroom, d.memoryMb, Math.round(d.cpus * 1000), Math.round(d.diskGb * 1024), full],
  );
  const c = rows[0] ?? { total: 0, live: 0, ready: 0, active: 0, image: 0, room: 0, fits: 0 };
  const no = (reason: string, message: string, suggestion: string) => new A4cError('CAPACITY_EXHAUSTED', message, { reason, suggestion });
  if (c.total === 0) {
    return no('NO_HOST_FOR_ARCH', `no host of arch ${d.arch} is registered`, `install a4c-agent on a ${d.arch} host, or ask for another arch`);
  }
  if (c.live === 0) {
    return no('NO_HOST_CONNECTED', `no ${d.arch} host is connected (${c.total} known, none heartbeating)`, 'check the agents (`a4c hosts`, `systemctl status a4c-agent`) and try again');
  }
  if (c.ready === 0) {
    return no('NO_HOST_HEALTHY', `every connected ${d.arch} host reports that its Docker Engine does not answer`, 'ask an operator to check Docker on those hosts; try again in a few minutes');
  }
  if (c.active === 0) {
    return no('ALL_DRAINING', `every healthy ${d.arch} host is draining for maintenance`, 'try again after the maintenance, or ask an operator to activate a host');
  }
  if (c.image === 0) {
    return no('IMAGE_NOT_ON_ANY_HOST', `no available ${d.arch} host holds the image ${d.image}`, 'build the project image first (`a4c build schedule`), or pass an image that exists');
  }
  if (c.room === 0) {
    return no(
      'ALL_FULL',
      `every ${d.arch} host with the image is above the disk (${p.maxDiskPercent} %) or memory (${p.maxMemoryPercent} %) threshold`,
      'delete workspaces you no longer use, or try again in 30 minutes',
    );
  }
  if (c.fits > 0) return undefined;
  return no(
    'NO_CAPACITY_FOR_TIER',
    `no ${d.arch} host has ${d.memoryMb} MB memory, ${d.cpus} CPUs and ${d.diskGb} GB disk unreserved for tier ${d.tier}`,
    'choose a smaller tier, delete workspaces you no longer use, or try again in 30 minutes',
  );
}
