import type { Db } from '../store/db.js';
import { eventMatches, readEvents, type Cursor, type EventFilter, type EventScope, type EventView } from '../store/events.js';
import type { EventHub } from './hub.js';

const CATCH_UP_PAGE = 500;

/**
 * A follower of the activity log from a cursor: yields batches of the events it may
 * see, in log order, each exactly once, for as long as the signal lets it. It reads
 * PostgreSQL while it is behind the hub's buffer, then takes events from the hub's
 * memory. Both paths apply the same filter and scope (readEvents' SQL, eventMatches).
 */
export async function* follow(
  db: Db,
  hub: EventHub,
  o: { from: Cursor; filter: EventFilter; scope: EventScope; signal: AbortSignal },
): AsyncGenerator<EventView[]> {
  let covered = o.from;
  while (!o.signal.aborted && !hub.closed) {
    const buffered = hub.since(covered);
    if (buffered) {
      covered = buffered.covered;
      const mine = buffered.events.filter((e) => eventMatches(e, o.filter, o.scope)).map((e) => e.view);
      if (mine.length) yield mine;
      else await hub.next(o.signal);
      continue;
    }
    const page = await readEvents(db, { after: covered, filter: o.filter, scope: o.scope, limit: CATCH_UP_PAGE });
    covered = page.covered;
    if (page.events.length) yield page.events.map((e) => e.view);
  }
}
