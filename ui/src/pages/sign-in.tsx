import { useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import type { Me } from '../lib/model.js';
import { ErrorBox } from '../components.js';
import { SsoButton } from '../sso-button.js';

/**
 * Sign-in with an API token, pasted into a password field, or with single sign-on when
 * the control plane has an identity provider. The token is kept in this tab's
 * sessionStorage (gone when the tab closes), sent only in the Authorization header,
 * never put in a URL.
 */
export function SignIn({ onSignedIn, reason, ssoError }: { onSignedIn(token: string, me: Me): void; reason?: string; ssoError?: unknown }) {
  const [token, setTokenText] = useState('');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const t = token.trim();
    if (!t) return;
    setBusy(true);
    setError(undefined);
    try {
      const me = await api<Me>('GET', '/v1/me', { token: t });
      onSignedIn(t, me);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <div class="signin-card">
        <div class="brand brand-large">
          <span class="brand-mark" aria-hidden="true">A</span>
          <span class="brand-name">A4C</span>
        </div>
        <h1 id="page-title" tabIndex={-1}>Sign in</h1>
        <p class="muted">Your workspaces, the hosts they run on, and your image builds.</p>
        {reason ? <p class="notice notice-warn">{reason}</p> : null}
        <ErrorBox error={ssoError} title="Single sign-on failed" />
        <SsoButton />
        <form onSubmit={submit} class="form">
          <label for="token">API token</label>
          <input
            id="token"
            name="token"
            type="password"
            autocomplete="off"
            spellcheck={false}
            required
            value={token}
            onInput={(e) => setTokenText((e.target as HTMLInputElement).value)}
            aria-describedby="token-help"
          />
          <p id="token-help" class="help">
            Paste a token from <code>a4c tokens issue &lt;you&gt;</code> or the admin token <code>npm start</code> printed. It stays in this browser tab only
            and is forgotten when you close it.
          </p>
          <ErrorBox error={error} title="Sign-in failed" />
          <button type="submit" class="btn btn-primary btn-block" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      </div>
    </main>
  );
}
