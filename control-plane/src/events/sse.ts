import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Session } from 'better-sse';
import type { Logger } from '@a4c/common';
import type { Db } from '../store/db.js';
import type { Cursor, EventFilter, EventScope } from '../store/events.js';
import { follow } from './follow.js';
import type { EventHub } from './hub.js';

export interface StreamOptions {
  db: Db;
  hub: EventHub;
  log: Logger;
  from: Cursor;
  filter: EventFilter;
  scope: EventScope;
  /** A comment line this often, so proxies and clients see the connection alive. */
  heartbeatMs: number;
  /** The stream ends after this long; the client reconnects with Last-Event-ID (and its credential is checked again). */
  maxSeconds: number;
}

/**
 * Serves the activity log as Server-Sent Events on a response the caller has taken
 * over from koa: `id:` the event's cursor, `event:` its kind, `data:` its JSON. The
 * headers (better-sse) forbid caching and transformation and turn proxy buffering off
 * (X-Accel-Buffering: no); every event is written as it comes, so fetch() readers see
 * it at once. A slow reader is waited for (drain), never buffered without bound.
 */
export async function streamEvents(req: IncomingMessage, res: ServerResponse, o: StreamOptions): Promise<void> {
  req.socket.setTimeout(0);
  req.socket.setKeepAlive(true);
  const session = new Session(req, res, { keepAlive: o.heartbeatMs, retry: 2000, trustClientEventId: false });
  await once(session, 'connected');
  const stop = new AbortController();
  session.once('disconnected', () => stop.abort());
  const limit = setTimeout(() => stop.abort(), o.maxSeconds * 1000);
  limit.unref();
  try {
    for await (const batch of follow(o.db, o.hub, { from: o.from, filter: o.filter, scope: o.scope, signal: stop.signal })) {
      if (!session.isConnected) break;
      await session.batch((buffer) => {
        for (const e of batch) buffer.push(e, e.kind, e.cursor);
      });
      if (res.writableNeedDrain) await Promise.race([once(res, 'drain'), once(stop.signal, 'abort')]);
    }
  } catch (e) {
    o.log.warn({ err: (e as Error).message }, 'event stream ended by an error; the client resumes with Last-Event-ID');
  } finally {
    clearTimeout(limit);
    stop.abort();
    if (!res.writableEnded) res.end();
  }
}
