import type { Logger } from '@a4c/common';
import { retryOnceOnLostRace, type Db } from '../store/db.js';
import { openHostSessions, type ClaimPolicy, type ClaimResult, type HelloClaim } from '../store/session-claims.js';

interface Pending {
  claim: HelloClaim;
  resolve: (r: ClaimResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Hellos of every stream on this replica, recorded in batches: no timer, so a lone
 * Hello is recorded at once, and while one batch commits the next gathers (up to max),
 * so a connect storm of thousands of agents costs one transaction per round instead of
 * one per agent. Each Hello still gets its own answer (store/session-claims.ts). Two
 * Hellos for one host never share a batch: the later waits for the next, where the
 * first one's session is what it meets.
 */
export class HelloBatcher {
  private queue: Pending[] = [];
  private busy = false;
  private stopped = false;
  /** Batches and Hellos recorded, for bench/ and tests. */
  readonly counts = { batches: 0, hellos: 0 };

  constructor(
    private readonly db: Db,
    private readonly policy: ClaimPolicy,
    private readonly max: number,
    private readonly log: Logger,
  ) {}

  submit(claim: HelloClaim): Promise<ClaimResult> {
    if (this.stopped) return Promise.reject(new Error('the control plane is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ claim, resolve, reject });
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.busy || !this.queue.length) return;
    this.busy = true;
    const batch: Pending[] = [];
    const hosts = new Set<string>();
    const rest: Pending[] = [];
    for (const p of this.queue) {
      if (batch.length < this.max && !hosts.has(p.claim.hostId)) {
        batch.push(p);
        hosts.add(p.claim.hostId);
      } else {
        rest.push(p);
      }
    }
    this.queue = rest;
    // The Hellos still waiting are hosts about to heartbeat too: counting them gives the
    // first sessions of a connect storm the period the whole fleet needs, not the
    // shortest one (agents/heartbeat-period.ts).
    const waiting = rest.length;
    const policy: ClaimPolicy = { ...this.policy, periodMs: (hosts) => this.policy.periodMs(hosts + waiting) };
    try {
      const results = await this.apply(batch.map((p) => p.claim), policy);
      this.counts.batches++;
      this.counts.hellos += batch.length;
      batch.forEach((p, i) => p.resolve(results[i] as ClaimResult));
    } catch (e) {
      for (const p of batch) p.reject(e);
    } finally {
      this.busy = false;
      void this.flush();
    }
  }

  /** One retry: a batch that lost a deadlock or a lock race to another replica's writes goes again. */
  private apply(claims: HelloClaim[], policy: ClaimPolicy): Promise<ClaimResult[]> {
    return retryOnceOnLostRace(
      () => openHostSessions(this.db, claims, policy),
      (e) => this.log.warn({ err: e.message, hellos: claims.length }, 'Hello batch lost a lock race; retrying once'),
    );
  }

  /** Shutting down: what waits is answered with an error (its streams are closing anyway). */
  stop(): void {
    this.stopped = true;
    const q = this.queue;
    this.queue = [];
    for (const p of q) p.reject(new Error('the control plane is shutting down'));
  }
}
