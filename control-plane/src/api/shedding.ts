import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type Koa from 'koa';
import type pg from 'pg';
import { A4cError, type Logger } from '@a4c/common';
import type { Ctx, State } from './http.js';

export interface LoadSheddingOptions {
  /**
   * CoDel's target: a request waiting longer than this for a database connection is
   * queueing, not being served; 0: never shed on queueing.
   */
  targetMs: number;
  /** CoDel's interval: how long the queueing must last, unbroken, before shedding starts. */
  intervalMs: number;
  /** Shed while the event loop's median delay over the last interval exceeds this; 0: never. */
  maxEventLoopLagMs: number;
}

/**
 * CoDel (Nichols and Jacobson, "Controlling Queue Delay") applied to the database pool:
 * overload is a *standing* queue, one whose sojourn time (how long an admitted request
 * waits for a connection) stays above the target for a whole interval. A burst that
 * drains, however deep, never sheds: its sojourn falls below the target as soon as the
 * queue empties. Waits are observed as they end, and the oldest wait still pending is
 * observed at every admission, so a queue that stopped moving altogether is seen too.
 */
export class SojournMonitor {
  private readonly pending = new Map<number, number>();
  private next = 0;
  private firstAboveAt: number | undefined;
  private dropping = false;
  private lastSojournMs = 0;

  constructor(
    private readonly targetMs: number,
    private readonly intervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A wait begins; call the returned function when it ends. */
  begin(): () => void {
    const id = this.next++;
    const at = this.now();
    this.pending.set(id, at);
    return () => {
      if (this.pending.delete(id)) this.observe(this.now() - at);
    };
  }

  /** Whether the queue has stood above the target for an interval, judged now. */
  standing(): boolean {
    const oldest = this.pending.values().next();
    if (oldest.done) this.observe(0);
    // A wait still pending has been above the target since it began + target: the
    // interval counts from then, not from whenever somebody first looked.
    else this.observe(this.now() - oldest.value, oldest.value + this.targetMs);
    return this.dropping;
  }

  get sojournMs(): number {
    return this.lastSojournMs;
  }

  private observe(sojournMs: number, aboveSince = this.now()): void {
    this.lastSojournMs = sojournMs;
    const now = this.now();
    if (this.targetMs <= 0 || sojournMs < this.targetMs) {
      this.firstAboveAt = undefined;
      this.dropping = false;
    } else if (this.firstAboveAt === undefined) {
      this.firstAboveAt = aboveSince + this.intervalMs;
    }
    if (this.firstAboveAt !== undefined && now >= this.firstAboveAt) this.dropping = true;
  }
}

/** Times every connection the pool hands out (pool.query goes through connect too). */
export function watchPool(pool: pg.Pool, monitor: SojournMonitor): void {
  const connect = pool.connect.bind(pool) as (cb?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void) => Promise<pg.PoolClient> | undefined;
  (pool as unknown as { connect: typeof connect }).connect = (cb) => {
    const end = monitor.begin();
    if (cb) {
      return connect((err, client, done) => {
        end();
        cb(err, client, done);
      });
    }
    return (connect() as Promise<pg.PoolClient>).finally(end);
  };
}

/**
 * Load shedding that tells overload from a hiccup: when the control plane has been
 * saturated for a while, new API requests get a fast 503 with Retry-After instead of
 * joining a queue where they would all time out together. Saturated means a standing
 * queue for database connections (SojournMonitor), or an event loop whose *median*
 * delay over the last interval is past the bound: one long stall (a start-up task, a
 * big GC) is one sample and never sheds; a loop busy all the time does. Probes, the
 * OpenAPI document and the agents' gRPC plane are never shed.
 */
export class LoadShedder {
  private timer: NodeJS.Timeout | undefined;
  private histogram: IntervalHistogram | undefined;
  /** The median event-loop delay of the last two half-interval windows. */
  private lagP50Ms: [number, number] = [0, 0];
  private shed = 0;
  readonly sojourn: SojournMonitor;

  constructor(
    private readonly opts: LoadSheddingOptions,
    pool: pg.Pool,
    private readonly log: Logger,
  ) {
    this.sojourn = new SojournMonitor(opts.targetMs, opts.intervalMs);
    if (opts.targetMs > 0) watchPool(pool, this.sojourn);
  }

  /** Starts watching the event loop; called once start-up work is done, which is never overload. */
  start(): void {
    if (this.opts.maxEventLoopLagMs <= 0 || this.timer) return;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    // Two half-interval windows must both be slow: a single stall is one sample and lands
    // in one window only, even when it is the only sample of a window.
    this.timer = setInterval(() => {
      const h = this.histogram;
      if (!h) return;
      this.lagP50Ms = [this.lagP50Ms[1], h.count > 0 ? h.percentile(50) / 1e6 : 0];
      h.reset();
    }, Math.max(5, Math.round(this.opts.intervalMs / 2)));
    this.timer.unref();
  }

  /** Requests answered 503 by this shedder since it started. */
  get shedCount(): number {
    return this.shed;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.histogram?.disable();
    this.timer = undefined;
    this.histogram = undefined;
  }

  /** Why a request should be shed now, or undefined. */
  overloaded(): string | undefined {
    const { targetMs, intervalMs, maxEventLoopLagMs } = this.opts;
    if (targetMs > 0 && this.sojourn.standing()) {
      return `requests have waited over ${targetMs} ms for a database connection for more than ${intervalMs} ms (now ${Math.round(this.sojourn.sojournMs)} ms)`;
    }
    const lag = Math.min(...this.lagP50Ms);
    if (maxEventLoopLagMs > 0 && lag > maxEventLoopLagMs) {
      return `the control plane is running ${Math.round(lag)} ms behind (median event-loop lag, sustained over the last ${intervalMs} ms)`;
    }
    return undefined;
  }

  middleware(): Koa.Middleware<State> {
    return async (ctx: Ctx, next) => {
      if (!isShedExempt(ctx.path)) {
        const why = this.overloaded();
        if (why) {
          ctx.state.unaudited = true; // writing a row per shed request would add to the load
          if (this.shed++ % 100 === 0) this.log.warn({ why, shedSoFar: this.shed }, 'shedding load: answering 503');
          throw new A4cError('UNAVAILABLE', `overloaded, request not started: ${why}; nothing was changed`, {
            retryAfterSeconds: 1,
            suggestion: 'retry in 1 s (Retry-After), backing off if it happens again',
          });
        }
      }
      await next();
    };
  }
}

function isShedExempt(path: string): boolean {
  return path === '/healthz' || path === '/readyz' || path === '/v1/openapi.json';
}
