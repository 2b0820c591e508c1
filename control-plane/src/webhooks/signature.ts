import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Every delivery is signed like Stripe's webhooks, so receivers can use what they know:
 *
 *   A4C-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, `${t}.${body}`)>
 *
 * The timestamp is inside the signed text, so a captured request cannot be replayed
 * with a fresh time; receivers refuse signatures older than their replay window
 * (docs/api.md recommends 5 minutes) and drop repeats of A4C-Delivery inside it.
 * Each attempt is signed anew with its own time; the body is the same every attempt.
 */
export const SIGNATURE_HEADER = 'a4c-signature';
export const DELIVERY_HEADER = 'a4c-delivery';
export const REPLAY_WINDOW_SECONDS = 300;

export function sign(secret: string, body: string, timestampSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
  return `t=${timestampSeconds},v1=${mac}`;
}

/** The receiver's side (as documented): true if the header is a valid, fresh signature of body under secret. */
export function verify(secret: string, body: string, header: string, nowSeconds: number, windowSeconds = REPLAY_WINDOW_SECONDS): boolean {
  const parts = header.split(',').map((p) => p.trim().split('='));
  const t = Number(parts.find(([k]) => k === 't')?.[1]);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > windowSeconds) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  return parts.some(([k, v]) => k === 'v1' && v !== undefined && v.length === expected.length && timingSafeEqual(Buffer.from(v), expected));
}

/** A new signing secret: 32 random bytes, prefixed so people recognise it. */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

/** What a webhook shows of its secret after creation: enough to tell two apart. */
export const secretPrefix = (secret: string): string => secret.slice(0, Math.min(10, Math.floor(secret.length / 2)));
