import { useEffect, useRef } from 'preact/hooks';
import { CALLBACK_PATH, completeSignIn, ssoSettings } from './lib/sso.js';
import { Loading } from './components.js';

export type CallbackOutcome = { idToken: string; returnTo: string } | { error: unknown };

/**
 * Where the identity provider sends the browser back (`/ui/auth/callback?code=…&state=…`).
 * The code and state leave the address bar (and so the history entry) before anything
 * else happens; then the code is exchanged, once.
 */
export function SsoCallback({ onDone }: { onDone(outcome: CallbackOutcome): void }) {
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    const params = new URLSearchParams(location.search);
    history.replaceState(null, '', CALLBACK_PATH);
    ssoSettings()
      .then((s) => {
        if (!s) throw new Error('single sign-on is not configured on this control plane: sign in with an API token');
        return completeSignIn(s, params);
      })
      .then(onDone, (error: unknown) => onDone({ error }));
  }, [onDone]);
  return (
    <main class="center-page">
      <Loading label="Completing single sign-on" />
    </main>
  );
}
