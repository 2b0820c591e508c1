import { useLocation } from 'preact-iso';
import { useState } from 'preact/hooks';
import { get, put } from '../lib/api.js';
import { useLoad } from '../lib/hooks.js';
import type { QuotaLimits, TeamQuota, User, UserQuota } from '../lib/model.js';
import { Bar, Empty, ErrorBox, Loading, PageHeader } from '../components.js';
import { AdminOnly } from '../admin-only.js';

const LIMITS: { key: keyof QuotaLimits; label: string; usage: keyof UserQuota['usage']; int: boolean }[] = [
  { key: 'maxWorkspaces', label: 'Workspaces', usage: 'workspaces', int: true },
  { key: 'maxDiskGb', label: 'Disk (GB)', usage: 'diskGb', int: false },
  { key: 'maxConcurrentBuilds', label: 'Concurrent builds', usage: 'concurrentBuilds', int: true },
];

export function QuotasPage() {
  return (
    <AdminOnly title="Quotas">
      <Quotas />
    </AdminOnly>
  );
}

function Quotas() {
  const { query, route } = useLocation();
  const users = useLoad((signal) => get<{ users: User[] }>('/v1/users', signal).then((r) => r.users), []);
  const selected = query.user;
  const teams = [...new Set((users.data ?? []).map((u) => u.teamId).filter((t): t is string => !!t))];
  return (
    <>
      <PageHeader title="Quotas" subtitle="A user’s own limit wins, else their team’s, else the control plane’s default" />
      {users.error ? <ErrorBox error={users.error} onRetry={users.reload} /> : null}
      <div class="grid-sidebar">
        <nav class="card list-nav" aria-label="Users">
          <h2>Users</h2>
          {!users.data ? (
            <Loading />
          ) : users.data.length === 0 ? (
            <p class="muted">No users.</p>
          ) : (
            <ul>
              {users.data.map((u) => (
                <li key={u.id}>
                  <a href={`/ui/admin/quotas?user=${encodeURIComponent(u.id)}`} aria-current={selected === u.id ? 'page' : undefined} class={selected === u.id ? 'active' : ''}>
                    {u.id}
                    {u.teamId ? <span class="muted small"> · {u.teamId}</span> : null}
                  </a>
                </li>
              ))}
            </ul>
          )}
          {teams.length ? (
            <>
              <h2>Teams</h2>
              <ul>
                {teams.map((t) => (
                  <li key={t}>
                    <a href={`/ui/admin/quotas?team=${encodeURIComponent(t)}`} aria-current={query.team === t ? 'page' : undefined} class={query.team === t ? 'active' : ''}>
                      {t}
                    </a>
                  </li>
                ))}
              </ul>
            </>
          ) : null}
        </nav>
        <div>
          {selected ? (
            <UserQuotaCard userId={selected} key={selected} />
          ) : query.team ? (
            <TeamQuotaCard teamId={query.team} key={query.team} />
          ) : (
            <Empty title="Choose a user or a team">
              <p>
                Or go to <button type="button" class="link" onClick={() => users.data?.[0] && route(`/ui/admin/quotas?user=${encodeURIComponent(users.data[0].id)}`)}>the first user</button>.
              </p>
            </Empty>
          )}
        </div>
      </div>
    </>
  );
}

function OverrideForm({ overrides, onSave }: { overrides: Record<keyof QuotaLimits, number | null>; onSave(body: Record<string, number | null>): Promise<void> }) {
  const [error, setError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    const body: Record<string, number | null> = {};
    for (const l of LIMITS) {
      const v = String(f.get(l.key) ?? '').trim();
      body[l.key] = v === '' ? null : Number(v);
    }
    setError(undefined);
    setSaved(false);
    try {
      await onSave(body);
      setSaved(true);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="inline-form" onSubmit={submit}>
      {LIMITS.map((l) => (
        <label key={l.key}>
          <span>{l.label}</span>
          <input name={l.key} type="number" min="0" step={l.int ? '1' : 'any'} defaultValue={overrides[l.key] === null ? '' : String(overrides[l.key])} placeholder="inherit" />
        </label>
      ))}
      <button type="submit" class="btn btn-primary">
        Save overrides
      </button>
      {saved ? <span class="muted small" role="status">Saved.</span> : null}
      <div class="form-span">
        <ErrorBox error={error} title="Not saved" />
      </div>
    </form>
  );
}

function UserQuotaCard({ userId }: { userId: string }) {
  const q = useLoad((signal) => get<UserQuota>(`/v1/users/${encodeURIComponent(userId)}/quota`, signal), [userId]);
  if (!q.data) return q.error ? <ErrorBox error={q.error} onRetry={q.reload} /> : <Loading />;
  const d = q.data;
  return (
    <section class="card" aria-labelledby="quota-title">
      <h2 id="quota-title">
        {d.userId}
        {d.teamId ? <span class="muted"> · team {d.teamId}</span> : null}
      </h2>
      <div class="bars">
        {LIMITS.map((l) => (
          <Bar
            key={l.key}
            label={`${l.label} (from ${d.source[l.key]})`}
            value={d.usage[l.usage]}
            max={d.limits[l.key]}
            detail={`${d.usage[l.usage]} of ${d.limits[l.key]}`}
            thresholds={[{ at: 100, label: 'the limit' }]}
          />
        ))}
      </div>
      <h3>Overrides for {d.userId}</h3>
      <p class="muted small">Empty: inherit from the team, else the default.</p>
      <OverrideForm
        key={JSON.stringify(d.overrides)}
        overrides={d.overrides}
        onSave={async (body) => {
          await put(`/v1/users/${encodeURIComponent(userId)}/quota`, body);
          q.reload();
        }}
      />
    </section>
  );
}

function TeamQuotaCard({ teamId }: { teamId: string }) {
  const q = useLoad((signal) => get<TeamQuota>(`/v1/teams/${encodeURIComponent(teamId)}/quota`, signal), [teamId]);
  if (!q.data) return q.error ? <ErrorBox error={q.error} onRetry={q.reload} /> : <Loading />;
  const d = q.data;
  return (
    <section class="card" aria-labelledby="team-quota-title">
      <h2 id="team-quota-title">
        Team {d.teamId} <span class="muted">· {d.members} member{d.members === 1 ? '' : 's'}</span>
      </h2>
      <dl class="fields">
        {LIMITS.map((l) => (
          <div class="field" key={l.key}>
            <dt>{l.label}</dt>
            <dd>{d.limits[l.key]}</dd>
          </div>
        ))}
      </dl>
      <h3>Team defaults</h3>
      <OverrideForm
        key={JSON.stringify(d.overrides)}
        overrides={d.overrides}
        onSave={async (body) => {
          await put(`/v1/teams/${encodeURIComponent(teamId)}/quota`, body);
          q.reload();
        }}
      />
    </section>
  );
}

