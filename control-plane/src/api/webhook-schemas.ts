/**
 * The shapes of the webhook operations (api/ops/webhooks.ts), kept beside the rest of
 * schemas.ts's building blocks but in a file of their own.
 */
import { z } from 'zod';
import { DELIVERY_STATUSES, type CreatedWebhook, type Webhook, type WebhookDelivery } from '@a4c/common';
import { kindPatternProblem } from '../webhooks/kinds.js';
import { id, intQuery, time } from './schemas.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const webhookId = z.string().regex(UUID, 'must be a webhook id (a lowercase UUID); list webhooks with `a4c webhooks list`');

/** Where deliveries go: an absolute http(s) URL without credentials or #fragment. */
const url = z
  .string()
  .max(2000, 'at most 2000 characters')
  .superRefine((v, ctx) => {
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be an absolute URL such as https://example.com/a4c-hook' });
      return;
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') ctx.addIssue({ code: 'custom', message: `must be an http or https URL, not ${u.protocol.replace(/:$/, '')}` });
    else if (u.username || u.password) ctx.addIssue({ code: 'custom', message: 'must not carry credentials: the signature (A4C-Signature) authenticates deliveries' });
    else if (u.hash) ctx.addIssue({ code: 'custom', message: 'must not have a #fragment' });
  })
  .meta({ description: 'an absolute http or https URL, where deliveries are POSTed' });

const kindPattern = z
  .string()
  .max(100)
  .superRefine((v, ctx) => {
    const problem = kindPatternProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

const events = z
  .array(kindPattern)
  .min(1, 'name at least one event kind (or * for all)')
  .max(100)
  .transform((v) => [...new Set(v)])
  .meta({ description: 'event kinds (docs/api.md), or prefixes ending in * such as workspace.* (* alone: every kind)' });

const secret = z
  .string()
  .regex(/^[\x21-\x7e]{16,256}$/, 'must be 16 to 256 printable characters without spaces')
  .meta({ description: 'the signing secret; default: a new random one (whsec_…), returned once' });

const description = z.string().max(500, 'at most 500 characters');

export const webhookParams = z.strictObject({ id: webhookId });

export const createWebhook = z.strictObject({
  url,
  events,
  secret: secret.optional(),
  description: description.optional(),
  enabled: z.boolean().optional(),
  userId: id('a user id').optional().meta({ description: "whose events: a user's own webhook receives only events about their workspaces, builds and account. Default: the caller; admins: fleet-wide (every event)" }),
});

export const updateWebhook = z.strictObject({
  url: url.optional(),
  events: events.optional(),
  secret: secret.meta({ description: 'a new signing secret (the old one stops at once)' }).optional(),
  description: description.optional(),
  enabled: z.boolean().meta({ description: 'true also clears the count of consecutive failures' }).optional(),
});

export const listWebhooksQuery = z.strictObject({ userId: id('a user id').meta({ description: "only this user's webhooks (admins)" }).optional() });

export const deliveriesQuery = z.strictObject({
  status: z.enum(DELIVERY_STATUSES, { error: `status must be one of ${DELIVERY_STATUSES.join(', ')}` }).optional(),
  limit: intQuery('limit', 1, 500).meta({ description: 'at most this many (default 50)' }).optional(),
  before: z.string().regex(UUID, 'must be a delivery id from the previous page').meta({ description: 'only deliveries older than this one (the last of the previous page)' }).optional(),
});

const webhookShape = {
  id: z.string(),
  userId: z.string().nullable().meta({ description: 'whose events it receives; null: fleet-wide' }),
  url: z.string(),
  events: z.array(z.string()),
  description: z.string(),
  enabled: z.boolean(),
  disabledReason: z.string().nullable().meta({ description: 'why it was disabled automatically' }),
  consecutiveFailures: z.number().int(),
  secretPrefix: z.string().meta({ description: 'the first characters of the secret, to recognise it' }),
  createdBy: z.string(),
  createdAt: time,
  updatedAt: time,
};

export const webhook: z.ZodType<Webhook> = z.strictObject(webhookShape).meta({ id: 'Webhook' });

export const createdWebhook: z.ZodType<CreatedWebhook> = z
  .strictObject({ ...webhookShape, secret: z.string().meta({ description: 'the signing secret: shown this once' }) })
  .meta({ id: 'CreatedWebhook' });

const attempt = z.strictObject({
  attempt: z.number().int(),
  at: time,
  status: z.number().int().nullable().meta({ description: "the receiver's HTTP status; null when none came" }),
  error: z.string().nullable(),
  durationMs: z.number().int(),
});

export const delivery: z.ZodType<WebhookDelivery> = z
  .strictObject({
    id: z.string().meta({ description: 'also the A4C-Delivery header: the receiver\'s idempotency key' }),
    webhookId: z.string(),
    eventId: z.number().int(),
    kind: z.string(),
    status: z.enum(DELIVERY_STATUSES),
    attempts: z.number().int(),
    lastStatus: z.number().int().nullable(),
    lastError: z.string().nullable(),
    lastAttemptAt: time.nullable(),
    nextAttemptAt: time.nullable().meta({ description: 'PENDING only: when the next attempt may start' }),
    createdAt: time,
    completedAt: time.nullable(),
    history: z.array(attempt).meta({ description: 'the last 20 attempts, oldest first' }),
  })
  .meta({ id: 'WebhookDelivery' });

export const ping = z
  .strictObject({ deliveryId: z.string(), eventId: z.number().int() })
  .meta({ id: 'WebhookPing' });
