import { conflict, type Logger } from '@a4c/common';
import { inTx, type Db } from '../store/db.js';
import type { WorkspaceRow } from '../store/workspaces.js';
import { placeBatch, type BatchRules, type PlacementRequest } from './batch.js';

export interface PlacementQueueOptions {
  /** Most creates placed in one transaction. */
  maxBatch: number;
  /** Batches in their transactions at once (1: the next batch gathers while the previous commits). */
  inFlight: number;
}

interface Waiting {
  req: PlacementRequest;
  resolve(row: WorkspaceRow): void;
  reject(e: Error): void;
}

/**
 * Group commit for creates. A create joins the queue and is answered when the
 * transaction holding it has committed (or with its own error). No timer: while a
 * batch is in its transaction the next one gathers, so an idle control plane places a
 * lone create at once and a busy one places as many per commit as arrived during the
 * previous commit (up to maxBatch). One synchronous commit, and one statement per
 * table, then carry hundreds of placements.
 */
export class PlacementQueue {
  private readonly waiting: Waiting[] = [];
  private running = 0;
  private backoff: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly rules: BatchRules,
    private readonly opts: PlacementQueueOptions,
    /** Told after commit, once per host that got workspaces. */
    private readonly hostChanged: (hostId: string) => void,
    private readonly log: Logger,
  ) {}

  place(req: PlacementRequest): Promise<WorkspaceRow> {
    return this.placeMany([req])[0] as Promise<WorkspaceRow>;
  }

  /** Several creates joining at once, in order (a bulk request): an idle queue places them in one batch, not the first alone. */
  placeMany(reqs: readonly PlacementRequest[]): Promise<WorkspaceRow>[] {
    const placed = reqs.map((req) => new Promise<WorkspaceRow>((resolve, reject) => this.waiting.push({ req, resolve, reject })));
    this.kick();
    return placed;
  }

  private kick(): void {
    while (this.running < this.opts.inFlight && this.waiting.length && !this.backoff) {
      const batch = this.waiting.splice(0, this.opts.maxBatch);
      this.running++;
      void this.run(batch).finally(() => {
        this.running--;
        this.kick();
      });
    }
  }

  private async run(batch: Waiting[]): Promise<void> {
    let outcomes;
    try {
      outcomes = await inTx(this.db, (tx) =>
        placeBatch(
          tx,
          batch.map((w) => w.req),
          this.rules,
        ),
      );
    } catch (e) {
      // The transaction failed as a whole: nothing was created. One request's row may be
      // the cause (a name another path took without the user's lock: unique violation),
      // so each is tried again alone and only the one at fault fails.
      if (batch.length > 1) {
        this.log.warn({ err: (e as Error).message, batch: batch.length }, 'placement batch failed; placing its creates one by one');
        for (const w of batch) await this.run([w]);
        return;
      }
      for (const w of batch) {
        w.reject(
          (e as { code?: string }).code === '23505'
            ? conflict(`user ${w.req.userId} already has a workspace named ${JSON.stringify(w.req.name)}`, 'choose another name, or delete the existing workspace first')
            : (e as Error),
        );
      }
      return;
    }
    const hosts = new Set<string>();
    const again: Waiting[] = [];
    for (const [i, w] of batch.entries()) {
      const o = outcomes[i];
      if (!o) w.reject(new Error('placement batch gave no outcome'));
      else if ('row' in o) {
        if (o.row.host_id) hosts.add(o.row.host_id);
        w.resolve(o.row);
      } else if ('error' in o) w.reject(o.error);
      else again.push(w);
    }
    for (const h of hosts) this.hostChanged(h);
    if (batch.length > 1) this.log.debug({ batch: batch.length, hosts: hosts.size, retried: again.length }, 'placement batch committed');
    if (again.length) {
      // Every fitting host was held by another placement (another replica): try again
      // first thing, after a short random pause so the holder can commit.
      this.waiting.unshift(...again);
      if (again.length === batch.length && !this.backoff) {
        this.backoff = setTimeout(() => {
          this.backoff = undefined;
          this.kick();
        }, Math.random() * 20);
      }
    }
  }
}
