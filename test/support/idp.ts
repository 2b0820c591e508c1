import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

/** What the identity provider saw of one authorization: the PKCE pair and whether it held. */
export interface Exchange {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  codeChallengeMethod: string;
  nonce: string;
  scope: string;
  user: string;
  /** Set at the token endpoint. */
  codeVerifier?: string;
  verified?: boolean;
  idToken?: string;
}

/**
 * An OpenID Provider on loopback for the dashboard's sign-in: discovery, /authorize
 * (approves at once as `user`, or answers the error in `refuseNext`), /token (refuses a
 * code_verifier that does not hash to the code_challenge, as RFC 7636 §4.6 says; CORS
 * for the dashboard's origin) and the key set.
 */
export class LoopbackIdp {
  issuer = '';
  clientId = 'a4c-dashboard';
  user = '';
  refuseNext: { error: string; error_description: string } | undefined;
  readonly exchanges: Exchange[] = [];
  private readonly codes = new Map<string, Exchange>();
  private key!: { privateKey: CryptoKey; jwk: JWK };
  private readonly server = http.createServer((req, res) => {
    this.handle(req, res).catch((e: unknown) => res.writeHead(500).end(String(e)));
  });

  async start(): Promise<void> {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    this.key = { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' } };
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.issuer = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  /** An ID token as /token issues them; `exp` in seconds since the epoch. */
  async idToken(claims: { sub: string; nonce?: string; exp?: number }): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ ...(claims.nonce ? { nonce: claims.nonce } : {}) })
      .setProtectedHeader({ alg: 'RS256', kid: 'idp-1', typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(this.clientId)
      .setSubject(claims.sub)
      .setIssuedAt(Math.min(now, (claims.exp ?? now + 300) - 60))
      .setExpirationTime(claims.exp ?? now + 300)
      .sign(this.key.privateKey);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.issuer);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body));
    };
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer: this.issuer,
        authorization_endpoint: `${this.issuer}/authorize`,
        token_endpoint: `${this.issuer}/token`,
        jwks_uri: `${this.issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
      });
    }
    if (req.method === 'GET' && url.pathname === '/jwks') return json(200, { keys: [this.key.jwk] });
    if (req.method === 'GET' && url.pathname === '/authorize') return this.authorize(url, res);
    if (url.pathname === '/token') {
      // The dashboard's origin calls this with fetch: CORS, as real providers do for public clients.
      const cors: Record<string, string> = { 'access-control-allow-origin': req.headers.origin ?? '*', vary: 'origin' };
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { ...cors, 'access-control-allow-methods': 'POST', 'access-control-allow-headers': 'content-type, accept, authorization, dpop' }).end();
        return;
      }
      if (req.method === 'POST') return this.token(await readBody(req), cors, json);
    }
    json(404, { error: 'not_found' });
  }

  private authorize(url: URL, res: http.ServerResponse): void {
    const q = url.searchParams;
    const redirectUri = q.get('redirect_uri') ?? '';
    const back = new URL(redirectUri);
    const state = q.get('state');
    if (state) back.searchParams.set('state', state);
    const refusal = this.refuseNext;
    this.refuseNext = undefined;
    if (refusal) {
      back.searchParams.set('error', refusal.error);
      back.searchParams.set('error_description', refusal.error_description);
    } else if (q.get('response_type') !== 'code' || q.get('client_id') !== this.clientId || !q.get('code_challenge')) {
      back.searchParams.set('error', 'invalid_request');
      back.searchParams.set('error_description', 'response_type=code, client_id and code_challenge are required');
    } else {
      const code = randomBytes(16).toString('base64url');
      this.codes.set(code, {
        clientId: q.get('client_id') ?? '',
        redirectUri,
        codeChallenge: q.get('code_challenge') ?? '',
        codeChallengeMethod: q.get('code_challenge_method') ?? 'plain',
        nonce: q.get('nonce') ?? '',
        scope: q.get('scope') ?? '',
        user: this.user,
      });
      back.searchParams.set('code', code);
    }
    res.writeHead(302, { location: back.href }).end();
  }

  private async token(form: URLSearchParams, cors: Record<string, string>, json: (status: number, body: unknown, headers?: Record<string, string>) => void): Promise<void> {
    const refuse = (error: string, error_description: string) => json(400, { error, error_description }, cors);
    const code = form.get('code') ?? '';
    const x = this.codes.get(code);
    this.codes.delete(code); // one use, whatever happens
    if (form.get('grant_type') !== 'authorization_code' || !x) return refuse('invalid_grant', 'unknown or used code');
    this.exchanges.push(x);
    x.codeVerifier = form.get('code_verifier') ?? undefined;
    const expected = x.codeChallengeMethod === 'S256' && x.codeVerifier ? createHash('sha256').update(x.codeVerifier).digest('base64url') : undefined;
    x.verified = expected !== undefined && expected === x.codeChallenge;
    if (!x.verified) return refuse('invalid_grant', 'PKCE verification failed: code_verifier does not match the code_challenge');
    if (form.get('redirect_uri') !== x.redirectUri || form.get('client_id') !== x.clientId) return refuse('invalid_grant', 'redirect_uri or client_id differ from the authorization request');
    x.idToken = await this.idToken({ sub: x.user, nonce: x.nonce });
    json(200, { access_token: randomBytes(16).toString('base64url'), token_type: 'Bearer', expires_in: 300, id_token: x.idToken }, cors);
  }
}

async function readBody(req: http.IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
