import { useLocation } from 'preact-iso';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get } from '../lib/api.js';
import { useEventStream, useInterval, useLoad, useNow, useSession } from '../lib/hooks.js';
import { hasFleetSearch, searchWorkspaces, WORKSPACE_STATUSES, type HostView, type Workspace, type WorkspaceFilter } from '../lib/model.js';
import { Empty, ErrorBox, LiveState, Loading, PageHeader, StatusBadge, Time } from '../components.js';
import { WorkspaceActions } from '../workspace-actions.js';

const POLL_SECONDS = 1;

/** The list's filters live in the URL, so a filtered view is a link to share and back/forward walk through them. */
function filterFromQuery(q: Record<string, string>): WorkspaceFilter {
  return { status: q.status, userId: q.user, hostId: q.host, project: q.project, q: q.q, includeDeleted: q.deleted === 'true' };
}

export function WorkspacesPage() {
  const { me } = useSession();
  const { query, route, path } = useLocation();
  const filter = filterFromQuery(query);
  const key = JSON.stringify(filter);
  const list = useLoad((signal) => searchWorkspaces(me, filter, signal), [key, me.id]);
  const hosts = useLoad((signal) => get<{ hosts: HostView[] }>('/v1/hosts', signal).then((r) => r.hosts), []);
  const [rows, setRows] = useState<Workspace[]>();
  const now = useNow();
  useEffect(() => list.data && setRows(list.data), [list.data]);

  // Live: an event about a workspace refetches that one (and the list, for new ones).
  const stream = useEventStream({}, (e) => {
    if (!e.workspaceId) return;
    list.reload();
  });
  // Without the events stream (an older control plane), poll: every second, or every
  // 5 s where an admin's list costs a request per user (no fleet search to ask once).
  const pollSeconds = me.role === 'admin' && hasFleetSearch() === false ? 5 : POLL_SECONDS;
  useInterval(() => list.reload(), stream.kind === 'live' ? 30_000 : stream.kind === 'unavailable' || stream.kind === 'reconnecting' ? pollSeconds * 1000 : null);

  const set = (k: string, v: string) => {
    const next = new URLSearchParams(query);
    if (v) next.set(k, v);
    else next.delete(k);
    const s = next.toString();
    route(`${path}${s ? `?${s}` : ''}`, true);
  };
  const wide = me.role !== 'user';
  const shown = rows ?? [];

  return (
    <>
      <PageHeader title="Workspaces" subtitle={me.role === 'admin' ? 'Every workspace in the fleet' : me.role === 'lead' ? 'Yours and your team’s' : 'Your development environments'}>
        <LiveState state={stream} pollSeconds={pollSeconds} />
        <a class="btn btn-primary" href="/ui/workspaces/new">
          New workspace
        </a>
      </PageHeader>
      <form class="filters" role="search" aria-label="Filter workspaces" onSubmit={(e) => e.preventDefault()}>
        <label class="filter grow">
          <span>Search</span>
          <input type="search" placeholder="name, project, hostname, error…" value={query.q ?? ''} onChange={(e) => set('q', (e.target as HTMLInputElement).value)} />
        </label>
        <label class="filter">
          <span>Status</span>
          <select value={query.status ?? ''} onChange={(e) => set('status', (e.target as HTMLSelectElement).value)}>
            <option value="">Any live</option>
            {WORKSPACE_STATUSES.map((s) => (
              <option value={s} key={s}>
                {s.replace(/_/g, ' ').toLowerCase()}
              </option>
            ))}
          </select>
        </label>
        {wide ? (
          <label class="filter">
            <span>User</span>
            <input value={query.user ?? ''} placeholder="anyone" onChange={(e) => set('user', (e.target as HTMLInputElement).value.trim())} />
          </label>
        ) : null}
        <label class="filter">
          <span>Host</span>
          <select value={query.host ?? ''} onChange={(e) => set('host', (e.target as HTMLSelectElement).value)}>
            <option value="">Any</option>
            {(hosts.data ?? []).map((h) => (
              <option value={h.id} key={h.id}>
                {h.id}
              </option>
            ))}
          </select>
        </label>
        <label class="filter">
          <span>Project</span>
          <input value={query.project ?? ''} placeholder="any" onChange={(e) => set('project', (e.target as HTMLInputElement).value.trim())} />
        </label>
      </form>
      {list.error && !(list.error instanceof ApiError && list.error.status === 404 && filter.userId) ? <ErrorBox error={list.error} onRetry={list.reload} /> : null}
      {!rows && list.loading ? (
        <Loading label="Loading workspaces" />
      ) : shown.length === 0 ? (
        <Empty title={Object.values(filter).some(Boolean) ? 'No workspace matches these filters' : 'No workspaces yet'}>
          <p>
            A workspace is a container with your project’s tools, your files at <code>/workspace</code>, and a terminal in the browser.
          </p>
          <a class="btn btn-primary" href="/ui/workspaces/new">
            Create your first workspace
          </a>
        </Empty>
      ) : (
        <div class="table-wrap">
          <table class="table" aria-label="Workspaces">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                {wide ? <th scope="col">User</th> : null}
                <th scope="col">Host</th>
                <th scope="col">Tier</th>
                <th scope="col">Created</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {shown.map((w) => (
                <tr key={w.id} data-workspace={w.id}>
                  <td>
                    <a class="row-title" href={`/ui/workspaces/${w.id}`}>
                      {w.name}
                    </a>
                    <span class="row-sub">
                      {w.projectName} · {w.arch}
                    </span>
                  </td>
                  <td>
                    <StatusBadge status={w.status} lost={w.hostLost} />
                  </td>
                  {wide ? <td>{w.userId}</td> : null}
                  <td>{w.hostId ? <a href={`/ui/hosts/${w.hostId}`}>{w.hostId}</a> : <span class="muted">–</span>}</td>
                  <td>{w.tier}</td>
                  <td>
                    <Time iso={w.createdAt} now={now} />
                  </td>
                  <td class="cell-actions">
                    <WorkspaceActions
                      w={w}
                      compact
                      canChange={me.role === 'admin' || me.id === w.userId}
                      onDone={(after) => {
                        setRows((r) => r?.map((x) => (x.id === after.id ? after : x)));
                        list.reload();
                      }}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
