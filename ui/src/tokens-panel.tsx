import { useState } from 'preact/hooks';
import { del, get, post } from './lib/api.js';
import { useLoad, useNow } from './lib/hooks.js';
import type { Token } from './lib/model.js';
import { Confirm, CopyButton, Empty, ErrorBox, Loading, Time } from './components.js';

interface Issued extends Token {
  token: string;
}

/** A user's API tokens: issue (the secret shown once), list, revoke (asked first). */
export function TokensPanel({ userId }: { userId: string }) {
  const loaded = useLoad((signal) => get<{ tokens: Token[] }>(`/v1/users/${encodeURIComponent(userId)}/tokens`, signal).then((r) => r.tokens), [userId]);
  const [name, setName] = useState('');
  const [ttlDays, setTtlDays] = useState('90');
  const [issued, setIssued] = useState<Issued>();
  const [error, setError] = useState<unknown>();
  const [revoking, setRevoking] = useState<Token>();
  const now = useNow();
  const issue = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    try {
      const days = Number(ttlDays);
      const t = await post<Issued>(`/v1/users/${encodeURIComponent(userId)}/tokens`, { name: name.trim(), ...(days > 0 ? { ttlSeconds: Math.round(days * 86400) } : {}) });
      setIssued(t);
      setName('');
      loaded.reload();
    } catch (err) {
      setError(err);
    }
  };
  const revoke = async (t: Token) => {
    setRevoking(undefined);
    setError(undefined);
    try {
      await del(`/v1/users/${encodeURIComponent(userId)}/tokens/${t.id}`);
      loaded.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <section class="card" aria-labelledby="tokens-title">
      <h2 id="tokens-title">API tokens</h2>
      {issued ? (
        <div class="notice notice-ok" role="status">
          <p>
            <strong>Token “{issued.name}” issued.</strong> Copy it now: it is not shown again.
          </p>
          <p class="inline-copy">
            <code class="secret">{issued.token}</code> <CopyButton text={issued.token} label="Copy token" />
          </p>
          <button type="button" class="btn btn-small btn-ghost" onClick={() => setIssued(undefined)}>
            Done
          </button>
        </div>
      ) : null}
      <form class="inline-form" onSubmit={issue}>
        <label>
          <span>Name</span>
          <input required value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="laptop" maxLength={100} />
        </label>
        <label>
          <span>Expires after (days, 0 = never)</span>
          <input type="number" min="0" value={ttlDays} onInput={(e) => setTtlDays((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="btn btn-primary">
          Issue token
        </button>
      </form>
      <ErrorBox error={error} />
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} /> : null}
      {!loaded.data ? (
        loaded.error ? null : <Loading />
      ) : loaded.data.length === 0 ? (
        <Empty title="No tokens" />
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Starts with</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {loaded.data.map((t) => (
              <tr key={t.id} class={t.revokedAt ? 'row-dim' : ''}>
                <td>{t.name}</td>
                <td class="mono">{t.prefix}…</td>
                <td>
                  <Time iso={t.createdAt} now={now} />
                </td>
                <td>
                  <Time iso={t.lastUsedAt} now={now} />
                </td>
                <td>{t.expiresAt ? <Time iso={t.expiresAt} now={now} /> : 'never'}</td>
                <td class="cell-actions">
                  {t.revokedAt ? (
                    <span class="muted small">revoked</span>
                  ) : (
                    <button type="button" class="btn btn-small btn-danger-quiet" onClick={() => setRevoking(t)} aria-label={`Revoke token ${t.name}`}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Confirm open={!!revoking} title={`Revoke “${revoking?.name ?? ''}”?`} confirmLabel="Revoke token" danger onCancel={() => setRevoking(undefined)} onConfirm={() => revoking && revoke(revoking)}>
        <p>Anything using this token (a CLI, a script, a signed-in browser) is refused from its next request. This cannot be undone.</p>
      </Confirm>
    </section>
  );
}
