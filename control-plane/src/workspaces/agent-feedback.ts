import type { WorkspaceStatus } from '@a4c/common';
import { WorkspacePhase, type WorkspaceStatus as StatusReport } from '@a4c/proto';
import type { EventKind } from '../events/kinds.js';
import { CHANNEL_HOST, CHANNEL_WORKSPACE } from '../events/notify.js';
import {
  deleteAcked,
  hostRevisions,
  liveSessions,
  lockWorkspaces,
  recordAppliedRevisions,
  setCurrentSteps,
  setReportedStatuses,
  type ReportedStatus,
} from '../store/agent-feedback.js';
import type { Tx } from '../store/db.js';
import { changesOf } from '../store/events.js';
import { SessionSuperseded } from '../store/host-sessions.js';
import { appendEvents, bumpRevisions, notifyMany, type BulkEvent } from '../store/placement-batch.js';
import type { WorkspaceRow } from '../store/workspaces.js';
import { assertMove } from './states.js';

/** One message of an agent's session that changes workspaces: a status report or an ack. */
export type FeedbackItem =
  | { kind: 'report'; hostId: string; sessionId: string; report: StatusReport }
  | { kind: 'ack'; hostId: string; sessionId: string; revision: number };

/** What a committed batch did, for what follows the commit (pushes, metrics, logs). */
export interface FeedbackResult {
  /** Per item, in order: null if applied (or ignored as stale), or why it was refused. */
  refused: (Error | null)[];
  /** Hosts whose desired state changed: a workspace of theirs failed and left it. */
  changedHosts: string[];
  /** Creations that ended (CREATING → RUNNING or FAILED), with their seconds since requested. */
  creations: { result: 'success' | 'failed'; seconds: number }[];
  /** Reports that changed a workspace's status. */
  applied: { workspaceId: string; hostId: string; phase: WorkspacePhase }[];
  /** Per host whose ack removed workspaces: the revision and the workspaces now DELETED. */
  deleted: { hostId: string; revision: number; workspaces: string[] }[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Agents' reports and acks of many sessions in one transaction, with one statement per
 * table (workspace rows, host rows, events, notifications), each item as it was applied
 * alone before:
 * - an item whose session is no longer its host's is refused (SessionSuperseded) and
 *   changes nothing; the others apply;
 * - a report about another host's workspace, or made while acting on a revision older
 *   than the workspace's last change, is ignored: it describes a past the user has
 *   already moved on from;
 * - an ack for a revision above its host's current one is refused (AckRefused), alone;
 *   an accepted one makes the DELETING workspaces whose removal it carried DELETED;
 * - a session's items after its first refused one are dropped (refused with the same
 *   error): handled one by one, they would never have been, as the refusal ends it.
 * Items apply in their order: a later report of the same workspace sees what an earlier
 * one did. Several workspaces of one host failing in one batch bump its revision once.
 */
export async function applyFeedback(tx: Tx, items: FeedbackItem[], now: () => number = Date.now): Promise<FeedbackResult> {
  const refused: (Error | null)[] = items.map(() => null);
  const out: FeedbackResult = { refused, changedHosts: [], creations: [], applied: [], deleted: [] };
  // A report naming no workspace is no write at all (as before, not even checked against the session).
  const writes = items.flatMap((it, i) => (it.kind === 'ack' || UUID.test(it.report.workspaceId) ? [i] : []));
  if (!writes.length) return out;
  const live = await liveSessions(
    tx,
    writes.map((i) => (items[i] as FeedbackItem).hostId),
    writes.map((i) => (items[i] as FeedbackItem).sessionId),
  );
  const isLive = (it: FeedbackItem) => live.has(`${it.hostId}\u0000${it.sessionId}`);
  const current = await hostRevisions(tx, [...new Set(writes.flatMap((i) => ((items[i] as FeedbackItem).kind === 'ack' && isLive(items[i] as FeedbackItem) ? [(items[i] as FeedbackItem).hostId] : [])))]);
  const reports: { i: number; hostId: string; report: StatusReport }[] = [];
  const accepted: { i: number; hostId: string; revision: number }[] = [];
  // A session's first refusal ends it: its later items are dropped, as they would never have been handled.
  const refusedSession = new Map<string, Error>();
  for (const i of writes) {
    const it = items[i] as FeedbackItem;
    const before = refusedSession.get(it.sessionId);
    let why: Error | undefined;
    if (before) why = before;
    else if (!isLive(it)) why = new SessionSuperseded(it.hostId, it.sessionId);
    else if (it.kind === 'report') reports.push({ i, hostId: it.hostId, report: it.report });
    else {
      // An agent acks only revisions it was sent: a higher one is forged or confused.
      const cur = current.get(it.hostId) ?? 0;
      if (it.revision > cur) why = new AckRefused(it.hostId, it.revision, cur);
      else accepted.push({ i, hostId: it.hostId, revision: it.revision });
    }
    if (why) {
      refused[i] = why;
      refusedSession.set(it.sessionId, why);
    }
  }

  // Lock order everywhere: workspace rows, then their host rows.
  const rows = await lockWorkspaces(tx, [...new Set(reports.map((r) => r.report.workspaceId))]);
  const gone = await deleteAcked(tx, accepted.map((a) => a.hostId), accepted.map((a) => a.revision));

  // Each report decided against the workspace as the batch's earlier items left it.
  const moves: { i: number; hostId: string; from: WorkspaceRow; to: Move; report: StatusReport }[] = [];
  const steps = new Map<string, string>();
  for (const { i, hostId, report } of reports) {
    const cur = rows.get(report.workspaceId);
    if (!cur || cur.host_id !== hostId || report.revision < cur.desired_revision) continue;
    const d = decide(cur, report);
    if (!d) continue;
    if ('step' in d) {
      steps.set(cur.id, d.step);
      rows.set(cur.id, { ...cur, current_step: d.step });
      continue;
    }
    assertMove(cur.status, d.status);
    moves.push({ i, hostId, from: cur, to: d, report });
    rows.set(cur.id, { ...cur, status: d.status, container_id: d.container_id, failed_step: d.failed_step, error: d.error });
  }

  // A failed workspace leaves the host's desired set, so the agent clears what is left.
  const failedHosts = [...new Set(moves.filter((m) => m.to.status === 'FAILED').map((m) => m.hostId))].sort();
  const bumped = failedHosts.length ? await bumpRevisions(tx, failedHosts) : new Map<string, number>();
  const final = new Map<string, ReportedStatus>();
  for (const m of moves) {
    const revision = m.to.status === 'FAILED' ? (bumped.get(m.hostId) ?? m.from.desired_revision) : (final.get(m.from.id)?.revision ?? m.from.desired_revision);
    final.set(m.from.id, { id: m.from.id, status: m.to.status, containerId: m.to.container_id, failedStep: m.to.failed_step, error: m.to.error, revision });
    if (m.from.status === 'CREATING') {
      // status_changed_at is when it became CREATING: requested, approved or retried.
      out.creations.push({ result: m.to.status === 'RUNNING' ? 'success' : 'failed', seconds: (now() - m.from.status_changed_at.getTime()) / 1000 });
    }
    out.applied.push({ workspaceId: m.from.id, hostId: m.hostId, phase: m.report.phase });
  }
  await setCurrentSteps(tx, [...steps.keys()], [...steps.values()]);
  await setReportedStatuses(tx, [...final.values()]);

  // The events in the order of their items.
  const events: { i: number; e: BulkEvent }[] = moves.map((m) => ({ i: m.i, e: reportEvent(m.hostId, m.from, m.to, m.report) }));
  const ackOf = new Map<string, number>();
  for (const a of accepted) ackOf.set(a.hostId, Math.max(ackOf.get(a.hostId) ?? 0, a.revision));
  for (const g of gone) {
    // The first of its host's acks that carried its removal.
    const by = accepted.find((a) => a.hostId === g.host_id && a.revision >= g.desired_revision);
    const revision = by?.revision ?? ackOf.get(g.host_id) ?? 0;
    events.push({
      i: by?.i ?? 0,
      e: {
        kind: 'workspace.deleted',
        actor: `agent:${g.host_id}`,
        reason: `the host applied revision ${revision}, which removed its container`,
        workspaceId: g.id,
        hostId: g.host_id,
        userId: g.user_id,
        changes: changesOf({ status: 'DELETING', containerId: g.container_id }, { status: 'DELETED', containerId: null }),
        data: { revision },
      },
    });
  }
  events.sort((a, b) => a.i - b.i);
  if (events.length) await appendEvents(tx, events.map((x) => x.e));
  const channels = [...failedHosts.map(() => CHANNEL_HOST), ...events.map(() => CHANNEL_WORKSPACE)];
  const payloads = [...failedHosts, ...events.map((x) => x.e.workspaceId)];
  await notifyMany(tx, channels, payloads);
  // Last, so the batch holds its hosts' rows as briefly as it can: placement skips
  // locked hosts (SKIP LOCKED), and a batch holds many.
  await recordAppliedRevisions(tx, accepted.map((a) => a.hostId), accepted.map((a) => a.revision));

  out.changedHosts = failedHosts;
  for (const [hostId, revision] of ackOf) {
    const ws = gone.filter((g) => g.host_id === hostId).map((g) => g.id);
    if (ws.length) out.deleted.push({ hostId, revision, workspaces: ws });
  }
  return out;
}

type Move = { status: WorkspaceStatus } & Pick<WorkspaceRow, 'container_id' | 'failed_step' | 'error'>;

/** What a report does to the workspace as it is: a new step, a new status, or nothing. */
function decide(cur: WorkspaceRow, report: StatusReport): { step: string } | Move | null {
  const s = cur.status;
  if (report.phase === WorkspacePhase.WORKSPACE_PHASE_CREATING && (s === 'CREATING' || s === 'STARTING')) {
    const step = report.step.slice(0, 32);
    return report.step && report.step !== cur.current_step ? { step } : null;
  }
  switch (report.phase) {
    case WorkspacePhase.WORKSPACE_PHASE_RUNNING:
      if (s === 'CREATING' || s === 'STARTING' || (s === 'RUNNING' && cur.container_id !== report.containerId)) {
        return { status: 'RUNNING', container_id: report.containerId, failed_step: null, error: null };
      }
      return null;
    case WorkspacePhase.WORKSPACE_PHASE_STOPPED:
      if (s === 'STOPPING' || (s === 'STOPPED' && cur.container_id !== report.containerId)) {
        return { status: 'STOPPED', container_id: report.containerId, failed_step: cur.failed_step, error: cur.error };
      }
      return null;
    case WorkspacePhase.WORKSPACE_PHASE_FAILED:
      if (s === 'CREATING' || s === 'STARTING' || s === 'RUNNING' || s === 'STOPPING') {
        return {
          status: 'FAILED',
          container_id: report.containerId || cur.container_id,
          failed_step: report.step || 'unknown',
          error: report.error || 'the agent reported a failure without a reason',
        };
      }
      return null;
    default:
      return null;
  }
}

function reportEvent(hostId: string, cur: WorkspaceRow, to: Move, report: StatusReport): BulkEvent {
  const failed = to.status === 'FAILED';
  return {
    kind: REPORT_KINDS[to.status as keyof typeof REPORT_KINDS],
    actor: `agent:${hostId}`,
    reason: failed
      ? `the agent reported a failure at step ${to.failed_step}: ${to.error}`
      : `the agent reported the container ${to.status === 'RUNNING' ? 'running' : 'stopped'}`,
    workspaceId: cur.id,
    hostId,
    userId: cur.user_id,
    changes: changesOf(
      { status: cur.status, containerId: cur.container_id, failedStep: cur.failed_step, error: cur.error },
      { status: to.status, containerId: to.container_id, failedStep: to.failed_step, error: to.error },
    ),
    data: failed ? { step: to.failed_step, exitCode: report.exitCode, oomKilled: report.oomKilled } : {},
  };
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
