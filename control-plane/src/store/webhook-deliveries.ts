import type { ActivityEvent, DeliveryAttempt, DeliveryStatus, WebhookDelivery } from '@a4c/common';
import { encodeCursor } from './events.js';
import type { Db, Tx } from './db.js';

/**
 * The SQL of webhook deliveries. Rows are made by the trigger on events (migration
 * 060) in the transaction of the change; here they are claimed, settled and listed.
 */

/** A claimed delivery with what sending it needs. */
export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  url: string;
  secret: string;
  /** This attempt's number, 1-based. */
  attempt: number;
  createdAt: Date;
  event: ActivityEvent;
}

interface ClaimRow {
  id: string;
  webhook_id: string;
  url: string;
  secret: string;
  attempts: number;
  created_at: Date;
  e_id: number;
  e_xid: string;
  e_at: Date;
  e_kind: string;
  e_actor: string;
  e_reason: string;
  e_workspace_id: string | null;
  e_host_id: string | null;
  e_user_id: string | null;
  e_build_id: string | null;
  e_changes: Record<string, { from: unknown; to: unknown }>;
  e_data: Record<string, unknown>;
}

/**
 * Claims up to `limit` due deliveries of enabled webhooks for this replica. SKIP LOCKED:
 * replicas claiming together take different rows and never wait on each other. The
 * claim counts the attempt and moves next_attempt_at to leaseUntil, committed before
 * the request is sent: a replica that dies mid-request leaves the delivery to be
 * claimed again once the lease passes (at least once; the receiver deduplicates by
 * delivery id). Deliveries past the maximum age are left to failTooOld: no attempt
 * starts after it.
 */
export async function claimDeliveries(
  db: Db,
  o: { now: Date; leaseUntil: Date; limit: number; maxAgeMs: number; perWebhook: number; inFlight: ReadonlyMap<string, number> },
): Promise<ClaimedDelivery[]> {
  // Per webhook, at most perWebhook minus what this replica already has in flight to it:
  // a receiver that hangs holds that many of this replica's requests, never all of them.
  const { rows } = await db.query<ClaimRow>(
    `WITH due AS (
       SELECT d.id, d.next_attempt_at
         FROM webhooks w
         LEFT JOIN unnest($5::uuid[], $6::int[]) AS busy (webhook_id, n) ON busy.webhook_id = w.id
        CROSS JOIN LATERAL (
          SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
           WHERE d.webhook_id = w.id AND d.status = 'PENDING' AND d.next_attempt_at <= $1
             AND d.created_at >= $1::timestamptz - make_interval(secs => $4::bigint / 1000.0)
           ORDER BY d.next_attempt_at
           LIMIT greatest($7::int - coalesce(busy.n, 0), 0)
           FOR UPDATE OF d SKIP LOCKED) d
        WHERE w.enabled
        ORDER BY d.next_attempt_at LIMIT $3)
     UPDATE webhook_deliveries d SET attempts = d.attempts + 1, next_attempt_at = $2, last_attempt_at = $1
       FROM due, webhooks w, events e
      WHERE d.id = due.id AND w.id = d.webhook_id AND e.id = d.event_id
     RETURNING d.id, d.webhook_id, w.url, w.secret, d.attempts, d.created_at,
               e.id AS e_id, e.xid::text AS e_xid, e.at AS e_at, e.kind AS e_kind, e.actor AS e_actor, e.reason AS e_reason,
               e.workspace_id AS e_workspace_id, e.host_id AS e_host_id, e.user_id AS e_user_id, e.build_id AS e_build_id,
               e.changes AS e_changes, e.data AS e_data`,
    [o.now, o.leaseUntil, o.limit, o.maxAgeMs, [...o.inFlight.keys()], [...o.inFlight.values()], o.perWebhook],
  );
  return rows.map((r) => ({
    id: r.id,
    webhookId: r.webhook_id,
    url: r.url,
    secret: r.secret,
    attempt: r.attempts,
    createdAt: r.created_at,
    event: {
      id: r.e_id,
      cursor: encodeCursor({ xid: BigInt(r.e_xid), id: BigInt(r.e_id) }),
      at: r.e_at.toISOString(),
      kind: r.e_kind,
      actor: r.e_actor,
      reason: r.e_reason,
      workspaceId: r.e_workspace_id,
      hostId: r.e_host_id,
      userId: r.e_user_id,
      buildId: r.e_build_id,
      changes: r.e_changes,
      data: r.e_data,
    },
  }));
}

/**
 * Pending deliveries past the maximum age (their webhook was disabled meanwhile, or
 * the control plane was down) are FAILED without another attempt.
 */
export async function failTooOld(db: Db, now: Date, maxAgeMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `UPDATE webhook_deliveries SET status = 'FAILED', completed_at = $1, next_attempt_at = $1,
            last_error = COALESCE(last_error || '; ', '') || 'gave up: older than the maximum age of ' || ($2::bigint / 1000) || ' s'
      WHERE status = 'PENDING' AND created_at < $1::timestamptz - make_interval(secs => $2::bigint / 1000.0)`,
    [now, maxAgeMs],
  );
  return rowCount ?? 0;
}

export interface AttemptRecord {
  deliveryId: string;
  attempt: number;
  at: Date;
  status: number | null;
  error: string | null;
  durationMs: number;
  /** PENDING with nextAttemptAt, or the delivery's end. */
  outcome: { status: 'PENDING'; nextAttemptAt: Date } | { status: 'SUCCEEDED' | 'FAILED'; completedAt: Date };
}

/**
 * Settles an attempt, only if the delivery is still at that attempt: a replica whose
 * lease expired (and whose delivery another replica claimed again) has nothing to say.
 * Returns the webhook id if it was recorded.
 */
export async function recordAttempt(tx: Tx, r: AttemptRecord): Promise<string | undefined> {
  const entry: DeliveryAttempt = { attempt: r.attempt, at: r.at.toISOString(), status: r.status, error: r.error, durationMs: r.durationMs };
  const o = r.outcome;
  const { rows } = await tx.query<{ webhook_id: string }>(
    `UPDATE webhook_deliveries SET status = $3, last_status = $4, last_error = $5,
            next_attempt_at = COALESCE($6, next_attempt_at), completed_at = $7,
            history = (CASE WHEN jsonb_array_length(history) >= ${HISTORY_MAX} THEN history - 0 ELSE history END) || jsonb_build_array($8::jsonb)
      WHERE id = $1 AND attempts = $2 AND status = 'PENDING' RETURNING webhook_id`,
    [
      r.deliveryId,
      r.attempt,
      o.status,
      r.status,
      r.error,
      o.status === 'PENDING' ? o.nextAttemptAt : null,
      o.status === 'PENDING' ? null : o.completedAt,
      JSON.stringify(entry),
    ],
  );
  return rows[0]?.webhook_id;
}

/** Attempts kept per delivery (the newest). */
const HISTORY_MAX = 20;

/**
 * Counts a webhook's failed attempt; returns the new count. A success resets it (0).
 */
export async function countAttempt(tx: Tx, webhookId: string, ok: boolean): Promise<{ failures: number; enabled: boolean }> {
  const { rows } = await tx.query<{ consecutive_failures: number; enabled: boolean }>(
    `UPDATE webhooks SET consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END
      WHERE id = $1 RETURNING consecutive_failures, enabled`,
    [webhookId, ok],
  );
  const row = rows[0];
  return { failures: row?.consecutive_failures ?? 0, enabled: row?.enabled ?? false };
}

/** Disables a webhook that failed too often (the caller appends webhook.disabled). */
export async function disableWebhook(tx: Tx, webhookId: string, reason: string): Promise<void> {
  await tx.query('UPDATE webhooks SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1', [webhookId, reason]);
}

interface DeliveryRow {
  id: string;
  webhook_id: string;
  event_id: number;
  kind: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date;
  last_attempt_at: Date | null;
  last_status: number | null;
  last_error: string | null;
  history: DeliveryAttempt[];
  created_at: Date;
  completed_at: Date | null;
}

/** A webhook's deliveries, newest first; `before` a delivery id of the previous page. */
export async function listDeliveries(db: Db, webhookId: string, o: { status?: DeliveryStatus | undefined; limit: number; before?: string | undefined }): Promise<WebhookDelivery[]> {
  const params: unknown[] = [webhookId, o.limit];
  const where = ['d.webhook_id = $1'];
  if (o.status) where.push(`d.status = $${params.push(o.status)}`);
  if (o.before) {
    where.push(`(d.created_at, d.id) < (SELECT created_at, id FROM webhook_deliveries WHERE id = $${params.push(o.before)}::uuid AND webhook_id = $1)`);
  }
  const { rows } = await db.query<DeliveryRow>(
    `SELECT d.*, e.kind FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
      WHERE ${where.join(' AND ')} ORDER BY d.created_at DESC, d.id DESC LIMIT $2`,
    params,
  );
  return rows.map(toDelivery);
}

/** The delivery the ping event just appended in this transaction made (the newest event of this session). */
export async function pingDeliveryId(tx: Tx, webhookId: string): Promise<{ deliveryId: string; eventId: number } | undefined> {
  const { rows } = await tx.query<{ id: string; event_id: number }>(
    `SELECT id, event_id FROM webhook_deliveries WHERE webhook_id = $1 AND event_id = currval(pg_get_serial_sequence('events', 'id'))`,
    [webhookId],
  );
  const r = rows[0];
  return r && { deliveryId: r.id, eventId: r.event_id };
}

function toDelivery(r: DeliveryRow): WebhookDelivery {
  return {
    id: r.id,
    webhookId: r.webhook_id,
    eventId: r.event_id,
    kind: r.kind,
    status: r.status,
    attempts: r.attempts,
    lastStatus: r.last_status,
    lastError: r.last_error,
    lastAttemptAt: r.last_attempt_at?.toISOString() ?? null,
    nextAttemptAt: r.status === 'PENDING' ? r.next_attempt_at.toISOString() : null,
    createdAt: r.created_at.toISOString(),
    completedAt: r.completed_at?.toISOString() ?? null,
    history: r.history,
  };
}
