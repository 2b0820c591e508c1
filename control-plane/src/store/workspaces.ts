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
  desired_revision: number;
  created_at: Date;
  updated_at: Date;
}

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
    containerId: r.container_id,
    hostname: r.hostname,
    sshCommand: r.hostname && r.status !== 'DELETED' ? `ssh ${r.user_id}@${r.hostname}` : null,
    failedStep: r.failed_step,
    error: r.error,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}

export async function getWorkspace(db: Db | Tx, id: string, forUpdate = false): Promise<WorkspaceRow | undefined> {
  const { rows } = await db.query<WorkspaceRow>(`SELECT * FROM workspaces WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0];
}

export async function listWorkspacesOfUser(db: Db, userId: string, includeDeleted: boolean): Promise<WorkspaceRow[]> {
  const { rows } = await db.query<WorkspaceRow>(
    `SELECT * FROM workspaces WHERE user_id = $1 ${includeDeleted ? '' : "AND status <> 'DELETED'"} ORDER BY created_at, id`,
    [userId],
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
    `SELECT * FROM workspaces WHERE host_id = $1 AND status NOT IN ('DELETING', 'DELETED', 'FAILED') ORDER BY created_at, id`,
    [hostId],
  );
  return rows;
}
