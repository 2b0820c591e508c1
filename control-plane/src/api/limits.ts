import { createHash } from 'node:crypto';
import type Koa from 'koa';
import { A4cError, type Logger } from '@a4c/common';
import type { Ctx, State } from './http.js';

export interface RequestRateLimit {
  /** Sustained requests per second per credential; 0: no limit. */
  perSecond: number;
  /** Requests a credential may send at once after being idle. */
  burst: number;
}

/**
 * Per-credential request rate: a token bucket per bearer token (API token, JWT, the
 * admin token), kept in this replica's memory. Each replica limits on its own, so N
 * replicas behind a balancer allow up to N times the rate; the limit is there to stop
 * one runaway script from starving everyone else on a replica, not to meter precisely.
 * The per-user workspace-creation rate, which must hold across replicas, is kept in
 * PostgreSQL instead (quotas/quotas.ts).
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly limit: RequestRateLimit,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one token; undefined if granted, else the seconds until one is available. */
  take(key: string): number | undefined {
    const { perSecond, burst } = this.limit;
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: burst, at: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
    b.at = now;
    if (!this.buckets.has(key) && this.buckets.size >= 100_000) this.sweep(now);
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return undefined;
    }
    return (1 - b.tokens) / perSecond;
  }

  /** Forgets buckets that have refilled: they behave exactly like new ones. */
  private sweep(now: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(k);
  }
}

/** After authentication: 429 RATE_LIMITED with Retry-After once a credential's bucket is empty. */
export function rateLimit(limit: RequestRateLimit): Koa.Middleware<State> {
  if (limit.perSecond <= 0) return (_ctx, next) => next();
  const buckets = new TokenBuckets(limit);
  return async (ctx, next) => {
    const credential = createHash('sha256').update(ctx.get('authorization')).digest('base64url');
    const wait = buckets.take(credential);
    if (wait !== undefined) {
      ctx.state.unaudited = true; // a flood must not turn into a flood of audit rows
      const seconds = Math.max(1, Math.ceil(wait));
      throw new A4cError('RATE_LIMITED', `too many requests with this token: at most ${limit.perSecond} per second (bursts of ${limit.burst})`, {
        retryAfterSeconds: seconds,
        suggestion: `send again in ${seconds} s (Retry-After); for automation that needs more, the operator can raise A4C_RATE_LIMIT_RPS`,
      });
    }
    await next();
  };
}

export interface LoadSheddingOptions {
  /** Shed when this many requests already wait for a database connection; 0: never. */
  maxDbWaiters: number;
  /** Shed while the event loop lagged more than this in the last second; 0: never. */
  maxEventLoopLagMs: number;
}

/** What the shedder needs to know about the pool (pg.Pool has these). */
export interface PoolGauge {
  readonly waitingCount: number;
  readonly totalCount: number;
}

const LAG_SAMPLE_MS = 50;
const LAG_WINDOW_MS = 1000;

/**
 * Load shedding: when the control plane is saturated, new API requests get a fast 503
 * with Retry-After instead of joining a queue where they would all time out together.
 * Saturated means requests already queue for a database connection (the pool is
 * exhausted and its wait queue is long) or the event loop is lagging (a timer that
 * should fire every 50 ms fired late by more than the bound within the last second).
 * Probes, the OpenAPI document and the agents' gRPC plane are never shed.
 */
export class LoadShedder {
  private timer: NodeJS.Timeout | undefined;
  private lagMs = 0;
  private lagAt = 0;
  private shed = 0;

  constructor(
    private readonly opts: LoadSheddingOptions,
    private readonly pool: PoolGauge,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.opts.maxEventLoopLagMs <= 0 || this.timer) return;
    let expected = performance.now() + LAG_SAMPLE_MS;
    this.timer = setInterval(() => {
      const now = performance.now();
      const lag = Math.max(0, now - expected);
      expected = now + LAG_SAMPLE_MS;
      // Keep the worst lag of the last second: one late timer is the symptom of a
      // blocked loop, and the requests that queued behind it are still being read.
      if (lag >= this.lagMs || now - this.lagAt > LAG_WINDOW_MS) {
        this.lagMs = lag;
        this.lagAt = now;
      }
    }, LAG_SAMPLE_MS);
    this.timer.unref();
  }

  /** Requests answered 503 by this shedder since it started. */
  get shedCount(): number {
    return this.shed;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Why a request should be shed now, or undefined. */
  overloaded(): string | undefined {
    const { maxDbWaiters, maxEventLoopLagMs } = this.opts;
    if (maxDbWaiters > 0 && this.pool.waitingCount >= maxDbWaiters) {
      return `all ${this.pool.totalCount} database connections are busy and ${this.pool.waitingCount} requests already wait for one`;
    }
    if (maxEventLoopLagMs > 0 && performance.now() - this.lagAt <= LAG_WINDOW_MS && this.lagMs > maxEventLoopLagMs) {
      return `the control plane is running ${Math.round(this.lagMs)} ms behind (event-loop lag)`;
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
