import { invalidArgument } from '@a4c/common';
import { streamEvents } from '../../events/sse.js';
import { CURSOR_START, decodeCursor, encodeCursor, headCursor, readEvents, type Cursor, type EventFilter } from '../../store/events.js';
import { op, type Ctx, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';
import { scopeOf } from './workspaces.js';

const EVENTS = 'Activity log';

interface EventQuery {
  workspaceId?: string | undefined;
  hostId?: string | undefined;
  userId?: string | undefined;
  buildId?: string | undefined;
  kind?: string[] | undefined;
  since?: string | undefined;
}

const WHO =
  'Authorized like the things the events are about: users see the events of their own workspaces, builds and user, ' +
  "leads also their team members', admins all; events about no user (hosts, join tokens, team quotas) are admins' only. " +
  'Naming a workspace, build or user the caller may not read is a 404.';

/** The activity log: read a page at a time, or follow live as Server-Sent Events. */
export function eventOperations(d: Pick<RouteDeps, 'db' | 'workspaces' | 'builds' | 'policy' | 'events' | 'log'>): Operation[] {
  const can = d.policy;

  /** The filter, after checking the caller may read what it names (404 otherwise). */
  const filterFor = async (ctx: Ctx, q: EventQuery): Promise<EventFilter> => {
    const p = ctx.state.principal;
    if (p.role !== 'admin') {
      if (q.userId) await can.read(p, q.userId);
      if (q.workspaceId) {
        const w = await d.workspaces.get(q.workspaceId);
        await can.read(p, w.userId, 'workspace', w.id);
      }
      if (q.buildId) {
        const b = await d.builds.get(q.buildId);
        await can.read(p, b.userId, 'image build', b.id);
      }
    }
    return { workspaceId: q.workspaceId, hostId: q.hostId, userId: q.userId, buildId: q.buildId, kinds: q.kind, since: q.since ? new Date(q.since) : undefined };
  };

  return [
    op({
      method: 'get',
      path: '/v1/events',
      operationId: 'listEvents',
      summary: 'Read the activity log: every state change, oldest first',
      description: `${WHO} A page at a time: pass nextCursor as after. An event appears once every transaction older than it has ended, so paging never skips or repeats one.`,
      tag: EVENTS,
      access: 'anyone',
      query: s.requests.events,
      responses: { 200: { description: 'Events in log order', schema: s.eventPage } },
      errors: [404],
      handle: async (ctx, { query }) => {
        const filter = await filterFor(ctx, query);
        const after = query.after ? cursor(query.after, 'after') : CURSOR_START;
        const page = await readEvents(d.db, { after, filter, scope: scopeOf(ctx.state.principal), limit: query.limit ?? 100 });
        ctx.body = { events: page.events.map((e) => e.view), nextCursor: encodeCursor(page.covered) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/events/stream',
      operationId: 'streamEvents',
      summary: 'Follow the activity log live (Server-Sent Events)',
      description:
        `${WHO} Starts after the Last-Event-ID header's cursor, else after \`after\`, else at \`since\`, else from now. ` +
        'Works with EventSource and with fetch() and an Authorization header; any replica serves it. ' +
        `A comment line every ${Math.round(d.events.heartbeatMs / 1000)} s; the stream ends after ${d.events.streamMaxSeconds} s ` +
        '(reconnect with Last-Event-ID: nothing is lost or repeated).',
      tag: EVENTS,
      access: 'anyone',
      query: s.requests.eventStream,
      responses: { 200: { description: 'The stream', schema: s.eventStream, contentType: 'text/event-stream' } },
      errors: [404],
      handle: async (ctx, { query }) => {
        const filter = await filterFor(ctx, query);
        const header = ctx.get('last-event-id');
        let from: Cursor;
        if (header) from = cursor(header, 'Last-Event-ID');
        else if (query.after) from = cursor(query.after, 'after');
        else if (filter.since) from = CURSOR_START;
        else from = await headCursor(d.db);
        // From here the response is the stream's; koa leaves it alone.
        ctx.status = 200;
        ctx.respond = false;
        void streamEvents(ctx.req, ctx.res, {
          db: d.db,
          hub: d.events.hub,
          log: d.log.child({ requestId: ctx.state.requestId }),
          from,
          filter,
          scope: scopeOf(ctx.state.principal),
          heartbeatMs: d.events.heartbeatMs,
          maxSeconds: d.events.streamMaxSeconds,
        });
      },
    }),
  ];
}

function cursor(v: string, field: string): Cursor {
  const c = decodeCursor(v);
  if (!c) throw invalidArgument(field, "must be a cursor from an earlier answer (nextCursor, or an event's cursor)");
  return c;
}
