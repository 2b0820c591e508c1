import { RunState, type WorkspaceSpec } from '@a4c/proto';
import type { OwnedContainer } from '../runtime/runtime.js';
import { createSpecOf, specKey, type RunnerContext, type RunnerInput } from './context.js';
import { LatestWinsQueue, Superseded } from './latest-queue.js';
import { RestartTracker } from './restart-tracker.js';
import { retryTransient } from './transient.js';

export type { ReconcilerMetrics, RunnerContext, RunnerInput } from './context.js';

/**
 * One workspace's lifecycle on this host (Nomad's task runner): its own queue (latest
 * desired spec wins, see LatestWinsQueue) and its own restart tracker. Runners of
 * different workspaces run concurrently, so one user's slow image pull never holds up
 * another's stop.
 */
export class WorkspaceRunner extends LatestWinsQueue<RunnerInput> {
  private actedAt = 0;
  private list: OwnedContainer[] = [];
  private doing = '';
  readonly restarts: RestartTracker;

  constructor(
    readonly workspaceId: string,
    private readonly cx: RunnerContext,
  ) {
    super(cx.clock);
    this.restarts = new RestartTracker(cx.restart, cx.clock);
  }

  protected keyOf(input: RunnerInput | undefined): string {
    return specKey(input?.spec);
  }

  /** A container list goes with the input only if the one waiting had one too (else the runner lists afresh). */
  protected override merge(next: RunnerInput, waiting: RunnerInput | undefined): RunnerInput {
    return waiting && !waiting.containers ? { ...next, containers: undefined } : next;
  }

  protected override again(input: RunnerInput): RunnerInput {
    return { ...input, containers: undefined };
  }

  protected failed(e: Error): void {
    this.cx.reports.remember(this.workspaceId, e.message);
  }

  protected settled(): void {
    this.doing = '';
    this.cx.settled(this.workspaceId);
  }

  /** The spec it works towards; undefined when it is removing the workspace. */
  get spec(): WorkspaceSpec | undefined {
    return this.latest?.spec;
  }

  /** Whether it was ever told anything about its workspace. */
  get known(): boolean {
    return this.latest !== undefined;
  }

  /** Nothing in hand or waiting, and its last run for exactly this spec went through. */
  settledFor(spec: WorkspaceSpec | undefined): boolean {
    return this.settledOn(specKey(spec));
  }

  /** The workspace's containers as last seen by this runner. */
  containers(): readonly OwnedContainer[] {
    return this.list;
  }

  /** What it is doing now, for /status. */
  describe(): { busy: boolean; doing: string; queued: boolean; restartsUsed: number } {
    return { busy: this.busy, doing: this.doing, queued: this.queued, restartsUsed: this.restarts.used };
  }

  protected async work(input: RunnerInput, signal: AbortSignal): Promise<void> {
    try {
      await this.converge(input, signal);
    } finally {
      this.doing = '';
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
      // Reported once, for the exit that used the last restart. Restarts used up by
      // starts that failed (an engine going down) never fail the workspace by themselves.
      if (!decision.newExit) return;
      this.cx.reports.hostEvent('container_exited', id, c.id, `${reason}; no restarts left (${decision.used} of ${max} used)`, exitCode, oomKilled);
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
    const { runtime, reports, hostId } = this.cx;
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
        () => runtime.create(createSpecOf(spec, config)),
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
