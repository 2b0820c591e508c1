import { useEffect, useState } from 'preact/hooks';
import { get } from '../lib/api.js';
import { useInterval, useLoad, useNow, useSession } from '../lib/hooks.js';
import type { HostView } from '../lib/model.js';
import { Empty, ErrorBox, Loading, PageHeader } from '../components.js';
import { HostCard } from '../host-card.js';

export function HostsPage() {
  const { me } = useSession();
  const loaded = useLoad((signal) => get<{ hosts: HostView[] }>('/v1/hosts', signal).then((r) => r.hosts), []);
  const [hosts, setHosts] = useState<HostView[]>();
  useEffect(() => loaded.data && setHosts(loaded.data), [loaded.data]);
  useInterval(() => loaded.reload(), 3000);
  const now = useNow();
  const total = (hosts ?? []).reduce((n, h) => n + h.workspaceCount, 0);
  return (
    <>
      <PageHeader
        title="Hosts"
        subtitle={hosts ? `${hosts.length} host${hosts.length === 1 ? '' : 's'}, ${hosts.filter((h) => h.status === 'healthy').length} healthy, ${total} workspaces` : undefined}
      />
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} /> : null}
      {!hosts ? (
        loaded.error ? null : <Loading label="Loading hosts" />
      ) : hosts.length === 0 ? (
        <Empty title="No host has connected yet">
          <p>Install and start an agent on a host (see deploy/ and docs/operations.md); it appears here within seconds.</p>
        </Empty>
      ) : (
        <div class="host-grid">
          {hosts.map((h) => (
            <HostCard key={h.id} h={h} admin={me.role === 'admin'} now={now} onChange={(after) => setHosts((list) => list?.map((x) => (x.id === after.id ? after : x)))} />
          ))}
        </div>
      )}
    </>
  );
}
