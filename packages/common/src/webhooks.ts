import type { ActivityEvent } from './model.js';

/** A webhook as the API shows it: never its secret, only the secret's first characters. */
export interface Webhook {
  id: string;
  /** Whose events it receives; null: fleet-wide (admins), every event. */
  userId: string | null;
  url: string;
  /** Event kinds, or prefixes ending in * (`workspace.*`, `*`). */
  events: string[];
  description: string;
  enabled: boolean;
  /** Why it was disabled automatically; null when enabled or disabled by a person. */
  disabledReason: string | null;
  consecutiveFailures: number;
  secretPrefix: string;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

/** The answer to a create: the only time the secret is shown. */
export interface CreatedWebhook extends Webhook {
  secret: string;
}

export const DELIVERY_STATUSES = ['PENDING', 'SUCCEEDED', 'FAILED'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** One attempt at a delivery. */
export interface DeliveryAttempt {
  attempt: number;
  at: string;
  /** The receiver's HTTP status; null when none came. */
  status: number | null;
  error: string | null;
  durationMs: number;
}

/** One event to one webhook. */
export interface WebhookDelivery {
  id: string;
  webhookId: string;
  eventId: number;
  kind: string;
  status: DeliveryStatus;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  lastAttemptAt: string | null;
  /** When the next attempt may start (PENDING only; also while one is in flight: its lease). */
  nextAttemptAt: string | null;
  createdAt: string;
  completedAt: string | null;
  history: DeliveryAttempt[];
}

/** The JSON body POSTed to a receiver; the same for every attempt of a delivery. */
export interface WebhookPayload {
  /** The delivery id, also in the A4C-Delivery header: the receiver's idempotency key. */
  id: string;
  webhookId: string;
  kind: string;
  event: ActivityEvent;
}
