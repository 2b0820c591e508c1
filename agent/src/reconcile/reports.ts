import type { HostEventKind, Logger } from '@a4c/common';
import { WorkspacePhase, type HostEvent, type WorkspaceStatus } from '@a4c/proto';
import type { Clock } from '../clock.js';

export type Phase = 'CREATING' | 'RUNNING' | 'STOPPED' | 'ABSENT' | 'FAILED';

const PHASE: Record<Phase, WorkspacePhase> = {
  CREATING: WorkspacePhase.WORKSPACE_PHASE_CREATING,
  RUNNING: WorkspacePhase.WORKSPACE_PHASE_RUNNING,
  STOPPED: WorkspacePhase.WORKSPACE_PHASE_STOPPED,
  ABSENT: WorkspacePhase.WORKSPACE_PHASE_ABSENT,
  FAILED: WorkspacePhase.WORKSPACE_PHASE_FAILED,
};

/** A workspace as this agent last saw it. */
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
  /** Something on-call should know (orphan removed, container vanished, exited, restarted, retried). */
  event(e: HostEvent): void;
}

export interface RecentError {
  at: string;
  workspaceId?: string;
  message: string;
}

export type ObservedChange = Partial<Omit<Observed, 'workspaceId' | 'at'>> & { phase: Phase; specRevision: number };

/**
 * What the host's runners saw and did, told upward: each workspace's observed phase
 * (reported once per change on a stream), host events, and the recent errors and
 * events /status shows. Shared by the coordinator and every runner.
 */
export class HostReports {
  private readonly observed = new Map<string, Observed>();
  private readonly sent = new Map<string, string>();
  private readonly recent: RecentError[] = [];
  private readonly recentEvents: HostEvent[] = [];
  private readonly listeners = new Set<(o: Observed) => void>();

  constructor(
    private readonly sink: ReconcilerSink,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Records a workspace's phase and reports it upstream if it changed since the last report on this stream. */
  emit(workspaceId: string, o: ObservedChange, revision: number): void {
    const full = this.record({ workspaceId, containerId: '', step: '', error: '', exitCode: 0, oomKilled: false, ...o, at: this.iso() });
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

  /** Records what runs without reporting it (adopted before any desired state). */
  observe(workspaceId: string, phase: Phase, containerId: string, specRevision: number): void {
    this.record({ workspaceId, phase, containerId, step: '', error: '', exitCode: 0, oomKilled: false, specRevision, at: this.iso() });
  }

  private record(o: Observed): Observed {
    const before = this.observed.get(o.workspaceId);
    this.observed.set(o.workspaceId, o);
    if (before?.phase !== o.phase || before.containerId !== o.containerId) for (const l of this.listeners) l(o);
    return o;
  }

  get(workspaceId: string): Observed | undefined {
    return this.observed.get(workspaceId);
  }

  forget(workspaceId: string): void {
    this.observed.delete(workspaceId);
  }

  ids(): string[] {
    return [...this.observed.keys()];
  }

  all(): Observed[] {
    return [...this.observed.values()].sort((a, b) => a.workspaceId.localeCompare(b.workspaceId));
  }

  /** Calls fn whenever a workspace's phase or container changes; returns the way to stop. */
  subscribe(fn: (o: Observed) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A new stream: everything is reported again on it. */
  resetSent(): void {
    this.sent.clear();
  }

  hostEvent(kind: HostEventKind, workspaceId: string, containerId: string, message: string, exitCode = 0, oomKilled = false): void {
    const e: HostEvent = { kind, workspaceId, containerId, message, exitCode, oomKilled, atUnixMs: this.clock.now() };
    this.log.info({ kind, workspaceId, containerId, exitCode, oomKilled }, message);
    this.recentEvents.push(e);
    if (this.recentEvents.length > 50) this.recentEvents.shift();
    this.sink.event(e);
  }

  remember(workspaceId: string | undefined, message: string): void {
    this.log.warn({ workspaceId, err: message }, 'reconcile error');
    this.recent.push({ at: this.iso(), ...(workspaceId ? { workspaceId } : {}), message });
    if (this.recent.length > 50) this.recent.shift();
  }

  /** Observed workspaces as the Hello reports them. */
  statuses(revision: number): WorkspaceStatus[] {
    return [...this.observed.values()].map((o) => ({
      workspaceId: o.workspaceId,
      phase: PHASE[o.phase],
      containerId: o.containerId,
      step: o.step,
      error: o.error,
      exitCode: o.exitCode,
      oomKilled: o.oomKilled,
      revision,
    }));
  }

  recentErrors(): RecentError[] {
    return [...this.recent].reverse().slice(0, 20);
  }

  events(): (Omit<HostEvent, 'atUnixMs'> & { at: string })[] {
    return [...this.recentEvents]
      .reverse()
      .slice(0, 20)
      .map(({ atUnixMs, ...e }) => ({ ...e, at: new Date(atUnixMs).toISOString() }));
  }

  phases(): Record<Phase, number> {
    const out: Record<Phase, number> = { CREATING: 0, RUNNING: 0, STOPPED: 0, ABSENT: 0, FAILED: 0 };
    for (const o of this.observed.values()) out[o.phase]++;
    return out;
  }

  ownedCount(): number {
    return [...this.observed.values()].filter((o) => o.phase !== 'ABSENT' && o.containerId).length;
  }

  private iso(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
