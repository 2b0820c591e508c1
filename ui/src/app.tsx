import type { ComponentChildren } from 'preact';
import { LocationProvider, Route, Router, useLocation } from 'preact-iso';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, api, clearToken, getToken, onUnauthorized, refusedTokenReason, setToken } from './lib/api.js';
import { CALLBACK_PATH } from './lib/sso.js';
import { SsoCallback } from './sso-callback.js';
import { SessionContext, type Session } from './lib/hooks.js';
import type { Me } from './lib/model.js';
import { ErrorBox, Loading } from './components.js';
import { SignIn } from './pages/sign-in.js';
import { WorkspacesPage } from './pages/workspaces.js';
import { NewWorkspacePage } from './pages/new-workspace.js';
import { WorkspacePage } from './pages/workspace.js';
import { HostsPage } from './pages/hosts.js';
import { HostPage } from './pages/host.js';
import { BuildsPage, NewBuildPage } from './pages/builds.js';
import { BuildPage } from './pages/build.js';
import { ActivityPage } from './pages/activity.js';
import { AuditPage } from './pages/audit.js';
import { UsersPage, UserPage, AccountPage } from './pages/users.js';
import { QuotasPage } from './pages/quotas.js';
import { NotFoundPage } from './pages/not-found.js';

export function App() {
  return (
    <LocationProvider scope="/ui">
      <SessionGate />
    </LocationProvider>
  );
}

/**
 * Asks who the stored token belongs to; without a (valid) token, the sign-in page at
 * whatever deep link was opened. The single sign-on callback comes first: it ends with
 * a token (and the page the person started from) or with the reason it failed.
 */
function SessionGate() {
  const { route } = useLocation();
  const [callback, setCallback] = useState(() => location.pathname === CALLBACK_PATH);
  const [me, setMe] = useState<Me | null | undefined>(getToken() && !callback ? undefined : null);
  const [error, setError] = useState<unknown>();
  const [signedOutBecause, setSignedOutBecause] = useState<string>();
  const [ssoError, setSsoError] = useState<unknown>();

  useEffect(() => {
    if (me !== undefined) return;
    api<Me>('GET', '/v1/me').then(setMe, (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) {
        setSignedOutBecause(refusedTokenReason());
        clearToken();
        setMe(null);
      } else setError(e);
    });
  }, [me]);

  const session = useMemo<Session | null>(
    () =>
      me
        ? {
            me,
            signOut: (reason?: string) => {
              clearToken();
              setSignedOutBecause(reason);
              setSsoError(undefined);
              setMe(null);
            },
          }
        : null,
    [me],
  );
  useEffect(() => (session ? onUnauthorized(() => session.signOut(refusedTokenReason())) : undefined), [session]);

  if (callback) {
    return (
      <SsoCallback
        onDone={(outcome) => {
          setCallback(false);
          setSignedOutBecause(undefined);
          if ('idToken' in outcome) {
            setToken(outcome.idToken, 'sso');
            setSsoError(undefined);
            route(outcome.returnTo, true);
            setMe(undefined);
          } else {
            // Off the callback address, so that signing in from here lands on a real page.
            route('/ui/', true);
            setSsoError(outcome.error);
            setMe(null);
          }
        }}
      />
    );
  }

  if (error) {
    return (
      <main class="center-page">
        <ErrorBox error={error} title="Could not reach the control plane" onRetry={() => (setError(undefined), setMe(undefined))} />
      </main>
    );
  }
  if (me === undefined) return <main class="center-page"><Loading label="Signing in" /></main>;
  if (me === null) {
    return (
      <SignIn
        reason={signedOutBecause}
        ssoError={ssoError}
        onSignedIn={(token, who) => {
          setToken(token);
          setSignedOutBecause(undefined);
          setSsoError(undefined);
          setMe(who);
        }}
      />
    );
  }
  return (
    <SessionContext.Provider value={session}>
      <Shell me={me} onSignOut={() => session?.signOut()}>
        <Router>
          <Route path="/ui/" component={WorkspacesPage} />
          <Route path="/ui/workspaces" component={WorkspacesPage} />
          <Route path="/ui/workspaces/new" component={NewWorkspacePage} />
          <Route path="/ui/workspaces/:id" component={WorkspacePage} />
          <Route path="/ui/hosts" component={HostsPage} />
          <Route path="/ui/hosts/:id" component={HostPage} />
          <Route path="/ui/builds" component={BuildsPage} />
          <Route path="/ui/builds/new" component={NewBuildPage} />
          <Route path="/ui/builds/:id" component={BuildPage} />
          <Route path="/ui/activity" component={ActivityPage} />
          <Route path="/ui/account" component={AccountPage} />
          <Route path="/ui/admin/audit" component={AuditPage} />
          <Route path="/ui/admin/users" component={UsersPage} />
          <Route path="/ui/admin/users/:userId" component={UserPage} />
          <Route path="/ui/admin/quotas" component={QuotasPage} />
          <Route default component={NotFoundPage} />
        </Router>
      </Shell>
    </SessionContext.Provider>
  );
}

const NAV: { href: string; label: string; admin?: boolean; match: RegExp }[] = [
  { href: '/ui/workspaces', label: 'Workspaces', match: /^\/ui\/(workspaces)?(\/|$)/ },
  { href: '/ui/hosts', label: 'Hosts', match: /^\/ui\/hosts/ },
  { href: '/ui/builds', label: 'Builds', match: /^\/ui\/builds/ },
  { href: '/ui/activity', label: 'Activity', match: /^\/ui\/activity/ },
  { href: '/ui/admin/audit', label: 'Audit', admin: true, match: /^\/ui\/admin\/audit/ },
  { href: '/ui/admin/users', label: 'Users and tokens', admin: true, match: /^\/ui\/admin\/users/ },
  { href: '/ui/admin/quotas', label: 'Quotas', admin: true, match: /^\/ui\/admin\/quotas/ },
];

function Shell({ me, onSignOut, children }: { me: Me; onSignOut(): void; children: ComponentChildren }) {
  const { path } = useLocation();
  // A new page: its title gets the focus once it is there (screen readers announce it;
  // Tab continues from it), and the window gets its title.
  const pendingFocus = useRef(true);
  useEffect(() => {
    pendingFocus.current = true;
  }, [path]);
  useEffect(() => {
    const h1 = document.getElementById('page-title');
    if (h1 && pendingFocus.current) {
      pendingFocus.current = false;
      if (!h1.contains(document.activeElement) && !document.querySelector('dialog[open]')) h1.focus({ preventScroll: true });
    }
    const t = h1?.textContent;
    document.title = t ? `${t} · A4C` : 'A4C';
  });
  const admin = me.role === 'admin';
  const items = NAV.filter((n) => !n.admin || admin);
  return (
    <div class="shell">
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <aside class="sidebar">
        <a class="brand" href="/ui/workspaces">
          <span class="brand-mark" aria-hidden="true">A</span>
          <span class="brand-name">A4C</span>
        </a>
        <nav aria-label="Main">
          <ul>
            {items.filter((n) => !n.admin).map((n) => (
              <NavItem key={n.href} href={n.href} label={n.label} active={n.match.test(path) && !/\/ui\/admin/.test(path)} />
            ))}
          </ul>
          {admin ? (
            <>
              <p class="nav-section" id="nav-admin">Administration</p>
              <ul aria-labelledby="nav-admin">
                {items.filter((n) => n.admin).map((n) => (
                  <NavItem key={n.href} href={n.href} label={n.label} active={n.match.test(path)} />
                ))}
              </ul>
            </>
          ) : null}
        </nav>
        <div class="whoami">
          <a href="/ui/account" class="whoami-name" aria-current={path === '/ui/account' ? 'page' : undefined}>
            <span class="avatar" aria-hidden="true">{me.id.slice(0, 1).toUpperCase()}</span>
            <span>
              <span class="whoami-id">{me.id}</span>
              <span class="whoami-role">{me.role}{me.teamId ? ` · ${me.teamId}` : ''}</span>
            </span>
          </a>
          <button type="button" class="btn btn-small btn-ghost" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </aside>
      <main id="main" class="content">
        {children}
      </main>
    </div>
  );
}

function NavItem({ href, label, active }: { href: string; label: string; active: boolean }) {
  return (
    <li>
      <a href={href} class={active ? 'active' : undefined} aria-current={active ? 'page' : undefined}>
        {label}
      </a>
    </li>
  );
}
