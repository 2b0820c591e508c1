import { useLocation } from 'preact-iso';
import { get, qs } from '../lib/api.js';
import { useLoad, useNow } from '../lib/hooks.js';
import type { AuditEntry } from '../lib/model.js';
import { Empty, ErrorBox, Loading, PageHeader, Time } from '../components.js';
import { AdminOnly } from '../admin-only.js';

export function AuditPage() {
  return (
    <AdminOnly title="Audit">
      <Audit />
    </AdminOnly>
  );
}

function Audit() {
  const { query, route, path } = useLocation();
  const loaded = useLoad((signal) => get<{ entries: AuditEntry[] }>(`/v1/audit${qs({ actor: query.actor, limit: 200 })}`, signal).then((r) => r.entries), [query.actor]);
  const now = useNow();
  return (
    <>
      <PageHeader title="Audit" subtitle="Every call that changed something, whatever its outcome, newest first">
        <button type="button" class="btn" onClick={loaded.reload}>
          Refresh
        </button>
      </PageHeader>
      <form class="filters" role="search" aria-label="Filter the audit log" onSubmit={(e) => e.preventDefault()}>
        <label class="filter">
          <span>Actor</span>
          <input
            value={query.actor ?? ''}
            placeholder="anyone"
            onChange={(e) => {
              const v = (e.target as HTMLInputElement).value.trim();
              route(`${path}${v ? `?actor=${encodeURIComponent(v)}` : ''}`, true);
            }}
          />
        </label>
      </form>
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} /> : null}
      {!loaded.data ? (
        loaded.error ? null : <Loading />
      ) : loaded.data.length === 0 ? (
        <Empty title="No entries" />
      ) : (
        <div class="table-wrap">
          <table class="table" aria-label="Audit log">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {loaded.data.map((a) => (
                <tr key={a.id}>
                  <td class="nowrap">
                    <Time iso={a.at} now={now} />
                  </td>
                  <td>{a.actor}</td>
                  <td class="mono small">{a.action}</td>
                  <td class="mono small">{a.target}</td>
                  <td>
                    <span class={`outcome ${a.outcome >= 400 ? 'outcome-bad' : 'outcome-ok'}`}>{a.outcome}</span>
                    {a.error ? <span class="small muted"> {a.error}</span> : null}
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
