import { conflict, notFound, type Logger, type Workspace, type WorkspaceStatus } from '@a4c/common';
import type { EventKind } from '../events/kinds.js';
import { notifyHost, notifyWorkspace, type ChangeFeed } from '../events/notify.js';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import { ensureRoomToStart } from '../placement/room.js';
import type { Quotas } from '../quotas/quotas.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { searchWorkspaces, type FleetQuery } from '../store/fleet.js';
import { bumpRevision } from '../store/hosts.js';
import { listWorkspacesOfUser, toWorkspace, viewWorkspace, type WorkspaceRow } from '../store/workspaces.js';
import { mustGetWorkspace, UUID } from './lookup.js';
import { WorkspacePlacing, type CreateWorkspaceInput, type PlacingOptions } from './placing.js';
import { assertMove, takesCompute } from './states.js';
import { waitSettled } from './wait-settled.js';

export type { CreateWorkspaceInput } from './placing.js';

/** What the workspace commands need to know; placement's part is workspaces/placing.ts's. */
export type WorkspaceServiceOptions = PlacingOptions;

/** Why the control plane itself moves a workspace: the event's reason and data, the workspace's error. */
export interface TransitionWhy {
  reason?: string;
  error?: string;
  data?: Record<string, unknown>;
  /**
   * A system-made change (autostop, dormant deletion) re-checks its reason inside the
   * transition's transaction, under the row lock, and records its own events there;
   * false leaves the workspace as it is.
   */
  still?(tx: Tx, cur: WorkspaceRow): Promise<boolean>;
}

/** A system-made change that re-checks itself under the row lock. */
export interface TransitionGuard extends TransitionWhy {
  reason: string;
  still(tx: Tx, cur: WorkspaceRow): Promise<boolean>;
}

/** Told after commit when a host's desired state changed, to push it without waiting for NOTIFY. */
export type HostChanged = (hostId: string) => void;

/**
 * Every workspace state transition: one transaction that changes the row, bumps the
 * host's desired-state revision when what the host must run changed, appends an event,
 * and notifies the other replicas.
 */
export class WorkspaceService {
  private readonly placing: WorkspacePlacing;

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    quotas: Quotas,
    private readonly opts: WorkspaceServiceOptions,
    private readonly hostChanged: HostChanged,
    log: Logger,
    observe: Observer = NO_OBSERVER,
  ) {
    this.placing = new WorkspacePlacing(db, quotas, opts, hostChanged, log, observe);
  }

  create(input: CreateWorkspaceInput, actor: string): Promise<Workspace> {
    return this.placing.create(input, actor);
  }

  /** Many creates at once (POST /v1/workspace-batches), each settling alone (workspaces/placing.ts). */
  createMany(inputs: readonly CreateWorkspaceInput[], actor: string): Promise<PromiseSettledResult<Workspace>[]> {
    return this.placing.createMany(inputs, actor);
  }

  /** An admin approves a workspace whose tier needs it: it is placed now, or 503 and it stays pending. */
  approve(id: string, actor: string): Promise<Workspace> {
    return this.placing.approve(id, actor);
  }

  /** Places a FAILED or LOST workspace again as its next attempt. */
  retry(id: string, actor: string): Promise<Workspace> {
    return this.placing.retry(id, actor);
  }

  reject(id: string, actor: string, reason: string | undefined): Promise<Workspace> {
    return this.placing.reject(id, actor, reason);
  }

  async get(id: string): Promise<Workspace> {
    const row = UUID.test(id) ? await viewWorkspace(this.db, id, this.opts.placement.liveWithinSeconds) : undefined;
    if (!row) throw notFound('workspace', id, 'list your workspaces with `a4c ws list`');
    return toWorkspace(row);
  }

  /** The fleet's workspaces matching a search, a page at a time. */
  async search(q: FleetQuery): Promise<{ workspaces: Workspace[]; nextCursor: string | null }> {
    // Hostnames are searched by their first label (migration 021): a full hostname finds it too.
    const domain = `.${this.opts.hostnameDomain}`;
    const text = q.q?.toLowerCase().endsWith(domain) ? q.q.slice(0, -domain.length) : q.q;
    const { rows, nextCursor } = await searchWorkspaces(this.db, { ...q, q: text || q.q }, this.opts.placement.liveWithinSeconds);
    return { workspaces: rows.map(toWorkspace), nextCursor };
  }

  async listOfUser(userId: string, includeDeleted = false): Promise<Workspace[]> {
    return (await listWorkspacesOfUser(this.db, userId, includeDeleted, this.opts.placement.liveWithinSeconds)).map(toWorkspace);
  }


  /** Checks the workspace belongs to userId (for routes that name the user). */
  async getOwned(userId: string, id: string): Promise<Workspace> {
    const ws = await this.get(id);
    if (ws.userId !== userId) throw notFound('workspace', id, 'list your workspaces with `a4c ws list`');
    return ws;
  }

  /**
   * why: a stop the control plane decided on its own (disk past its limit) says why in
   * its event and in the workspace's error, which stays until it is started again.
   */
  stop(id: string, actor: string, why: TransitionWhy = {}): Promise<Workspace> {
    return this.transition(id, actor, why.reason ?? 'stop asked', (s) => {
      if (s === 'STOPPED' || s === 'STOPPING') return null;
      if (s === 'PENDING_APPROVAL') throw conflict('the workspace is waiting for an admin\'s approval and does not run yet', 'delete it if you no longer need it');
      if (s === 'RUNNING' || s === 'CREATING' || s === 'STARTING') return 'STOPPING';
      throw conflict(`a ${s} workspace cannot be stopped`, retryOrDelete(s, id) ?? 'delete it if you no longer need it');
    }, why);
  }

  start(id: string, actor: string): Promise<Workspace> {
    return this.transition(id, actor, 'start asked', (s) => {
      if (s === 'RUNNING' || s === 'STARTING' || s === 'CREATING') return null;
      if (s === 'PENDING_APPROVAL') throw conflict('the workspace is waiting for an admin\'s approval', 'ask an admin to approve it');
      if (s === 'STOPPED' || s === 'STOPPING') return 'STARTING';
      throw conflict(`a ${s} workspace cannot be started`, retryOrDelete(s, id) ?? 'create a new workspace');
    });
  }

  delete(id: string, actor: string, guard?: TransitionGuard): Promise<Workspace> {
    return this.transition(id, actor, guard?.reason ?? 'delete asked', (s, row) => {
      if (s === 'DELETED' || s === 'DELETING') return null;
      // Nothing on a host to remove (never placed, or its host is lost and its data with it): done at once.
      return row.host_id && s !== 'LOST' ? 'DELETING' : 'DELETED';
    }, guard);
  }

  private async transition(
    id: string,
    actor: string,
    reason: string,
    next: (status: WorkspaceStatus, row: WorkspaceRow) => WorkspaceStatus | null,
    why: TransitionWhy = {},
  ): Promise<Workspace> {
    let changedHost: string | null = null;
    const row = await inTx(this.db, async (tx) => {
      const cur = await mustGetWorkspace(tx, id, true);
      const to = next(cur.status, cur);
      if (to === null) return cur; // already there or on its way: idempotent
      if (why.still && !(await why.still(tx, cur))) return cur;
      assertMove(cur.status, to);
      if (cur.host_id && takesCompute(cur.status, to)) {
        // A stopped workspace holds only its disk: starting takes CPU and memory again, if its host has them.
        await ensureRoomToStart(tx, { workspaceId: id, hostId: cur.host_id, memoryMb: cur.memory_mb, cpus: cur.cpus }, this.opts.placement.headroom);
      }
      let revision = cur.desired_revision;
      if (cur.host_id && to !== 'DELETED') {
        revision = await bumpRevision(tx, cur.host_id);
        await notifyHost(tx, cur.host_id);
        changedHost = cur.host_id;
      }
      const { rows } = await tx.query<WorkspaceRow>(
        `UPDATE workspaces SET status = $2, desired_revision = $3, failed_step = NULL, error = $4, updated_at = now()
          WHERE id = $1 RETURNING *`,
        [id, to, revision, why.error ?? null],
      );
      const r = rows[0] as WorkspaceRow;
      await appendEvent(tx, {
        kind: TRANSITION_KINDS[to as keyof typeof TRANSITION_KINDS],
        actor,
        reason: to === 'DELETED' ? `${reason}; ${cur.status === 'LOST' ? `its host ${cur.host_id ?? ''} is lost, and its data with it` : 'on no host'}, so deleted at once` : reason,
        workspaceId: id,
        hostId: cur.host_id,
        changes: changesOf({ status: cur.status, failedStep: cur.failed_step, error: cur.error }, { status: r.status, failedStep: r.failed_step, error: r.error }),
        data: { revision, ...why.data },
      });
      await notifyWorkspace(tx, id);
      return r;
    });
    if (changedHost) this.hostChanged(changedHost);
    const view = await this.get(id);
    return { ...toWorkspace(row), hostLost: view.hostLost, disk: view.disk };
  }

  /**
   * Resolves once the workspace is settled or the time is up (workspaces/wait-settled.ts).
   */
  waitSettled(id: string, seconds: number): Promise<Workspace> {
    return waitSettled(this.feed, (w) => this.get(w), id, seconds);
  }
}

/** The event of each status a user's command moves a workspace to. */
const TRANSITION_KINDS = {
  STOPPING: 'workspace.stopping',
  STARTING: 'workspace.starting',
  DELETING: 'workspace.deleting',
  DELETED: 'workspace.deleted',
} as const satisfies Partial<Record<WorkspaceStatus, EventKind>>;

/** What to suggest for a workspace that can only be retried or deleted. */
function retryOrDelete(s: WorkspaceStatus, id: string): string | undefined {
  if (s === 'FAILED') return 'retry or delete it';
  if (s === 'LOST') return `its host is gone: recreate it on another host (a4c ws retry ${id}), or delete it (a4c ws rm ${id})`;
  return undefined;
}
