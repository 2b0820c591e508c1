import { createHash } from 'node:crypto';
import type Koa from 'koa';
import { A4cError } from '@a4c/common';
import type { State } from './http.js';

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
