import type { HostEventKind, Logger } from '@a4c/common';
import type { DesiredState, WorkspaceSpec, WorkspaceStatus } from '@a4c/proto';
import { systemClock, type Clock } from '../clock.js';
import type { ContainerRuntime, OwnedContainer } from '../runtime/runtime.js';
import type { StateStore } from '../state/store.js';
import { PersistedHostState } from './persisted.js';
import { HostReports, type Observed, type Phase, type ReconcilerSink, type RecentError } from './reports.js';
import { CRASH_WINDOW_MS } from './restart-tracker.js';
import { WorkspaceRunner, type ReconcilerMetrics, type RunnerContext } from './runner.js';
import { Slots } from './slots.js';

export type { Observed, Phase, ReconcilerSink, ReconcilerMetrics };

export interface ReconcilerOptions {
  hostId: string;
  /** Workspaces brought up (pull, create, start) at once; as many again may be stopped or removed at once. */
  parallelism: number;
  stopTimeoutSeconds: number;
  /** Restarts of a workspace that exits by itself before it is reported FAILED. */
  maxRestarts: number;
  /** First restart delay; doubles with each restart. */
  restartBackoffMs: number;
  /** Tries of a create or start that fails with a transient engine error, in all (default 4). */
  transientAttempts?: number;
  /** First delay before trying again; doubles each time (default 1000). */
  transientBackoffMs?: number;
  /** Told each pass's duration (metrics). */
  observePass?: (seconds: number) => void;
}

/**
 * The host's reconciler: the coordinator of one runner per workspace (Nomad's client and
 * its alloc runners). It keeps the contract with the control plane: the level-triggered
 * desired set with its revision, persisted; each pass lists the containers this host
 * owns and hands every workspace its latest spec (or, for a container nobody wants, the
 * order to remove it) and its containers; the runners act concurrently, each on its own
 * workspace; once every runner has settled on the current set and nothing outside it
 * remains, the revision is acknowledged. Passes run one at a time and are cheap (one
 * listing, no engine work); requests during a pass coalesce into one more.
 *
 * Never acts on ignorance: containers outside the desired set are removed only when
 * that set came from the control plane during this process's life. After a restart
 * the agent adopts what runs until it hears from the control plane.
 */
export class Reconciler {
  private authoritative = false;
  private readonly runners = new Map<string, WorkspaceRunner>();
  private readonly state: PersistedHostState;
  private readonly reports: HostReports;
  private readonly cx: RunnerContext;
  private ticks = 0;
  /** The desired state the last successful pass dispatched. */
  private dispatched: DesiredState | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  readonly metrics: ReconcilerMetrics = { passes: 0, passErrors: 0, orphansRemoved: 0, vanishedRecreated: 0, restarts: 0, transientRetries: 0, lastPassSeconds: 0 };
  appliedRevision = 0;
  lastPassAt: string | undefined;
  lastPassMs = 0;

  constructor(
    private readonly runtime: ContainerRuntime,
    store: StateStore,
    private readonly sink: ReconcilerSink,
    private readonly opts: ReconcilerOptions,
    log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    this.reports = new HostReports(sink, clock, log);
    this.state = new PersistedHostState(store, (m) => this.reports.remember(undefined, m));
    this.cx = {
      hostId: opts.hostId,
      runtime,
      clock,
      reports: this.reports,
      state: this.state,
      log,
      stopTimeoutSeconds: opts.stopTimeoutSeconds,
      restart: { maxRestarts: opts.maxRestarts, backoffMs: opts.restartBackoffMs, windowMs: CRASH_WINDOW_MS },
      retry: { attempts: opts.transientAttempts ?? 4, backoffMs: opts.transientBackoffMs ?? 1000 },
      bringUp: new Slots(opts.parallelism),
      teardown: new Slots(opts.parallelism),
      metrics: this.metrics,
      tick: () => ++this.ticks,
      settled: (id) => this.onSettled(id),
    };
  }

  async load(): Promise<void> {
    await this.state.load();
    this.appliedRevision = 0;
  }

  get receivedRevision(): number {
    return this.state.desired?.revision ?? 0;
  }

  /** A desired state from the control plane: authoritative, persisted, then applied. */
  async setDesired(ds: DesiredState): Promise<void> {
    this.authoritative = true;
    await this.state.setDesired(ds);
    this.requestPass();
  }

  /** A new stream: everything is reported again on it. */
  resetReports(): void {
    this.reports.resetSent();
  }

  requestPass(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves when no pass runs and no runner works (tests). */
  async idle(): Promise<void> {
    for (;;) {
      while (this.running) await this.running;
      const busy = [...this.runners.values()].filter((r) => r.busy);
      if (!busy.length) return;
      await Promise.all(busy.map((r) => r.idle()));
    }
  }

  /** Shutdown: no new work, waits in hand given up, engine calls in flight let finish. Containers are left as they are. */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.running) await this.running;
    for (const r of this.runners.values()) r.dispose();
    await Promise.all([...this.runners.values()].map((r) => r.idle()));
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      const t0 = performance.now();
      try {
        await this.pass();
      } catch (e) {
        this.metrics.passErrors++;
        this.reports.remember(undefined, `reconcile pass failed: ${(e as Error).message}`);
      }
      this.lastPassMs = performance.now() - t0;
      this.metrics.passes++;
      this.metrics.lastPassSeconds = this.lastPassMs / 1000;
      this.opts.observePass?.(this.metrics.lastPassSeconds);
      this.lastPassAt = new Date(this.clock.now()).toISOString();
    } while (this.again && !this.stopped);
  }

  private async pass(): Promise<void> {
    const target = this.state.desired;
    const authoritative = this.authoritative;
    const listedAt = this.cx.tick();
    const containers = await this.runtime.listOwned();
    if (this.stopped) return;
    const byWs = new Map<string, OwnedContainer[]>();
    for (const c of containers) byWs.set(c.workspaceId, [...(byWs.get(c.workspaceId) ?? []), c]);
    const of = (id: string) => ({ listedAt, list: byWs.get(id) ?? [] });
    if (!target) {
      for (const [id, list] of byWs) this.adopt(id, list);
      return;
    }
    const wanted = new Set(target.workspaces.map((w) => w.workspaceId));
    for (const spec of target.workspaces) this.runnerFor(spec.workspaceId).update({ spec, revision: target.revision, containers: of(spec.workspaceId) });
    for (const [id, list] of byWs) {
      if (wanted.has(id)) continue;
      if (authoritative) this.runnerFor(id).update({ spec: undefined, revision: target.revision, containers: of(id) });
      else if (!this.runners.has(id)) this.adopt(id, list);
    }
    if (authoritative) {
      // Runners whose workspace left the set and whose containers are gone already: they
      // forget it and end. Then what this host no longer holds is forgotten.
      for (const [id, r] of this.runners) if (!wanted.has(id) && !byWs.has(id)) r.update({ spec: undefined, revision: target.revision, containers: of(id) });
      for (const id of this.reports.ids()) if (!wanted.has(id) && !byWs.has(id) && !this.runners.has(id)) this.reports.forget(id);
      await this.state.keepOnly(wanted);
    }
    this.dispatched = target;
    this.checkConverged();
  }

  /** What runs while no desired state says anything about it: observed, untouched. */
  private adopt(id: string, list: OwnedContainer[]): void {
    const c = list[0];
    if (!c) return;
    this.reports.observe(id, c.state === 'running' || c.state === 'restarting' ? 'RUNNING' : 'STOPPED', c.id, 0);
  }

  private runnerFor(id: string): WorkspaceRunner {
    let r = this.runners.get(id);
    if (!r) {
      r = new WorkspaceRunner(id, this.cx);
      this.runners.set(id, r);
    }
    return r;
  }

  private onSettled(workspaceId: string): void {
    // A runner that removed its workspace for good, or that only ever ran an exclusive task, ends here.
    const r = this.runners.get(workspaceId);
    if (r && !r.busy && ((r.spec === undefined && r.settledFor(undefined)) || !r.known)) {
      r.dispose();
      this.runners.delete(workspaceId);
    }
    this.checkConverged();
  }

  /**
   * Acknowledges the current revision once the last pass dispatched it, every runner of
   * the set has settled on its spec, and no runner is still removing a workspace outside it.
   */
  private checkConverged(): void {
    const target = this.state.desired;
    if (!target || !this.authoritative || this.dispatched !== target || this.stopped) return;
    const wanted = new Set<string>();
    for (const spec of target.workspaces) {
      wanted.add(spec.workspaceId);
      if (!this.runners.get(spec.workspaceId)?.settledFor(spec)) return;
    }
    for (const id of this.runners.keys()) if (!wanted.has(id)) return;
    this.appliedRevision = target.revision;
    this.sink.converged(target.revision);
  }

  /** A host-wide event (not about one workspace), e.g. the Docker Engine stopped answering. */
  hostEvent(kind: HostEventKind, message: string): void {
    this.reports.hostEvent(kind, '', '', message);
  }

  /** Observed workspaces as the Hello reports them. */
  observedStatuses(): WorkspaceStatus[] {
    return this.reports.statuses(this.appliedRevision);
  }

  /** Every workspace as last observed (phase, container), for modules that need the host's picture. */
  workspaces(): Observed[] {
    return this.reports.all();
  }

  /** Calls fn whenever a workspace's phase or container changes; returns the way to stop. */
  onChange(fn: (o: Observed) => void): () => void {
    return this.reports.subscribe(fn);
  }

  /**
   * Whether an image reference is wanted by a workspace of this host: in the desired set
   * (running or stopped), or being worked on by a runner. Image GC must keep it.
   */
  isImageInUse(ref: string): boolean {
    return this.imagesInUse().has(ref);
  }

  imagesInUse(): Set<string> {
    const out = new Set<string>();
    const add = (s: WorkspaceSpec | undefined) => {
      if (!s) return;
      out.add(s.image);
      if (s.pullFrom) out.add(s.pullFrom);
    };
    for (const s of this.state.desired?.workspaces ?? []) add(s);
    for (const r of this.runners.values()) add(r.spec);
    return out;
  }

  /**
   * Runs fn in the workspace's runner queue, serialised with its own work (a move or a
   * measurement that must not race a create or restart); the runner converges again after.
   */
  exclusive<T>(workspaceId: string, fn: () => Promise<T>): Promise<T> {
    return this.runnerFor(workspaceId).exclusive(fn);
  }

  snapshot(): {
    authoritative: boolean;
    receivedRevision: number;
    appliedRevision: number;
    lastPassAt: string | undefined;
    lastPassMs: number;
    workspaces: (Observed & { runner?: ReturnType<WorkspaceRunner['describe']> })[];
    recentErrors: RecentError[];
    recentEvents: ReturnType<HostReports['events']>;
  } {
    return {
      authoritative: this.authoritative,
      receivedRevision: this.receivedRevision,
      appliedRevision: this.appliedRevision,
      lastPassAt: this.lastPassAt,
      lastPassMs: Math.round(this.lastPassMs),
      workspaces: this.reports.all().map((o) => {
        const r = this.runners.get(o.workspaceId);
        return r ? { ...o, runner: r.describe() } : o;
      }),
      recentErrors: this.reports.recentErrors(),
      recentEvents: this.reports.events(),
    };
  }

  /** Workspaces by observed phase, for /metrics. */
  phases(): Record<Phase, number> {
    return this.reports.phases();
  }

  ownedCount(): number {
    return this.reports.ownedCount();
  }
}
