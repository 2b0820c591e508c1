import { useLocation } from 'preact-iso';
import { useState } from 'preact/hooks';
import { useNow } from '../lib/hooks.js';
import { Empty, ErrorBox, LiveState, Loading, Notice, PageHeader, Time } from '../components.js';
import { eventDetail, kindText, useEvents } from '../timeline.js';

export function ActivityPage() {
  const { query, route, path } = useLocation();
  // The last day, newest 300 shown, then live.
  const [since] = useState(() => new Date(Date.now() - 86_400_000).toISOString());
  const filter = { workspaceId: query.workspace, hostId: query.host, userId: query.user, kind: query.kind, since, limit: 300 };
  const { events, available, error, stream, reload } = useEvents(filter, undefined, 10);
  const now = useNow();
  const set = (k: string, v: string) => {
    const next = new URLSearchParams(query);
    if (v) next.set(k, v);
    else next.delete(k);
    const s = next.toString();
    route(`${path}${s ? `?${s}` : ''}`, true);
  };
  return (
    <>
      <PageHeader title="Activity" subtitle="Every change to workspaces, hosts, builds and users, as it happens">
        {available ? <LiveState state={stream} /> : null}
      </PageHeader>
      <form class="filters" role="search" aria-label="Filter activity" onSubmit={(e) => e.preventDefault()}>
        {(
          [
            ['kind', 'Kind', 'e.g. workspace.created'],
            ['workspace', 'Workspace id', 'any'],
            ['host', 'Host', 'any'],
            ['user', 'User', 'any'],
          ] as const
        ).map(([k, label, ph]) => (
          <label class="filter" key={k}>
            <span>{label}</span>
            <input value={query[k] ?? ''} placeholder={ph} onChange={(e) => set(k, (e.target as HTMLInputElement).value.trim())} />
          </label>
        ))}
      </form>
      {error ? <ErrorBox error={error} onRetry={reload} /> : null}
      {available === undefined && !error ? <Loading label="Loading activity" /> : null}
      {available === false ? (
        <Notice>
          This control plane does not serve the activity log yet (<code>GET /v1/events</code> arrives with the observability work). Workspace and host
          pages refresh on their own meanwhile.
        </Notice>
      ) : null}
      {events && events.length === 0 ? <Empty title="Nothing has happened yet" /> : null}
      {events && events.length > 0 ? (
        <div class="table-wrap">
          <table class="table" aria-label="Events">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">What</th>
                <th scope="col">Who</th>
                <th scope="col">On</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {[...events].reverse().map((e) => (
                <tr key={e.id}>
                  <td class="nowrap">
                    <Time iso={e.at} now={now} />
                  </td>
                  <td>{kindText(e.kind)}</td>
                  <td>{e.actor}</td>
                  <td>
                    {e.workspaceId ? <a href={`/ui/workspaces/${e.workspaceId}`}>workspace {e.workspaceId.slice(0, 8)}</a> : null}
                    {e.hostId ? <a href={`/ui/hosts/${e.hostId}`}>{e.hostId}</a> : null}
                  </td>
                  <td class="small">{eventDetail(e)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  );
}
