import type { Clock } from '../clock.js';

/** The work in hand was for an input that is no longer wanted. */
export class Superseded extends Error {
  constructor() {
    super('superseded by a newer desired state');
  }
}

/**
 * One worker with a queue of length one: it works on one input at a time, and input
 * arriving meanwhile replaces whatever was waiting (latest wins: a runner busy creating
 * gets "stop" next, never a backlog of stale specs). An input with a different key
 * aborts the work in hand: its signal fires, and the work gives up at its next step.
 * Exclusive tasks run between inputs.
 */
export abstract class LatestWinsQueue<I> {
  private pending: I | undefined;
  private current: I | undefined;
  private last: I | undefined;
  private running: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private cleanKey: string | undefined;
  private cancelWake: (() => void) | undefined;
  private readonly tasks: (() => Promise<void>)[] = [];
  private disposed = false;

  constructor(protected readonly clock: Clock) {}

  /** Does the work for one input; throws what went wrong (it is retried with the next input). */
  protected abstract work(input: I, signal: AbortSignal): Promise<void>;
  /** Inputs with the same key ask for the same outcome. */
  protected abstract keyOf(input: I | undefined): string;
  /** Combines a new input with the one still waiting (e.g. to keep the fresher half of each). */
  protected merge(next: I, _waiting: I | undefined): I {
    return next;
  }
  /** A failed run (not a superseded one). */
  protected abstract failed(e: Error): void;
  /** Nothing in hand or waiting. */
  protected abstract settled(): void;

  update(input: I): void {
    if (this.disposed) return;
    this.pending = this.merge(input, this.pending);
    if (this.current !== undefined && this.keyOf(this.current) !== this.keyOf(input)) this.abort?.abort(new Superseded());
    this.kick();
  }

  /** The latest input: waiting, in hand, or done. */
  protected get latest(): I | undefined {
    return this.pending ?? this.current ?? this.last;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  get queued(): boolean {
    return this.pending !== undefined;
  }

  /** Nothing in hand or waiting, and the last run, for an input with this key, went through. */
  protected settledOn(key: string): boolean {
    return !this.running && this.pending === undefined && this.tasks.length === 0 && this.cleanKey === key;
  }

  /** Runs fn alone, between inputs; the latest input is worked on again afterwards. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.tasks.push(() => fn().then(resolve, reject));
      if (this.last !== undefined && this.pending === undefined) this.pending = this.again(this.last);
      this.kick();
    });
  }

  /** The input to work on again for a wake-up or after an exclusive task. */
  protected again(input: I): I {
    return input;
  }

  /** Works on the latest input again in ms (a backoff that ends then). */
  protected wakeIn(ms: number): void {
    this.cancelWake?.();
    this.cancelWake = this.clock.after(ms, () => {
      this.cancelWake = undefined;
      const latest = this.latest;
      if (latest !== undefined) this.update(this.again(latest));
    });
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Takes no more work and gives up the waits in hand; a call already running is let finish. */
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
      if ((this.pending !== undefined || this.tasks.length) && !this.disposed) this.kick();
      else this.settled();
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      const task = this.tasks.shift();
      if (task) {
        await task();
        continue;
      }
      const input = this.pending;
      if (input === undefined || this.disposed) return;
      this.pending = undefined;
      this.current = input;
      this.last = input;
      this.cleanKey = undefined;
      this.abort = new AbortController();
      try {
        await this.work(input, this.abort.signal);
        if (this.pending === undefined) this.cleanKey = this.keyOf(input);
      } catch (e) {
        if (!(e instanceof Superseded)) this.failed(e as Error);
      } finally {
        this.current = undefined;
        this.abort = undefined;
      }
    }
  }
}
