import { useEffect, useState } from 'preact/hooks';
import { useEventStream, useLoad, useNow } from './lib/hooks.js';
import { listEvents, type A4cEvent, type EventFilter } from './lib/model.js';
import { Empty, ErrorBox, LiveState, Loading, Notice, Time } from './components.js';
import type { StreamState } from './lib/stream.js';

/** Human words for an event kind: "workspace.status_changed" → "workspace status changed". */
export function kindText(kind: string): string {
  return kind.replace(/[._]/g, ' ');
}

/** The interesting fields of an event's data, as short "key: value" pairs. */
export function eventDetail(e: A4cEvent): string {
  const skip = new Set(['workspaceId', 'hostId', 'userId']);
  return Object.entries(e.data)
    .filter(([k, v]) => !skip.has(k) && v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' · ');
}

/**
 * The events for a filter, oldest first, then live from the stream (resumed after the
 * last one read, so nothing is missed in between).
 */
export function useEvents(
  filter: Omit<EventFilter, 'after'>,
  onEvent?: (e: A4cEvent) => void,
  pages = 1,
): { events: A4cEvent[] | undefined; available: boolean | undefined; error: unknown; stream: StreamState; reload(): void } {
  const key = JSON.stringify(filter);
  const first = useLoad((signal) => listEvents({ ...filter, limit: filter.limit ?? 200 }, signal, pages), [key]);
  const [events, setEvents] = useState<A4cEvent[]>();
  useEffect(() => first.data && setEvents(first.data.events), [first.data]);
  const available = first.data === undefined ? (first.loading ? undefined : false) : true;
  // Followed from where the read ended: no event in between is missed.
  const stream = useEventStream(
    available ? { workspaceId: filter.workspaceId, hostId: filter.hostId, userId: filter.userId, kind: filter.kind } : null,
    (e) => {
      setEvents((list) => (list && !list.some((x) => x.id === e.id) ? [...list, e].slice(-1000) : list));
      onEvent?.(e);
    },
    first.data?.nextCursor,
  );
  return { events, available, error: first.error, stream: available === false ? { kind: 'unavailable' } : stream, reload: first.reload };
}

export function Timeline({ workspaceId, onEvent }: { workspaceId: string; onEvent?: (e: A4cEvent) => void }) {
  const { events, available, error, stream, reload } = useEvents({ workspaceId }, onEvent);
  const now = useNow();
  return (
    <section class="card" aria-labelledby="timeline-title">
      <div class="card-head">
        <h2 id="timeline-title">Timeline</h2>
        {available ? <LiveState state={stream} /> : null}
      </div>
      {error ? <ErrorBox error={error} onRetry={reload} /> : null}
      {available === undefined && !error ? <Loading label="Loading events" /> : null}
      {available === false ? <Notice>This control plane does not serve the activity log yet (GET /v1/events); the status above refreshes every second.</Notice> : null}
      {events && events.length === 0 ? <Empty title="No events yet" /> : null}
      {events && events.length > 0 ? (
        <ol class="timeline">
          {[...events].reverse().map((e) => (
            <li key={e.id} class={/fail|error|lost/.test(e.kind) ? 'tl-bad' : ''}>
              <span class="tl-dot" aria-hidden="true" />
              <div class="tl-body">
                <div class="tl-head">
                  <strong>{kindText(e.kind)}</strong>
                  <Time iso={e.at} now={now} />
                </div>
                <div class="tl-detail">
                  {e.actor ? <span class="muted">by {e.actor}</span> : null}
                  {eventDetail(e) ? <span> · {eventDetail(e)}</span> : null}
                </div>
              </div>
            </li>
          ))}
        </ol>
      ) : null}
    </section>
  );
}
