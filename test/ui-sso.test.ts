import { createHash } from 'node:crypto';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import type { Workspace } from '@a4c/common';
import { loadConfig } from '@a4c/control-plane';
import { removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { axeViolations, launchBrowser, screenshot, type Browser } from './support/browser.js';
import { LoopbackIdp } from './support/idp.js';

/**
 * The dashboard's single sign-on in Debian's Chromium: authorization code with PKCE
 * against a loopback OpenID Provider, a real control plane (endpoints discovered from
 * the provider), agent and Docker Engine.
 */
describe('web dashboard single sign-on (OIDC, PKCE) in a real browser', function () {
  this.timeout(120_000);
  const idp = new LoopbackIdp();
  let t: TestControlPlane;
  let agent: AgentProcess;
  let browser: Browser;
  let page: Page;
  const hostId = uniqueId('sso');
  const s = uniqueId('s');
  const alice = `alice-${s}`;
  const bob = `bob-${s}`;
  let aliceWs: Workspace;
  let bobWs: Workspace;

  const base = () => t.api.baseUrl;
  const ssoButton = (p: Page) => p.getByRole('button', { name: 'Sign in with SSO' });
  const seriousAxe = async (p: Page) => (await axeViolations(p)).filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id}: ${v.help} ${JSON.stringify(v.nodes)}`);
  const storage = (p: Page, key: string) => p.evaluate<string | null>(`sessionStorage.getItem(${JSON.stringify(key)})`);

  /** Presses the button but stops the browser at the provider's door: the authorization URL it was sent to. */
  async function authorizationUrl(p: Page): Promise<string> {
    const pattern = `${idp.issuer}/authorize**`;
    // 204 to a navigation: the browser stays on the page it is on.
    await p.route(pattern, (r) => r.fulfill({ status: 204 }));
    const request = p.waitForRequest((r) => r.url().startsWith(`${idp.issuer}/authorize`));
    await ssoButton(p).click();
    const url = (await request).url();
    await p.unroute(pattern);
    return url;
  }

  before(async () => {
    await idp.start();
    t = await startTestControlPlane({
      A4C_OIDC_ISSUER: idp.issuer,
      A4C_OIDC_AUDIENCE: idp.clientId,
      A4C_OIDC_JWKS_URL: `${idp.issuer}/jwks`,
    });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    for (const u of [alice, bob]) expect((await t.api.call('POST', '/v1/users', { id: u })).status).to.equal(201);
    aliceWs = await t.api.createWorkspace(alice, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', name: 'alice-sso' });
    bobWs = await t.api.createWorkspace(bob, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', name: 'bob-hidden' });
    browser = await launchBrowser();
    page = await browser.context.newPage();
  });
  after(async () => {
    await browser?.close();
    await agent?.kill();
    await t?.stop();
    await idp.stop();
    await removeHostContainers(hostId);
  });

  it('tells the dashboard the discovered endpoints, and lets the page reach only the token endpoint besides itself', async () => {
    const r = await t.api.call<{ oidc: Record<string, unknown> }>('GET', '/v1/auth/config', undefined, { token: null });
    expect(r.status).to.equal(200);
    expect(r.body.oidc).to.deep.equal({
      issuer: idp.issuer,
      clientId: idp.clientId,
      authorizationEndpoint: `${idp.issuer}/authorize`,
      tokenEndpoint: `${idp.issuer}/token`,
      scopes: ['openid', 'profile', 'email'],
      algorithms: ['RS256', 'ES256'],
    });
    const csp = (await fetch(`${base()}/ui/`)).headers.get('content-security-policy') ?? '';
    expect(csp).to.include(`connect-src 'self' ${idp.issuer};`);
  });

  it('signs in with SSO from a deep link and lands there as the claimed user, seeing only their workspaces, with no code or token in the URL or history', async () => {
    idp.user = alice;
    const start = `${base()}/ui/workspaces?q=alice`;
    await page.goto(start);
    await ssoButton(page).waitFor();
    await screenshot(page, 'sign-in-sso');
    expect(await seriousAxe(page), 'accessibility of the sign-in page with SSO').to.deep.equal([]);
    await ssoButton(page).click();
    await page.locator('.whoami-id').filter({ hasText: alice }).waitFor();
    await page.locator(`tr[data-workspace="${aliceWs.id}"]`).waitFor();
    expect(await page.locator(`tr[data-workspace="${bobWs.id}"]`).count()).to.equal(0);
    expect(await page.content()).not.to.include('bob-hidden');

    const x = idp.exchanges.at(-1);
    expect(x, 'the provider exchanged a code').to.not.equal(undefined);
    expect(x?.codeChallengeMethod).to.equal('S256');
    expect(x?.codeChallenge).to.match(/^[A-Za-z0-9_-]{43}$/);
    expect(x?.codeVerifier).to.match(/^[A-Za-z0-9._~-]{43,128}$/);
    expect(createHash('sha256').update(x?.codeVerifier ?? '').digest('base64url')).to.equal(x?.codeChallenge);
    expect(x?.verified).to.equal(true);
    expect(x?.redirectUri).to.equal(`${base()}/ui/auth/callback`);
    expect(x?.scope).to.equal('openid profile email');
    expect(x?.nonce).to.have.length.greaterThan(20);

    expect(page.url()).to.equal(start);
    expect(await storage(page, 'a4c.token')).to.equal(x?.idToken);
    expect(await storage(page, 'a4c.sso.pending'), 'verifier, state and nonce are used once').to.equal(null);
    // History: the callback's entry became the page started from; behind it, the sign-in page.
    await page.goBack();
    expect(page.url()).to.equal(start);
    await page.goForward();
    expect(page.url()).to.equal(start);
    await page.locator('.whoami-id').filter({ hasText: alice }).waitFor();

    expect(browser.console.filter((m) => /Content.Security.Policy|Refused to/i.test(m)), 'the token request passed the CSP').to.deep.equal([]);
    // The API takes the ID token as the bearer it is.
    const me = await t.api.call<{ id: string }>('GET', '/v1/me', undefined, { token: x?.idToken as string });
    expect(me.body.id).to.equal(alice);

    await page.getByRole('button', { name: 'Sign out' }).click();
    await ssoButton(page).waitFor();
    expect(await storage(page, 'a4c.token')).to.equal(null);
  });

  it('refuses a tampered state with a clear message, and the code is never exchanged', async () => {
    await page.goto(`${base()}/ui/hosts`);
    const authorize = await authorizationUrl(page);
    expect(authorize).to.include('code_challenge_method=S256');
    // The provider's answer, with the state swapped for another.
    const answer = await fetch(authorize, { redirect: 'manual' });
    const back = new URL(answer.headers.get('location') ?? '');
    expect(back.searchParams.get('code')).to.be.a('string');
    back.searchParams.set('state', 'forged-state-value');
    const exchanges = idp.exchanges.length;
    await page.goto(back.href);
    const alert = page.getByRole('alert').filter({ hasText: 'state mismatch' });
    await alert.waitFor();
    expect(await alert.textContent()).to.include('Sign in with SSO');
    await screenshot(page, 'sign-in-sso-state-mismatch');
    expect(await seriousAxe(page), 'accessibility of the refusal').to.deep.equal([]);
    expect(idp.exchanges.length, 'no token request for a forged answer').to.equal(exchanges);
    expect(page.url()).to.equal(`${base()}/ui/`);
    expect(await storage(page, 'a4c.token')).to.equal(null);
    await ssoButton(page).waitFor();
  });

  it('shows what the identity provider refused, and a wrong code_verifier is refused by the provider', async () => {
    idp.refuseNext = { error: 'access_denied', error_description: 'The user cancelled the sign-in' };
    await page.goto(`${base()}/ui/`);
    await ssoButton(page).click();
    const refused = page.getByRole('alert').filter({ hasText: 'access_denied' });
    await refused.waitFor();
    expect(await refused.textContent()).to.include('The user cancelled the sign-in').and.include('API token');
    expect(page.url()).to.equal(`${base()}/ui/`);

    // The verifier this tab keeps is changed before the provider answers: the provider refuses the exchange.
    await page.goto(`${base()}/ui/`);
    const authorize = await authorizationUrl(page);
    await page.evaluate(`{
      const pending = JSON.parse(sessionStorage.getItem('a4c.sso.pending'));
      pending.codeVerifier = pending.codeVerifier.slice(0, -4) + (pending.codeVerifier.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      sessionStorage.setItem('a4c.sso.pending', JSON.stringify(pending));
    }`);
    await page.goto(authorize);
    const grant = page.getByRole('alert').filter({ hasText: 'invalid_grant' });
    await grant.waitFor();
    expect(await grant.textContent()).to.include('PKCE verification failed');
    expect(idp.exchanges.at(-1)?.verified).to.equal(false);
    expect(await storage(page, 'a4c.token')).to.equal(null);
  });

  it('says the SSO session expired when the API refuses an expired ID token, and offers sign-in again', async () => {
    const expired = await idp.idToken({ sub: alice, exp: Math.floor(Date.now() / 1000) - 3600 });
    expect((await t.api.call('GET', '/v1/me', undefined, { token: expired })).status).to.equal(401);
    await page.goto(`${base()}/ui/`);
    await page.evaluate(`sessionStorage.setItem('a4c.token', ${JSON.stringify(expired)}); sessionStorage.setItem('a4c.token.via', 'sso')`);
    await page.goto(`${base()}/ui/workspaces`);
    await page.getByText('Your single sign-on session expired').waitFor();
    await ssoButton(page).waitFor();
    expect(await storage(page, 'a4c.token')).to.equal(null);
  });

  it('configuration: client id defaults to the audience; scopes need openid; endpoints are https or loopback', () => {
    const all = { A4C_OIDC_ISSUER: 'https://id.a4c.test', A4C_OIDC_AUDIENCE: 'a4c', A4C_OIDC_JWKS_URL: 'https://id.a4c.test/keys' };
    expect(loadConfig(all).oidc?.browser).to.deep.equal({ clientId: 'a4c', authorizationUrl: undefined, tokenUrl: undefined, scopes: ['openid', 'profile', 'email'] });
    const set = loadConfig({ ...all, A4C_OIDC_CLIENT_ID: 'dash', A4C_OIDC_SCOPES: ' openid  groups ', A4C_OIDC_TOKEN_URL: 'http://127.0.0.1:9/token', A4C_OIDC_AUTHORIZATION_URL: 'https://id.a4c.test/auth' });
    expect(set.oidc?.browser).to.deep.equal({ clientId: 'dash', authorizationUrl: 'https://id.a4c.test/auth', tokenUrl: 'http://127.0.0.1:9/token', scopes: ['openid', 'groups'] });
    const refused: [Record<string, string>, RegExp][] = [
      [{ ...all, A4C_OIDC_SCOPES: 'profile email' }, /A4C_OIDC_SCOPES must include "openid"/],
      [{ ...all, A4C_OIDC_SCOPES: 'openid "x"' }, /A4C_OIDC_SCOPES must be scope names/],
      [{ ...all, A4C_OIDC_TOKEN_URL: 'http://id.a4c.test/token' }, /A4C_OIDC_TOKEN_URL must be an https URL/],
      [{ ...all, A4C_OIDC_AUTHORIZATION_URL: 'nope' }, /A4C_OIDC_AUTHORIZATION_URL must be a URL/],
      [{ ...all, A4C_OIDC_CLIENT_ID: 'has space' }, /A4C_OIDC_CLIENT_ID/],
    ];
    for (const [env, message] of refused) expect(() => loadConfig(env), JSON.stringify(env)).to.throw(message);
  });

  it('answers 503 saying why when the discovery document cannot be read, and API tokens still work', async () => {
    const down = new LoopbackIdp();
    await down.start();
    const issuer = `${down.issuer}/wrong-realm`; // its discovery URL answers 404
    const cp = await startTestControlPlane({ A4C_OIDC_ISSUER: issuer, A4C_OIDC_AUDIENCE: 'a4c', A4C_OIDC_JWKS_URL: `${down.issuer}/jwks` });
    try {
      const r = await cp.api.call<{ error: string; message: string; suggestion: string }>('GET', '/v1/auth/config', undefined, { token: null });
      expect(r.status).to.equal(503);
      expect(r.body.message).to.include(`${issuer}/.well-known/openid-configuration answered 404`);
      expect(r.body.suggestion).to.include('A4C_OIDC_AUTHORIZATION_URL');
      const csp = (await fetch(`${cp.api.baseUrl}/ui/`)).headers.get('content-security-policy') ?? '';
      expect(csp).to.include("connect-src 'self';");
      expect((await cp.api.call('GET', '/v1/me')).status).to.equal(200);
    } finally {
      await cp.stop();
      await down.stop();
    }
  });

  it('has no SSO button and allows no other origin when single sign-on is off', async () => {
    const plain = await startTestControlPlane();
    try {
      const r = await plain.api.call('GET', '/v1/auth/config', undefined, { token: null });
      expect(r.body).to.deep.equal({ oidc: null });
      const csp = (await fetch(`${plain.api.baseUrl}/ui/`)).headers.get('content-security-policy') ?? '';
      expect(csp).to.include("connect-src 'self';");
      const p = await browser.context.newPage();
      await p.goto(`${plain.api.baseUrl}/ui/`);
      await p.getByLabel('API token').waitFor();
      await p.waitForLoadState('networkidle');
      expect(await ssoButton(p).count()).to.equal(0);
      await p.close();
    } finally {
      await plain.stop();
    }
  });
});
