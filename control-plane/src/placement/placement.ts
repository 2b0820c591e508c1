import { A4cError } from '@a4c/common';
import type { Tx } from '../store/db.js';

export interface PlacementRequest {
  arch: string;
  image: string;
  memoryMb: number;
  cpus: number;
  diskGb: number;
}

export interface PlacementPolicy {
  /** Hosts whose last heartbeat is older than this are not candidates. */
  liveWithinSeconds: number;
}

/**
 * Chooses the host for a new workspace and locks its row, inside the caller's
 * transaction. The caller bumps the host's revision and inserts the workspace in the
 * same transaction, so the choice and the reservation commit together.
 *
 * Candidates: live hosts of the arch that are not draining, whose Docker Engine
 * answers, and that hold the image. Order: least disk usage, then least memory usage,
 * then fewest workspaces.
 */
export async function placeWorkspace(tx: Tx, req: PlacementRequest, policy: PlacementPolicy): Promise<string> {
  const { rows } = await tx.query<{ id: string }>(
    `SELECT h.id FROM hosts h
      WHERE h.arch = $1
        AND h.connected AND h.last_heartbeat_at > now() - make_interval(secs => $3)
        AND NOT h.draining
        AND COALESCE((h.stats->>'dockerReady')::boolean, false)
        AND EXISTS (SELECT 1 FROM host_images i WHERE i.host_id = h.id AND i.ref = $2)
      ORDER BY (h.stats->>'diskPercent')::float8,
               (h.stats->>'memoryPercent')::float8,
               (SELECT count(*) FROM workspaces w WHERE w.host_id = h.id AND w.status <> 'DELETED'),
               h.id
      LIMIT 1
      FOR UPDATE OF h`,
    [req.arch, req.image, policy.liveWithinSeconds],
  );
  if (rows[0]) return rows[0].id;
  throw await explainNoHost(tx, req, policy);
}

/** Says why nothing fits, so the user knows whether to wait, build, or ask an admin. */
async function explainNoHost(tx: Tx, req: PlacementRequest, policy: PlacementPolicy): Promise<A4cError> {
  const { rows } = await tx.query<{ total: number; live: number; ready: number; with_image: number }>(
    `SELECT count(*)::int AS total,
            count(*) FILTER (WHERE live)::int AS live,
            count(*) FILTER (WHERE live AND NOT draining AND docker_ready)::int AS ready,
            count(*) FILTER (WHERE live AND NOT draining AND docker_ready AND has_image)::int AS with_image
       FROM (SELECT h.draining,
                    (h.connected AND h.last_heartbeat_at > now() - make_interval(secs => $3)) AS live,
                    COALESCE((h.stats->>'dockerReady')::boolean, false) AS docker_ready,
                    EXISTS (SELECT 1 FROM host_images i WHERE i.host_id = h.id AND i.ref = $2) AS has_image
               FROM hosts h WHERE h.arch = $1) s`,
    [req.arch, req.image, policy.liveWithinSeconds],
  );
  const c = rows[0] ?? { total: 0, live: 0, ready: 0, with_image: 0 };
  let message: string;
  let suggestion: string;
  if (c.total === 0) {
    message = `no host of arch ${req.arch} is registered`;
    suggestion = `install a4c-agent on a ${req.arch} host, or ask for another arch`;
  } else if (c.live === 0) {
    message = `no host of arch ${req.arch} is connected (${c.total} known, all unreachable)`;
    suggestion = 'check the agents (`a4c hosts`, `systemctl status a4c-agent`) and try again';
  } else if (c.ready === 0) {
    message = `every connected ${req.arch} host is draining or has a Docker Engine that does not answer`;
    suggestion = 'try again later, or ask an operator to activate a host';
  } else {
    message = `no available ${req.arch} host holds the image ${req.image}`;
    suggestion = 'build the project image first (`a4c build schedule`), or pass an image that exists';
  }
  return new A4cError('CAPACITY_EXHAUSTED', message, { suggestion });
}
