import type { Arch, HostView } from '@a4c/common';
import type { Db, Tx } from './db.js';

export interface HostStatsJson {
  diskPercent: number;
  memoryPercent: number;
  cpuPercent: number;
  workspaceContainers: number;
  engineContainers: number;
  dockerReady: boolean;
}

export interface HostRow {
  id: string;
  arch: string;
  agent_version: string;
  memory_bytes: number;
  cpus: number;
  disk_bytes: number;
  draining: boolean;
  session_id: string | null;
  connected: boolean;
  connected_at: Date | null;
  last_heartbeat_at: Date | null;
  stats: HostStatsJson | null;
  revision: number;
  applied_revision: number;
  created_at: Date;
  updated_at: Date;
}

type HostViewRow = HostRow & { live: boolean; workspace_count: number; images: string[] | null };

const VIEW_SQL = `
  SELECT h.*,
         (h.connected AND h.last_heartbeat_at > now() - make_interval(secs => $1)) AS live,
         (SELECT count(*)::int FROM workspaces w WHERE w.host_id = h.id AND w.status <> 'DELETED') AS workspace_count,
         (SELECT array_agg(i.ref ORDER BY i.ref) FROM host_images i WHERE i.host_id = h.id) AS images
  FROM hosts h`;

function toHostView(r: HostViewRow): HostView {
  const status = !r.live || r.stats?.dockerReady === false ? 'unhealthy' : r.draining ? 'draining' : 'healthy';
  return {
    id: r.id,
    arch: r.arch as Arch,
    status,
    connected: r.live,
    agentVersion: r.agent_version,
    sessionId: r.live ? r.session_id : null,
    capacity: { memoryBytes: r.memory_bytes, cpus: r.cpus, diskBytes: r.disk_bytes },
    stats: r.stats,
    workspaceCount: r.workspace_count,
    revision: r.revision,
    appliedRevision: r.applied_revision,
    images: r.images ?? [],
    lastHeartbeatAt: r.last_heartbeat_at?.toISOString() ?? null,
    connectedAt: r.connected_at?.toISOString() ?? null,
  };
}

export async function listHosts(db: Db, liveWithinSeconds: number): Promise<HostView[]> {
  const { rows } = await db.query<HostViewRow>(`${VIEW_SQL} ORDER BY h.id`, [liveWithinSeconds]);
  return rows.map(toHostView);
}

export async function getHostView(db: Db, id: string, liveWithinSeconds: number): Promise<HostView | undefined> {
  const { rows } = await db.query<HostViewRow>(`${VIEW_SQL} WHERE h.id = $2`, [liveWithinSeconds, id]);
  return rows[0] && toHostView(rows[0]);
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
