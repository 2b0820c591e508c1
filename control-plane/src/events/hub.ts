import type { Logger } from '@a4c/common';
import type { Db } from '../store/db.js';
import { compareCursors, eventsPending, headCursor, readEvents, type Cursor, type LoggedEvent } from '../store/events.js';
import type { ChangeFeed } from './notify.js';

export interface EventHubOptions {
  /** Events kept in memory for followers that are a little behind. */
  bufferSize: number;
  /** How often to look for new events when no notification came (the watermark also moves when unrelated transactions end). */
  pollMs: number;
  /** How soon to look again while committed events wait behind an older open transaction. */
  pendingPollMs: number;
}

const FETCH_LIMIT = 1000;

/**
 * One per replica: reads the activity log as it grows (woken by NOTIFY a4c_event from
 * any replica, and by a slow poll) and keeps the newest events in memory, so that any
 * number of live followers on this replica cost one query per change, not one each.
 * A follower further behind than the buffer reads PostgreSQL itself (see follow.ts).
 * The buffer holds every event in (bufferStart, position], in log order.
 */
export class EventHub {
  private position: Cursor = { xid: 0n, id: 0n };
  private bufferStart: Cursor = { xid: 0n, id: 0n };
  private buffer: LoggedEvent[] = [];
  private waiters = new Set<() => void>();
  private fetching = false;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly onNotify = () => this.kick();

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly log: Logger,
    private readonly opts: EventHubOptions,
  ) {}

  async start(): Promise<void> {
    this.position = this.bufferStart = await headCursor(this.db);
    this.feed.on('event', this.onNotify);
    this.feed.on('reconnected', this.onNotify);
    this.schedule(this.opts.pollMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.feed.off('event', this.onNotify);
    this.feed.off('reconnected', this.onNotify);
    this.wakeAll();
  }

  get closed(): boolean {
    return this.stopped;
  }

  /** Where the hub has read to. */
  get head(): Cursor {
    return this.position;
  }

  /**
   * Events after `c` up to the hub's position, and the position they cover; undefined if
   * the buffer no longer reaches back to `c` (read PostgreSQL instead).
   */
  since(c: Cursor): { events: LoggedEvent[]; covered: Cursor } | undefined {
    if (compareCursors(c, this.bufferStart) < 0) return undefined;
    if (compareCursors(c, this.position) >= 0) return { events: [], covered: c };
    // Binary search for the first buffered event after c.
    let lo = 0;
    let hi = this.buffer.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareCursors((this.buffer[mid] as LoggedEvent).position, c) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return { events: this.buffer.slice(lo), covered: this.position };
  }

  /** Resolves when the hub has read further (or stopped, or the signal aborts). */
  next(signal: AbortSignal): Promise<void> {
    if (this.stopped || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private wakeAll(): void {
    for (const w of [...this.waiters]) w();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.kick(), ms);
    this.timer.unref();
  }

  /** Reads what is new; notifications arriving meanwhile cause one more read, not one each. */
  kick(): void {
    if (this.stopped) return;
    if (this.fetching) {
      this.again = true;
      return;
    }
    this.fetching = true;
    this.fetch().then(
      (pending) => {
        this.fetching = false;
        if (this.again) {
          this.again = false;
          this.kick();
        } else this.schedule(pending ? this.opts.pendingPollMs : this.opts.pollMs);
      },
      (e: unknown) => {
        this.fetching = false;
        this.again = false;
        this.log.warn({ err: (e as Error).message }, 'reading the activity log failed');
        this.schedule(this.opts.pollMs);
      },
    );
  }

  private async fetch(): Promise<boolean> {
    let moved = false;
    let read = 0;
    for (;;) {
      if (read > this.opts.bufferSize) {
        // A burst larger than the buffer: the hub keeps only the newest events anyway,
        // so it starts over at the head instead of reading the burst through. Followers
        // still inside the burst read it from PostgreSQL themselves (follow.ts).
        this.position = this.bufferStart = await headCursor(this.db);
        this.buffer = [];
        moved = true;
        break;
      }
      const page = await readEvents(this.db, { after: this.position, filter: {}, scope: { all: true }, limit: FETCH_LIMIT, withTeam: true });
      if (this.stopped) return false;
      read += page.events.length;
      if (page.events.length) {
        this.buffer.push(...page.events);
        const excess = this.buffer.length - this.opts.bufferSize;
        if (excess > 0) {
          this.bufferStart = (this.buffer[excess - 1] as LoggedEvent).position;
          this.buffer.splice(0, excess);
        }
      }
      if (compareCursors(page.covered, this.position) > 0) {
        this.position = page.covered;
        moved = true;
      }
      if (page.events.length < FETCH_LIMIT) break;
    }
    if (moved) this.wakeAll();
    return eventsPending(this.db, this.position);
  }
}
