import { useLocation } from 'preact-iso';
import { useState } from 'preact/hooks';
import { post } from '../lib/api.js';
import { useSession } from '../lib/hooks.js';
import { ARCHES, type Workspace } from '../lib/model.js';
import { ErrorBox, PageHeader } from '../components.js';

const TIERS = [
  { id: 'standard', text: 'standard: 8 GB, 2 CPU, 50 GB' },
  { id: 'large', text: 'large: 16 GB, 4 CPU, 100 GB' },
  { id: 'xl', text: 'xl: 32 GB, 8 CPU, 200 GB (needs an admin’s approval)' },
];

export function NewWorkspacePage() {
  const { me } = useSession();
  const { route } = useLocation();
  const [form, setForm] = useState({ projectName: '', arch: 'linux-x64', tier: 'standard', name: '', changeNumber: '', image: '', userId: me.id });
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const bind = (k: keyof typeof form) => ({
    value: form[k],
    onInput: (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value }),
  });
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body: Record<string, string> = { projectName: form.projectName.trim(), arch: form.arch, tier: form.tier.trim() };
      for (const k of ['name', 'changeNumber', 'image'] as const) if (form[k].trim()) body[k] = form[k].trim();
      const w = await post<Workspace>(`/v1/users/${encodeURIComponent(form.userId.trim() || me.id)}/workspaces`, body);
      route(`/ui/workspaces/${w.id}`);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return (
    <>
      <PageHeader title="New workspace" subtitle="Placed on a host with room, usually running within seconds." />
      <form class="card form form-grid" onSubmit={submit}>
        <label>
          <span>Project</span>
          <input required {...bind('projectName')} placeholder="backend-api" pattern="[a-z0-9][a-z0-9._\-]{0,62}" title="1-63 lowercase letters, digits, . _ -" />
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
          <span>Tier</span>
          <input required list="tiers" {...bind('tier')} aria-describedby="tier-help" />
          <datalist id="tiers">
            {TIERS.map((t) => (
              <option key={t.id} value={t.id}>
                {t.text}
              </option>
            ))}
          </datalist>
          <small id="tier-help" class="help">
            standard, large, xl, or a tier your operators configured
          </small>
        </label>
        <label>
          <span>
            Name <em class="optional">optional</em>
          </span>
          <input {...bind('name')} placeholder="default: project and a short suffix" />
        </label>
        <label>
          <span>
            Change number <em class="optional">optional</em>
          </span>
          <input {...bind('changeNumber')} placeholder="CL-1234" />
        </label>
        <label>
          <span>
            Image <em class="optional">optional</em>
          </span>
          <input {...bind('image')} placeholder="default: the newest build for the project" />
        </label>
        {me.role === 'admin' ? (
          <label>
            <span>For user</span>
            <input {...bind('userId')} />
          </label>
        ) : null}
        <div class="form-span">
          <ErrorBox error={error} title="The workspace was not created" />
        </div>
        <div class="form-span form-actions">
          <a class="btn" href="/ui/workspaces">
            Cancel
          </a>
          <button type="submit" class="btn btn-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create workspace'}
          </button>
        </div>
      </form>
    </>
  );
}
