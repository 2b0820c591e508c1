import { sleep, type Clock } from '../clock.js';

export interface RetryPolicy {
  /** Tries in all (1: no retry). */
  attempts: number;
  /** Delay before the first retry; doubles with each one. */
  backoffMs: number;
}

/** Engine answers that name a real failure of this request, whatever their HTTP status. */
const PERMANENT = [
  /no such image/i,
  /conflict/i,
  /is already in use/i,
  /OCI runtime/i,
  /executable file not found/i,
  /no such file or directory/i,
  /permission denied/i,
  /invalid (argument|parameter|reference|mount)/i,
  /not supported/i,
  /no space left on device/i,
  /unable to find (user|group)/i,
  /no matching entries in (passwd|group) file/i,
];

/** Socket errors of an engine that is restarting, overloaded or slow to answer. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'EAI_AGAIN']);

function messageOf(e: unknown): string {
  const x = e as { message?: unknown; json?: { message?: unknown } | null };
  const json = typeof x.json?.message === 'string' ? x.json.message : '';
  return `${typeof x.message === 'string' ? x.message : ''} ${json}`;
}

/**
 * Whether a Docker Engine error is worth trying again: the engine was busy or did not
 * answer in time (timeouts, dropped connections, 5xx answers such as "context deadline
 * exceeded" or a locked store), as opposed to a request that fails the same way every
 * time (a missing image, a name in use, a command that cannot run, a refusal).
 */
export function isTransientDockerError(e: unknown): boolean {
  if (typeof e !== 'object' || e === null) return false;
  const msg = messageOf(e);
  if (PERMANENT.some((re) => re.test(msg))) return false;
  const status = (e as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number') return status >= 500 || status === 408 || status === 429;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  // docker-modem rejects a request that outlived its timeout with a bare "timeout" error.
  return /\btime(d)? ?out\b|socket hang up/i.test(msg);
}

export interface RetryNotice {
  /** The try that failed, from 1. */
  attempt: number;
  attempts: number;
  delayMs: number;
  error: Error;
}

/**
 * Runs fn; a transient error is retried after a doubling delay on the clock, at most
 * policy.attempts tries in all, and onRetry is told before each wait. The last error, or
 * the first one that is not transient, is thrown. Aborting the signal ends a wait at once
 * with the signal's reason (the work it was for is no longer wanted).
 */
export async function retryTransient<T>(
  fn: () => Promise<T>,
  policy: RetryPolicy,
  clock: Clock,
  onRetry: (n: RetryNotice) => void,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= policy.attempts || !isTransientDockerError(e)) throw e;
      const delayMs = policy.backoffMs * 2 ** (attempt - 1);
      onRetry({ attempt, attempts: policy.attempts, delayMs, error: e as Error });
      await sleep(clock, delayMs, signal);
    }
  }
}
