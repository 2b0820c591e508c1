import { useLocation } from 'preact-iso';
import { useState } from 'preact/hooks';
import { get, post, qs } from '../lib/api.js';
import { useInterval, useLoad, useNow, useSession } from '../lib/hooks.js';
import { ARCHES, BUILD_STATUSES, type Build } from '../lib/model.js';
import { Empty, ErrorBox, Loading, PageHeader, StatusBadge, Time } from '../components.js';

/** Position in its arch's queue (oldest first), among the builds this caller can see. */
export function queuePositions(builds: Build[]): Map<string, number> {
  const pos = new Map<string, number>();
  const byArch = new Map<string, Build[]>();
  for (const b of builds) if (b.status === 'SCHEDULED') byArch.set(b.arch, [...(byArch.get(b.arch) ?? []), b]);
  for (const list of byArch.values()) list.sort((a, b) => a.createdAt.localeCompare(b.createdAt)).forEach((b, i) => pos.set(b.id, i + 1));
  return pos;
}

export function BuildsPage() {
  const { me } = useSession();
  const { query, route, path } = useLocation();
  const key = JSON.stringify(query);
  const loaded = useLoad(
    (signal) => get<{ builds: Build[] }>(`/v1/image-schedules${qs({ status: query.status, project: query.project, arch: query.arch, userId: query.user, limit: 200 })}`, signal).then((r) => r.builds),
    [key],
  );
  useInterval(() => loaded.reload(), 2000);
  const now = useNow();
  const set = (k: string, v: string) => {
    const next = new URLSearchParams(query);
    if (v) next.set(k, v);
    else next.delete(k);
    const s = next.toString();
    route(`${path}${s ? `?${s}` : ''}`, true);
  };
  const builds = loaded.data;
  const positions = queuePositions(builds ?? []);
  return (
    <>
      <PageHeader title="Builds" subtitle="Project images, built by the hosts of each architecture">
        <a class="btn btn-primary" href="/ui/builds/new">
          Schedule a build
        </a>
      </PageHeader>
      <form class="filters" role="search" aria-label="Filter builds" onSubmit={(e) => e.preventDefault()}>
        <label class="filter">
          <span>Status</span>
          <select value={query.status ?? ''} onChange={(e) => set('status', (e.target as HTMLSelectElement).value)}>
            <option value="">Any</option>
            {BUILD_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace(/_/g, ' ').toLowerCase()}
              </option>
            ))}
          </select>
        </label>
        <label class="filter">
          <span>Architecture</span>
          <select value={query.arch ?? ''} onChange={(e) => set('arch', (e.target as HTMLSelectElement).value)}>
            <option value="">Any</option>
            {ARCHES.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label class="filter">
          <span>Project</span>
          <input value={query.project ?? ''} placeholder="any" onChange={(e) => set('project', (e.target as HTMLInputElement).value.trim())} />
        </label>
        {me.role !== 'user' ? (
          <label class="filter">
            <span>User</span>
            <input value={query.user ?? ''} placeholder={me.role === 'admin' ? 'anyone' : me.id} onChange={(e) => set('user', (e.target as HTMLInputElement).value.trim())} />
          </label>
        ) : null}
      </form>
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} /> : null}
      {!builds ? (
        loaded.error ? null : <Loading label="Loading builds" />
      ) : builds.length === 0 ? (
        <Empty title="No builds">
          <p>Schedule one to make your project’s image at a change number; new workspaces of the project then use it.</p>
        </Empty>
      ) : (
        <div class="table-wrap">
          <table class="table" aria-label="Builds">
            <thead>
              <tr>
                <th scope="col">Image</th>
                <th scope="col">Status</th>
                <th scope="col">Progress</th>
                <th scope="col">Worker</th>
                <th scope="col">User</th>
                <th scope="col">Scheduled</th>
              </tr>
            </thead>
            <tbody>
              {builds.map((b) => (
                <tr key={b.id}>
                  <td>
                    <a class="row-title" href={`/ui/builds/${b.id}`}>
                      {b.imageTag}
                    </a>
                    <span class="row-sub">
                      {b.project} · {b.changeNumber}
                    </span>
                  </td>
                  <td>
                    <StatusBadge status={b.status} />
                    {positions.has(b.id) ? <span class="muted small"> #{positions.get(b.id)} in queue</span> : null}
                  </td>
                  <td>
                    <span class="mini-bar" role="progressbar" aria-label={`progress of ${b.imageTag}`} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(b.progress)}>
                      <span style={{ width: `${b.progress}%` }} />
                    </span>
                  </td>
                  <td>{b.worker ? <a href={`/ui/hosts/${b.worker}`}>{b.worker}</a> : <span class="muted">–</span>}</td>
                  <td>{b.userId}</td>
                  <td>
                    <Time iso={b.createdAt} now={now} />
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

export function NewBuildPage() {
  const { me } = useSession();
  const { route, query } = useLocation();
  const [form, setForm] = useState({ imageName: query.imageName ?? '', project: query.project ?? '', arch: query.arch ?? 'linux-x64', changeNumber: query.changeNumber ?? '' });
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const bind = (k: keyof typeof form) => ({ value: form[k], onInput: (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value }) });
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const b = await post<Build>(`/v1/users/${encodeURIComponent(me.id)}/image-schedules`, {
        imageName: form.imageName.trim(),
        project: form.project.trim(),
        arch: form.arch,
        changeNumber: form.changeNumber.trim(),
      });
      route(`/ui/builds/${b.id}`);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <>
      <PageHeader title="Schedule a build" subtitle="A host of the architecture claims it, builds the image and streams its log here." />
      <form class="card form form-grid" onSubmit={submit}>
        <label>
          <span>Image name</span>
          <input required {...bind('imageName')} placeholder="backend-api" />
        </label>
        <label>
          <span>Project</span>
          <input required {...bind('project')} placeholder="backend-api" />
        </label>
        <label>
          <span>Architecture</span>
          <select {...bind('arch')}>
            {ARCHES.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Change number</span>
          <input required {...bind('changeNumber')} placeholder="CL-1234" />
        </label>
        <div class="form-span">
          <ErrorBox error={error} title="The build was not scheduled" />
        </div>
        <div class="form-span form-actions">
          <a class="btn" href="/ui/builds">
            Cancel
          </a>
          <button type="submit" class="btn btn-primary" disabled={busy}>
            {busy ? 'Scheduling…' : 'Schedule build'}
          </button>
        </div>
      </form>
    </>
  );
}
