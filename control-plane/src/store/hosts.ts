import type { Arch, HostStatsView, HostView } from '@a4c/common';
import type { Db, Tx } from './db.js';

/** The stats JSON of host_status, as the API shows it. */
export type HostStatsJson = HostStatsView;

export interface HostRow {
  id: string;
  arch: string;
  agent_version: string;
  memory_bytes: number;
  cpus: number;
  disk_bytes: number;
  draining: boolean;
  revision: number;
  applied_revision: number;
  reserved_memory_mb: number;
  reserved_millicpus: number;
  reserved_disk_mb: number;
  reserved_workspaces: number;
  created_at: Date;
  updated_at: Date;
}

/** host_status: liveness and stats, written by heartbeats, never locked by placement. */
interface HostStatusRow {
  session_id: string | null;
  connected: boolean;
  connected_at: Date | null;
  last_heartbeat_at: Date | null;
  heartbeat_interval_ms: number | null;
  stats: HostStatsJson | null;
  docker_ready: boolean;
}

type HostViewRow = HostRow & HostStatusRow & { live: boolean; workspace_count: number; images: string[] | null };

const VIEW_SQL = `
  SELECT h.*, s.session_id, s.connected_at, s.last_heartbeat_at, s.heartbeat_interval_ms, s.stats, COALESCE(s.docker_ready, false) AS docker_ready,
         COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($1, s.live_within_seconds)), false) AS live,
         (SELECT count(*)::int FROM workspaces w WHERE w.host_id = h.id AND w.status NOT IN ('DELETED', 'REJECTED')) AS workspace_count,
         (SELECT array_agg(i.ref ORDER BY i.ref) FROM host_images i WHERE i.host_id = h.id) AS images
  FROM hosts h LEFT JOIN host_status s ON s.host_id = h.id`;

function toHostView(r: HostViewRow, headroom: number): HostView {
  const status = !r.live || !r.docker_ready ? 'unhealthy' : r.draining ? 'draining' : 'healthy';
  const MiB = 1024 * 1024;
  const share = 1 - headroom;
  return {
    id: r.id,
    arch: r.arch as Arch,
    status,
    connected: r.live,
    agentVersion: r.agent_version,
    sessionId: r.live ? r.session_id : null,
    capacity: { memoryBytes: r.memory_bytes, cpus: r.cpus, diskBytes: r.disk_bytes },
    allocatable: {
      memoryBytes: Math.floor((r.memory_bytes / MiB) * share) * MiB,
      cpus: Math.floor(r.cpus * 1000 * share) / 1000,
      diskBytes: Math.floor((r.disk_bytes / MiB) * share) * MiB,
    },
    reserved: { memoryBytes: r.reserved_memory_mb * MiB, cpus: r.reserved_millicpus / 1000, diskBytes: r.reserved_disk_mb * MiB },
    stats: r.stats,
    workspaceCount: r.workspace_count,
    revision: r.revision,
    appliedRevision: r.applied_revision,
    images: r.images ?? [],
    lastHeartbeatAt: r.last_heartbeat_at?.toISOString() ?? null,
    heartbeatIntervalMs: r.heartbeat_interval_ms ?? null,
    connectedAt: r.connected_at?.toISOString() ?? null,
  };
}

export interface HostViewOptions {
  liveWithinSeconds: number;
  headroom: number;
}

export async function listHosts(db: Db, o: HostViewOptions): Promise<HostView[]> {
  const { rows } = await db.query<HostViewRow>(`${VIEW_SQL} ORDER BY h.id`, [o.liveWithinSeconds]);
  return rows.map((r) => toHostView(r, o.headroom));
}

export async function getHostView(db: Db, id: string, o: HostViewOptions): Promise<HostView | undefined> {
  const { rows } = await db.query<HostViewRow>(`${VIEW_SQL} WHERE h.id = $2`, [o.liveWithinSeconds, id]);
  return rows[0] && toHostView(rows[0], o.headroom);
}

/** Bumps the host's desired-state revision; the row lock serialises changes per host. */
export async function bumpRevision(tx: Tx, hostId: string): Promise<number> {
  const { rows } = await tx.query<{ revision: number }>(
    'UPDATE hosts SET revision = revision + 1, updated_at = now() WHERE id = $1 RETURNING revision',
    [hostId],
  );
  if (!rows[0]) throw new Error(`host ${hostId} vanished`);
  return rows[0].revision;
}
