import type { Logger } from '@a4c/common';
import { retryOnceOnLostRace, type Db } from '../store/db.js';
import { recordHeartbeats, type HeartbeatRow } from '../store/host-sessions.js';

interface Pending {
  row: HeartbeatRow;
  waiters: Array<{ resolve: (applied: boolean) => void; reject: (e: unknown) => void }>;
}

/**
 * Heartbeats of every session on this replica, applied in batches: what arrives within
 * windowMs (or while the previous batch commits) goes into one transaction, as
 * SwarmKit's dispatcher and Nomad's servers coalesce node updates. Heartbeats never
 * wait behind a session's other messages, so a host busy with reports never looks
 * dead; and a session whose beats arrive faster than they commit has only its newest
 * one applied.
 */
export class HeartbeatBatcher {
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  /** Batches and heartbeats applied, for bench/ and tests. */
  readonly counts = { batches: 0, heartbeats: 0 };

  constructor(
    private readonly db: Db,
    private readonly windowMs: number,
    private readonly max: number,
    private readonly log: Logger,
  ) {}

  /** Resolves true once applied, false if the session is not its host's any more (or its certificate was revoked). */
  submit(row: HeartbeatRow): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const was = this.pending.get(row.sessionId);
      if (was) {
        // Coalesce: the newer stats win; images sent earlier and not yet applied are kept.
        was.row = { ...row, images: row.images ?? was.row.images };
        was.waiters.push({ resolve, reject });
      } else {
        this.pending.set(row.sessionId, { row, waiters: [{ resolve, reject }] });
      }
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.flushing || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.pending.size >= this.max ? 0 : this.windowMs);
  }

  private async flush(): Promise<void> {
    if (!this.pending.size) return;
    this.flushing = true;
    const batch: Pending[] = [];
    for (const [id, p] of this.pending) {
      batch.push(p);
      this.pending.delete(id);
      if (batch.length >= this.max) break;
    }
    try {
      const applied = await this.apply(batch.map((p) => p.row));
      this.counts.batches++;
      this.counts.heartbeats += batch.length;
      for (const p of batch) for (const w of p.waiters) w.resolve(applied.has(p.row.sessionId));
    } catch (e) {
      for (const p of batch) for (const w of p.waiters) w.reject(e);
    } finally {
      this.flushing = false;
      if (this.pending.size) this.schedule();
    }
  }

  /** One retry: a batch that lost a deadlock or a serialization race to another replica's writes goes again. */
  private apply(rows: HeartbeatRow[]): Promise<Set<string>> {
    return retryOnceOnLostRace(
      () => recordHeartbeats(this.db, rows),
      (e) => this.log.warn({ err: e.message, heartbeats: rows.length }, 'heartbeat batch lost a lock race; retrying once'),
    );
  }

  /** Shutting down: what waits is answered with an error (its sessions are closing anyway). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const p of this.pending.values()) for (const w of p.waiters) w.reject(new Error('the control plane is shutting down'));
    this.pending.clear();
  }
}
