import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '@a4c/common';
import type { AgentMessage, BuildAssignment, BuildCancel } from '@a4c/proto';
import { writeFileAtomic } from '../state/store.js';
import { dockerBuild } from './docker-build.js';

export interface BuilderOptions {
  dockerHost: string | undefined;
  slots: number;
  pollMs: number;
  /** How often a build in flight reports progress even without new output (its lease heartbeat). */
  heartbeatMs: number;
  baseImage: string;
  syncCommand: string;
  stateDir: string;
  registry: string | undefined;
}

interface InFlight {
  assignment: BuildAssignment;
  abort: AbortController;
}

const TAIL = 50;

/**
 * Runs the builds this host claims, up to `slots` at once. Builds in flight are kept in
 * <stateDir>/builds.json: an agent restarted mid-build finishes them and reports with
 * the claim it was given; the control plane discards that result if the claim was
 * requeued meanwhile, so finishing late is always harmless.
 */
export class Builder {
  private readonly inFlight = new Map<string, InFlight>();
  /** Results not yet delivered (no stream at the time); sent on the next stream. */
  private readonly pending: AgentMessage[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writes: Promise<void> = Promise.resolve();
  completed = 0;
  failed = 0;

  constructor(
    private readonly opts: BuilderOptions,
    private readonly send: (m: AgentMessage) => boolean,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    for (const a of await this.loadPersisted()) {
      this.log.info({ buildId: a.buildId, claimId: a.claimId }, 'finishing a build claimed before a restart');
      this.run(a);
    }
    this.timer = setInterval(() => this.poll(), this.opts.pollMs);
    this.timer.unref();
  }

  get busy(): number {
    return this.inFlight.size;
  }

  /** A new stream: deliver what waited, and ask for work. */
  onNewStream(): void {
    while (this.pending.length) {
      const m = this.pending[0] as AgentMessage;
      if (!this.send(m)) return;
      this.pending.shift();
    }
    this.poll();
  }

  poll(): void {
    if (this.opts.slots > this.inFlight.size) this.send({ payload: { $case: 'buildPoll', value: { slots: this.opts.slots } } });
  }

  onAssignment(a: BuildAssignment): void {
    const f = this.inFlight.get(a.buildId);
    if (f) {
      // Re-claimed by this same host (its lease lapsed while the stream was down, say):
      // the build runs on here under the new claim; reports carry it from now on, and a
      // cancel for the old claim is ignored.
      if (f.assignment.claimId !== a.claimId) {
        this.log.info({ buildId: a.buildId, oldClaimId: f.assignment.claimId, claimId: a.claimId }, 'build re-claimed by this host: adopting the new claim');
        f.assignment = a;
        void this.persist();
      }
      return;
    }
    this.run(a);
  }

  onCancel(c: BuildCancel): void {
    const f = this.inFlight.get(c.buildId);
    if (f && f.assignment.claimId === c.claimId) {
      this.log.warn({ buildId: c.buildId, reason: c.reason }, 'build cancelled by the control plane');
      f.abort.abort();
    }
  }

  private run(a: BuildAssignment): void {
    const abort = new AbortController();
    const flight: InFlight = { assignment: a, abort };
    this.inFlight.set(a.buildId, flight);
    void this.persist();
    /** The claim held now: a re-claim by this host replaces it mid-build. */
    const claimId = () => flight.assignment.claimId;
    const log = this.log.child({ buildId: a.buildId });
    const tail: string[] = [];
    let batch: string[] = [];
    let percent = 0;
    const flush = () => {
      const lines = batch;
      batch = [];
      this.send({ payload: { $case: 'buildProgress', value: { buildId: a.buildId, claimId: claimId(), logLines: lines, percent } } });
    };
    const beat = setInterval(flush, Math.min(this.opts.heartbeatMs, Math.max(100, a.leaseMs / 3)));
    let linesTimer: NodeJS.Timeout | undefined;
    log.info({ imageTag: a.imageTag }, 'build started');
    dockerBuild(
      this.opts.dockerHost,
      {
        buildId: a.buildId,
        project: a.project,
        arch: a.arch,
        changeNumber: a.changeNumber,
        imageTag: a.imageTag,
        baseImage: this.opts.baseImage,
        syncCommand: this.opts.syncCommand,
        registry: this.opts.registry,
      },
      (line, p) => {
        if (p !== undefined) percent = p;
        tail.push(line);
        if (tail.length > TAIL) tail.shift();
        batch.push(line);
        linesTimer ??= setTimeout(() => {
          linesTimer = undefined;
          flush();
        }, 300);
      },
      abort.signal,
    ).then(
      ({ imageId, pushedRef }) => {
        this.completed++;
        log.info({ imageTag: a.imageTag, imageId, pushedRef }, 'build completed');
        this.finish(flight.assignment, { success: true, imageId, error: '', pushedRef }, tail);
      },
      (e: unknown) => {
        this.failed++;
        log.warn({ err: (e as Error).message }, 'build failed');
        this.finish(flight.assignment, { success: false, imageId: '', error: (e as Error).message, pushedRef: '' }, tail);
      },
    ).finally(() => {
      clearInterval(beat);
      clearTimeout(linesTimer);
    });
  }

  private finish(a: BuildAssignment, r: { success: boolean; imageId: string; error: string; pushedRef: string }, tail: string[]): void {
    this.inFlight.delete(a.buildId);
    const msg: AgentMessage = {
      payload: {
        $case: 'buildResult',
        value: {
          buildId: a.buildId,
          claimId: a.claimId,
          success: r.success,
          imageTag: a.imageTag,
          imageId: r.imageId,
          error: r.error,
          logLines: tail,
          pushedRef: r.pushedRef,
        },
      },
    };
    if (!this.send(msg)) this.pending.push(msg);
    void this.persist();
    this.poll();
  }

  snapshot(): { slots: number; busy: number; completed: number; failed: number; inFlight: { buildId: string; imageTag: string }[] } {
    return {
      slots: this.opts.slots,
      busy: this.inFlight.size,
      completed: this.completed,
      failed: this.failed,
      inFlight: [...this.inFlight.values()].map((f) => ({ buildId: f.assignment.buildId, imageTag: f.assignment.imageTag })),
    };
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private file(): string {
    return path.join(this.opts.stateDir, 'builds.json');
  }

  private async loadPersisted(): Promise<BuildAssignment[]> {
    try {
      return JSON.parse(await readFile(this.file(), 'utf8')) as BuildAssignment[];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  /** Atomic and serialised, like the desired state (state/store.ts). */
  private persist(): Promise<void> {
    const text = JSON.stringify([...this.inFlight.values()].map((f) => f.assignment));
    this.writes = this.writes.then(() => writeFileAtomic(this.file(), text))
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not persist builds in flight'));
    return this.writes;
  }
}
