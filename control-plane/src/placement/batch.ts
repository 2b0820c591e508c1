import { A4cError, conflict, type Tier } from '@a4c/common';
import type { Clock } from '../clock.js';
import type { QuotaLimits } from '../config.js';
import { CHANNEL_HOST, CHANNEL_WORKSPACE } from '../events/notify.js';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import { exceeded, rateLimited } from '../quotas/quotas.js';
import type { Tx } from '../store/db.js';
import { changesOf } from '../store/events.js';
import {
  appendEvents,
  bumpRevisions,
  insertWorkspaces,
  lockCandidateHosts,
  lockUsers,
  newestProjectImages,
  notifyMany,
  readUserQuotas,
  takenNames,
  volumeHosts,
  writeCreationRates,
  type BulkEvent,
  type CandidateHost,
  type NewWorkspace,
} from '../store/placement-batch.js';
import type { WorkspaceRow } from '../store/workspaces.js';
import { explainNoHost, type PlacementPolicy } from './placement.js';

/** One create waiting in the placement queue: everything the single create path knows before its transaction. */
export interface PlacementRequest {
  id: string;
  userId: string;
  name: string;
  projectName: string;
  arch: string;
  tier: Tier;
  image: string | undefined;
  changeNumber: string | null;
  hostname: string;
  /** undefined: the tier's; null or 0: never. */
  autostopAfterSeconds: number | null | undefined;
  actor: string;
  /** Date.now() after which contention with other placements is answered UNAVAILABLE. */
  patientUntil: number;
}

export type Outcome = { row: WorkspaceRow } | { error: Error } | { retry: true };

export interface BatchRules {
  policy: PlacementPolicy;
  defaultImage: string;
  quota: QuotaLimits;
  createRate: { perMinute: number; burst: number };
  failedGrace: { seconds: number; clock: Clock };
  observe?: Observer | undefined;
}

interface HostState {
  c: CandidateHost;
  /** Placement order, as the candidates query orders: disk, memory, workspaces, id. */
  workspaces: number;
}

interface Group {
  demand: { arch: string; image: string; memoryMb: number; millicpus: number; diskMb: number; tier: string };
  /** Hosts locked for this demand, in the order they were locked. */
  hosts: string[];
  /** No more hosts to lock: the verdict for every further request of the group. */
  exhausted?: A4cError | 'contention';
  /** Requests of the group not yet decided: how many hosts the next lock may need. */
  left: number;
  nextLimit: number;
}

const key = (...parts: string[]) => parts.join('\u0000');

/**
 * Places a batch of creates in the caller's transaction with one statement per table,
 * deciding each request in arrival order exactly as the single create path would if
 * they ran one after another: its name, its user's quota (counting the batch's
 * earlier creates of that user), its user's creation rate, then a host. A request
 * whose own checks fail gets its own error and takes nothing; the others go on.
 *
 * Hosts are locked (FOR UPDATE SKIP LOCKED, capacity in the WHERE) a few at a time as
 * the batch fills them, and their free capacity is then tracked here: a host locked by
 * this transaction cannot change under it, so the arithmetic is exact, and the
 * reservation the insert's statement trigger adds is the same sum. A request that
 * finds every fitting host locked by another placement (another replica) is returned
 * as `retry` for the next batch, until its patience runs out.
 */
export async function placeBatch(tx: Tx, reqs: PlacementRequest[], rules: BatchRules): Promise<Outcome[]> {
  const out: (Outcome | undefined)[] = reqs.map(() => undefined);
  const observe = rules.observe ?? NO_OBSERVER;
  const users = [...new Set(reqs.map((r) => r.userId))];
  await lockUsers(tx, users);
  const quotaRows = await readUserQuotas(tx, users, new Date(rules.failedGrace.clock.now().getTime() - rules.failedGrace.seconds * 1000));
  const quota = new Map(
    quotaRows.map((q) => [
      q.id,
      {
        maxWorkspaces: q.u_ws ?? q.t_ws ?? rules.quota.maxWorkspaces,
        maxDiskGb: q.u_disk ?? q.t_disk ?? rules.quota.maxDiskGb,
        workspaces: q.workspaces,
        diskGb: q.disk_gb,
        ahead: q.ahead,
        took: false,
      },
    ]),
  );
  const taken = await takenNames(
    tx,
    reqs.map((r) => r.userId),
    reqs.map((r) => r.name),
  );
  const unresolved = reqs.filter((r) => r.image === undefined);
  const pairs = [...new Map(unresolved.map((r) => [key(r.projectName, r.arch), r])).values()];
  const images = pairs.length
    ? await newestProjectImages(
        tx,
        pairs.map((r) => r.projectName),
        pairs.map((r) => r.arch),
      )
    : new Map<string, string>();
  const imageOf = (r: PlacementRequest) => r.image ?? images.get(key(r.projectName, r.arch)) ?? rules.defaultImage;

  const placing = reqs.filter((r) => !r.tier.requiresApproval);
  const volumes = new Map<string, string[]>();
  if (placing.length) {
    const vs = await volumeHosts(
      tx,
      placing.map((r) => r.userId),
      placing.map((r) => r.projectName),
    );
    for (const v of vs) volumes.set(key(v.user_id, v.project), [...(volumes.get(key(v.user_id, v.project)) ?? []), v.host_id]);
  }

  const hosts = new Map<string, HostState>();
  const groups = new Map<string, Group>();
  for (const r of placing) {
    const demand = { arch: r.arch, image: imageOf(r), memoryMb: r.tier.memoryMb, millicpus: Math.round(r.tier.cpus * 1000), diskMb: Math.round(r.tier.diskGb * 1024), tier: r.tier.name };
    const k = key(demand.arch, demand.image, String(demand.memoryMb), String(demand.millicpus), String(demand.diskMb));
    const g = groups.get(k) ?? { demand, hosts: [], left: 0, nextLimit: 4 };
    g.left++;
    groups.set(k, g);
  }
  const groupOf = (r: PlacementRequest) =>
    groups.get(key(r.arch, imageOf(r), String(r.tier.memoryMb), String(Math.round(r.tier.cpus * 1000)), String(Math.round(r.tier.diskGb * 1024)))) as Group;
  const fits = (h: HostState, d: Group['demand']) => h.c.free_memory_mb >= d.memoryMb && h.c.free_millicpus >= d.millicpus && h.c.free_disk_mb >= d.diskMb;
  const before = (a: HostState, b: HostState) =>
    a.c.disk_percent !== b.c.disk_percent
      ? a.c.disk_percent < b.c.disk_percent
      : a.c.memory_percent !== b.c.memory_percent
        ? a.c.memory_percent < b.c.memory_percent
        : a.workspaces !== b.workspaces
          ? a.workspaces < b.workspaces
          : a.c.id < b.c.id;
  const hold = (rows: CandidateHost[]): string[] => {
    for (const c of rows) if (!hosts.has(c.id)) hosts.set(c.id, { c, workspaces: c.reserved_workspaces });
    return rows.map((c) => c.id);
  };
  const best = (ids: string[], d: Group['demand']): HostState | undefined => {
    let pick: HostState | undefined;
    for (const id of ids) {
      const h = hosts.get(id) as HostState;
      if (fits(h, d) && (!pick || before(h, pick))) pick = h;
    }
    return pick;
  };

  // The hosts holding the users' volumes (their files) come first for their creates:
  // locked up front, one statement per demand, not one per create (a batch of returning
  // users made hundreds of these statements). Those that do not fit or that another
  // placement holds are not asked for again in this batch.
  const wanted = new Map<Group, Set<string>>();
  for (const r of placing) {
    const mine = volumes.get(key(r.userId, r.projectName));
    if (!mine) continue;
    const g = groupOf(r);
    wanted.set(g, new Set([...(wanted.get(g) ?? []), ...mine]));
  }
  for (const [g, ids] of wanted) {
    const unheld = [...ids].filter((id) => !hosts.has(id));
    if (unheld.length) hold(await lockCandidateHosts(tx, g.demand, rules.policy, unheld.length, { only: unheld }));
  }

  async function chooseHost(r: PlacementRequest, g: Group): Promise<HostState | A4cError | 'contention'> {
    const mine = volumes.get(key(r.userId, r.projectName));
    if (mine?.length) {
      const h = best(mine.filter((id) => hosts.has(id)), g.demand);
      if (h) return h;
    }
    for (;;) {
      const h = best(g.hosts, g.demand);
      if (h) return h;
      if (g.exhausted) return g.exhausted;
      // Lock more hosts: the next ones in placement order that fit and no one holds.
      const limit = Math.min(Math.max(g.left, 1), g.nextLimit);
      g.nextLimit *= 2;
      const fresh = await lockCandidateHosts(tx, g.demand, rules.policy, limit, { except: g.hosts });
      if (!fresh.length) {
        // Every host held here that fits on paper is full with this batch's own placements.
        g.exhausted = (await explainNoHost(tx, { ...g.demand, cpus: g.demand.millicpus / 1000, diskGb: g.demand.diskMb / 1024 }, rules.policy, [...hosts.keys()])) ?? 'contention';
        return g.exhausted;
      }
      g.hosts.push(...hold(fresh));
    }
  }

  const { perMinute, burst } = rules.createRate;
  const interval = perMinute > 0 ? 60 / perMinute : 0;
  const tolerance = (burst - 1) * interval;
  const seen = new Set<string>();
  const placedOn = new Map<number, string>();
  const now = Date.now();
  for (const [i, r] of reqs.entries()) {
    const nameKey = key(r.userId, r.name);
    if (taken.has(nameKey) || seen.has(nameKey)) {
      out[i] = { error: conflict(`user ${r.userId} already has a workspace named ${JSON.stringify(r.name)}`, 'choose another name, or delete the existing workspace first') };
      continue;
    }
    const q = quota.get(r.userId);
    if (!q) throw new Error(`user ${r.userId} was not locked`);
    if (q.workspaces + 1 > q.maxWorkspaces) {
      out[i] = { error: exceeded(r.userId, 'maxWorkspaces', q.workspaces, q.maxWorkspaces, 'workspaces', 'delete a workspace you no longer use (a4c ws rm ID)') };
      continue;
    }
    if (q.diskGb + r.tier.diskGb > q.maxDiskGb) {
      out[i] = {
        error: exceeded(r.userId, 'maxDiskGb', q.diskGb, q.maxDiskGb, 'GB of workspace disk', `choose a smaller tier or delete a workspace; this one needs ${r.tier.diskGb} GB`),
      };
      continue;
    }
    if (perMinute > 0 && q.ahead > tolerance + 1e-3) {
      out[i] = { error: rateLimited(r.userId, perMinute, burst, Math.ceil(q.ahead - tolerance)) };
      continue;
    }
    if (!r.tier.requiresApproval) {
      const g = groupOf(r);
      const h = await chooseHost(r, g);
      g.left--;
      if (h === 'contention') {
        if (now > r.patientUntil) {
          observe.placement('busy');
          out[i] = {
            error: new A4cError('UNAVAILABLE', `every ${r.arch} host with room is being placed on by other requests right now`, { suggestion: 'retry in a moment; nothing was created' }),
          };
        } else {
          observe.placementConflict();
          observe.placementRetry();
          out[i] = { retry: true };
        }
        continue;
      }
      if (h instanceof A4cError) {
        observe.placement('no_capacity');
        out[i] = { error: h };
        continue;
      }
      h.c.free_memory_mb -= g.demand.memoryMb;
      h.c.free_millicpus -= g.demand.millicpus;
      h.c.free_disk_mb -= g.demand.diskMb;
      h.workspaces++;
      placedOn.set(i, h.c.id);
    }
    seen.add(nameKey);
    q.workspaces += 1;
    q.diskGb += r.tier.diskGb;
    if (perMinute > 0) {
      q.ahead = Math.max(q.ahead, 0) + interval;
      q.took = true;
    }
  }

  const accepted = reqs.map((r, i) => ({ r, i })).filter(({ i }) => out[i] === undefined);
  if (!accepted.length) return out as Outcome[];
  const revisions = await bumpRevisions(tx, [...new Set(placedOn.values())]);
  const rows: NewWorkspace[] = accepted.map(({ r, i }) => {
    const hostId = placedOn.get(i) ?? null;
    return {
      id: r.id,
      userId: r.userId,
      name: r.name,
      projectName: r.projectName,
      arch: r.arch,
      tier: r.tier.name,
      image: imageOf(r),
      changeNumber: r.changeNumber,
      status: hostId ? 'CREATING' : 'PENDING_APPROVAL',
      hostId,
      hostname: r.hostname,
      memoryMb: r.tier.memoryMb,
      cpus: r.tier.cpus,
      diskGb: r.tier.diskGb,
      pidsLimit: r.tier.pidsLimit,
      desiredRevision: hostId ? (revisions.get(hostId) as number) : 0,
      readOnlyRootFs: r.tier.readOnlyRootFs,
      runAsUser: r.tier.user ?? null,
      runAsNonRoot: r.tier.runAsNonRoot,
      autostopAfterSeconds: r.autostopAfterSeconds === undefined ? null : (r.autostopAfterSeconds ?? 0),
    };
  });
  const inserted = new Map((await insertWorkspaces(tx, rows)).map((w) => [w.id, w]));
  const rated = [...quota].filter(([, q]) => q.took);
  await writeCreationRates(
    tx,
    rated.map(([u]) => u),
    rated.map(([, q]) => q.ahead),
  );
  const events: BulkEvent[] = rows.map((w, n) => ({
    kind: w.hostId ? 'workspace.created' : 'workspace.requested',
    actor: (accepted[n] as { r: PlacementRequest }).r.actor,
    reason: w.hostId ? `placed on host ${w.hostId}` : `tier ${w.tier} needs an admin's approval`,
    workspaceId: w.id,
    hostId: w.hostId,
    userId: w.userId,
    changes: changesOf({}, { status: w.status, hostId: w.hostId }),
    data: { name: w.name, projectName: w.projectName, arch: w.arch, tier: w.tier, image: w.image, revision: w.hostId ? w.desiredRevision : null },
  }));
  await appendEvents(tx, events);
  const hostIds = [...revisions.keys()];
  await notifyMany(tx, [...hostIds.map(() => CHANNEL_HOST), ...rows.map(() => CHANNEL_WORKSPACE)], [...hostIds, ...rows.map((w) => w.id)]);
  for (const { r, i } of accepted) {
    const row = inserted.get(r.id);
    out[i] = row ? { row } : { error: new Error(`workspace ${r.id} was not inserted`) };
    if (row?.host_id) observe.placement('placed');
  }
  return out as Outcome[];
}
