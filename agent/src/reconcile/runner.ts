import type { Logger } from '@a4c/common';
import { RunState, WorkspaceSpec } from '@a4c/proto';
import type { Clock } from '../clock.js';
import type { ContainerRuntime, OwnedContainer } from '../runtime/runtime.js';
import type { PersistedHostState } from './persisted.js';
import type { HostReports } from './reports.js';
import { RestartTracker, type RestartPolicy } from './restart-tracker.js';
import type { Slots } from './slots.js';
import { retryTransient, type RetryPolicy } from './transient.js';

export interface ReconcilerMetrics {
  passes: number;
  passErrors: number;
  orphansRemoved: number;
  vanishedRecreated: number;
  restarts: number;
  /** Create or start calls tried again after a transient engine error. */
  transientRetries: number;
  lastPassSeconds: number;
}

/** What a runner is told: its workspace's latest desired spec and, when known, its containers. */
export interface RunnerInput {
  /** undefined: the workspace is not in the authoritative desired set, so its containers go. */
  spec: WorkspaceSpec | undefined;
  /** The desired-state revision this comes from (reports carry it). */
  revision: number;
  /** Containers of this workspace as listed at tick `listedAt`; absent: the runner lists them itself. */
  containers?: { listedAt: number; list: OwnedContainer[] };
}

/** What every runner of a host shares. */
export interface RunnerContext {
  hostId: string;
  runtime: ContainerRuntime;
  clock: Clock;
  reports: HostReports;
  state: PersistedHostState;
  log: Logger;
  stopTimeoutSeconds: number;
  restart: RestartPolicy;
  retry: RetryPolicy;
  /** Pulls, creates, starts and restarts: bounded apart from stops and removals, so neither waits for the other. */
  bringUp: Slots;
  teardown: Slots;
  metrics: ReconcilerMetrics;
  /** A host-wide logical clock: container lists and acts are ordered by it. */
  tick(): number;
  /** Told whenever the runner has nothing left to do. */
  settled(r: WorkspaceRunner): void;
}

/** The work in hand was for a spec that is no longer wanted. */
class Superseded extends Error {
  constructor() {
    super('superseded by a newer desired state');
  }
}

export function specKey(spec: WorkspaceSpec | undefined): string {
  return spec ? JSON.stringify(WorkspaceSpec.toJSON(spec)) : 'absent';
}

/**
 * One workspace's lifecycle on this host (Nomad's task runner): its own queue and its
 * own restart tracker. It works on one thing at a time, and always on the latest desired
 * spec: input arriving while it works replaces whatever was waiting, and a spec that
 * changes aborts the work in hand at its next step (a create waiting for a slot or a
 * retry gives up at once; a call the engine is already running is let finish). Runners
 * of different workspaces run concurrently, so one user's slow image pull never holds
 * up another's stop.
 */
export class WorkspaceRunner {
  private pending: RunnerInput | undefined;
  private current: RunnerInput | undefined;
  private last: RunnerInput | undefined;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private cleanKey: string | undefined;
  private actedAt = 0;
  private list: OwnedContainer[] = [];
  private cancelWake: (() => void) | undefined;
  private readonly tasks: (() => Promise<void>)[] = [];
  private disposed = false;
  private doing = '';
  readonly restarts: RestartTracker;

  constructor(
    readonly workspaceId: string,
    private readonly cx: RunnerContext,
  ) {
    this.restarts = new RestartTracker(cx.restart, cx.clock);
  }

  /** The latest desired state for this workspace; it replaces anything not yet started on. */
  update(input: RunnerInput): void {
    if (this.disposed) return;
    const waiting = this.pending;
    const fresh = input.containers && (!waiting || waiting.containers) ? input.containers : undefined;
    this.pending = { ...input, ...(fresh ? { containers: fresh } : { containers: undefined }) };
    if (this.current && specKey(this.current.spec) !== specKey(input.spec)) this.abort?.abort(new Superseded());
    this.kick();
  }

  /** The spec it works towards; undefined when it is removing the workspace. */
  get spec(): WorkspaceSpec | undefined {
    return (this.pending ?? this.current ?? this.last)?.spec;
  }

  /** Whether it was ever told anything about its workspace. */
  get known(): boolean {
    return (this.pending ?? this.current ?? this.last) !== undefined;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Nothing in hand or waiting, and its last run for exactly this spec went through. */
  settledFor(spec: WorkspaceSpec | undefined): boolean {
    return !this.running && !this.pending && this.tasks.length === 0 && this.cleanKey === specKey(spec);
  }

  /** The workspace's containers as last seen by this runner. */
  containers(): readonly OwnedContainer[] {
    return this.list;
  }

  /** What it is doing now, for /status. */
  describe(): { busy: boolean; doing: string; queued: boolean; restartsUsed: number } {
    return { busy: this.busy, doing: this.doing, queued: this.pending !== undefined, restartsUsed: this.restarts.used };
  }

  /**
   * Runs fn in this runner's queue, between its own steps: nothing else touches the
   * workspace's container meanwhile (moving it, measuring it). The runner converges
   * again afterwards.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.tasks.push(() => fn().then(resolve, reject));
      if (this.last && !this.pending) this.pending = { ...this.last, containers: undefined };
      this.kick();
    });
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stops taking work and gives up waits in hand; a call the engine is running is let finish. */
  dispose(): void {
    this.disposed = true;
    this.pending = undefined;
    this.cancelWake?.();
    this.abort?.abort(new Superseded());
  }

  private kick(): void {
    if (this.running || this.disposed) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if ((this.pending || this.tasks.length) && !this.disposed) this.kick();
      else this.cx.settled(this);
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      const task = this.tasks.shift();
      if (task) {
        this.doing = 'exclusive';
        await task();
        this.doing = '';
        continue;
      }
      const input = this.pending;
      if (!input || this.disposed) return;
      this.pending = undefined;
      this.current = input;
      this.last = input;
      this.cleanKey = undefined;
      this.abort = new AbortController();
      try {
        await this.converge(input, this.abort.signal);
        if (!this.pending) this.cleanKey = specKey(input.spec);
      } catch (e) {
        if (!(e instanceof Superseded)) this.cx.reports.remember(this.workspaceId, (e as Error).message);
      } finally {
        this.current = undefined;
        this.abort = undefined;
        this.doing = '';
      }
    }
  }

  /** The engine changed because of this runner: lists taken before now are stale. */
  private acted(): void {
    this.actedAt = this.cx.tick();
  }

  private check(signal: AbortSignal): void {
    if (signal.aborted) throw signal.reason as Error;
  }

  private async containersOf(input: RunnerInput): Promise<OwnedContainer[]> {
    if (input.containers && input.containers.listedAt > this.actedAt) return input.containers.list;
    this.cx.tick();
    return (await this.cx.runtime.listOwned()).filter((c) => c.workspaceId === this.workspaceId);
  }

  /** Brings the workspace to its spec. Workspace-level failures are reported, not thrown. */
  private async converge(input: RunnerInput, signal: AbortSignal): Promise<void> {
    const id = this.workspaceId;
    const { spec, revision } = input;
    this.list = await this.containersOf(input);
    if (!spec) {
      await this.removeAll(revision, signal);
      return;
    }
    const [first, ...duplicates] = this.list;
    let c: OwnedContainer | undefined = first;
    for (const d of duplicates) {
      await this.cx.runtime.remove(d.id);
      this.acted();
    }
    if (c && c.attempt !== spec.attempt) {
      // Clean before retry: what a failed attempt left is removed, never restarted.
      await this.cx.teardown.run(() => this.cx.runtime.remove((c as OwnedContainer).id), signal);
      this.acted();
      this.cx.reports.hostEvent('stale_attempt_removed', id, c.id, `removed ${c.name} of attempt ${c.attempt} before attempt ${spec.attempt}`);
      await this.cx.state.forget(id);
      this.restarts.reset();
      this.cx.reports.forget(id);
      c = undefined;
    }
    const wantRunning = spec.runState !== RunState.RUN_STATE_STOPPED;
    const at = { specRevision: spec.specRevision };

    if (!c) {
      const prev = this.cx.reports.get(id);
      // Failed for this very spec: the control plane will take it out of the set; do not loop.
      if (prev?.phase === 'FAILED' && prev.specRevision === spec.specRevision) return;
      if (prev?.containerId && (prev.phase === 'RUNNING' || prev.phase === 'STOPPED')) {
        // It existed and nobody here removed it: someone ran `docker rm` behind our back.
        this.cx.metrics.vanishedRecreated++;
        this.cx.reports.hostEvent('container_vanished', id, prev.containerId, `container ${prev.containerId.slice(0, 12)} vanished; creating it again`);
      }
      this.doing = 'waiting for a slot to create';
      await this.cx.bringUp.run(() => this.createFor(spec, revision, wantRunning, signal), signal);
      return;
    }

    const isRunning = c.state === 'running' || c.state === 'restarting';
    if (isRunning) {
      if (!wantRunning) {
        this.doing = 'stopping';
        const containerId = c.id;
        await this.cx.teardown.run(() => this.cx.runtime.stop(containerId, this.cx.stopTimeoutSeconds), signal);
        this.acted();
        this.cx.reports.emit(id, { phase: 'STOPPED', containerId, ...at }, revision);
        return;
      }
      // Adopted: it runs, so it was started for this spec.
      if (this.cx.state.startedFor(id) === undefined) await this.cx.state.markStarted(id, spec.specRevision);
      this.cx.reports.emit(id, { phase: 'RUNNING', containerId: c.id, ...at }, revision);
      return;
    }

    if (!wantRunning) {
      this.cx.reports.emit(id, { phase: 'STOPPED', containerId: c.id, ...at }, revision);
      return;
    }
    const startedFor = this.cx.state.startedFor(id);
    if (startedFor === undefined || startedFor < spec.specRevision) {
      // A new request to run it (start after stop, or nothing known about it).
      const containerId = c.id;
      this.doing = 'waiting for a slot to start';
      await this.cx.bringUp.run(() => this.startFor(spec, containerId, revision, signal), signal);
      return;
    }
    await this.exitedByItself(spec, c, revision, signal);
  }

  /** Not in the authoritative desired set: its containers go (orphans), then it is forgotten. */
  private async removeAll(revision: number, signal: AbortSignal): Promise<void> {
    const id = this.workspaceId;
    const failures: string[] = [];
    for (const c of this.list) {
      this.doing = 'removing';
      try {
        await this.cx.teardown.run(() => this.cx.runtime.remove(c.id), signal);
      } catch (e) {
        if (e instanceof Superseded) throw e;
        failures.push(`could not remove container ${c.name}: ${(e as Error).message}`);
        continue;
      }
      this.acted();
      this.cx.metrics.orphansRemoved++;
      this.cx.log.info({ workspaceId: id, containerId: c.id }, 'removed container not in the desired state');
      this.cx.reports.hostEvent('orphan_removed', id, c.id, `removed ${c.name}: not in the desired state (revision ${revision})`);
    }
    if (failures.length) throw new Error(failures.join('; '));
    if (this.list.length) this.cx.reports.emit(id, { phase: 'ABSENT', containerId: '', specRevision: 0 }, revision);
    else this.cx.reports.forget(id);
    this.list = [];
    this.restarts.reset();
    await this.cx.state.forget(id);
  }

  /**
   * It was running for this spec and stopped without being asked to: restart it as the
   * restart tracker says; once the restarts are used up it has failed, with the last exit's reason.
   */
  private async exitedByItself(spec: WorkspaceSpec, c: OwnedContainer, revision: number, signal: AbortSignal): Promise<void> {
    const id = spec.workspaceId;
    const d = await this.cx.runtime.inspect(c.id);
    const exitCode = d?.exitCode ?? 0;
    const oomKilled = d?.oomKilled ?? false;
    const reason = oomKilled
      ? 'out of memory: the workspace reached its tier memory limit and the kernel killed it; choose a larger tier'
      : `the workspace's main process exited with code ${exitCode}${d?.error ? ` (${d.error})` : ''}`;
    const max = this.cx.restart.maxRestarts;
    const decision = this.restarts.exited(d?.finishedAt ?? '');
    if (decision.kind === 'fail') {
      if (decision.newExit) this.cx.reports.hostEvent('container_exited', id, c.id, `${reason}; no restarts left (${decision.used} of ${max} used)`, exitCode, oomKilled);
      this.cx.reports.emit(id, { phase: 'FAILED', containerId: c.id, step: 'run', error: reason, exitCode, oomKilled, specRevision: spec.specRevision }, revision);
      return;
    }
    if (decision.newExit) {
      this.cx.reports.hostEvent('container_exited', id, c.id, `${reason}; restart ${decision.restart} of ${max} in ${decision.delayMs} ms`, exitCode, oomKilled);
    }
    if (decision.kind === 'wait') {
      this.wakeIn(decision.waitMs);
      return;
    }
    this.doing = 'waiting for a slot to restart';
    await this.cx.bringUp.run(async () => {
      this.restarts.restarting();
      this.cx.metrics.restarts++;
      this.doing = 'restarting';
      // A failed restart is not the workspace's failure (the engine may be going down);
      // it used up a restart, and the next pass tries again after the next delay.
      await this.cx.runtime.start(c.id);
      this.acted();
    }, signal);
    this.cx.reports.hostEvent('container_restarted', id, c.id, `restarted (${decision.restart} of ${max})`);
    this.cx.reports.emit(id, { phase: 'RUNNING', containerId: c.id, specRevision: spec.specRevision }, revision);
  }

  /** Looks again at that time (a restart whose backoff ends then), with a fresh container list. */
  private wakeIn(ms: number): void {
    this.cancelWake?.();
    this.cancelWake = this.cx.clock.after(ms, () => {
      this.cancelWake = undefined;
      const latest = this.pending ?? this.last;
      if (latest) this.update({ ...latest, containers: undefined });
    });
  }

  private onRetry(step: string, signal: AbortSignal) {
    return (n: { attempt: number; attempts: number; delayMs: number; error: Error }) => {
      this.check(signal);
      this.cx.metrics.transientRetries++;
      this.doing = `retrying ${step} in ${n.delayMs} ms`;
      this.cx.reports.hostEvent(
        'create_retried',
        this.workspaceId,
        '',
        `${step} failed with a transient engine error (${n.error.message.trim()}); try ${n.attempt + 1} of ${n.attempts} in ${n.delayMs} ms`,
      );
    };
  }

  private async createFor(spec: WorkspaceSpec, revision: number, wantRunning: boolean, signal: AbortSignal): Promise<void> {
    const id = spec.workspaceId;
    const { runtime, reports, hostId } = { runtime: this.cx.runtime, reports: this.cx.reports, hostId: this.cx.hostId };
    const at = { specRevision: spec.specRevision };
    this.doing = 'image';
    reports.emit(id, { phase: 'CREATING', step: 'image', ...at }, revision);
    let imageConfig = await runtime.inspectImage(spec.image);
    if (!imageConfig) {
      if (!spec.pullFrom) {
        this.fail(id, 'image', `image ${spec.image} is not on host ${hostId}; build or pull it there first`, spec, revision);
        return;
      }
      this.doing = `pulling ${spec.pullFrom}`;
      try {
        await runtime.pullAs(spec.pullFrom, spec.image);
        reports.hostEvent('image_pulled', id, '', `pulled ${spec.pullFrom} as ${spec.image}`);
        imageConfig = await runtime.inspectImage(spec.image);
      } catch (e) {
        this.fail(id, 'image', `could not pull ${spec.pullFrom}: ${(e as Error).message}`, spec, revision);
        return;
      }
      if (!imageConfig) {
        this.fail(id, 'image', `image ${spec.image} is still not on host ${hostId} after pulling ${spec.pullFrom}`, spec, revision);
        return;
      }
    }
    this.check(signal);
    this.doing = 'create';
    reports.emit(id, { phase: 'CREATING', step: 'create', ...at }, revision);
    const config = imageConfig;
    let containerId: string;
    try {
      containerId = await retryTransient(
        () =>
          runtime.create({
            workspaceId: id,
            attempt: spec.attempt,
            userId: spec.userId,
            image: spec.image,
            imageConfig: config,
            hostname: spec.hostname,
            memoryBytes: spec.resources?.memoryBytes ?? 0,
            cpus: spec.resources?.cpus ?? 0,
            pidsLimit: spec.resources?.pidsLimit ?? 0,
            volume: spec.volume,
            readOnlyRootFs: spec.confinement?.readOnlyRootFs ?? false,
            user: spec.confinement?.user ?? '',
            runAsNonRoot: spec.confinement?.runAsNonRoot ?? false,
          }),
        this.cx.retry,
        this.cx.clock,
        this.onRetry('create', signal),
        signal,
      );
    } catch (e) {
      if (e instanceof Superseded) throw e;
      this.fail(id, 'create', `could not create the container: ${(e as Error).message}`, spec, revision);
      return;
    }
    this.acted();
    this.restarts.reset();
    this.check(signal);
    if (!wantRunning) {
      reports.emit(id, { phase: 'STOPPED', containerId, ...at }, revision);
      return;
    }
    await this.startFor(spec, containerId, revision, signal);
  }

  private async startFor(spec: WorkspaceSpec, containerId: string, revision: number, signal: AbortSignal): Promise<void> {
    const id = spec.workspaceId;
    this.doing = 'start';
    this.cx.reports.emit(id, { phase: 'CREATING', step: 'start', containerId, specRevision: spec.specRevision }, revision);
    try {
      await retryTransient(() => this.cx.runtime.start(containerId), this.cx.retry, this.cx.clock, this.onRetry('start', signal), signal);
    } catch (e) {
      if (e instanceof Superseded) throw e;
      this.fail(id, 'start', `could not start the container: ${(e as Error).message}`, spec, revision, containerId);
      return;
    } finally {
      this.acted();
    }
    this.cx.reports.emit(id, { phase: 'CREATING', step: 'ready', containerId, specRevision: spec.specRevision }, revision);
    const d = await this.cx.runtime.inspect(containerId);
    if (!d?.running) {
      const why = d?.oomKilled
        ? 'out of memory right after start; choose a larger tier'
        : `the workspace's main process exited with code ${d?.exitCode ?? 'unknown'} right after start${d?.error ? ` (${d.error})` : ''}`;
      this.fail(id, 'ready', why, spec, revision, containerId);
      return;
    }
    await this.cx.state.markStarted(id, spec.specRevision);
    this.cx.reports.emit(id, { phase: 'RUNNING', containerId, specRevision: spec.specRevision }, revision);
  }

  private fail(id: string, step: string, error: string, spec: WorkspaceSpec, revision: number, containerId = ''): void {
    this.cx.reports.remember(id, `${step}: ${error}`);
    this.cx.reports.emit(id, { phase: 'FAILED', step, error, containerId, specRevision: spec.specRevision }, revision);
  }
}
