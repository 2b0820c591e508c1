import { useRoute } from 'preact-iso';
import { useEffect, useState } from 'preact/hooks';
import { get } from '../lib/api.js';
import { useInterval, useLoad, useNow, useSession } from '../lib/hooks.js';
import { searchWorkspaces, type HostView } from '../lib/model.js';
import { Empty, ErrorBox, Field, Loading, PageHeader, StatusBadge, Time } from '../components.js';
import { HostCard } from '../host-card.js';

export function HostPage() {
  const { params } = useRoute();
  const id = params.id as string;
  const { me } = useSession();
  const loaded = useLoad((signal) => get<HostView>(`/v1/hosts/${encodeURIComponent(id)}`, signal), [id]);
  const [h, setH] = useState<HostView>();
  useEffect(() => loaded.data && setH(loaded.data), [loaded.data]);
  const workspaces = useLoad((signal) => searchWorkspaces(me, { hostId: id }, signal), [id, me.id]);
  useInterval(() => (loaded.reload(), workspaces.reload()), 3000);
  const now = useNow();
  if (!h) return loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} title="Could not load this host" /> : <Loading label="Loading the host" />;
  return (
    <>
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href="/ui/hosts">Hosts</a> <span aria-hidden="true">/</span> <span aria-current="page">{h.id}</span>
      </nav>
      <PageHeader title={h.id} subtitle={`${h.arch} · agent ${h.agentVersion || 'unknown'}`} />
      <div class="grid-2">
        <HostCard h={h} admin={me.role === 'admin'} now={now} link={false} onChange={setH} />
        <section class="card" aria-labelledby="agent-title">
          <h2 id="agent-title">Agent</h2>
          <dl class="fields">
            <Field label="Connected">{h.connected ? 'yes' : 'no'}</Field>
            <Field label="Connected since">
              <Time iso={h.connectedAt} now={now} />
            </Field>
            <Field label="Desired state">{`revision ${h.revision}, applied ${h.appliedRevision}${h.revision === h.appliedRevision ? ' (converged)' : ''}`}</Field>
            <Field label="Containers">{h.stats ? `${h.stats.workspaceContainers} workspaces, ${h.stats.engineContainers} on the engine` : null}</Field>
            <Field label="CPU in use">{h.stats ? `${Math.round(h.stats.cpuPercent)} %` : null}</Field>
            <Field label="Images">{h.images.length ? <span class="mono small">{h.images.join(', ')}</span> : null}</Field>
          </dl>
        </section>
      </div>
      <section class="card" aria-labelledby="host-ws-title">
        <h2 id="host-ws-title">Workspaces on {h.id}</h2>
        {workspaces.error ? <ErrorBox error={workspaces.error} onRetry={workspaces.reload} /> : null}
        {!workspaces.data ? (
          workspaces.error ? null : <Loading />
        ) : workspaces.data.length === 0 ? (
          <Empty title={me.role === 'admin' ? 'No workspaces on this host' : 'None of yours on this host'} />
        ) : (
          <table class="table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">User</th>
                <th scope="col">Tier</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {workspaces.data.map((w) => (
                <tr key={w.id}>
                  <td>
                    <a href={`/ui/workspaces/${w.id}`}>{w.name}</a>
                  </td>
                  <td>
                    <StatusBadge status={w.status} lost={w.hostLost} />
                  </td>
                  <td>{w.userId}</td>
                  <td>{w.tier}</td>
                  <td>
                    <Time iso={w.createdAt} now={now} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
