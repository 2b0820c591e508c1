import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import pg from 'pg';
import { loadConfig } from '@a4c/control-plane';
import { startTestControlPlane, uniqueId, type ApiResponse, type TestControlPlane } from './support/cluster.js';
import { freePort } from './support/net.js';

const ISSUER = 'https://idp.a4c.test/realms/dev';
const AUDIENCE = 'a4c';

interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: CryptoKey;
  jwk: JWK;
}

async function newKey(kid: string, alg: SigningKey['alg'] = 'RS256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

interface SignOptions {
  iss?: string;
  aud?: string;
  /** Seconds since the epoch; null: no exp claim. */
  exp?: number | null;
  nbf?: number;
  kid?: string;
}

const now = () => Math.floor(Date.now() / 1000);

async function sign(key: SigningKey, claims: Record<string, unknown>, o: SignOptions = {}): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: o.kid ?? key.kid, typ: 'JWT' })
    .setIssuedAt()
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE);
  if (o.exp !== null) jwt.setExpirationTime(o.exp ?? now() + 300);
  if (o.nbf !== undefined) jwt.setNotBefore(o.nbf);
  return jwt.sign(key.privateKey);
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** The identity provider's key set on loopback; it can fail on demand. */
class JwksServer {
  keys: JWK[] = [];
  failing = false;
  fetches = 0;
  private readonly server = http.createServer((req, res) => {
    this.fetches++;
    if (this.failing || req.url !== '/jwks') {
      res.writeHead(this.failing ? 500 : 404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: this.keys }));
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks`;
  }

  async stop(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }
}

type ErrorBody = { error: string; message: string; suggestion?: string };

describe('single sign-on (OIDC JWTs)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let db: pg.Client;
  const jwks = new JwksServer();
  let key1: SigningKey;
  let ecKey: SigningKey;
  const alice = uniqueId('alice');
  const bob = uniqueId('bob');
  const carol = uniqueId('carol');
  const dave = uniqueId('dave');
  const team = uniqueId('team');
  let aliceApiToken = '';

  const as = async (token: string, method: string, path: string, body?: unknown): Promise<ApiResponse<ErrorBody & Record<string, unknown>>> =>
    t.api.call<ErrorBody & Record<string, unknown>>(method, path, body, { token });
  const userRow = async (id: string) => (await db.query<{ role: string; team_id: string | null }>('SELECT role, team_id FROM users WHERE id = $1', [id])).rows[0];

  before(async () => {
    key1 = await newKey('key-1');
    ecKey = await newKey('key-ec', 'ES256');
    jwks.keys = [key1.jwk, ecKey.jwk];
    const jwksUrl = await jwks.start();
    t = await startTestControlPlane({
      A4C_OIDC_ISSUER: ISSUER,
      A4C_OIDC_AUDIENCE: AUDIENCE,
      A4C_OIDC_JWKS_URL: jwksUrl,
      // Refetch at once for an unknown key id, so rotation needs no 30 s wait.
      A4C_OIDC_JWKS_COOLDOWN_SECONDS: '0',
    });
    db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
    const created = await t.api.call('POST', '/v1/users', { id: bob });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    const d = await t.api.call('POST', '/v1/users', { id: dave, teamId: team });
    expect(d.status, JSON.stringify(d.body)).to.equal(201);
  });
  after(async () => {
    await db?.end();
    await t?.stop();
    await jwks.stop();
  });

  it('a valid token signs its user in; the first sign-in creates a plain user who sees only their own things', async () => {
    expect(await userRow(alice), 'no user before the first sign-in').to.equal(undefined);
    // Claims about roles and groups in the token grant nothing: roles live in A4C.
    const token = await sign(key1, { sub: alice, role: 'admin', groups: ['admins'] });
    const me = await as(token, 'GET', `/v1/users/${alice}`);
    expect(me.status, JSON.stringify(me.body)).to.equal(200);
    expect(me.body).to.deep.equal({ id: alice, teamId: null, role: 'user' });
    expect(await userRow(alice)).to.deep.equal({ role: 'user', team_id: null });
    const ev = await db.query<{ actor: string; data: { via?: string } }>("SELECT actor, data FROM events WHERE kind = 'user.created' AND data->>'userId' = $1", [alice]);
    expect(ev.rows).to.have.length(1);
    expect(ev.rows[0]?.data.via).to.equal('oidc');

    const own = await as(token, 'GET', `/v1/users/${alice}/workspaces`);
    expect(own.status, JSON.stringify(own.body)).to.equal(200);
    expect((await as(token, 'GET', '/v1/users')).status, 'the role claim must not make an admin').to.equal(403);
    expect((await as(token, 'GET', `/v1/users/${bob}`)).status).to.equal(404);
    expect((await as(token, 'GET', `/v1/users/${bob}/workspaces`)).status).to.equal(404);

    // An ES256 key of the set works too, and a second sign-in creates nothing new.
    const es = await as(await sign(ecKey, { sub: alice }), 'GET', `/v1/users/${alice}`);
    expect(es.status, JSON.stringify(es.body)).to.equal(200);
    expect((await db.query("SELECT 1 FROM events WHERE kind = 'user.created' AND data->>'userId' = $1", [alice])).rowCount).to.equal(1);

    // Signed in with SSO, a user can make an API token for scripts; the audit log names them.
    const tok = await as(token, 'POST', `/v1/users/${alice}/tokens`, { name: 'cli' });
    expect(tok.status, JSON.stringify(tok.body)).to.equal(201);
    aliceApiToken = String(tok.body.token);
    const audit = await t.api.call<{ entries: { actor: string; target: string; outcome: number }[] }>('GET', `/v1/audit?actor=${alice}`);
    expect(audit.body.entries.map((e) => [e.target, e.outcome])).to.deep.include([`/v1/users/${alice}/tokens`, 201]);
  });

  it('the role and team an admin gives a user apply to their JWTs', async () => {
    const token = await sign(key1, { sub: carol });
    expect((await as(token, 'GET', `/v1/users/${carol}`)).status).to.equal(200);
    expect((await as(token, 'GET', `/v1/users/${dave}`)).status, 'not yet dave\'s lead').to.equal(404);
    expect((await as(token, 'GET', '/v1/users')).status).to.equal(403);

    const lead = await t.api.call('PUT', `/v1/users/${carol}`, { role: 'lead', teamId: team });
    expect(lead.status, JSON.stringify(lead.body)).to.equal(200);
    expect((await as(token, 'GET', `/v1/users/${dave}`)).status, 'a lead reads their team member').to.equal(200);
    expect((await as(token, 'GET', '/v1/users')).status).to.equal(403);

    expect((await t.api.call('PUT', `/v1/users/${carol}`, { role: 'admin' })).status).to.equal(200);
    expect((await as(token, 'GET', '/v1/users')).status, 'the same token, now an admin').to.equal(200);

    // A user an admin made before their first sign-in keeps that team and role.
    const d = await as(await sign(key1, { sub: dave }), 'GET', `/v1/users/${dave}`);
    expect(d.status).to.equal(200);
    expect(d.body).to.deep.equal({ id: dave, teamId: team, role: 'user' });
  });

  it('expired, wrong-audience, wrong-issuer, expiry-less and not-yet-valid tokens are refused with their reason', async () => {
    const cases: [string, Promise<string>, RegExp][] = [
      ['expired', sign(key1, { sub: alice }, { exp: now() - 120 }), /token expired at \d{4}-/],
      ['wrong audience', sign(key1, { sub: alice }, { aud: 'someone-else' }), /token audience is not "a4c"/],
      ['wrong issuer', sign(key1, { sub: alice }, { iss: 'https://evil.example/realms/dev' }), /token issuer is not "https:\/\/idp\.a4c\.test\/realms\/dev"/],
      ['no exp', sign(key1, { sub: alice }, { exp: null }), /no expiry \(exp\)/],
      ['nbf in the future', sign(key1, { sub: alice }, { nbf: now() + 600 }), /not valid yet/],
    ];
    const wrong: string[] = [];
    for (const [what, token, message] of cases) {
      const r = await as(await token, 'GET', `/v1/users/${alice}`);
      if (r.status !== 401 || r.body.error !== 'UNAUTHENTICATED' || !message.test(r.body.message) || !r.body.suggestion) wrong.push(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    expect(wrong, wrong.join('\n')).to.deep.equal([]);
    // Within the clock tolerance (30 s by default) a just-expired token still passes.
    expect((await as(await sign(key1, { sub: alice }, { exp: now() - 5 }), 'GET', `/v1/users/${alice}`)).status).to.equal(200);
  });

  it("tokens not signed with the issuer's keys are refused: another key, a forged kid, a tampered payload, alg none, HS256", async () => {
    const rogue = await newKey('rogue');
    const intruder = uniqueId('intruder');
    const valid = await sign(key1, { sub: alice });
    const [h, , s] = valid.split('.') as [string, string, string];
    const claims = { sub: intruder, iss: ISSUER, aud: AUDIENCE, exp: now() + 300 };
    const hs256 = await new SignJWT({ sub: intruder }).setProtectedHeader({ alg: 'HS256', kid: key1.kid }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(new TextEncoder().encode('a-shared-secret-of-at-least-32-bytes!'));
    const cases: [string, string, RegExp][] = [
      ['key not in the set', await sign(rogue, { sub: intruder }), /signature does not match the issuer's keys/],
      ["another key with the real key's kid", await sign(rogue, { sub: intruder }, { kid: key1.kid }), /signature does not match the issuer's keys/],
      ['payload swapped under a real signature', `${h}.${b64url(claims)}.${s}`, /signature does not match the issuer's keys/],
      ['alg none', `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`, /algorithm "none" is not accepted \(accepted: RS256, ES256\)/],
      ['HS256', hs256, /algorithm "HS256" is not accepted/],
      ['three parts of nonsense', 'abc.def.ghi', /not a well-formed signed JWT/],
    ];
    const wrong: string[] = [];
    for (const [what, token, message] of cases) {
      const r = await as(token, 'GET', `/v1/users/${intruder}`);
      if (r.status !== 401 || r.body.error !== 'UNAUTHENTICATED' || !message.test(r.body.message)) wrong.push(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    expect(wrong, wrong.join('\n')).to.deep.equal([]);
    expect(await userRow(intruder), 'a refused token creates no user').to.equal(undefined);
  });

  it('a claim that is not a valid user id is refused, saying why', async () => {
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['uppercase and @', { sub: 'Alice@Example.com' }, /"sub" claim "Alice@Example.com" is not a valid A4C user id \(use 1-63 lowercase/],
      ['a number', { sub: 12345 }, /"sub" claim 12345 is not a valid A4C user id/],
      ['missing', { name: 'Alice' }, /token has no "sub" claim/],
      ['the admin token\'s name', { sub: 'admin' }, /"admin" is reserved/],
    ];
    const wrong: string[] = [];
    for (const [what, claims, message] of cases) {
      const r = await as(await sign(key1, claims), 'GET', '/v1/hosts');
      if (r.status !== 401 || !message.test(r.body.message) || !/A4C_OIDC_USER_CLAIM/.test(r.body.suggestion ?? '')) wrong.push(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    expect(wrong, wrong.join('\n')).to.deep.equal([]);
    expect((await db.query("SELECT id FROM users WHERE id IN ('admin', 'Alice@Example.com', '12345')")).rows).to.deep.equal([]);
  });

  it('API tokens and the admin token still work beside SSO; other tokens are refused as before', async () => {
    expect((await as(aliceApiToken, 'GET', `/v1/users/${alice}`)).status).to.equal(200);
    expect((await t.api.call('GET', '/v1/users')).status).to.equal(200);
    const junk = await as('not-a-token', 'GET', '/v1/hosts');
    expect(junk.status).to.equal(401);
    expect(junk.body.message).to.equal('invalid, expired or revoked token');
  });

  it('keys rotate: a token signed with a newly published key is accepted', async () => {
    const key2 = await newKey('key-2');
    const token = await sign(key2, { sub: alice });
    const early = await as(token, 'GET', `/v1/users/${alice}`);
    expect(early.status, 'not published yet').to.equal(401);
    expect(early.body.message).to.match(/signature does not match the issuer's keys/);
    // The provider publishes the next key beside the current one before signing with it.
    jwks.keys = [key1.jwk, key2.jwk, ecKey.jwk];
    const r = await as(token, 'GET', `/v1/users/${alice}`);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect((await as(await sign(key1, { sub: alice }), 'GET', `/v1/users/${alice}`)).status, 'the current key still works').to.equal(200);
  });

  it('with the identity provider failing or down: 503 UNAVAILABLE for keys not cached, never 500 or 401; cached keys still verify', async () => {
    const unknown = await newKey('key-while-down');
    jwks.failing = true;
    const before = jwks.fetches;
    const r = await as(await sign(unknown, { sub: alice }), 'GET', `/v1/users/${alice}`);
    expect(r.status, JSON.stringify(r.body)).to.equal(503);
    expect(r.body.error).to.equal('UNAVAILABLE');
    expect(r.body.message).to.match(/identity provider unreachable/);
    expect(r.body.suggestion).to.match(/A4C_OIDC_JWKS_URL/);
    expect(jwks.fetches, 'it asked the identity provider').to.be.greaterThan(before);
    const cached = await as(await sign(key1, { sub: alice }), 'GET', `/v1/users/${alice}`);
    expect(cached.status, JSON.stringify(cached.body)).to.equal(200);

    await jwks.stop();
    const down = await as(await sign(unknown, { sub: alice }), 'GET', `/v1/users/${alice}`);
    expect(down.status, JSON.stringify(down.body)).to.equal(503);
    expect(down.body.error).to.equal('UNAVAILABLE');
  });

  it('a control plane whose identity provider never answered refuses JWTs with 503', async () => {
    const other = await startTestControlPlane({
      A4C_OIDC_ISSUER: ISSUER,
      A4C_OIDC_AUDIENCE: AUDIENCE,
      A4C_OIDC_JWKS_URL: `http://127.0.0.1:${await freePort()}/jwks`, // nobody listens
    });
    try {
      const r = await other.api.call<ErrorBody>('GET', '/v1/hosts', undefined, { token: await sign(key1, { sub: alice }) });
      expect(r.status, JSON.stringify(r.body)).to.equal(503);
      expect(r.body.error).to.equal('UNAVAILABLE');
      expect((await other.api.call('GET', '/v1/hosts')).status, 'the admin token needs no identity provider').to.equal(200);
    } finally {
      await other.stop();
    }
  });

  it('without single sign-on configured, a JWT is refused saying so', async () => {
    const plain = await startTestControlPlane();
    try {
      const r = await plain.api.call<ErrorBody>('GET', '/v1/hosts', undefined, { token: await sign(key1, { sub: alice }) });
      expect(r.status).to.equal(401);
      expect(r.body.message).to.match(/single sign-on \(OIDC\) is not configured/);
      expect(r.body.suggestion).to.match(/API token/);
    } finally {
      await plain.stop();
    }
  });

  it('configuration: issuer, audience and key-set URL come together; URLs and algorithms are checked', () => {
    const all = { A4C_OIDC_ISSUER: ISSUER, A4C_OIDC_AUDIENCE: AUDIENCE, A4C_OIDC_JWKS_URL: 'https://idp.a4c.test/certs' };
    expect(loadConfig({}).oidc).to.equal(undefined);
    expect(loadConfig(all).oidc).to.deep.equal({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: 'https://idp.a4c.test/certs', userClaim: 'sub', algorithms: ['RS256', 'ES256'], clockToleranceSeconds: 30, jwksCooldownSeconds: 30, browser: { clientId: AUDIENCE, authorizationUrl: undefined, tokenUrl: undefined, scopes: ['openid', 'profile', 'email'] } });
    const refused: [Record<string, string>, RegExp][] = [
      [{ A4C_OIDC_ISSUER: ISSUER }, /A4C_OIDC_AUDIENCE is unset/],
      [{ A4C_OIDC_ISSUER: ISSUER, A4C_OIDC_AUDIENCE: AUDIENCE }, /A4C_OIDC_JWKS_URL is unset.*jwks_uri.*idp\.a4c\.test\/realms\/dev\/\.well-known\/openid-configuration/],
      [{ A4C_OIDC_JWKS_URL: all.A4C_OIDC_JWKS_URL }, /A4C_OIDC_ISSUER is unset/],
      [{ ...all, A4C_OIDC_JWKS_URL: 'http://idp.example.com/certs' }, /A4C_OIDC_JWKS_URL must be an https URL/],
      [{ ...all, A4C_OIDC_JWKS_URL: 'not a url' }, /A4C_OIDC_JWKS_URL must be a URL/],
      [{ ...all, A4C_OIDC_ISSUER: 'ftp://idp.a4c.test' }, /A4C_OIDC_ISSUER must be an https URL/],
      [{ ...all, A4C_OIDC_ALGORITHMS: 'RS256,HS256' }, /A4C_OIDC_ALGORITHMS .*"HS256" is refused: unsigned and shared-secret tokens are never accepted/],
      [{ ...all, A4C_OIDC_ALGORITHMS: 'none' }, /"none" is refused/],
      [{ A4C_OIDC_ALGORITHMS: 'HS256' }, /A4C_OIDC_ALGORITHMS/], // checked even while SSO is off
      [{ ...all, A4C_OIDC_USER_CLAIM: 'has space' }, /A4C_OIDC_USER_CLAIM/],
      [{ ...all, A4C_OIDC_CLOCK_TOLERANCE_SECONDS: '3600' }, /A4C_OIDC_CLOCK_TOLERANCE_SECONDS must be between 0 and 300/],
    ];
    for (const [env, message] of refused) expect(() => loadConfig(env), JSON.stringify(env)).to.throw(message);
    expect(loadConfig({ ...all, A4C_OIDC_JWKS_URL: 'http://127.0.0.1:8443/certs', A4C_OIDC_ALGORITHMS: 'ES256, EdDSA' }).oidc?.algorithms).to.deep.equal(['ES256', 'EdDSA']);
  });
});
