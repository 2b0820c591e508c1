import { useEffect, useState } from 'preact/hooks';
import { isMissingRoute } from './lib/api.js';
import { ssoSettings, startSignIn, type SsoSettings } from './lib/sso.js';
import { ErrorBox } from './components.js';

/**
 * "Sign in with SSO", shown only when the control plane has single sign-on configured;
 * it leaves for the identity provider and comes back to the page it was pressed on.
 */
export function SsoButton() {
  const [settings, setSettings] = useState<SsoSettings | null>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    ssoSettings().then(
      (s) => live && setSettings(s),
      (e: unknown) => live && (isMissingRoute(e) ? setSettings(null) : setError(e)),
    );
    return () => {
      live = false;
    };
  }, [tick]);
  if (error) return <ErrorBox error={error} title="Single sign-on is unavailable" onRetry={() => (setError(undefined), setTick((t) => t + 1))} />;
  if (!settings) return null;
  const go = () => {
    setBusy(true);
    startSignIn(settings, location.pathname + location.search).catch((e: unknown) => {
      setBusy(false);
      setError(e);
    });
  };
  return (
    <div class="sso">
      <button type="button" class="btn btn-primary btn-block" onClick={go} disabled={busy}>
        {busy ? 'Going to your identity provider…' : 'Sign in with SSO'}
      </button>
      <p class="help">
        Through your organisation's identity provider ({new URL(settings.issuer).host}). Or paste an API token below.
      </p>
      <p class="sso-or" aria-hidden="true">or</p>
    </div>
  );
}
