import type { Tx } from './db.js';
import type { NewWorkspace } from './placement-batch.js';
import type { WorkspaceRow } from './workspaces.js';

/** A new workspace's row, as the single (unbatched) create inserts it: the batch's, less the autostop override (set apart). */
export type NewWorkspaceRow = Omit<NewWorkspace, 'autostopAfterSeconds'>;

/** Inserts one workspace; a name the user already has fails with PostgreSQL's 23505. */
export async function insertWorkspace(tx: Tx, w: NewWorkspaceRow): Promise<WorkspaceRow> {
  const res = await tx.query<WorkspaceRow>(
    `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, change_number, status, host_id,
                             hostname, memory_mb, cpus, disk_gb, pids_limit, desired_revision,
                             read_only_rootfs, run_as_user, run_as_non_root)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING *`,
    [w.id, w.userId, w.name, w.projectName, w.arch, w.tier, w.image, w.changeNumber, w.status, w.hostId, w.hostname,
      w.memoryMb, w.cpus, w.diskGb, w.pidsLimit, w.desiredRevision, w.readOnlyRootFs, w.runAsUser, w.runAsNonRoot],
  );
  const row = res.rows[0];
  if (!row) throw new Error('insert returned no row');
  return row;
}

/** An approved workspace placed on its host. */
export async function markApproved(tx: Tx, id: string, hostId: string, revision: number): Promise<WorkspaceRow> {
  const { rows } = await tx.query<WorkspaceRow>(
    `UPDATE workspaces SET status = 'CREATING', host_id = $2, desired_revision = $3, updated_at = now() WHERE id = $1 RETURNING *`,
    [id, hostId, revision],
  );
  return rows[0] as WorkspaceRow;
}

/** A failed or lost workspace placed again as its next attempt, clean of the last one's traces. */
export async function markRetried(tx: Tx, id: string, hostId: string, revision: number): Promise<WorkspaceRow> {
  const { rows } = await tx.query<WorkspaceRow>(
    `UPDATE workspaces SET status = 'CREATING', host_id = $2, desired_revision = $3, attempt = attempt + 1, container_id = NULL,
                           failed_step = NULL, error = NULL, current_step = NULL, updated_at = now()
      WHERE id = $1 RETURNING *`,
    [id, hostId, revision],
  );
  return rows[0] as WorkspaceRow;
}

export async function markRejected(tx: Tx, id: string, error: string): Promise<WorkspaceRow> {
  const { rows } = await tx.query<WorkspaceRow>(`UPDATE workspaces SET status = 'REJECTED', error = $2, updated_at = now() WHERE id = $1 RETURNING *`, [id, error]);
  return rows[0] as WorkspaceRow;
}
