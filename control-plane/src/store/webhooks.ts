import type { Webhook } from '@a4c/common';
import { secretPrefix } from '../webhooks/signature.js';
import type { Db, Tx } from './db.js';

/** The SQL of webhooks themselves; their deliveries are in webhook-deliveries.ts. */

export interface WebhookRow {
  id: string;
  user_id: string | null;
  url: string;
  events: string[];
  secret: string;
  description: string;
  enabled: boolean;
  disabled_reason: string | null;
  consecutive_failures: number;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

export interface NewWebhook {
  id: string;
  userId: string | null;
  url: string;
  events: string[];
  secret: string;
  description: string;
  enabled: boolean;
  createdBy: string;
}

/** Inserts a webhook; undefined when it is for a user that does not exist. */
export async function insertWebhook(tx: Tx, w: NewWebhook): Promise<WebhookRow | undefined> {
  const { rows } = await tx.query<WebhookRow>(
    `INSERT INTO webhooks (id, user_id, url, events, secret, description, enabled, created_by)
     SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE $2::text IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = $2)
     RETURNING *`,
    [w.id, w.userId, w.url, w.events, w.secret, w.description, w.enabled, w.createdBy],
  );
  return rows[0];
}

export async function getWebhook(db: Db | Tx, id: string, forUpdate = false): Promise<WebhookRow | undefined> {
  const { rows } = await db.query<WebhookRow>(`SELECT * FROM webhooks WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0];
}

/** All webhooks (undefined), a user's, or the fleet-wide ones (null); oldest first. */
export async function listWebhooks(db: Db, userId: string | null | undefined): Promise<WebhookRow[]> {
  if (userId === undefined) return (await db.query<WebhookRow>('SELECT * FROM webhooks ORDER BY created_at, id', [])).rows;
  if (userId === null) return (await db.query<WebhookRow>('SELECT * FROM webhooks WHERE user_id IS NULL ORDER BY created_at, id', [])).rows;
  return (await db.query<WebhookRow>('SELECT * FROM webhooks WHERE user_id = $1 ORDER BY created_at, id', [userId])).rows;
}

export interface WebhookPatch {
  url?: string | undefined;
  events?: string[] | undefined;
  description?: string | undefined;
  enabled?: boolean | undefined;
  secret?: string | undefined;
}

/** Applies a patch to a row locked FOR UPDATE; enabling clears the failure count and the reason it was disabled. */
export async function updateWebhook(tx: Tx, id: string, p: WebhookPatch): Promise<WebhookRow> {
  const { rows } = await tx.query<WebhookRow>(
    `UPDATE webhooks SET
        url = COALESCE($2, url),
        events = COALESCE($3, events),
        description = COALESCE($4, description),
        secret = COALESCE($6, secret),
        consecutive_failures = CASE WHEN $5::boolean AND NOT enabled THEN 0 ELSE consecutive_failures END,
        disabled_reason = CASE WHEN $5::boolean IS NULL THEN disabled_reason WHEN $5 THEN NULL ELSE disabled_reason END,
        enabled = COALESCE($5, enabled),
        updated_at = now()
      WHERE id = $1 RETURNING *`,
    [id, p.url ?? null, p.events ?? null, p.description ?? null, p.enabled ?? null, p.secret ?? null],
  );
  return rows[0] as WebhookRow;
}

export async function deleteWebhook(tx: Tx, id: string): Promise<void> {
  await tx.query('DELETE FROM webhooks WHERE id = $1', [id]);
}

export function toWebhook(r: WebhookRow): Webhook {
  return {
    id: r.id,
    userId: r.user_id,
    url: r.url,
    events: r.events,
    description: r.description,
    enabled: r.enabled,
    disabledReason: r.disabled_reason,
    consecutiveFailures: r.consecutive_failures,
    secretPrefix: secretPrefix(r.secret),
    createdBy: r.created_by,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
  };
}
