import type { Logger } from '@a4c/common';
import { RunState, WorkspacePhase, type DesiredState, type HostEvent, type WorkspaceSpec, type WorkspaceStatus } from '@a4c/proto';
import type { ContainerRuntime, OwnedContainer } from '../runtime/runtime.js';
import type { StateStore } from '../state/store.js';

export type Phase = 'CREATING' | 'RUNNING' | 'STOPPED' | 'ABSENT' | 'FAILED';

const PHASE: Record<Phase, WorkspacePhase> = {
  CREATING: WorkspacePhase.WORKSPACE_PHASE_CREATING,
  RUNNING: WorkspacePhase.WORKSPACE_PHASE_RUNNING,
  STOPPED: WorkspacePhase.WORKSPACE_PHASE_STOPPED,
  ABSENT: WorkspacePhase.WORKSPACE_PHASE_ABSENT,
  FAILED: WorkspacePhase.WORKSPACE_PHASE_FAILED,
};

export interface Observed {
  workspaceId: string;
  phase: Phase;
  containerId: string;
  step: string;
  error: string;
  exitCode: number;
  oomKilled: boolean;
  specRevision: number;
  at: string;
}

export interface ReconcilerSink {
  /** Sends a status report upstream; false if there is no stream to send it on. */
  report(status: WorkspaceStatus): boolean;
  /** The host converged to this revision. */
  converged(revision: number): void;
  /** Something on-call should know (orphan removed, container vanished, exited, restarted). */
  event(e: HostEvent): void;
}

export interface ReconcilerOptions {
  hostId: string;
  parallelism: number;
  stopTimeoutSeconds: number;
  /** Restarts of a workspace that exits by itself before it is reported FAILED. */
  maxRestarts: number;
  /** First restart delay; doubles with each restart. */
  restartBackoffMs: number;
  /** Told each pass's duration (metrics). */
  observePass?: (seconds: number) => void;
}

/** Crashes further apart than this do not add up: the count starts again. */
const CRASH_WINDOW_MS = 10 * 60_000;

interface CrashRecord {
  count: number;
  lastAt: number;
  /** The exit this record has seen (Docker's FinishedAt), so one exit counts once. */
  finishedAt: string;
  nextStartAt: number;
}

export interface ReconcilerMetrics {
  passes: number;
  passErrors: number;
  orphansRemoved: number;
  vanishedRecreated: number;
  restarts: number;
  lastPassSeconds: number;
}

interface RecentError {
  at: string;
  workspaceId?: string;
  message: string;
}

/**
 * Converges the host to the desired state, level-triggered: each pass looks at every
 * container this host owns and every workspace it must have, and acts on the
 * difference. Passes run one at a time; requests during a pass coalesce into one more.
 *
 * Never acts on ignorance: containers outside the desired set are removed only when
 * that set came from the control plane during this process's life. After a restart
 * the agent adopts what runs until it hears from the control plane.
 */
export class Reconciler {
  private desired: DesiredState | undefined;
  private authoritative = false;
  private started: Record<string, number> = {};
  private readonly observed = new Map<string, Observed>();
  private readonly sent = new Map<string, string>();
  private running: Promise<void> | undefined;
  private again = false;
  private readonly recent: RecentError[] = [];
  private readonly recentEvents: HostEvent[] = [];
  private readonly crashes = new Map<string, CrashRecord>();
  private wakeTimer: NodeJS.Timeout | undefined;
  readonly metrics: ReconcilerMetrics = { passes: 0, passErrors: 0, orphansRemoved: 0, vanishedRecreated: 0, restarts: 0, lastPassSeconds: 0 };
  appliedRevision = 0;
  lastPassAt: string | undefined;
  lastPassMs = 0;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly store: StateStore,
    private readonly sink: ReconcilerSink,
    private readonly opts: ReconcilerOptions,
    private readonly log: Logger,
  ) {}

  async load(): Promise<void> {
    const s = await this.store.load();
    this.desired = s.desired;
    this.started = s.started;
    this.appliedRevision = 0;
  }

  get receivedRevision(): number {
    return this.desired?.revision ?? 0;
  }

  /** A desired state from the control plane: authoritative, persisted, then applied. */
  async setDesired(ds: DesiredState): Promise<void> {
    this.desired = ds;
    this.authoritative = true;
    await this.persist();
    this.requestPass();
  }

  /** A new stream: everything is reported again on it. */
  resetReports(): void {
    this.sent.clear();
  }

  requestPass(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Resolves when no pass is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      const t0 = performance.now();
      try {
        await this.pass();
      } catch (e) {
        this.metrics.passErrors++;
        this.remember(undefined, `reconcile pass failed: ${(e as Error).message}`);
      }
      this.lastPassMs = performance.now() - t0;
      this.metrics.passes++;
      this.metrics.lastPassSeconds = this.lastPassMs / 1000;
      this.opts.observePass?.(this.metrics.lastPassSeconds);
      this.lastPassAt = new Date().toISOString();
    } while (this.again);
  }

  private async pass(): Promise<void> {
    const target = this.desired;
    const containers = await this.runtime.listOwned();
    const byWs = new Map<string, OwnedContainer[]>();
    for (const c of containers) byWs.set(c.workspaceId, [...(byWs.get(c.workspaceId) ?? []), c]);
    if (!target) {
      for (const [id, list] of byWs) this.observe(id, this.phaseOfExisting(list[0] as OwnedContainer), list[0]?.id ?? '', 0);
      return;
    }
    let clean = true;
    await forEachLimit(target.workspaces, this.opts.parallelism, async (spec) => {
      try {
        await this.ensure(spec, byWs.get(spec.workspaceId) ?? [], target.revision);
      } catch (e) {
        clean = false;
        this.remember(spec.workspaceId, (e as Error).message);
      }
    });
    const wanted = new Set(target.workspaces.map((w) => w.workspaceId));
    if (this.authoritative) {
      for (const [id, list] of byWs) {
        if (wanted.has(id)) continue;
        for (const c of list) {
          try {
            await this.runtime.remove(c.id);
            this.metrics.orphansRemoved++;
            this.log.info({ workspaceId: id, containerId: c.id }, 'removed container not in the desired state');
            this.hostEvent('orphan_removed', id, c.id, `removed ${c.name}: not in the desired state (revision ${target.revision})`);
          } catch (e) {
            clean = false;
            this.remember(id, `could not remove container ${c.name}: ${(e as Error).message}`);
            continue;
          }
        }
        this.emit(id, { phase: 'ABSENT', containerId: '', specRevision: 0 }, target.revision);
      }
      let forgot = false;
      for (const id of Object.keys(this.started)) {
        if (!wanted.has(id)) {
          delete this.started[id];
          forgot = true;
        }
      }
      for (const id of this.observed.keys()) if (!wanted.has(id) && !byWs.has(id)) this.observed.delete(id);
      for (const id of this.crashes.keys()) if (!wanted.has(id)) this.crashes.delete(id);
      if (forgot) await this.persist();
    }
    if (clean && this.authoritative && this.desired === target) {
      this.appliedRevision = target.revision;
      this.sink.converged(target.revision);
    }
  }

  private phaseOfExisting(c: OwnedContainer): Phase {
    return c.state === 'running' || c.state === 'restarting' ? 'RUNNING' : 'STOPPED';
  }

  /** Brings one workspace to its spec. Workspace-level failures are reported, not thrown. */
  private async ensure(spec: WorkspaceSpec, existing: OwnedContainer[], revision: number): Promise<void> {
    const id = spec.workspaceId;
    const [first, ...duplicates] = existing;
    let c: OwnedContainer | undefined = first;
    for (const d of duplicates) await this.runtime.remove(d.id);
    if (c && c.attempt !== spec.attempt) {
      // Clean before retry: what a failed attempt left is removed, never restarted.
      await this.runtime.remove(c.id);
      this.hostEvent('stale_attempt_removed', id, c.id, `removed ${c.name} of attempt ${c.attempt} before attempt ${spec.attempt}`);
      delete this.started[id];
      this.crashes.delete(id);
      this.observed.delete(id);
      c = undefined;
    }
    const wantRunning = spec.runState !== RunState.RUN_STATE_STOPPED;
    const at = { specRevision: spec.specRevision };

    if (!c) {
      const prev = this.observed.get(id);
      // Failed for this very spec: the control plane will take it out of the set; do not loop.
      if (prev?.phase === 'FAILED' && prev.specRevision === spec.specRevision) return;
      if (prev?.containerId && (prev.phase === 'RUNNING' || prev.phase === 'STOPPED')) {
        // It existed and nobody here removed it: someone ran `docker rm` behind our back.
        this.metrics.vanishedRecreated++;
        this.hostEvent('container_vanished', id, prev.containerId, `container ${prev.containerId.slice(0, 12)} vanished; creating it again`);
      }
      await this.createFor(spec, revision, wantRunning);
      return;
    }

    const isRunning = c.state === 'running' || c.state === 'restarting';
    if (isRunning) {
      if (!wantRunning) {
        await this.runtime.stop(c.id, this.opts.stopTimeoutSeconds);
        this.emit(id, { phase: 'STOPPED', containerId: c.id, ...at }, revision);
        return;
      }
      if (this.started[id] === undefined) {
        this.started[id] = spec.specRevision; // adopted: it runs, so it was started for this spec
        await this.persist();
      }
      this.emit(id, { phase: 'RUNNING', containerId: c.id, ...at }, revision);
      return;
    }

    if (!wantRunning) {
      this.emit(id, { phase: 'STOPPED', containerId: c.id, ...at }, revision);
      return;
    }
    const startedFor = this.started[id];
    if (startedFor === undefined || startedFor < spec.specRevision) {
      // A new request to run it (start after stop, or nothing known about it).
      await this.startFor(spec, c.id, revision);
      return;
    }
    await this.exitedByItself(spec, c, revision);
  }

  /**
   * It was running for this spec and stopped without being asked to. Restart it with
   * doubling delays, at most maxRestarts times within CRASH_WINDOW_MS; after that it
   * has failed, with the last exit's reason.
   */
  private async exitedByItself(spec: WorkspaceSpec, c: OwnedContainer, revision: number): Promise<void> {
    const id = spec.workspaceId;
    const d = await this.runtime.inspect(c.id);
    const exitCode = d?.exitCode ?? 0;
    const oomKilled = d?.oomKilled ?? false;
    const reason = oomKilled
      ? 'out of memory: the workspace reached its tier memory limit and the kernel killed it; choose a larger tier'
      : `the workspace's main process exited with code ${exitCode}${d?.error ? ` (${d.error})` : ''}`;
    const now = Date.now();
    let rec = this.crashes.get(id);
    if (!rec || now - rec.lastAt > CRASH_WINDOW_MS) rec = { count: 0, lastAt: now, finishedAt: '', nextStartAt: 0 };
    if (rec.finishedAt !== (d?.finishedAt ?? '')) {
      // A new exit: count it once, and decide.
      rec = { ...rec, finishedAt: d?.finishedAt ?? '', lastAt: now };
      if (rec.count >= this.opts.maxRestarts) {
        this.crashes.set(id, rec);
        this.hostEvent('container_exited', id, c.id, `${reason}; no restarts left (${rec.count} of ${this.opts.maxRestarts} used)`, exitCode, oomKilled);
        this.emit(id, { phase: 'FAILED', containerId: c.id, step: 'run', error: reason, exitCode, oomKilled, specRevision: spec.specRevision }, revision);
        return;
      }
      const delay = this.opts.restartBackoffMs * 2 ** rec.count;
      rec.nextStartAt = now + delay;
      this.crashes.set(id, rec);
      this.hostEvent('container_exited', id, c.id, `${reason}; restart ${rec.count + 1} of ${this.opts.maxRestarts} in ${delay} ms`, exitCode, oomKilled);
    }
    if (rec.count >= this.opts.maxRestarts) return; // already reported FAILED
    if (now < rec.nextStartAt) {
      this.wakeAt(rec.nextStartAt);
      return;
    }
    rec.count++;
    this.metrics.restarts++;
    // A failed restart is not the workspace's failure: the engine may be going down
    // (dockerd stopping stops every container first). It counts as a used restart and
    // the pass is retried; FAILED comes only when the restarts are used up.
    rec.nextStartAt = Date.now() + this.opts.restartBackoffMs * 2 ** rec.count;
    await this.runtime.start(c.id);
    this.hostEvent('container_restarted', id, c.id, `restarted (${rec.count} of ${this.opts.maxRestarts})`);
    this.emit(id, { phase: 'RUNNING', containerId: c.id, specRevision: spec.specRevision }, revision);
  }

  /** A pass at that time, for a restart whose backoff ends then. */
  private wakeAt(at: number): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => this.requestPass(), Math.max(0, at - Date.now()) + 10);
    this.wakeTimer.unref();
  }

  private async createFor(spec: WorkspaceSpec, revision: number, wantRunning: boolean): Promise<void> {
    const id = spec.workspaceId;
    const at = { specRevision: spec.specRevision };
    this.emit(id, { phase: 'CREATING', step: 'image', ...at }, revision);
    let imageConfig = await this.runtime.inspectImage(spec.image);
    if (!imageConfig) {
      if (!spec.pullFrom) {
        this.fail(id, 'image', `image ${spec.image} is not on host ${this.opts.hostId}; build or pull it there first`, spec, revision);
        return;
      }
      try {
        await this.runtime.pullAs(spec.pullFrom, spec.image);
        this.hostEvent('image_pulled', id, '', `pulled ${spec.pullFrom} as ${spec.image}`);
        imageConfig = await this.runtime.inspectImage(spec.image);
      } catch (e) {
        this.fail(id, 'image', `could not pull ${spec.pullFrom}: ${(e as Error).message}`, spec, revision);
        return;
      }
      if (!imageConfig) {
        this.fail(id, 'image', `image ${spec.image} is still not on host ${this.opts.hostId} after pulling ${spec.pullFrom}`, spec, revision);
        return;
      }
    }
    this.emit(id, { phase: 'CREATING', step: 'create', ...at }, revision);
    let containerId: string;
    try {
      containerId = await this.runtime.create({
        workspaceId: id,
        attempt: spec.attempt,
        userId: spec.userId,
        image: spec.image,
        imageConfig,
        hostname: spec.hostname,
        memoryBytes: spec.resources?.memoryBytes ?? 0,
        cpus: spec.resources?.cpus ?? 0,
        pidsLimit: spec.resources?.pidsLimit ?? 0,
        volume: spec.volume,
        readOnlyRootFs: spec.confinement?.readOnlyRootFs ?? false,
        user: spec.confinement?.user ?? '',
        runAsNonRoot: spec.confinement?.runAsNonRoot ?? false,
      });
    } catch (e) {
      this.fail(id, 'create', `could not create the container: ${(e as Error).message}`, spec, revision);
      return;
    }
    this.crashes.delete(id);
    if (!wantRunning) {
      this.emit(id, { phase: 'STOPPED', containerId, ...at }, revision);
      return;
    }
    await this.startFor(spec, containerId, revision);
  }

  private async startFor(spec: WorkspaceSpec, containerId: string, revision: number): Promise<void> {
    const id = spec.workspaceId;
    this.emit(id, { phase: 'CREATING', step: 'start', containerId, specRevision: spec.specRevision }, revision);
    try {
      await this.runtime.start(containerId);
    } catch (e) {
      this.fail(id, 'start', `could not start the container: ${(e as Error).message}`, spec, revision, containerId);
      return;
    }
    this.emit(id, { phase: 'CREATING', step: 'ready', containerId, specRevision: spec.specRevision }, revision);
    const d = await this.runtime.inspect(containerId);
    if (!d?.running) {
      const why = d?.oomKilled
        ? 'out of memory right after start; choose a larger tier'
        : `the workspace's main process exited with code ${d?.exitCode ?? 'unknown'} right after start${d?.error ? ` (${d.error})` : ''}`;
      this.fail(id, 'ready', why, spec, revision, containerId);
      return;
    }
    this.started[id] = spec.specRevision;
    await this.persist();
    this.emit(id, { phase: 'RUNNING', containerId, specRevision: spec.specRevision }, revision);
  }

  private fail(id: string, step: string, error: string, spec: WorkspaceSpec, revision: number, containerId = ''): void {
    this.remember(id, `${step}: ${error}`);
    this.emit(id, { phase: 'FAILED', step, error, containerId, specRevision: spec.specRevision }, revision);
  }

  private emit(
    workspaceId: string,
    o: Partial<Omit<Observed, 'workspaceId' | 'at'>> & { phase: Phase; specRevision: number },
    revision: number,
  ): void {
    const full: Observed = {
      workspaceId,
      containerId: '',
      step: '',
      error: '',
      exitCode: 0,
      oomKilled: false,
      ...o,
      at: new Date().toISOString(),
    };
    this.observed.set(workspaceId, full);
    const key = `${full.phase}|${full.containerId}|${full.step}|${full.error}|${full.specRevision}`;
    if (this.sent.get(workspaceId) === key) return;
    const sent = this.sink.report({
      workspaceId,
      phase: PHASE[full.phase],
      containerId: full.containerId,
      step: full.step,
      error: full.error,
      exitCode: full.exitCode,
      oomKilled: full.oomKilled,
      revision,
    });
    if (sent) this.sent.set(workspaceId, key);
  }

  private observe(workspaceId: string, phase: Phase, containerId: string, specRevision: number): void {
    this.observed.set(workspaceId, {
      workspaceId,
      phase,
      containerId,
      step: '',
      error: '',
      exitCode: 0,
      oomKilled: false,
      specRevision,
      at: new Date().toISOString(),
    });
  }

  private hostEvent(kind: string, workspaceId: string, containerId: string, message: string, exitCode = 0, oomKilled = false): void {
    const e: HostEvent = { kind, workspaceId, containerId, message, exitCode, oomKilled, atUnixMs: Date.now() };
    this.log.info({ kind, workspaceId, containerId, exitCode, oomKilled }, message);
    this.recentEvents.push(e);
    if (this.recentEvents.length > 50) this.recentEvents.shift();
    this.sink.event(e);
  }

  private remember(workspaceId: string | undefined, message: string): void {
    this.log.warn({ workspaceId, err: message }, 'reconcile error');
    this.recent.push({ at: new Date().toISOString(), ...(workspaceId ? { workspaceId } : {}), message });
    if (this.recent.length > 50) this.recent.shift();
  }

  private persist(): Promise<void> {
    return this.store.save({ desired: this.desired, started: this.started }).catch((e: unknown) => {
      this.remember(undefined, `could not persist state: ${(e as Error).message}`);
    });
  }

  /** Observed workspaces as the Hello reports them. */
  observedStatuses(): WorkspaceStatus[] {
    return [...this.observed.values()].map((o) => ({
      workspaceId: o.workspaceId,
      phase: PHASE[o.phase],
      containerId: o.containerId,
      step: o.step,
      error: o.error,
      exitCode: o.exitCode,
      oomKilled: o.oomKilled,
      revision: this.appliedRevision,
    }));
  }

  snapshot(): {
    authoritative: boolean;
    receivedRevision: number;
    appliedRevision: number;
    lastPassAt: string | undefined;
    lastPassMs: number;
    workspaces: Observed[];
    recentErrors: RecentError[];
    recentEvents: (Omit<HostEvent, 'atUnixMs'> & { at: string })[];
  } {
    return {
      authoritative: this.authoritative,
      receivedRevision: this.receivedRevision,
      appliedRevision: this.appliedRevision,
      lastPassAt: this.lastPassAt,
      lastPassMs: Math.round(this.lastPassMs),
      workspaces: [...this.observed.values()].sort((a, b) => a.workspaceId.localeCompare(b.workspaceId)),
      recentErrors: [...this.recent].reverse().slice(0, 20),
      recentEvents: [...this.recentEvents]
        .reverse()
        .slice(0, 20)
        .map(({ atUnixMs, ...e }) => ({ ...e, at: new Date(atUnixMs).toISOString() })),
    };
  }

  /** Workspaces by observed phase, for /metrics. */
  phases(): Record<Phase, number> {
    const out: Record<Phase, number> = { CREATING: 0, RUNNING: 0, STOPPED: 0, ABSENT: 0, FAILED: 0 };
    for (const o of this.observed.values()) out[o.phase]++;
    return out;
  }

  ownedCount(): number {
    return [...this.observed.values()].filter((o) => o.phase !== 'ABSENT' && o.containerId).length;
  }
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(workers);
}
