import type { Arch, Workspace, WorkspaceStatus } from '@a4c/common';
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
}

/** Live statuses whose host matters: a lost host makes their status uncertain. */
const ON_HOST = `w.status NOT IN ('DELETED', 'FAILED', 'REJECTED', 'PENDING_APPROVAL')`;

/** Workspaces (from the table, or a subquery of its rows) with host_lost; $1 is the liveness window in seconds. */
export const viewSql = (from = 'workspaces') => `
  SELECT w.*, (${ON_HOST} AND w.host_id IS NOT NULL
               AND NOT COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => $1) AND s.docker_ready, false)) AS host_lost
    FROM ${from} w LEFT JOIN host_status s ON s.host_id = w.host_id`;
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
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
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

/**
 * The workspaces a host must have: everything placed there that is neither being
 * deleted, deleted, nor failed. The agent removes any A4C container of its host that
 * is not in this set.
 */
export async function desiredWorkspacesOfHost(db: Db | Tx, hostId: string): Promise<WorkspaceRow[]> {
  const { rows } = await db.query<WorkspaceRow>(
    `SELECT w.*, r.pull_ref FROM workspaces w LEFT JOIN registry_images r ON r.ref = COALESCE(w.run_image, w.image)
      WHERE w.host_id = $1 AND w.status NOT IN ('DELETING', 'DELETED', 'FAILED') ORDER BY w.created_at, w.id`,
    [hostId],
  );
  return rows;
}
