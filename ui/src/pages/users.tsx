import { useRoute } from 'preact-iso';
import { useState } from 'preact/hooks';
import { get, post, put } from '../lib/api.js';
import { useLoad, useSession } from '../lib/hooks.js';
import type { Role, User } from '../lib/model.js';
import { Empty, ErrorBox, Field, Loading, Notice, PageHeader } from '../components.js';
import { AdminOnly } from '../admin-only.js';
import { TokensPanel } from '../tokens-panel.js';

const ROLES: Role[] = ['user', 'lead', 'admin'];

export function UsersPage() {
  return (
    <AdminOnly title="Users and tokens">
      <Users />
    </AdminOnly>
  );
}

function Users() {
  const loaded = useLoad((signal) => get<{ users: User[] }>('/v1/users', signal).then((r) => r.users), []);
  const [form, setForm] = useState({ id: '', teamId: '', role: 'user' as Role });
  const [error, setError] = useState<unknown>();
  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      await post('/v1/users', { id: form.id.trim(), role: form.role, ...(form.teamId.trim() ? { teamId: form.teamId.trim() } : {}) });
      setForm({ id: '', teamId: '', role: 'user' });
      loaded.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <PageHeader title="Users and tokens" subtitle="Who may use A4C, their team and role" />
      <section class="card" aria-labelledby="new-user">
        <h2 id="new-user">Add a user</h2>
        <form class="inline-form" onSubmit={create}>
          <label>
            <span>User id</span>
            <input required value={form.id} onInput={(e) => setForm({ ...form, id: (e.target as HTMLInputElement).value })} placeholder="alice" />
          </label>
          <label>
            <span>Team</span>
            <input value={form.teamId} onInput={(e) => setForm({ ...form, teamId: (e.target as HTMLInputElement).value })} placeholder="none" />
          </label>
          <label>
            <span>Role</span>
            <select value={form.role} onChange={(e) => setForm({ ...form, role: (e.target as HTMLSelectElement).value as Role })}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" class="btn btn-primary">
            Add user
          </button>
        </form>
        <ErrorBox error={error} title="The user was not added" />
      </section>
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} /> : null}
      {!loaded.data ? (
        loaded.error ? null : <Loading />
      ) : loaded.data.length === 0 ? (
        <Empty title="No users yet" />
      ) : (
        <div class="table-wrap">
          <table class="table" aria-label="Users">
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Team</th>
                <th scope="col">Role</th>
                <th scope="col">
                  <span class="sr-only">Links</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {loaded.data.map((u) => (
                <tr key={u.id}>
                  <td>
                    <a class="row-title" href={`/ui/admin/users/${encodeURIComponent(u.id)}`}>
                      {u.id}
                    </a>
                  </td>
                  <td>{u.teamId ?? <span class="muted">–</span>}</td>
                  <td>{u.role}</td>
                  <td class="cell-actions">
                    <a class="btn btn-small btn-ghost" href={`/ui/workspaces?user=${encodeURIComponent(u.id)}`}>
                      Workspaces
                    </a>
                    <a class="btn btn-small btn-ghost" href={`/ui/admin/quotas?user=${encodeURIComponent(u.id)}`}>
                      Quota
                    </a>
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

export function UserPage() {
  return (
    <AdminOnly title="User">
      <UserDetail />
    </AdminOnly>
  );
}

function UserDetail() {
  const { params } = useRoute();
  const userId = params.userId as string;
  const loaded = useLoad((signal) => get<User>(`/v1/users/${encodeURIComponent(userId)}`, signal), [userId]);
  const [error, setError] = useState<unknown>();
  const [saved, setSaved] = useState(false);
  const u = loaded.data;
  const save = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.target as HTMLFormElement);
    setError(undefined);
    setSaved(false);
    try {
      const team = String(f.get('teamId') ?? '').trim();
      await put(`/v1/users/${encodeURIComponent(userId)}`, { role: String(f.get('role')), teamId: team || null });
      setSaved(true);
      loaded.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href="/ui/admin/users">Users</a> <span aria-hidden="true">/</span> <span aria-current="page">{userId}</span>
      </nav>
      <PageHeader title={userId} subtitle={u ? `${u.role}${u.teamId ? ` in ${u.teamId}` : ''}` : undefined} />
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} /> : null}
      {u ? (
        <section class="card" aria-labelledby="profile-title">
          <h2 id="profile-title">Team and role</h2>
          <form class="inline-form" onSubmit={save} key={`${u.role}-${u.teamId}`}>
            <label>
              <span>Team</span>
              <input name="teamId" defaultValue={u.teamId ?? ''} placeholder="none" />
            </label>
            <label>
              <span>Role</span>
              <select name="role" defaultValue={u.role}>
                {ROLES.map((r) => (
                  <option key={r} value={r}>
                    {r}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit" class="btn btn-primary">
              Save
            </button>
            {saved ? <span class="muted small" role="status">Saved.</span> : null}
          </form>
          <ErrorBox error={error} />
        </section>
      ) : null}
      <TokensPanel userId={userId} />
    </>
  );
}

export function AccountPage() {
  const { me } = useSession();
  return (
    <>
      <PageHeader title="Your account" subtitle={`${me.id} · ${me.role}${me.teamId ? ` in ${me.teamId}` : ''}`} />
      <section class="card">
        <dl class="fields">
          <Field label="User id">{me.id}</Field>
          <Field label="Role">{me.role}</Field>
          <Field label="Team">{me.teamId}</Field>
        </dl>
      </section>
      {me.id === 'admin' ? (
        <Notice>You are signed in with the admin token, which belongs to no user: issue tokens for users on the Users page.</Notice>
      ) : (
        <TokensPanel userId={me.id} />
      )}
    </>
  );
}
