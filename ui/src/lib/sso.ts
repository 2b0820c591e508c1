/**
 * Single sign-on in the browser: OpenID Connect authorization code flow with PKCE (S256)
 * as a public client, through oauth4webapi. The dashboard keeps the ID token — the JWT
 * the API accepts as a bearer — in sessionStorage like a pasted token.
 *
 * The verifier, state and nonce live in this tab's sessionStorage between leaving for
 * the identity provider and coming back, and are used once: whatever the outcome, the
 * callback removes them, so a replayed or forged callback finds nothing to complete.
 */
import * as oauth from 'oauth4webapi';
import { ApiError, get } from './api.js';

export interface SsoSettings {
  issuer: string;
  clientId: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  scopes: string[];
  algorithms: string[];
}

export const CALLBACK_PATH = '/ui/auth/callback';
const PENDING_KEY = 'a4c.sso.pending';

interface Pending {
  state: string;
  nonce: string;
  codeVerifier: string;
  /** The dashboard page the person was on, to return to. */
  returnTo: string;
}

let settings: Promise<SsoSettings | null> | undefined;

/** The control plane's sign-in settings; null when single sign-on is off. Asked once per page load. */
export function ssoSettings(): Promise<SsoSettings | null> {
  settings ??= get<{ oidc: SsoSettings | null }>('/v1/auth/config').then(
    (c) => c.oidc,
    (e: unknown) => {
      settings = undefined; // asked again next time
      throw e;
    },
  );
  return settings;
}

function server(s: SsoSettings): oauth.AuthorizationServer {
  return { issuer: s.issuer, authorization_endpoint: s.authorizationEndpoint, token_endpoint: s.tokenEndpoint, id_token_signing_alg_values_supported: s.algorithms };
}

const redirectUri = () => `${location.origin}${CALLBACK_PATH}`;

/** Leaves for the identity provider; it sends the browser back to CALLBACK_PATH. */
export async function startSignIn(s: SsoSettings, returnTo: string): Promise<void> {
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const pending: Pending = {
    state: oauth.generateRandomState(),
    nonce: oauth.generateRandomNonce(),
    codeVerifier,
    returnTo: safeReturnTo(returnTo),
  };
  const url = new URL(s.authorizationEndpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', s.clientId);
  url.searchParams.set('redirect_uri', redirectUri());
  url.searchParams.set('scope', s.scopes.join(' '));
  url.searchParams.set('state', pending.state);
  url.searchParams.set('nonce', pending.nonce);
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier));
  url.searchParams.set('code_challenge_method', 'S256');
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  location.assign(url.href);
}

/** Only a dashboard path of this origin: never somewhere a crafted link chose. */
function safeReturnTo(path: string): string {
  return /^\/ui\/(?!\/)/.test(path) && !path.startsWith(CALLBACK_PATH) ? path : '/ui/';
}

function takePending(): Pending | undefined {
  const raw = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  if (!raw) return undefined;
  try {
    return JSON.parse(raw) as Pending;
  } catch {
    return undefined;
  }
}

const signInAgain = 'Choose "Sign in with SSO" to start again.';

const ssoError = (code: string, message: string, suggestion: string) => new ApiError(0, code, message, suggestion);

/**
 * Completes a sign-in on the callback page: checks the state, exchanges the code with
 * the verifier at the token endpoint, checks the ID token (issuer, audience, expiry,
 * nonce). Returns the ID token and where to go. The caller removes the query from the
 * address bar at once; nothing here puts the code or a token anywhere else.
 */
export async function completeSignIn(s: SsoSettings, params: URLSearchParams): Promise<{ idToken: string; returnTo: string }> {
  const pending = takePending();
  if (!pending) {
    throw ssoError('SSO_NOT_STARTED', 'This sign-in was not started from this browser tab, or it was already completed.', `${signInAgain} (A sign-in must end in the browser tab where it began.)`);
  }
  if (params.get('state') !== pending.state) {
    throw ssoError(
      'SSO_STATE_MISMATCH',
      'Sign-in refused: the answer from the identity provider does not belong to the sign-in this tab started (state mismatch). It may be forged or stale; nothing was signed in.',
      signInAgain,
    );
  }
  const as = server(s);
  const client: oauth.Client = { client_id: s.clientId };
  let callback: URLSearchParams;
  try {
    callback = oauth.validateAuthResponse(as, client, params, pending.state);
  } catch (e) {
    if (e instanceof oauth.AuthorizationResponseError) {
      const why = e.error_description ? `: ${e.error_description}` : '';
      const suggestion =
        e.error === 'access_denied'
          ? `You (or the identity provider) declined the sign-in. ${signInAgain} Or sign in with an API token.`
          : `${signInAgain} If it keeps failing, tell an operator: the identity provider said "${e.error}" (the redirect URI ${redirectUri()} and client id ${s.clientId} must be registered there).`;
      throw ssoError('SSO_IDP_ERROR', `The identity provider refused the sign-in (${e.error})${why}.`, suggestion);
    }
    throw ssoError('SSO_BAD_RESPONSE', `The identity provider's answer is not valid: ${(e as Error).message}.`, signInAgain);
  }
  const insecure = new URL(s.tokenEndpoint).protocol === 'http:'; // the control plane allows http only on loopback
  let tokens: oauth.TokenEndpointResponse;
  try {
    const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), callback, redirectUri(), pending.codeVerifier, {
      [oauth.allowInsecureRequests]: insecure,
    });
    tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: pending.nonce, requireIdToken: true });
  } catch (e) {
    if (e instanceof oauth.ResponseBodyError) {
      const why = e.error_description ? `: ${e.error_description}` : '';
      throw ssoError('SSO_TOKEN_REFUSED', `The identity provider would not exchange the sign-in code for a token (${e.error})${why}.`, signInAgain);
    }
    if (e instanceof TypeError || (e as Error).name === 'TypeError') {
      throw ssoError('SSO_TOKEN_UNREACHABLE', `The identity provider's token endpoint ${s.tokenEndpoint} could not be reached from this browser.`, `Check your connection, then ${signInAgain} If it persists, an operator should check that the token endpoint allows requests from ${location.origin} (CORS).`);
    }
    if (e instanceof oauth.OperationProcessingError && e.code === oauth.JWT_CLAIM_COMPARISON && /nonce/i.test(e.message)) {
      throw ssoError('SSO_NONCE_MISMATCH', 'Sign-in refused: the ID token was not issued for this sign-in (nonce mismatch).', signInAgain);
    }
    throw ssoError('SSO_BAD_TOKEN', `The identity provider's token answer was refused: ${(e as Error).message}.`, signInAgain);
  }
  const idToken = tokens.id_token;
  if (!idToken) throw ssoError('SSO_NO_ID_TOKEN', 'The identity provider answered without an ID token.', 'An operator should check that A4C_OIDC_SCOPES includes openid.');
  return { idToken, returnTo: pending.returnTo };
}
