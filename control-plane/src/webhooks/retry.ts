import type { WebhookConfig } from './config.js';

/** What one attempt came to. */
export interface AttemptOutcome {
  /** The receiver's HTTP status; absent when no answer came (refused, reset, timed out). */
  status?: number;
  error?: string;
  /** From a Retry-After header (429, 503), in ms. */
  retryAfterMs?: number;
}

export type Decision = { kind: 'succeeded' } | { kind: 'failed'; why: string } | { kind: 'retry'; at: Date };

export type RetryPolicy = Pick<WebhookConfig, 'maxAttempts' | 'maxAgeMs' | 'retryBaseMs' | 'retryMaxMs' | 'clientErrorAttempts'>;

export const succeeded = (status: number | undefined): boolean => status !== undefined && status >= 200 && status < 300;

/**
 * A 4xx other than 408 (timeout) and 429 (slow down) says the request itself is refused
 * (bad signature, endpoint gone, payload rejected): the same request is unlikely to do
 * better, so it gets clientErrorAttempts attempts instead of maxAttempts (a receiver
 * being redeployed with a new secret still gets a second chance).
 */
export const clientError = (status: number | undefined): boolean =>
  status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429;

/**
 * After attempt number `attempts` (1-based) of a delivery made at createdAt: done, or
 * when to try again. Delays double from retryBaseMs up to retryMaxMs, with "equal
 * jitter" (half fixed, half random) so that many deliveries failing together (a
 * receiver down) do not come back together; a Retry-After is honoured up to
 * retryMaxMs. A retry that would start past maxAgeMs is not scheduled: the delivery
 * is FAILED now. `random` is in [0, 1).
 */
export function decide(p: RetryPolicy, attempts: number, createdAt: Date, now: Date, o: AttemptOutcome, random: () => number): Decision {
  if (succeeded(o.status)) return { kind: 'succeeded' };
  const what = o.status !== undefined ? `HTTP ${o.status}` : (o.error ?? 'no answer');
  if (attempts >= p.maxAttempts) return { kind: 'failed', why: `gave up after ${attempts} attempts (last: ${what})` };
  if (clientError(o.status) && attempts >= p.clientErrorAttempts) {
    return { kind: 'failed', why: `gave up after ${attempts} attempts: the receiver refused the request (${what}); 4xx other than 408/429 is retried ${p.clientErrorAttempts} times at most` };
  }
  const exp = Math.min(p.retryMaxMs, p.retryBaseMs * 2 ** Math.min(attempts - 1, 40));
  let delay = exp / 2 + random() * (exp / 2);
  if (o.retryAfterMs !== undefined) delay = Math.max(delay, Math.min(o.retryAfterMs, p.retryMaxMs));
  const at = new Date(now.getTime() + Math.round(delay));
  if (at.getTime() - createdAt.getTime() > p.maxAgeMs) {
    return { kind: 'failed', why: `gave up after ${attempts} attempts: the next would start past the maximum age of ${Math.round(p.maxAgeMs / 1000)} s (last: ${what})` };
  }
  return { kind: 'retry', at };
}

/** A Retry-After header (seconds, or an HTTP date) in ms from now; undefined if absent or unreadable. */
export function parseRetryAfter(value: string | null, now: Date): number | undefined {
  if (!value) return undefined;
  if (/^\d{1,9}$/.test(value.trim())) return Number(value.trim()) * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now.getTime());
}
