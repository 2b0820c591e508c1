import { randomUUID } from 'node:crypto';
import {
  conflict,
  invalidArgument,
  notFound,
  SETTLED_STATUSES,
  type Arch,
  type Logger,
  type Tier,
  type Workspace,
  type WorkspaceStatus,
} from '@a4c/common';
import { WorkspacePhase, type WorkspaceStatus as StatusReport } from '@a4c/proto';
import type { EventKind } from '../events/kinds.js';
import { notifyHost, notifyWorkspace, type ChangeFeed } from '../events/notify.js';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import { PLACEMENT_PATIENCE_MS, reserveHost, type PlacementPolicy } from '../placement/placement.js';
import type { PlacementRequest } from '../placement/batch.js';
import { PlacementQueue, type PlacementQueueOptions } from '../placement/queue.js';
import { ensureRoomToStart } from '../placement/room.js';
import type { Quotas } from '../quotas/quotas.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { setAutostopOverride } from '../store/autostop.js';
import { appendEvent, changesOf } from '../store/events.js';
import { searchWorkspaces, type FleetQuery } from '../store/fleet.js';
import { hostRevision, type SessionGuard } from '../store/host-sessions.js';
import { bumpRevision } from '../store/hosts.js';
import { getWorkspace, listWorkspacesOfUser, toWorkspace, viewWorkspace, type WorkspaceRow } from '../store/workspaces.js';
import { assertMove, takesCompute } from './states.js';

export interface CreateWorkspaceInput {
  userId: string;
  projectName: string;
  arch: Arch;
  tier: string;
  name?: string | undefined;
  changeNumber?: string | undefined;
  image?: string | undefined;
  /** The workspace's own idle period (autostop); null or 0: never; absent: its tier's. */
  autostopAfterSeconds?: number | null | undefined;
}

export interface WorkspaceServiceOptions {
  tiers: Map<string, Tier>;
  defaultImage: string;
  hostnameDomain: string;
  placement: PlacementPolicy;
  /** Creates placed in batches, one transaction each (placement/queue.ts); absent: one transaction per create. */
  batch?: PlacementQueueOptions | undefined;
}

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
  private readonly queue: PlacementQueue | undefined;

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly quotas: Quotas,
    private readonly opts: WorkspaceServiceOptions,
    private readonly hostChanged: HostChanged,
    private readonly log: Logger,
    private readonly observe: Observer = NO_OBSERVER,
  ) {
    const rules = quotas.rules;
    this.queue = opts.batch
      ? new PlacementQueue(
          db,
          { policy: opts.placement, defaultImage: opts.defaultImage, quota: rules.defaults, createRate: rules.createRate, failedGrace: rules.failedGrace, observe },
          opts.batch,
          hostChanged,
          log,
        )
      : undefined;
  }

  /**
   * Many creates at once (POST /v1/workspace-batches): each joins the placement queue as
   * a single create would, in order, so they share its transactions under the same
   * rules; each settles alone, with its workspace or its own error. Without placement
   * batches, they are created one after another.
   */
  async createMany(inputs: readonly CreateWorkspaceInput[], actor: string): Promise<PromiseSettledResult<Workspace>[]> {
    const queue = this.queue;
    if (!queue) {
      const out: PromiseSettledResult<Workspace>[] = [];
      for (const input of inputs) out.push(await this.create(input, actor).then((value) => ({ status: 'fulfilled', value }) as const, (reason: unknown) => ({ status: 'rejected', reason }) as const));
      return out;
    }
    const reqs = inputs.map((input) => {
      try {
        return this.placementRequest(input, actor);
      } catch (e) {
        return e as Error;
      }
    });
    const valid = reqs.filter((r): r is PlacementRequest => !(r instanceof Error));
    const placing = queue.placeMany(valid);
    let n = 0;
    return Promise.allSettled(reqs.map(async (r) => (r instanceof Error ? Promise.reject(r) : this.placed(await (placing[n++] as Promise<WorkspaceRow>)))));
  }

  /** What the placement queue needs to know of a create; an unknown tier is the caller's error. */
  private placementRequest(input: CreateWorkspaceInput, actor: string): PlacementRequest {
    const tier = this.opts.tiers.get(input.tier);
    if (!tier) {
      throw invalidArgument('tier', `unknown tier ${JSON.stringify(input.tier)}; choose one of ${[...this.opts.tiers.keys()].join(', ')}`);
    }
    const id = randomUUID();
    const name = input.name ?? `${input.projectName}-${id.slice(0, 6)}`.slice(0, 63);
    const hostname = `${dnsLabel(`${name}-${input.userId}`)}.${this.opts.hostnameDomain}`;
    return {
      id,
      userId: input.userId,
      name,
      projectName: input.projectName,
      arch: input.arch,
      tier,
      image: input.image,
      changeNumber: input.changeNumber ?? null,
      hostname,
      autostopAfterSeconds: input.autostopAfterSeconds,
      actor,
      patientUntil: Date.now() + PLACEMENT_PATIENCE_MS,
    };
  }

  private placed(row: WorkspaceRow): Workspace {
    this.log.info({ workspaceId: row.id, hostId: row.host_id, userId: row.user_id, status: row.status }, 'workspace requested');
    return toWorkspace(row);
  }

  async create(input: CreateWorkspaceInput, actor: string): Promise<Workspace> {
    const req = this.placementRequest(input, actor);
    if (this.queue) return this.placed(await this.queue.place(req));
    const { id, name, hostname, tier } = req;
    const row = await inTx(this.db, async (tx) => {
      await this.quotas.lockUser(tx, input.userId);
      await this.quotas.checkWorkspace(tx, input.userId, tier.diskGb);
      await this.quotas.takeCreation(tx, input.userId);
      const image = input.image ?? (await this.newestProjectImage(tx, input.projectName, input.arch)) ?? this.opts.defaultImage;
      // A tier that needs approval waits, unplaced and reserving nothing, for an admin.
      const placed = tier.requiresApproval
        ? undefined
        : await reserveHost(
            tx,
            { arch: input.arch, image, memoryMb: tier.memoryMb, cpus: tier.cpus, diskGb: tier.diskGb, tier: tier.name, userId: input.userId, project: input.projectName },
            this.opts.placement,
            this.observe,
          );
      let inserted: WorkspaceRow | undefined;
      try {
        const res = await tx.query<WorkspaceRow>(
          `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, change_number, status, host_id,
                                   hostname, memory_mb, cpus, disk_gb, pids_limit, desired_revision,
                                   read_only_rootfs, run_as_user, run_as_non_root)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) RETURNING *`,
          [id, input.userId, name, input.projectName, input.arch, tier.name, image, input.changeNumber ?? null,
            placed ? 'CREATING' : 'PENDING_APPROVAL', placed?.hostId ?? null, hostname,
            tier.memoryMb, tier.cpus, tier.diskGb, tier.pidsLimit, placed?.revision ?? 0,
            tier.readOnlyRootFs, tier.user ?? null, tier.runAsNonRoot],
        );
        inserted = res.rows[0];
      } catch (e) {
        if ((e as { code?: string }).code === '23505') {
          throw conflict(`user ${input.userId} already has a workspace named ${JSON.stringify(name)}`, 'choose another name, or delete the existing workspace first');
        }
        throw e;
      }
      if (!inserted) throw new Error('insert returned no row');
      if (input.autostopAfterSeconds !== undefined) await setAutostopOverride(tx, id, input.autostopAfterSeconds ?? 0);
      await appendEvent(tx, {
        kind: placed ? 'workspace.created' : 'workspace.requested',
        actor,
        reason: placed ? `placed on host ${placed.hostId}` : `tier ${tier.name} needs an admin's approval`,
        workspaceId: id,
        hostId: placed?.hostId ?? null,
        userId: input.userId,
        changes: changesOf({}, { status: inserted.status, hostId: inserted.host_id }),
        data: { name, projectName: input.projectName, arch: input.arch, tier: tier.name, image, revision: placed?.revision ?? null },
      });
      if (placed) await notifyHost(tx, placed.hostId);
      await notifyWorkspace(tx, id);
      return inserted;
    });
    this.log.info({ workspaceId: row.id, hostId: row.host_id, userId: row.user_id, status: row.status }, 'workspace requested');
    if (row.host_id) this.hostChanged(row.host_id);
    return toWorkspace(row);
  }

  /** An admin approves a workspace whose tier needs it: it is placed now, or 503 and it stays pending. */
  async approve(id: string, actor: string): Promise<Workspace> {
    const row = await inTx(this.db, async (tx) => {
      const cur = await this.mustGet(tx, id, true);
      if (cur.status !== 'PENDING_APPROVAL') throw conflict(`workspace ${id} is ${cur.status}, not waiting for approval`);
      assertMove(cur.status, 'CREATING');
      const placed = await reserveHost(
        tx,
        { arch: cur.arch, image: cur.image, memoryMb: cur.memory_mb, cpus: cur.cpus, diskGb: cur.disk_gb, tier: cur.tier },
        this.opts.placement,
        this.observe,
      );
      const { rows } = await tx.query<WorkspaceRow>(
        `UPDATE workspaces SET status = 'CREATING', host_id = $2, desired_revision = $3, updated_at = now() WHERE id = $1 RETURNING *`,
        [id, placed.hostId, placed.revision],
      );
      await appendEvent(tx, {
        kind: 'workspace.approved',
        actor,
        reason: `approved by ${actor}; placed on host ${placed.hostId}`,
        workspaceId: id,
        hostId: placed.hostId,
        changes: changesOf({ status: cur.status, hostId: cur.host_id }, { status: 'CREATING', hostId: placed.hostId }),
        data: { revision: placed.revision },
      });
      await notifyHost(tx, placed.hostId);
      await notifyWorkspace(tx, id);
      return rows[0] as WorkspaceRow;
    });
    if (row.host_id) this.hostChanged(row.host_id);
    return toWorkspace(row);
  }

  /**
   * Retries a FAILED or LOST workspace: places it again, as a new one (its reservation
   * was released when it failed or its host was lost; the quota is checked again, as
   * neither may count any more), with the next attempt number, keeping its id. The
   * agent removes whatever an older attempt left (a container) before it creates afresh.
   */
  async retry(id: string, actor: string): Promise<Workspace> {
    const row = await inTx(this.db, async (tx) => {
      const cur = await this.mustGet(tx, id, true);
      if (cur.status !== 'FAILED' && cur.status !== 'LOST') throw conflict(`only a FAILED or LOST workspace can be retried; this one is ${cur.status}`);
      assertMove(cur.status, 'CREATING');
      await this.quotas.lockUser(tx, cur.user_id);
      await this.quotas.checkWorkspace(tx, cur.user_id, cur.disk_gb, cur.id);
      const placed = await reserveHost(
        tx,
        { arch: cur.arch, image: cur.image, memoryMb: cur.memory_mb, cpus: cur.cpus, diskGb: cur.disk_gb, tier: cur.tier },
        this.opts.placement,
        this.observe,
      );
      const { rows } = await tx.query<WorkspaceRow>(
        `UPDATE workspaces SET status = 'CREATING', host_id = $2, desired_revision = $3, attempt = attempt + 1, container_id = NULL,
                               failed_step = NULL, error = NULL, current_step = NULL, updated_at = now()
          WHERE id = $1 RETURNING *`,
        [id, placed.hostId, placed.revision],
      );
      const r = rows[0] as WorkspaceRow;
      await appendEvent(tx, {
        kind: 'workspace.retried',
        actor,
        reason:
          cur.status === 'LOST'
            ? `recreated after its host ${cur.host_id ?? 'unknown'} was lost; placed on host ${placed.hostId}`
            : `retry of a workspace that failed at step ${cur.failed_step ?? 'unknown'}; placed on host ${placed.hostId}`,
        workspaceId: id,
        hostId: placed.hostId,
        changes: changesOf(
          { status: cur.status, hostId: cur.host_id, attempt: cur.attempt, containerId: cur.container_id, failedStep: cur.failed_step, error: cur.error },
          { status: r.status, hostId: r.host_id, attempt: r.attempt, containerId: null, failedStep: null, error: null },
        ),
        data: { revision: placed.revision },
      });
      await notifyHost(tx, placed.hostId);
      await notifyWorkspace(tx, id);
      return r;
    });
    if (row.host_id) this.hostChanged(row.host_id);
    return toWorkspace(row);
  }

  async reject(id: string, actor: string, reason: string | undefined): Promise<Workspace> {
    const row = await inTx(this.db, async (tx) => {
      const cur = await this.mustGet(tx, id, true);
      if (cur.status !== 'PENDING_APPROVAL') throw conflict(`workspace ${id} is ${cur.status}, not waiting for approval`);
      assertMove(cur.status, 'REJECTED');
      const { rows } = await tx.query<WorkspaceRow>(
        `UPDATE workspaces SET status = 'REJECTED', error = $2, updated_at = now() WHERE id = $1 RETURNING *`,
        [id, `rejected by an admin${reason ? `: ${reason}` : ''}`],
      );
      const r = rows[0] as WorkspaceRow;
      await appendEvent(tx, {
        kind: 'workspace.rejected',
        actor,
        reason: reason ? `rejected by ${actor}: ${reason}` : `rejected by ${actor}`,
        workspaceId: id,
        changes: changesOf({ status: cur.status, error: cur.error }, { status: r.status, error: r.error }),
        data: { reason: reason ?? null },
      });
      await notifyWorkspace(tx, id);
      return r;
    });
    return toWorkspace(row);
  }

  private async newestProjectImage(tx: Tx, project: string, arch: string): Promise<string | undefined> {
    const { rows } = await tx.query<{ ref: string }>(
      `SELECT ref FROM (SELECT ref, created_at FROM host_images WHERE project = $1 AND arch = $2
                        UNION ALL
                        SELECT ref, created_at FROM registry_images WHERE project = $1 AND arch = $2) i
        ORDER BY created_at DESC NULLS LAST, ref DESC LIMIT 1`,
      [project, arch],
    );
    return rows[0]?.ref;
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

  private async mustGet(db: Db | Tx, id: string, forUpdate = false): Promise<WorkspaceRow> {
    const row = UUID.test(id) ? await getWorkspace(db, id, forUpdate) : undefined;
    if (!row) throw notFound('workspace', id, 'list your workspaces with `a4c ws list`');
    return row;
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
      const cur = await this.mustGet(tx, id, true);
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
   * Resolves once the workspace is settled (RUNNING, STOPPED, DELETED, FAILED) or the
   * time is up, and returns it as it is then. Woken by the change feed; a slow poll
   * covers a feed that reconnected and missed a notification.
   */
  async waitSettled(id: string, seconds: number): Promise<Workspace> {
    const settled = (w: Workspace) => SETTLED_STATUSES.includes(w.status);
    let ws = await this.get(id);
    if (seconds <= 0 || settled(ws)) return ws;
    const deadline = Date.now() + seconds * 1000;
    return await new Promise<Workspace>((resolve) => {
      let checking = false;
      let again = false;
      const finish = (w: Workspace) => {
        this.feed.off('workspace', onChange);
        this.feed.off('reconnected', check);
        clearInterval(poll);
        clearTimeout(timer);
        resolve(w);
      };
      const check = () => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        this.get(id).then(
          (w) => {
            ws = w;
            checking = false;
            if (settled(w)) finish(w);
            else if (again) {
              again = false;
              check();
            }
          },
          () => {
            checking = false;
          },
        );
      };
      const onChange = (changed: string) => {
        if (changed === id) check();
      };
      this.feed.on('workspace', onChange);
      this.feed.on('reconnected', check);
      const poll = setInterval(check, 2000);
      const timer = setTimeout(() => finish(ws), Math.max(0, deadline - Date.now()));
      check();
    });
  }

  /**
   * An agent's report about one of its workspaces, on the agent plane's pool (db). Reports about another host's
   * workspace, or made while acting on a revision older than the workspace's last
   * change, are ignored: they describe a past the user has already moved on from.
   */
  async applyReport(db: Db, hostId: string, report: StatusReport, live?: SessionGuard): Promise<void> {
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
        if (report.step && report.step !== cur.current_step) {
          await tx.query('UPDATE workspaces SET current_step = $2 WHERE id = $1', [cur.id, report.step.slice(0, 32)]);
        }
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
      await tx.query(
        `UPDATE workspaces SET status = $2, container_id = $3, failed_step = $4, error = $5, desired_revision = $6, updated_at = now()
          WHERE id = $1`,
        [cur.id, update.status, fields.container_id, fields.failed_step, fields.error, revision],
      );
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
    if (changedHost) this.hostChanged(hostId);
    if (creation) this.observe.workspaceCreated(creation.result, creation.seconds);
    if (changed) this.log.debug({ workspaceId: report.workspaceId, hostId, phase: report.phase }, 'workspace status applied');
  }

  /**
   * The host converged to `revision`: workspaces being deleted whose removal that
   * revision carried are gone from it.
   */
  async applyAck(db: Db, hostId: string, revision: number, live?: SessionGuard): Promise<void> {
    const ids = await inTx(db, async (tx) => {
      await live?.(tx);
      // An agent acks only revisions it was sent: a higher one is forged or confused.
      const current = await hostRevision(tx, hostId);
      if (revision > current) throw new AckRefused(hostId, revision, current);
      // Lock order everywhere: workspace rows, then their host row.
      const { rows } = await tx.query<{ id: string; container_id: string | null }>(
        `WITH gone AS (SELECT id, container_id FROM workspaces
                        WHERE host_id = $1 AND status = 'DELETING' AND desired_revision <= $2 FOR UPDATE)
         UPDATE workspaces w SET status = 'DELETED', container_id = NULL, updated_at = now()
           FROM gone WHERE w.id = gone.id RETURNING w.id, gone.container_id`,
        [hostId, revision],
      );
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
      await tx.query('UPDATE hosts SET applied_revision = GREATEST(applied_revision, $2) WHERE id = $1 AND applied_revision < $2', [hostId, revision]);
      return rows.map((r) => r.id);
    });
    if (ids.length) this.log.info({ hostId, revision, workspaces: ids }, 'workspaces deleted');
  }
}

/** An ack for a revision the host was never sent. */
export class AckRefused extends Error {
  constructor(hostId: string, revision: number, current: number) {
    super(`an ack for revision ${revision} of host ${hostId} was refused: its current revision is ${current}`);
  }
}

/** The event of each status a user's command moves a workspace to. */
const TRANSITION_KINDS = {
  STOPPING: 'workspace.stopping',
  STARTING: 'workspace.starting',
  DELETING: 'workspace.deleting',
  DELETED: 'workspace.deleted',
} as const satisfies Partial<Record<WorkspaceStatus, EventKind>>;

/** The event of each status an agent's report moves a workspace to. */
const REPORT_KINDS = {
  RUNNING: 'workspace.running',
  STOPPED: 'workspace.stopped',
  FAILED: 'workspace.failed',
} as const satisfies Partial<Record<WorkspaceStatus, EventKind>>;

/** What to suggest for a workspace that can only be retried or deleted. */
function retryOrDelete(s: WorkspaceStatus, id: string): string | undefined {
  if (s === 'FAILED') return 'retry or delete it';
  if (s === 'LOST') return `its host is gone: recreate it on another host (a4c ws retry ${id}), or delete it (a4c ws rm ${id})`;
  return undefined;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A DNS label from a workspace name and user id: lowercase, dashes, at most 63 characters. */
function dnsLabel(s: string): string {
  const label = s.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '');
  return label.slice(0, 63).replace(/-$/, '') || 'workspace';
}
