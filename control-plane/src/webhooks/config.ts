import { ConfigError, envInt } from '@a4c/common';

/** How webhooks are delivered (docs/operations.md, "Webhooks"). */
export interface WebhookConfig {
  /** Requests in flight at once, per replica. */
  concurrency: number;
  /** Requests in flight at once to one webhook, per replica: a slow receiver takes no more slots than this. */
  perWebhook: number;
  /** Each request's timeout: connect, send, and the receiver's answer. */
  timeoutMs: number;
  /** Attempts before a delivery is FAILED. */
  maxAttempts: number;
  /** A delivery not done this long after its event is FAILED (no attempt starts later). */
  maxAgeMs: number;
  /** First retry's delay; doubles per attempt up to retryMaxMs, with jitter. */
  retryBaseMs: number;
  retryMaxMs: number;
  /** Attempts answered 4xx other than 408 and 429 before the delivery is FAILED. */
  clientErrorAttempts: number;
  /** Consecutive failed attempts after which a webhook is disabled; 0: never. */
  disableAfterFailures: number;
  /** How often each replica looks for deliveries that came due (retries). */
  pollMs: number;
}

type Env = Record<string, string | undefined>;

export function loadWebhookConfig(env: Env): WebhookConfig {
  const retryBaseMs = envInt(env, 'A4C_WEBHOOK_RETRY_BASE_MS', 10_000, 1, 86_400_000);
  const retryMaxMs = envInt(env, 'A4C_WEBHOOK_RETRY_MAX_MS', 3_600_000, 1, 86_400_000);
  if (retryMaxMs < retryBaseMs) throw new ConfigError('A4C_WEBHOOK_RETRY_MAX_MS', `must be at least A4C_WEBHOOK_RETRY_BASE_MS (${retryBaseMs}), got ${retryMaxMs}`);
  const maxAttempts = envInt(env, 'A4C_WEBHOOK_MAX_ATTEMPTS', 12, 1, 1000);
  return {
    concurrency: envInt(env, 'A4C_WEBHOOK_CONCURRENCY', 8, 1, 1000),
    perWebhook: envInt(env, 'A4C_WEBHOOK_CONCURRENCY_PER_WEBHOOK', 2, 1, 1000),
    timeoutMs: envInt(env, 'A4C_WEBHOOK_TIMEOUT_MS', 10_000, 100, 300_000),
    maxAttempts,
    maxAgeMs: envInt(env, 'A4C_WEBHOOK_MAX_AGE_SECONDS', 86_400, 1, 30 * 86_400) * 1000,
    retryBaseMs,
    retryMaxMs,
    clientErrorAttempts: envInt(env, 'A4C_WEBHOOK_CLIENT_ERROR_ATTEMPTS', 3, 1, 1000),
    disableAfterFailures: envInt(env, 'A4C_WEBHOOK_DISABLE_AFTER_FAILURES', 50, 0, 100_000),
    pollMs: envInt(env, 'A4C_WEBHOOK_POLL_MS', 1000, 10, 60_000),
  };
}

/** Appended to a4c-control-plane --help; keep in step with loadWebhookConfig. */
export const WEBHOOK_CONFIG_HELP = `  A4C_WEBHOOK_CONCURRENCY   webhook requests in flight at once, per replica (default 8)
  A4C_WEBHOOK_CONCURRENCY_PER_WEBHOOK  of those, at most this many to one webhook (default 2)
  A4C_WEBHOOK_TIMEOUT_MS    each webhook request's timeout (default 10000)
  A4C_WEBHOOK_MAX_ATTEMPTS  attempts before a delivery is FAILED (default 12)
  A4C_WEBHOOK_MAX_AGE_SECONDS  a delivery not done this long after its event is FAILED (default 86400)
  A4C_WEBHOOK_RETRY_BASE_MS first retry's delay, doubled per attempt, with jitter (default 10000)
  A4C_WEBHOOK_RETRY_MAX_MS  longest delay between attempts (default 3600000)
  A4C_WEBHOOK_CLIENT_ERROR_ATTEMPTS  attempts answered 4xx (not 408/429) before a delivery is FAILED (default 3)
  A4C_WEBHOOK_DISABLE_AFTER_FAILURES  consecutive failed attempts that disable a webhook; 0: never (default 50)
  A4C_WEBHOOK_POLL_MS       how often each replica looks for retries that came due (default 1000)`;
