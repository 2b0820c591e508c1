import { randomUUID } from 'node:crypto';
import { conflict, invalidArgument, type Arch, type Logger, type Tier, type Workspace } from '@a4c/common';
import { notifyHost, notifyWorkspace } from '../events/notify.js';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import { PLACEMENT_PATIENCE_MS, reserveHost, type PlacementPolicy } from '../placement/placement.js';
import type { PlacementRequest } from '../placement/batch.js';
import { PlacementQueue, type PlacementQueueOptions } from '../placement/queue.js';
import type { Quotas } from '../quotas/quotas.js';
import { setAutostopOverride } from '../store/autostop.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { newestProjectImages } from '../store/placement-batch.js';
import { insertWorkspace, markApproved, markRejected, markRetried } from '../store/workspace-placing.js';
import { toWorkspace, type WorkspaceRow } from '../store/workspaces.js';
import { mustGetWorkspace } from './lookup.js';
import { assertMove } from './states.js';

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

export interface PlacingOptions {
  tiers: Map<string, Tier>;
  defaultImage: string;
  hostnameDomain: string;
  placement: PlacementPolicy;
  /** Creates placed in batches, one transaction each (placement/queue.ts); absent: one transaction per create. */
  batch?: PlacementQueueOptions | undefined;
}

/**
 * Putting workspaces on hosts: creates (one, or many through the placement queue), an
 * admin's approval or rejection of a tier that needs one, and the retry of a FAILED or
 * LOST workspace. Each is one transaction that reserves room, writes the row, appends
 * its event and notifies the other replicas.
 */
export class WorkspacePlacing {
  private readonly queue: PlacementQueue | undefined;

  constructor(
    private readonly db: Db,
    private readonly quotas: Quotas,
    private readonly opts: PlacingOptions,
    private readonly hostChanged: (hostId: string) => void,
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
      let inserted: WorkspaceRow;
      try {
        inserted = await insertWorkspace(tx, {
          id, userId: input.userId, name, projectName: input.projectName, arch: input.arch, tier: tier.name, image,
          changeNumber: input.changeNumber ?? null, status: placed ? 'CREATING' : 'PENDING_APPROVAL', hostId: placed?.hostId ?? null,
          hostname, memoryMb: tier.memoryMb, cpus: tier.cpus, diskGb: tier.diskGb, pidsLimit: tier.pidsLimit,
          desiredRevision: placed?.revision ?? 0, readOnlyRootFs: tier.readOnlyRootFs, runAsUser: tier.user ?? null, runAsNonRoot: tier.runAsNonRoot,
        });
      } catch (e) {
        if ((e as { code?: string }).code === '23505') {
          throw conflict(`user ${input.userId} already has a workspace named ${JSON.stringify(name)}`, 'choose another name, or delete the existing workspace first');
        }
        throw e;
      }
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
      const cur = await mustGetWorkspace(tx, id, true);
      if (cur.status !== 'PENDING_APPROVAL') throw conflict(`workspace ${id} is ${cur.status}, not waiting for approval`);
      assertMove(cur.status, 'CREATING');
      const placed = await reserveHost(
        tx,
        { arch: cur.arch, image: cur.image, memoryMb: cur.memory_mb, cpus: cur.cpus, diskGb: cur.disk_gb, tier: cur.tier },
        this.opts.placement,
        this.observe,
      );
      const row = await markApproved(tx, id, placed.hostId, placed.revision);
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
      return row;
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
      const cur = await mustGetWorkspace(tx, id, true);
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
      const r = await markRetried(tx, id, placed.hostId, placed.revision);
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
      const cur = await mustGetWorkspace(tx, id, true);
      if (cur.status !== 'PENDING_APPROVAL') throw conflict(`workspace ${id} is ${cur.status}, not waiting for approval`);
      assertMove(cur.status, 'REJECTED');
      const r = await markRejected(tx, id, `rejected by an admin${reason ? `: ${reason}` : ''}`);
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
    return (await newestProjectImages(tx, [project], [arch])).get(`${project}\u0000${arch}`);
  }
}

/** A DNS label from a workspace name and user id: lowercase, dashes, at most 63 characters. */
function dnsLabel(s: string): string {
  const label = s.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/-+/g, '-').replace(/^-|-$/g, '');
  return label.slice(0, 63).replace(/-$/, '') || 'workspace';
}
