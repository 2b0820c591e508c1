import type { Arch, Workspace, WorkspaceDisk, WorkspaceStatus } from '@a4c/common';
import { ON_HOST_STATUSES, sqlList } from '../workspaces/states.js';
import type { Db, Tx } from './db.js';

export interface WorkspaceRow {
  id: string;
  user_id: string;
  name: string;
  project_name: string;
  arch: string;
  tier: string;
  image: string;
  change_number: string | null;
  status: WorkspaceStatus;
  host_id: string | null;
  container_id: string | null;
  hostname: string | null;
  failed_step: string | null;
  error: string | null;
  memory_mb: number;
  cpus: number;
  disk_gb: number;
  pids_limit: number;
  read_only_rootfs: boolean;
  run_as_user: string | null;
  run_as_non_root: boolean;
  desired_revision: number;
  attempt: number;
  current_step: string | null;
  status_changed_at: Date;
  last_activity_at: Date | null;
  created_at: Date;
  updated_at: Date;
  /** After a move: the image its container is made from (the source committed). */
  run_image?: string | null;
  /** Only in reads that join the host (viewSql). */
  host_lost?: boolean;
  /** Only in desired-state reads: where to pull the image from, if it is in a registry. */
  pull_ref?: string | null;
  /** Only in reads that join workspace_disk (viewSql); null before the first measure. */
  disk_writable_bytes?: number | null;
  disk_volume_bytes?: number | null;
  disk_layer_limit_enforced?: boolean | null;
  disk_measured_at?: Date | null;
}

/** Statuses whose host matters (the state table): a host that stops answering makes their status uncertain. */
const ON_HOST = `w.status IN (${sqlList(ON_HOST_STATUSES)})`;

/** Workspaces (from the table, or a subquery of its rows) with host_lost; $1 is the liveness window in seconds. */
export const viewSql = (from = 'workspaces') => `
  SELECT w.*, (${ON_HOST} AND w.host_id IS NOT NULL
               AND NOT COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($1, s.live_within_seconds)) AND s.docker_ready, false)) AS host_lost,
         d.writable_bytes AS disk_writable_bytes, d.volume_bytes AS disk_volume_bytes,
         d.layer_limit_enforced AS disk_layer_limit_enforced, d.measured_at AS disk_measured_at
    FROM ${from} w LEFT JOIN host_status s ON s.host_id = w.host_id
    LEFT JOIN workspace_disk d ON d.workspace_id = w.id`;
const VIEW_SQL = viewSql();

export function toWorkspace(r: WorkspaceRow): Workspace {
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    projectName: r.project_name,
    arch: r.arch as Arch,
    tier: r.tier,
    image: r.image,
    status: r.status,
    hostId: r.host_id,
    hostLost: r.host_lost ?? false,
    containerId: r.container_id,
    hostname: r.hostname,
    sshCommand: r.status !== 'DELETED' && r.status !== 'REJECTED' ? `ssh ${r.name}.a4c` : null,
    lastActivityAt: r.last_activity_at?.toISOString() ?? null,
    failedStep: r.failed_step,
    error: r.error,
    attempt: r.attempt,
    disk: diskOf(r),
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

/** The tier's disk of a workspace, in bytes (as the agent's WorkspaceSpec has it). */
export const diskLimitBytes = (r: Pick<WorkspaceRow, 'disk_gb'>): number => Math.round(r.disk_gb * 1024 ** 3);

function diskOf(r: WorkspaceRow): WorkspaceDisk | null {
  if (!r.disk_measured_at) return null;
  const writableBytes = r.disk_writable_bytes ?? 0;
  const volumeBytes = r.disk_volume_bytes ?? 0;
  return {
    usedBytes: writableBytes + volumeBytes,
    limitBytes: diskLimitBytes(r),
    writableBytes,
    volumeBytes,
    layerLimitEnforced: r.disk_layer_limit_enforced ?? false,
    measuredAt: r.disk_measured_at.toISOString(),
  };
}

export async function getWorkspace(db: Db | Tx, id: string, forUpdate = false): Promise<WorkspaceRow | undefined> {
  const { rows } = await db.query<WorkspaceRow>(`SELECT * FROM workspaces WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0];
}

export async function viewWorkspace(db: Db, id: string, liveWithinSeconds: number): Promise<WorkspaceRow | undefined> {
  const { rows } = await db.query<WorkspaceRow>(`${VIEW_SQL} WHERE w.id = $2`, [liveWithinSeconds, id]);
  return rows[0];
}

export async function listWorkspacesOfUser(db: Db, userId: string, includeDeleted: boolean, liveWithinSeconds: number): Promise<WorkspaceRow[]> {
  const { rows } = await db.query<WorkspaceRow>(
    `${VIEW_SQL} WHERE w.user_id = $2 ${includeDeleted ? '' : "AND w.status <> 'DELETED'"} ORDER BY w.created_at, w.id`,
    [liveWithinSeconds, userId],
  );
  return rows;
}
