import type { Logger } from '@a4c/common';
import type { Observer } from '../metrics/observer.js';
import { inTx, retryOnceOnLostRace, type Db } from '../store/db.js';
import { applyFeedback, type FeedbackItem, type FeedbackResult } from '../workspaces/agent-feedback.js';

export interface FeedbackBatchOptions {
  /** Items arriving within this window share a transaction; 0: gathered only while the previous batch commits. */
  windowMs: number;
  /** Most items in one transaction. */
  max: number;
}

/** A session's messages submitted together, in its order. */
interface Waiting {
  items: FeedbackItem[];
  resolve(): void;
  reject(e: unknown): void;
}

/**
 * Workspace status reports and acks of every session on this replica, applied in
 * batches: what arrives while the previous batch commits (or within windowMs) goes into
 * one transaction (workspaces/agent-feedback.ts), as SwarmKit's dispatcher commits
 * status updates in batches. A lone report is applied at once; a burst of creates
 * finishing on many hosts costs one synchronous commit per round, not one per report.
 *
 * A session submits the reports and acks waiting in its inbox together, in its order,
 * and its next ones only once those are answered, so its messages apply in the order it
 * sent them (a batch holds at most one submission of a session, whoever calls it). A
 * submission is answered when its batch committed: resolved, or rejected with the first
 * refusal of its items (SessionSuperseded, AckRefused), whose later items are dropped
 * as they would never have been handled alone, while the rest of the batch applies.
 */
export class FeedbackBatcher {
  private pending: Waiting[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  private stopped = false;
  /** Transactions committed and items they carried, for bench/ and tests. */
  readonly counts = { batches: 0, items: 0 };

  constructor(
    private readonly db: Db,
    private readonly opts: FeedbackBatchOptions,
    private readonly after: { hostChanged(hostId: string): void; observe: Observer; log: Logger },
  ) {}

  /** Items of one session, in its order. */
  submit(items: FeedbackItem[]): Promise<void> {
    if (this.stopped) return Promise.reject(new Error('the control plane is shutting down'));
    if (!items.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.pending.push({ items, resolve, reject });
      this.schedule();
    });
  }

  private get pendingItems(): number {
    let n = 0;
    for (const w of this.pending) n += w.items.length;
    return n;
  }

  private schedule(): void {
    if (this.flushing || this.timer || !this.pending.length) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.pendingItems >= this.opts.max ? 0 : this.opts.windowMs);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    const sessions = new Set<string>();
    let items = 0;
    for (const w of this.pending) {
      const session = w.items[0]?.sessionId ?? '';
      // The first submission always goes, even one larger than max.
      if ((!batch.length || items + w.items.length <= this.opts.max) && !sessions.has(session)) {
        sessions.add(session);
        batch.push(w);
        items += w.items.length;
      } else rest.push(w);
    }
    this.pending = rest;
    try {
      await this.run(batch);
    } finally {
      this.flushing = false;
      this.schedule();
    }
  }

  private async run(batch: Waiting[]): Promise<void> {
    let result: FeedbackResult;
    try {
      result = await this.apply(batch.flatMap((w) => w.items));
    } catch (e) {
      // The transaction failed as a whole: nothing applied. One item may be the cause,
      // so each goes again alone and only the one at fault fails.
      if (batch.length > 1) {
        this.after.log.warn({ err: (e as Error).message, batch: batch.length }, 'agent feedback batch failed; applying its items one by one');
        for (const w of batch) await this.run([w]);
        return;
      }
      for (const w of batch) w.reject(e);
      return;
    }
    this.counts.batches++;
    let i = 0;
    for (const w of batch) i += w.items.length;
    this.counts.items += i;
    const { log, observe, hostChanged } = this.after;
    for (const h of result.changedHosts) hostChanged(h);
    for (const c of result.creations) observe.workspaceCreated(c.result, c.seconds);
    for (const a of result.applied) log.debug({ workspaceId: a.workspaceId, hostId: a.hostId, phase: a.phase }, 'workspace status applied');
    for (const d of result.deleted) log.info({ hostId: d.hostId, revision: d.revision, workspaces: d.workspaces }, 'workspaces deleted');
    let at = 0;
    for (const w of batch) {
      const refused = result.refused.slice(at, at + w.items.length).find((e) => e);
      at += w.items.length;
      if (refused) w.reject(refused);
      else w.resolve();
    }
  }

  private apply(items: FeedbackItem[]): Promise<FeedbackResult> {
    return retryOnceOnLostRace(
      () => inTx(this.db, (tx) => applyFeedback(tx, items)),
      (e) => this.after.log.warn({ err: e.message, items: items.length }, 'agent feedback batch lost a lock race; retrying once'),
    );
  }

  /** Shutting down: what waits is answered with an error (its sessions are closing anyway). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.pending) w.reject(new Error('the control plane is shutting down'));
    this.pending = [];
  }
}
