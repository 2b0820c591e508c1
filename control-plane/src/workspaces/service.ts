import { randomUUID } from 'node:crypto';
import {
  conflict,
  invalidArgument,
  notFound,
  type Arch,
  type Logger,
  type Tier,
  type Workspace,
  type WorkspaceStatus,
} from '@a4c/common';
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
import { bumpRevision } from '../store/hosts.js';
import { getWorkspace, listWorkspacesOfUser, toWorkspace, viewWorkspace, type WorkspaceRow } from '../store/workspaces.js';
import { assertMove, takesCompute } from './states.js';
import { waitSettled } from './wait-settled.js';

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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A DNS label from a workspace name and user id: lowercase, dashes, at most 63 characters. */
function dnsLabel(s: string): string {
  const label = s.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '');
  return label.slice(0, 63).replace(/-$/, '') || 'workspace';
}
