import type { WebhookPayload } from '@a4c/common';
import type { ClaimedDelivery } from '../store/webhook-deliveries.js';
import type { AttemptOutcome } from './retry.js';
import { parseRetryAfter } from './retry.js';
import { DELIVERY_HEADER, SIGNATURE_HEADER, sign } from './signature.js';

export const USER_AGENT = 'a4c-webhooks/1';

/** The body of a delivery: the same bytes on every attempt (only the signature's time changes). */
export function payloadOf(d: ClaimedDelivery): string {
  const p: WebhookPayload = { id: d.id, webhookId: d.webhookId, kind: d.event.kind, event: d.event };
  return JSON.stringify(p);
}

/** How much of a refusing receiver's answer is kept as the attempt's error. */
const ERROR_BODY_BYTES = 200;

/**
 * POSTs one attempt. Never throws: every way it can go wrong is an outcome. Redirects
 * are not followed (a 3xx is a failed attempt): the signed request goes where the
 * webhook says, nowhere else. The timeout covers connecting, sending and the whole
 * answer; `stop` aborts it when the control plane shuts down.
 */
export async function sendAttempt(d: ClaimedDelivery, now: Date, timeoutMs: number, stop: AbortSignal): Promise<AttemptOutcome> {
  const body = payloadOf(d);
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    const res = await fetch(d.url, {
      method: 'POST',
      redirect: 'manual',
      signal: AbortSignal.any([timeout, stop]),
      headers: {
        'content-type': 'application/json',
        'user-agent': USER_AGENT,
        [SIGNATURE_HEADER]: sign(d.secret, body, Math.floor(now.getTime() / 1000)),
        [DELIVERY_HEADER]: d.id,
        'a4c-delivery-attempt': String(d.attempt),
        'a4c-event': d.event.kind,
        'a4c-webhook-id': d.webhookId,
      },
      body,
    });
    const text = await readSome(res, ERROR_BODY_BYTES);
    if (res.status >= 200 && res.status < 300) return { status: res.status };
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), now);
    const error = `HTTP ${res.status}${res.status >= 300 && res.status < 400 ? ' (redirects are not followed)' : ''}${text ? `: ${text}` : ''}`;
    return { status: res.status, error, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  } catch (e) {
    if (timeout.aborted) return { error: `no answer within ${timeoutMs} ms (A4C_WEBHOOK_TIMEOUT_MS)` };
    if (stop.aborted) return { error: 'the control plane stopped during the request' };
    return { error: describe(e) };
  }
}

/** The first bytes of an answer as text; the rest is discarded (and the connection freed). */
async function readSome(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < max) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, max).replace(/\s+/g, ' ').trim();
}

/** fetch's "fetch failed" hides the reason in its cause: ECONNREFUSED, ECONNRESET, a DNS failure. */
function describe(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const cause = err.cause;
  if (cause?.code || cause?.message) return `could not deliver: ${[cause.code, cause.message].filter(Boolean).join(' ')}`;
  return `could not deliver: ${err.message ?? String(e)}`;
}
