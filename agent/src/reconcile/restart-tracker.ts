import type { Clock } from '../clock.js';

export interface RestartPolicy {
  /** Restarts of a workspace that exits by itself before it is FAILED. */
  maxRestarts: number;
  /** First restart delay; doubles with each restart. */
  backoffMs: number;
  /** Exits further apart than this do not add up: the count starts again. */
  windowMs: number;
}

/** Crashes further apart than this do not add up (Nomad's restart `interval`). */
export const CRASH_WINDOW_MS = 10 * 60_000;

/**
 * What to do about a container that stopped without being asked to.
 * newExit: this exit was seen for the first time now (report it once).
 */
export type RestartDecision =
  /** No restarts left: the workspace has failed with this exit. `used` restarts were made. */
  | { kind: 'fail'; newExit: boolean; used: number }
  /** Restart number `restart` is due in waitMs (delayMs in all, as announced when the exit was new). */
  | { kind: 'wait'; newExit: boolean; restart: number; delayMs: number; waitMs: number }
  /** Restart number `restart` is due now: call restarting(), then start the container. */
  | { kind: 'restart'; newExit: boolean; restart: number; delayMs: number };

/**
 * One workspace's restart policy (Nomad's taskrunner/restarts): bounded restarts with
 * doubling delays, counted within a window, on an injected clock. Pure logic: it decides,
 * the runner acts.
 */
export class RestartTracker {
  private count = 0;
  private lastAt = 0;
  /** The exit this tracker has seen (Docker's FinishedAt), so one exit counts once. */
  private finishedAt: string | undefined;
  private nextStartAt = 0;
  private delayMs = 0;

  constructor(
    private readonly policy: RestartPolicy,
    private readonly clock: Clock,
  ) {}

  /** Restarts used in the current window. */
  get used(): number {
    return this.count;
  }

  /** The container exited by itself; finishedAt identifies the exit (the same exit may be observed many times). */
  exited(finishedAt: string): RestartDecision {
    const now = this.clock.now();
    if (this.finishedAt !== undefined && now - this.lastAt > this.policy.windowMs) this.reset();
    let newExit = false;
    if (this.finishedAt !== finishedAt) {
      newExit = true;
      this.finishedAt = finishedAt;
      this.lastAt = now;
      if (this.count < this.policy.maxRestarts) {
        this.delayMs = this.policy.backoffMs * 2 ** this.count;
        this.nextStartAt = now + this.delayMs;
      }
    }
    if (this.count >= this.policy.maxRestarts) return { kind: 'fail', newExit, used: this.count };
    const restart = this.count + 1;
    if (now < this.nextStartAt) return { kind: 'wait', newExit, restart, delayMs: this.delayMs, waitMs: this.nextStartAt - now };
    return { kind: 'restart', newExit, restart, delayMs: this.delayMs };
  }

  /**
   * A restart is being made. It counts even if starting fails (an engine going down
   * stops every container first): the next try waits the next, longer delay, and the
   * workspace fails only once the restarts are used up.
   */
  restarting(): void {
    this.count++;
    this.delayMs = this.policy.backoffMs * 2 ** this.count;
    this.nextStartAt = this.clock.now() + this.delayMs;
  }

  /** A fresh container (created, or started on request): past exits no longer count. */
  reset(): void {
    this.count = 0;
    this.lastAt = 0;
    this.finishedAt = undefined;
    this.nextStartAt = 0;
    this.delayMs = 0;
  }
}
