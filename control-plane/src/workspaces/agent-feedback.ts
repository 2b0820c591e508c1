import type { Logger, WorkspaceStatus } from '@a4c/common';
import { WorkspacePhase, type WorkspaceStatus as StatusReport } from '@a4c/proto';
import type { EventKind } from '../events/kinds.js';
import { notifyHost, notifyWorkspace } from '../events/notify.js';
import type { Observer } from '../metrics/observer.js';
import { deleteAcked, recordAppliedRevision, setCurrentStep, setReportedStatus } from '../store/agent-feedback.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { hostRevision, type SessionGuard } from '../store/host-sessions.js';
import { bumpRevision } from '../store/hosts.js';
import { getWorkspace, type WorkspaceRow } from '../store/workspaces.js';
import { assertMove } from './states.js';

/** What agent feedback tells the rest of the control plane after commit. */
export interface FeedbackDeps {
  /** A host's desired state changed (a workspace failed and left it): push it without waiting for NOTIFY. */
  hostChanged(hostId: string): void;
  observe: Observer;
  log: Logger;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * An agent's report about one of its workspaces, on the agent plane's pool (db). Reports about another host's
 * workspace, or made while acting on a revision older than the workspace's last
 * change, are ignored: they describe a past the user has already moved on from.
 */
export async function applyReport(deps: FeedbackDeps, db: Db, hostId: string, report: StatusReport, live?: SessionGuard): Promise<void> {
  if (!UUID.test(report.workspaceId)) return;
  let changedHost = false;
  let creation: { result: 'success' | 'failed'; seconds: number } | undefined;
  const changed = await inTx(db, async (tx) => {
    creation = undefined;
    await live?.(tx);
    const cur = await getWorkspace(tx, report.workspaceId, true);
    if (!cur || cur.host_id !== hostId || report.revision < cur.desired_revision) return false;
    const s = cur.status;
    const set = (status: WorkspaceStatus, extra: Partial<Pick<WorkspaceRow, 'container_id' | 'failed_step' | 'error'>> = {}) => ({
      status,
      extra,
    });
    let update: ReturnType<typeof set> | null = null;
    if (report.phase === WorkspacePhase.WORKSPACE_PHASE_CREATING && (s === 'CREATING' || s === 'STARTING')) {
      if (report.step && report.step !== cur.current_step) await setCurrentStep(tx, cur.id, report.step.slice(0, 32));
      return false;
    }
    switch (report.phase) {
      case WorkspacePhase.WORKSPACE_PHASE_RUNNING:
        if (s === 'CREATING' || s === 'STARTING' || (s === 'RUNNING' && cur.container_id !== report.containerId)) {
          update = set('RUNNING', { container_id: report.containerId, failed_step: null, error: null });
        }
        break;
      case WorkspacePhase.WORKSPACE_PHASE_STOPPED:
        if (s === 'STOPPING' || (s === 'STOPPED' && cur.container_id !== report.containerId)) {
          update = set('STOPPED', { container_id: report.containerId });
        }
        break;
      case WorkspacePhase.WORKSPACE_PHASE_FAILED:
        if (s === 'CREATING' || s === 'STARTING' || s === 'RUNNING' || s === 'STOPPING') {
          update = set('FAILED', {
            container_id: report.containerId || cur.container_id,
            failed_step: report.step || 'unknown',
            error: report.error || 'the agent reported a failure without a reason',
          });
        }
        break;
      default:
        break;
    }
    if (!update) return false;
    assertMove(s, update.status);
    const fields = { container_id: cur.container_id, failed_step: cur.failed_step, error: cur.error, ...update.extra };
    let revision = cur.desired_revision;
    if (update.status === 'FAILED') {
      // A failed workspace leaves the host's desired set, so the agent clears what is left.
      revision = await bumpRevision(tx, hostId);
      await notifyHost(tx, hostId);
      changedHost = true;
    }
    if (s === 'CREATING') {
      // status_changed_at is when it became CREATING: requested, approved or retried.
      creation = { result: update.status === 'RUNNING' ? 'success' : 'failed', seconds: (Date.now() - cur.status_changed_at.getTime()) / 1000 };
    }
    await setReportedStatus(tx, cur.id, { status: update.status, containerId: fields.container_id, failedStep: fields.failed_step, error: fields.error, revision });
    const failed = update.status === 'FAILED';
    await appendEvent(tx, {
      kind: REPORT_KINDS[update.status as keyof typeof REPORT_KINDS],
      actor: `agent:${hostId}`,
      reason: failed
        ? `the agent reported a failure at step ${fields.failed_step}: ${fields.error}`
        : `the agent reported the container ${update.status === 'RUNNING' ? 'running' : 'stopped'}`,
      workspaceId: cur.id,
      hostId,
      changes: changesOf(
        { status: s, containerId: cur.container_id, failedStep: cur.failed_step, error: cur.error },
        { status: update.status, containerId: fields.container_id, failedStep: fields.failed_step, error: fields.error },
      ),
      data: failed ? { step: fields.failed_step, exitCode: report.exitCode, oomKilled: report.oomKilled } : {},
    });
    await notifyWorkspace(tx, cur.id);
    return true;
  });
  if (changedHost) deps.hostChanged(hostId);
  if (creation) deps.observe.workspaceCreated(creation.result, creation.seconds);
  if (changed) deps.log.debug({ workspaceId: report.workspaceId, hostId, phase: report.phase }, 'workspace status applied');
}

/**
 * The host converged to `revision`: workspaces being deleted whose removal that
 * revision carried are gone from it.
 */
export async function applyAck(deps: FeedbackDeps, db: Db, hostId: string, revision: number, live?: SessionGuard): Promise<void> {
  const ids = await inTx(db, async (tx) => {
    await live?.(tx);
    // An agent acks only revisions it was sent: a higher one is forged or confused.
    const current = await hostRevision(tx, hostId);
    if (revision > current) throw new AckRefused(hostId, revision, current);
    const rows = await deleteAcked(tx, hostId, revision);
    for (const r of rows) {
      await appendEvent(tx, {
        kind: 'workspace.deleted',
        actor: `agent:${hostId}`,
        reason: `the host applied revision ${revision}, which removed its container`,
        workspaceId: r.id,
        hostId,
        changes: changesOf({ status: 'DELETING', containerId: r.container_id }, { status: 'DELETED', containerId: null }),
        data: { revision },
      });
      await notifyWorkspace(tx, r.id);
    }
    await recordAppliedRevision(tx, hostId, revision);
    return rows.map((r) => r.id);
  });
  if (ids.length) deps.log.info({ hostId, revision, workspaces: ids }, 'workspaces deleted');
}

/** An ack for a revision the host was never sent. */
export class AckRefused extends Error {
  constructor(hostId: string, revision: number, current: number) {
    super(`an ack for revision ${revision} of host ${hostId} was refused: its current revision is ${current}`);
  }
}

/** The event of each status an agent's report moves a workspace to. */
const REPORT_KINDS = {
  RUNNING: 'workspace.running',
  STOPPED: 'workspace.stopped',
  FAILED: 'workspace.failed',
} as const satisfies Partial<Record<WorkspaceStatus, EventKind>>;
