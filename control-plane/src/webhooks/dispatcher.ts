import type { Logger } from '@a4c/common';
import type { ChangeFeed } from '../events/notify.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { claimDeliveries, countAttempt, disableWebhook, failTooOld, recordAttempt, type ClaimedDelivery } from '../store/webhook-deliveries.js';
import type { Clock } from '../clock.js';
import type { WebhookConfig } from './config.js';
import { NO_WEBHOOK_METRICS, type WebhookObserver } from './metrics.js';
import { decide, succeeded, type AttemptOutcome, type Decision } from './retry.js';
import { sendAttempt } from './sender.js';

/** How long past the request timeout a claim is held before another replica may take it. */
const LEASE_SLACK_MS = 5000;

export type Send = (d: ClaimedDelivery, now: Date, timeoutMs: number, stop: AbortSignal) => Promise<AttemptOutcome>;

/**
 * Delivers webhooks: one per replica, all replicas sharing the work through the
 * database.
 *
 * Where deliveries come from. The activity log is the outbox (every change appends its
 * event in its own transaction), and a trigger on events writes one
 * webhook_deliveries row per matching webhook in that transaction (migration 060).
 * The alternative, a cursor per webhook over the log's xid8 watermark (as the event
 * stream does), costs writers nothing, but needs a dispatcher owning each cursor
 * across replicas, a separate row per event anyway to track its retries, and care
 * with retention and with webhooks created or re-scoped while the cursor lags. The
 * trigger makes the delivery row exactly when the change commits, with nothing to
 * coordinate: the price is one set-based insert per statement that writes events (a join
 * of its new rows with the webhooks), which stays
 * cheap while webhooks number in the hundreds.
 *
 * How they go out. Woken by the log's NOTIFY (any replica's write) and a poll for
 * retries that came due, it claims due deliveries with SKIP LOCKED (store/
 * webhook-deliveries.ts), at most `concurrency` in flight on this replica and
 * `perWebhook` of them to any one webhook (so a receiver that hangs delays only its
 * own deliveries), each request with its own timeout and no database connection held
 * while it waits. The API never waits on a receiver. A result is written only by the claim that made it
 * (a late answer after the lease passed is dropped): at least once, and the receiver
 * deduplicates by delivery id. Time comes from the injected clock.
 */
export class WebhookDispatcher {
  private inFlight = new Set<Promise<void>>();
  /** Requests in flight per webhook id. */
  private inFlightPerWebhook = new Map<string, number>();
  private pumping = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly stopping = new AbortController();
  private readonly onNotify = () => this.kick();

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly log: Logger,
    private readonly cfg: WebhookConfig,
    private readonly clock: Clock,
    private readonly metrics: WebhookObserver = NO_WEBHOOK_METRICS,
    private readonly random: () => number = Math.random,
    private readonly send: Send = sendAttempt,
  ) {}

  start(): void {
    this.feed.on('event', this.onNotify);
    this.feed.on('reconnected', this.onNotify);
    this.tick();
  }

  /** Stops claiming, aborts requests in flight (recorded as interrupted, due again at once) and waits for them. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.feed.off('event', this.onNotify);
    this.feed.off('reconnected', this.onNotify);
    this.stopping.abort();
    await Promise.allSettled([...this.inFlight]);
  }

  /** The poll: deliveries past the maximum age are FAILED, then retries that came due are claimed. */
  private tick(): void {
    if (this.stopped) return;
    failTooOld(this.db, this.clock.now(), this.cfg.maxAgeMs).then(
      (n) => n && this.log.warn({ deliveries: n }, 'webhook deliveries older than A4C_WEBHOOK_MAX_AGE_SECONDS failed'),
      (e: unknown) => this.log.warn({ err: (e as Error).message }, 'failing old webhook deliveries failed'),
    );
    this.kick();
    this.timer = setTimeout(() => this.tick(), this.cfg.pollMs);
    this.timer.unref();
  }

  /** Claims what is due; wake-ups meanwhile cause one more round, not one each. */
  kick(): void {
    if (this.stopped) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = true;
    this.pump()
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'claiming webhook deliveries failed'))
      .finally(() => {
        this.pumping = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.inFlight.size < this.cfg.concurrency) {
      const now = this.clock.now();
      const lease = new Date(now.getTime() + this.cfg.timeoutMs + LEASE_SLACK_MS);
      const claimed = await claimDeliveries(this.db, {
        now,
        leaseUntil: lease,
        limit: this.cfg.concurrency - this.inFlight.size,
        maxAgeMs: this.cfg.maxAgeMs,
        perWebhook: this.cfg.perWebhook,
        inFlight: this.inFlightPerWebhook,
      });
      for (const d of claimed) {
        this.inFlightPerWebhook.set(d.webhookId, (this.inFlightPerWebhook.get(d.webhookId) ?? 0) + 1);
        const p: Promise<void> = this.deliver(d).finally(() => {
          this.inFlight.delete(p);
          const n = (this.inFlightPerWebhook.get(d.webhookId) ?? 1) - 1;
          if (n > 0) this.inFlightPerWebhook.set(d.webhookId, n);
          else this.inFlightPerWebhook.delete(d.webhookId);
          this.kick();
        });
        this.inFlight.add(p);
      }
      if (claimed.length === 0) return;
    }
  }

  private async deliver(d: ClaimedDelivery): Promise<void> {
    const log = this.log.child({ webhookId: d.webhookId, deliveryId: d.id, workspaceId: d.event.workspaceId, buildId: d.event.buildId });
    const started = this.clock.now();
    const t0 = performance.now();
    const outcome = await this.send(d, started, this.cfg.timeoutMs, this.stopping.signal);
    const durationMs = Math.round(performance.now() - t0);
    this.metrics.attempted(succeeded(outcome.status) ? 'success' : outcome.status !== undefined ? 'http_error' : 'no_answer', durationMs / 1000);
    const now = this.clock.now();
    // Cut short by our own shutdown: not the receiver's failure. Due again at once (for
    // another replica, or this one restarted), and not counted against the webhook.
    const interrupted = outcome.status === undefined && this.stopping.signal.aborted;
    const decision: Decision = interrupted ? { kind: 'retry', at: now } : decide(this.cfg, d.attempt, d.createdAt, now, outcome, this.random);
    let recorded = false;
    try {
      await inTx(this.db, async (tx) => {
        const webhookId = await recordAttempt(tx, {
          deliveryId: d.id,
          attempt: d.attempt,
          at: started,
          status: outcome.status ?? null,
          error: decision.kind === 'failed' ? `${outcome.error ?? ''}${outcome.error ? '; ' : ''}${decision.why}` : (outcome.error ?? null),
          durationMs,
          outcome: decision.kind === 'retry' ? { status: 'PENDING', nextAttemptAt: decision.at } : { status: decision.kind === 'succeeded' ? 'SUCCEEDED' : 'FAILED', completedAt: now },
        });
        if (!webhookId) {
          log.info({ attempt: d.attempt }, 'webhook attempt finished after its lease passed; its result is dropped');
          return;
        }
        recorded = true;
        if (interrupted) return;
        const { failures, enabled } = await countAttempt(tx, webhookId, decision.kind === 'succeeded');
        const limit = this.cfg.disableAfterFailures;
        if (limit > 0 && failures >= limit && enabled) {
          const reason = `disabled after ${failures} consecutive failed attempts (A4C_WEBHOOK_DISABLE_AFTER_FAILURES); last: ${outcome.error ?? `HTTP ${outcome.status}`}`;
          await disableWebhook(tx, webhookId, reason);
          await appendEvent(tx, {
            kind: 'webhook.disabled',
            actor: 'control-plane',
            reason,
            userId: await ownerOf(tx, webhookId),
            changes: { enabled: { from: true, to: false } },
            data: { webhookId, url: d.url, consecutiveFailures: failures },
          });
          log.warn({ failures }, 'webhook disabled after consecutive failures');
        }
      });
    } catch (e) {
      // The lease runs out and another claim retries it.
      log.warn({ err: (e as Error).message }, 'recording a webhook attempt failed');
      return;
    }
    if (recorded && decision.kind !== 'retry') this.metrics.ended(decision.kind);
    if (decision.kind === 'failed') log.warn({ attempt: d.attempt, why: decision.why }, 'webhook delivery failed');
    else log.debug({ attempt: d.attempt, status: outcome.status, error: outcome.error }, decision.kind === 'succeeded' ? 'webhook delivered' : 'webhook attempt failed; retrying');
  }
}

async function ownerOf(tx: Tx, webhookId: string): Promise<string | null> {
  const { rows } = await tx.query<{ user_id: string | null }>('SELECT user_id FROM webhooks WHERE id = $1', [webhookId]);
  return rows[0]?.user_id ?? null;
}
