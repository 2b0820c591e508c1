import { z } from 'zod';
import { A4cError, type Logger } from '@a4c/common';
import type { OidcConfig } from '../config.js';

/** What the dashboard needs to sign a person in: authorization code with PKCE, as a public client. */
export interface BrowserSignIn {
  issuer: string;
  clientId: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  scopes: string[];
  /** ID token signature algorithms the API accepts (A4C_OIDC_ALGORITHMS). */
  algorithms: string[];
}

const DISCOVERY_TIMEOUT_MS = 5000;

/** The fields of an OpenID Provider's discovery document the dashboard uses. */
const Discovery = z.object({
  issuer: z.string(),
  authorization_endpoint: z.string(),
  token_endpoint: z.string(),
  code_challenge_methods_supported: z.array(z.string()).optional(),
});

const LOOPBACK_HOSTS = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** As config's rule for the settings: https, or plain http to this machine only. */
function endpoint(name: string, raw: string, where: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`${where}: ${name} is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.test(url.hostname))) {
    throw new Error(`${where}: ${name} must be https (plain http only on loopback), got ${JSON.stringify(raw)}`);
  }
  return url.href;
}

/**
 * The dashboard's single sign-on settings. Endpoints not set in the configuration come
 * from the issuer's discovery document, fetched here rather than by the browser (no
 * CORS needed for it) on first use: a provider that is down when the control plane
 * starts costs SSO sign-in until it is back, not the control plane. A document once
 * read is kept for the life of the process; a failed read is retried on the next ask.
 */
export class BrowserSignInSettings {
  private resolved: BrowserSignIn | undefined;
  private pending: Promise<BrowserSignIn> | undefined;

  constructor(
    private readonly config: OidcConfig,
    private readonly log: Logger,
  ) {
    if (config.browser.clientId !== config.audience) {
      log.warn(
        { clientId: config.browser.clientId, audience: config.audience },
        "A4C_OIDC_CLIENT_ID differs from A4C_OIDC_AUDIENCE: the dashboard's ID tokens carry the client id as aud, so the API accepts them only if the provider also adds the audience",
      );
    }
  }

  /** What is known without asking the provider; undefined until both endpoints are known. */
  known(): BrowserSignIn | undefined {
    const b = this.config.browser;
    if (this.resolved) return this.resolved;
    if (b.authorizationUrl && b.tokenUrl) {
      this.resolved = this.settings(b.authorizationUrl, b.tokenUrl);
      return this.resolved;
    }
    return undefined;
  }

  async get(): Promise<BrowserSignIn> {
    const known = this.known();
    if (known) return known;
    this.pending ??= this.discover().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private settings(authorizationEndpoint: string, tokenEndpoint: string): BrowserSignIn {
    const b = this.config.browser;
    return { issuer: this.config.issuer, clientId: b.clientId, authorizationEndpoint, tokenEndpoint, scopes: b.scopes, algorithms: this.config.algorithms };
  }

  private async discover(): Promise<BrowserSignIn> {
    const b = this.config.browser;
    const url = `${this.config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    try {
      const res = await fetch(url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(DISCOVERY_TIMEOUT_MS) });
      if (!res.ok) throw new Error(`${url} answered ${res.status}`);
      const parsed = Discovery.safeParse(await res.json());
      if (!parsed.success) throw new Error(`${url} is not a discovery document: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
      const doc = parsed.data;
      // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was read from.
      if (doc.issuer !== this.config.issuer) throw new Error(`${url} names the issuer ${JSON.stringify(doc.issuer)}, not A4C_OIDC_ISSUER ${JSON.stringify(this.config.issuer)}`);
      const methods = doc.code_challenge_methods_supported;
      if (methods && !methods.includes('S256')) this.log.warn({ issuer: doc.issuer, methods }, 'the identity provider does not list PKCE S256; dashboard sign-in may be refused');
      this.resolved = this.settings(
        b.authorizationUrl ?? endpoint('authorization_endpoint', doc.authorization_endpoint, url),
        b.tokenUrl ?? endpoint('token_endpoint', doc.token_endpoint, url),
      );
      this.log.info({ issuer: doc.issuer, authorizationEndpoint: this.resolved.authorizationEndpoint, tokenEndpoint: this.resolved.tokenEndpoint }, 'dashboard single sign-on: endpoints discovered');
      return this.resolved;
    } catch (e) {
      const detail = (e as Error).name === 'TimeoutError' ? `${url} did not answer within ${DISCOVERY_TIMEOUT_MS / 1000} s` : ((e as Error).cause as Error | undefined)?.message ?? (e as Error).message;
      this.log.warn({ url, err: detail }, 'dashboard single sign-on: discovery failed');
      throw new A4cError('UNAVAILABLE', `single sign-on is configured but the identity provider's discovery document could not be read: ${detail}`, {
        suggestion: 'retry in a minute, or sign in with an API token; an operator can set A4C_OIDC_AUTHORIZATION_URL and A4C_OIDC_TOKEN_URL to skip discovery',
      });
    }
  }
}

/** The token endpoint's origin, which the dashboard's Content-Security-Policy lets it fetch. */
export function tokenEndpointOrigin(s: BrowserSignIn): string {
  return new URL(s.tokenEndpoint).origin;
}
