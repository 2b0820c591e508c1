/** The statements of agent feedback (workspaces/agent-feedback.ts): status reports and acks. */
import type { WorkspaceStatus } from '@a4c/common';
import type { Tx } from './db.js';

/** The step a workspace on its way up is at, as its agent reported it. */
export async function setCurrentStep(tx: Tx, workspaceId: string, step: string): Promise<void> {
  await tx.query('UPDATE workspaces SET current_step = $2 WHERE id = $1', [workspaceId, step]);
}

export interface ReportedStatus {
  status: WorkspaceStatus;
  containerId: string | null;
  failedStep: string | null;
  error: string | null;
  revision: number;
}

/** The status an agent's report moves a workspace to. */
export async function setReportedStatus(tx: Tx, workspaceId: string, s: ReportedStatus): Promise<void> {
  await tx.query(
    `UPDATE workspaces SET status = $2, container_id = $3, failed_step = $4, error = $5, desired_revision = $6, updated_at = now()
      WHERE id = $1`,
    [workspaceId, s.status, s.containerId, s.failedStep, s.error, s.revision],
  );
}

/** The host's DELETING workspaces whose removal `revision` carried become DELETED; returns them as they were. */
export async function deleteAcked(tx: Tx, hostId: string, revision: number): Promise<{ id: string; container_id: string | null }[]> {
  // Lock order everywhere: workspace rows, then their host row.
  const { rows } = await tx.query<{ id: string; container_id: string | null }>(
    `WITH gone AS (SELECT id, container_id FROM workspaces
                    WHERE host_id = $1 AND status = 'DELETING' AND desired_revision <= $2 FOR UPDATE)
     UPDATE workspaces w SET status = 'DELETED', container_id = NULL, updated_at = now()
       FROM gone WHERE w.id = gone.id RETURNING w.id, gone.container_id`,
    [hostId, revision],
  );
  return rows;
}

/** The host's agent has applied `revision`. */
export async function recordAppliedRevision(tx: Tx, hostId: string, revision: number): Promise<void> {
  await tx.query('UPDATE hosts SET applied_revision = GREATEST(applied_revision, $2) WHERE id = $1 AND applied_revision < $2', [hostId, revision]);
}
