import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { Page } from 'playwright-core';
import type { Build, HostView, Workspace } from '@a4c/common';
import { removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { axeViolations, launchBrowser, screenshot, type Browser } from './support/browser.js';
import { waitFor } from './support/net.js';
import { openSocket } from './support/access.js';

/**
 * The web dashboard in Debian's Chromium against a real control plane, agent and
 * Docker Engine. alice and bob are plain users; the admin token drains a host.
 */
describe('web dashboard in a real browser', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  let browser: Browser;
  let page: Page;
  const hostId = uniqueId('ui');
  const s = uniqueId('u');
  const alice = `alice-${s}`;
  const bob = `bob-${s}`;
  const tokens: Record<string, string> = {};
  let aliceWs: Workspace;
  let bobWs: Workspace;
  let build: Build;
  const v1Requests: { url: string; authorization: string | undefined }[] = [];

  const base = () => t.api.baseUrl;
  const as = (who: string) => ({ token: tokens[who] as string });

  async function signIn(p: Page, token: string, at = '/ui/'): Promise<void> {
    await p.goto(`${base()}${at}`);
    await p.getByLabel('API token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('#page-title').first().waitFor();
    await p.locator('.signin').waitFor({ state: 'detached' });
  }

  before(async () => {
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    for (const u of [alice, bob]) {
      expect((await t.api.call('POST', '/v1/users', { id: u, teamId: `team-${s}` })).status).to.equal(201);
      const tok = await t.api.call<{ token: string }>('POST', `/v1/users/${u}/tokens`, { name: 'browser' });
      tokens[u] = tok.body.token;
    }
    aliceWs = (await t.api.call<Workspace>('POST', `/v1/users/${alice}/workspaces?wait=30`, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', name: 'alice-first' }, as(alice))).body;
    bobWs = (await t.api.call<Workspace>('POST', `/v1/users/${bob}/workspaces?wait=30`, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', name: 'bob-private' }, as(bob))).body;
    expect([aliceWs.status, bobWs.status]).to.deep.equal(['RUNNING', 'RUNNING']);
    // No build slots on the agent: the build waits in the queue.
    const b = await t.api.call<Build>('POST', `/v1/users/${alice}/image-schedules`, { imageName: 'web', project: 'web', arch: 'linux-x64', changeNumber: 'CL-42' }, as(alice));
    expect(b.status).to.equal(202);
    build = b.body;
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/v1/')) v1Requests.push({ url: r.url(), authorization: r.headers().authorization });
    });
  });
  after(async () => {
    await browser?.close();
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  it('serves /ui/ with a strict Content-Security-Policy, right types and caching, and index.html for deep links', async () => {
    const index = await fetch(`${base()}/ui/workspaces/${aliceWs.id}`);
    expect(index.status).to.equal(200);
    expect(index.headers.get('content-type')).to.match(/^text\/html/);
    expect(index.headers.get('cache-control')).to.equal('no-store');
    const csp = index.headers.get('content-security-policy') ?? '';
    expect(csp).to.include("script-src 'self'").and.include("default-src 'none'").and.include("frame-ancestors 'none'");
    expect(csp).not.to.include('unsafe-inline');
    expect(csp).not.to.include('unsafe-eval');
    const html = await index.text();
    const nonce = /'nonce-([^']+)'/.exec(csp)?.[1];
    expect(nonce, 'a per-response style nonce').to.be.a('string');
    expect(html).to.include(`nonce="${nonce}"`);
    const again = await fetch(`${base()}/ui/`);
    expect(again.headers.get('content-security-policy')).not.to.equal(csp); // a fresh nonce each time
    const script = /src="(\/ui\/assets\/app-[^"]+\.js)"/.exec(html)?.[1] as string;
    const asset = await fetch(`${base()}${script}`);
    expect(asset.status).to.equal(200);
    expect(asset.headers.get('content-type')).to.match(/^text\/javascript/);
    expect(asset.headers.get('cache-control')).to.include('immutable');
    expect(asset.headers.get('x-content-type-options')).to.equal('nosniff');
    expect((await fetch(`${base()}/ui/assets/app-NOPE.js`)).status).to.equal(404);
    expect((await fetch(`${base()}/ui/assets/..%2F..%2Fpackage.json`)).status).to.equal(404);
    const root = await fetch(`${base()}/`, { redirect: 'manual' });
    expect(root.status).to.equal(302);
    expect(root.headers.get('location')).to.equal('/ui/');
  });

  it('says to run `npm run build` when the bundle is missing, and the API still works', async () => {
    const bare = await startTestControlPlane({ A4C_UI_DIR: mkdtempSync(path.join(os.tmpdir(), 'a4c-no-ui-')) });
    try {
      const r = await fetch(`${bare.api.baseUrl}/ui/hosts`);
      expect(r.status).to.equal(503);
      expect(await r.text()).to.include('npm run build');
      expect((await bare.api.call('GET', '/v1/hosts')).status).to.equal(200);
    } finally {
      await bare.stop();
    }
  });

  it("signs in with a token (kept out of URLs) and lists the user's workspaces, not another user's", async () => {
    await page.goto(`${base()}/ui/`);
    await screenshot(page, 'sign-in');
    const field = page.getByLabel('API token');
    expect(await field.getAttribute('type')).to.equal('password');
    // A wrong token: the API's message, not a blank page.
    await field.fill('a4c_u_not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'invalid, expired or revoked token' }).waitFor();
    await signIn(page, tokens[alice] as string);
    const row = page.locator(`tr[data-workspace="${aliceWs.id}"]`);
    await row.waitFor();
    expect(await row.textContent()).to.include('alice-first');
    expect(await page.locator(`tr[data-workspace="${bobWs.id}"]`).count()).to.equal(0);
    expect(await page.content()).not.to.include('bob-private');
    expect(page.url()).not.to.include(tokens[alice] as string);
    expect(await page.evaluate("sessionStorage.getItem('a4c.token')")).to.equal(tokens[alice]);
    expect(await page.evaluate('document.cookie')).to.equal('');
    expect(v1Requests.length).to.be.greaterThan(0);
    for (const r of v1Requests) {
      expect(r.url).not.to.include(tokens[alice] as string);
      // Before signing in: who a pasted token is (/v1/me) and whether there is SSO (/v1/auth/config, public).
      if (!/\/v1\/(me|auth\/config)$/.test(new URL(r.url).pathname) || r.authorization) expect(r.authorization, r.url).to.match(/^Bearer /);
    }
  });

  it('shows a workspace created through the API without a reload, and its status as it changes', async () => {
    await page.goto(`${base()}/ui/workspaces`);
    await page.locator(`tr[data-workspace="${aliceWs.id}"]`).waitFor();
    await page.evaluate('window.sameDocument = true');
    const created = await t.api.call<Workspace>('POST', `/v1/users/${alice}/workspaces`, { projectName: 'live', arch: 'linux-x64', tier: 'tiny', name: 'appears-live' }, as(alice));
    expect(created.status).to.equal(201);
    const started = Date.now();
    const row = page.locator(`tr[data-workspace="${created.body.id}"]`);
    // Live through the events stream: within a second, with no reload.
    await row.waitFor({ timeout: 1000 });
    const appearedMs = Date.now() - started;
    await row.locator('[data-status="RUNNING"]').waitFor({ timeout: 30_000 });
    expect((await t.api.call('POST', `/v1/workspaces/${created.body.id}/stop`, undefined, as(alice))).status).to.equal(202);
    await row.locator('[data-status="STOPPED"]').waitFor({ timeout: 30_000 });
    expect(await page.evaluate('window.sameDocument'), 'the page was never reloaded').to.equal(true);
    console.log(`      (the new workspace appeared after ${appearedMs} ms)`);
  });

  it('starts, stops and deletes from the page, asking first where data could be lost', async () => {
    const w = await t.api.createWorkspace(alice, { projectName: 'click', arch: 'linux-x64', tier: 'tiny', name: 'by-click' });
    await page.goto(`${base()}/ui/workspaces/${w.id}`);
    await page.getByRole('heading', { name: 'by-click' }).waitFor();
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    const dialog = page.getByRole('dialog', { name: 'Stop by-click?' });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect((await t.api.workspace(w.id)).status).to.equal('RUNNING');
    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    await dialog.getByRole('button', { name: 'Stop workspace' }).click();
    await page.locator('.page-header [data-status="STOPPED"]').waitFor({ timeout: 30_000 });
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByRole('dialog', { name: 'Delete by-click?' }).getByRole('button', { name: 'Delete workspace' }).click();
    await page.waitForURL(`${base()}/ui/workspaces`);
    await waitFor('deleted', async () => ['DELETING', 'DELETED'].includes((await t.api.workspace(w.id)).status));
  });

  it('says when a workspace stops for idleness and what keeps it alive', async () => {
    const patched = await t.api.call<Workspace>('PATCH', `/v1/workspaces/${aliceWs.id}`, { autostopAfterSeconds: 3600 }, as(alice));
    expect(patched.status, JSON.stringify(patched.body)).to.equal(200);
    const sock = await openSocket(base(), `/v1/workspaces/${aliceWs.id}/exec?command=sleep&command=60`, tokens[alice] as string);
    try {
      await page.goto(`${base()}/ui/workspaces/${aliceWs.id}`);
      await page.getByRole('heading', { name: 'alice-first' }).waitFor();
      await page.getByRole('list', { name: 'Kept alive because' }).getByText(/open exec session/).waitFor();
    } finally {
      sock.close();
    }
    // Without an open session it says when it will stop: an hour after the last activity.
    await waitFor('the session to end', async () => (await t.api.call<Workspace & { keptAliveBecause?: { reason: string }[] }>('GET', `/v1/workspaces/${aliceWs.id}`, undefined, as(alice))).body.keptAliveBecause?.every((k) => k.reason !== 'open-sessions'));
    await page.reload();
    await page.getByText('(after 60 min idle)').waitFor();
    expect(await page.getByRole('list', { name: 'Kept alive because' }).getByText(/open exec session/).count()).to.equal(0);
    expect((await t.api.call('PATCH', `/v1/workspaces/${aliceWs.id}`, { autostopAfterSeconds: null }, as(alice))).status).to.equal(200);
  });

  it('runs a shell in the web terminal over the exec WebSocket: output, resize, reconnect', async () => {
    await page.goto(`${base()}/ui/workspaces/${aliceWs.id}`);
    await page.getByRole('heading', { name: 'alice-first' }).waitFor();
    const terminal = page.locator('.term-box');
    const rows = terminal.locator('.xterm-rows');
    const state = page.locator('[data-terminal]');
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.locator('[data-terminal="open"]').waitFor({ timeout: 20_000 });
    await waitFor('the shell prompt', async () => (/[#$] *$/m.test(await rows.innerText()) ? true : undefined), 15_000);
    await terminal.click();
    await page.keyboard.type('echo $((6*7))\n');
    await waitFor('42 in the terminal', async () => ((await rows.innerText()).split('\n').some((l) => l.trim() === '42') ? true : undefined), 15_000);
    // The terminal fits its box and tells the shell: a smaller window, a smaller TTY.
    await page.setViewportSize({ width: 1000, height: 760 });
    const cols = await waitFor('the terminal refit', async () => {
      const c = Number(await terminal.getAttribute('data-cols'));
      return c > 0 && c < 120 ? c : undefined;
    });
    const lines = Number(await terminal.getAttribute('data-rows'));
    await page.keyboard.type('stty size\n');
    await waitFor(`"${lines} ${cols}" from stty`, async () => ((await rows.innerText()).includes(`${lines} ${cols}`) ? true : undefined), 15_000);
    await page.keyboard.type('exit\n');
    await page.locator('[data-terminal="ended"]').waitFor();
    expect(await state.textContent()).to.include('exited with code 0');
    await page.getByRole('button', { name: 'Reconnect' }).click();
    await page.locator('[data-terminal="open"]').waitFor({ timeout: 20_000 });
    await waitFor('the shell prompt', async () => (/[#$] *$/m.test(await rows.innerText()) ? true : undefined), 15_000);
    await terminal.click();
    await page.keyboard.type('echo again-$((40+2))\n');
    await waitFor('the second session answers', async () => ((await rows.innerText()).includes('again-42') ? true : undefined), 15_000);
    await page.setViewportSize({ width: 1360, height: 880 });
    await screenshot(page, 'terminal');
  });

  it('follows deep links and walks back and forward', async () => {
    await page.goto(`${base()}/ui/workspaces/${aliceWs.id}`);
    await page.getByRole('heading', { name: 'alice-first' }).waitFor();
    await page.getByRole('link', { name: 'Hosts' }).click();
    await page.waitForURL(`${base()}/ui/hosts`);
    await page.locator(`[data-host="${hostId}"]`).waitFor();
    await page.goBack();
    await page.waitForURL(`${base()}/ui/workspaces/${aliceWs.id}`);
    await page.getByRole('heading', { name: 'alice-first' }).waitFor();
    await page.goForward();
    await page.waitForURL(`${base()}/ui/hosts`);
    await page.locator(`[data-host="${hostId}"]`).waitFor();
    // Filters are part of the link.
    await page.goto(`${base()}/ui/workspaces?status=STOPPED`);
    await page.locator('tr[data-workspace]').first().waitFor();
    const statuses = await page.locator('tr[data-workspace] [data-status]').evaluateAll((els) => els.map((e) => e.getAttribute('data-status')));
    expect(statuses.length).to.be.greaterThan(0);
    expect(new Set(statuses)).to.deep.equal(new Set(['STOPPED']));
    // By keyboard from the top of the page: the skip link first, then the navigation; Enter follows a link.
    const focusable = 'a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])';
    expect(await page.evaluate(`document.querySelector('${focusable}').textContent`)).to.equal('Skip to content');
    await page.focus('.skip-link');
    await page.keyboard.press('Tab'); // the brand
    await page.keyboard.press('Tab'); // Workspaces
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).to.equal('Hosts');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base()}/ui/hosts`);
    // The new page's title takes the focus, so a screen reader announces it.
    await page.locator('#page-title:focus').waitFor();
  });

  it("shows a host's reservation and its drain state after a drain from the page (admin)", async () => {
    const admin = await browser.context.newPage();
    try {
      await signIn(admin, t.api.token, '/ui/hosts');
      const card = admin.locator(`[data-host="${hostId}"]`);
      await card.waitFor();
      const h = (await t.api.host(hostId)) as HostView;
      expect(h.reserved.memoryBytes).to.be.greaterThan(0);
      const mib = `${Math.round(h.reserved.memoryBytes / 2 ** 20)} MiB of`;
      await card.getByText(mib).waitFor();
      await card.locator('[data-status="healthy"]').waitFor();
      await card.getByRole('button', { name: 'Drain' }).click();
      await admin.getByRole('dialog', { name: `Drain ${hostId}?` }).getByRole('button', { name: 'Drain host' }).click();
      await card.locator('[data-status="draining"]').waitFor();
      expect((await t.api.host(hostId))?.status).to.equal('draining');
      await screenshot(admin, 'hosts-draining');
      await card.getByRole('button', { name: 'Activate' }).click();
      await card.locator('[data-status="healthy"]').waitFor();
      expect((await t.api.host(hostId))?.status).to.equal('healthy');
    } finally {
      await admin.close();
    }
  });

  it('passes axe-core with no serious or critical violations on every page, and shoots each one', async () => {
    const admin = await browser.context.newPage();
    try {
      await signIn(admin, t.api.token);
      const pages: [string, string][] = [
        ['workspaces', '/ui/workspaces'],
        ['workspace', `/ui/workspaces/${aliceWs.id}`],
        ['new-workspace', '/ui/workspaces/new'],
        ['hosts', '/ui/hosts'],
        ['host', `/ui/hosts/${hostId}`],
        ['builds', '/ui/builds'],
        ['build', `/ui/builds/${build.id}`],
        ['activity', '/ui/activity'],
        ['audit', '/ui/admin/audit'],
        ['users', '/ui/admin/users'],
        ['user', `/ui/admin/users/${alice}`],
        ['quotas', `/ui/admin/quotas?user=${alice}`],
        ['not-found', '/ui/nowhere'],
      ];
      const problems: string[] = [];
      for (const [name, at] of pages) {
        await admin.goto(`${base()}${at}`);
        await admin.locator('#page-title').waitFor();
        await admin.locator('.loading').first().waitFor({ state: 'detached', timeout: 10_000 });
        await screenshot(admin, name);
        for (const v of await axeViolations(admin)) {
          if (v.impact === 'serious' || v.impact === 'critical') problems.push(`${name}: ${v.id} (${v.impact}) ${v.help}: ${JSON.stringify(v.nodes)}`);
        }
      }
      // The sign-in page, signed out.
      await page.evaluate('sessionStorage.clear()');
      await page.goto(`${base()}/ui/`);
      await page.getByLabel('API token').waitFor();
      for (const v of await axeViolations(page)) if (v.impact === 'serious' || v.impact === 'critical') problems.push(`sign-in: ${v.id} ${v.help}: ${JSON.stringify(v.nodes)}`);
      expect(problems).to.deep.equal([]);
    } finally {
      await admin.close();
    }
  });

  it('shows the build queue with positions, and cancels a queued build after asking', async () => {
    await page.evaluate(`sessionStorage.setItem('a4c.token', ${JSON.stringify(tokens[alice])})`);
    await page.goto(`${base()}/ui/builds`);
    const row = page.getByRole('row').filter({ hasText: build.imageTag });
    await row.getByText('#1 in queue').waitFor();
    await row.getByRole('link', { name: build.imageTag }).click();
    await page.getByRole('heading', { name: build.imageTag }).waitFor();
    await page.getByText('Waiting for the first log lines').waitFor();

    // The page's own button (the dialog's confirm button has the same name).
    const cancelBuild = page.locator('header').getByRole('button', { name: 'Cancel build', exact: true });
    await cancelBuild.click();
    const dialog = page.getByRole('dialog', { name: `Cancel ${build.imageTag}?` });
    await dialog.getByText('It leaves the queue and is never built.').waitFor();
    await dialog.getByRole('button', { name: 'Cancel', exact: true }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect((await t.api.call<Build>('GET', `/v1/image-schedules/${build.id}`)).body.status, 'not cancelled before the user confirms').to.equal('SCHEDULED');
    await cancelBuild.click();
    await dialog.getByRole('button', { name: 'Cancel build' }).click();
    await page.locator('.page-header [data-status="CANCELLED"]').waitFor();
    expect((await t.api.call<Build>('GET', `/v1/image-schedules/${build.id}`)).body.status).to.equal('CANCELLED');
    await page.getByRole('link', { name: 'Build again…' }).waitFor();
  });

  it('resumes the events stream with Last-Event-ID and says while it is reconnecting', async () => {
    // The client's side alone: the control plane's events stream is stood in for by
    // answers in the browser (one event, then the stream ends, as when a connection drops).
    const seen: (string | undefined)[] = [];
    const ev = (id: string, kind: string) => `id: ${id}\nevent: ${kind}\ndata: ${JSON.stringify({ id, kind, at: new Date().toISOString(), actor: alice, data: { note: kind } })}\n\n`;
    await page.route('**/v1/events?*', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ events: [] }) }));
    await page.route('**/v1/events/stream*', async (r) => {
      seen.push(r.request().headers()['last-event-id']);
      if (seen.length === 1) await r.fulfill({ status: 200, contentType: 'text/event-stream', body: `: hello\n\n${ev('c-1', 'workspace.created')}` });
      else if (seen.length === 2) await r.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: 'UNAVAILABLE', message: 'overloaded' }) });
      else await r.fulfill({ status: 200, contentType: 'text/event-stream', body: ev('c-2', 'workspace.stopped') });
    });
    try {
      await page.goto(`${base()}/ui/activity`);
      await page.getByRole('cell', { name: 'workspace created' }).waitFor();
      await page.locator('[data-live="reconnecting"]').filter({ hasText: /reconnecting/ }).waitFor();
      await page.getByRole('cell', { name: 'workspace stopped' }).waitFor({ timeout: 15_000 });
      expect(seen.slice(0, 3)).to.deep.equal([undefined, 'c-1', 'c-1']);
    } finally {
      await page.unrouteAll();
    }
  });

  it('broke no rule of the Content-Security-Policy on any page', () => {
    const violations = browser.console.filter((m) => /Content.Security.Policy|Refused to/i.test(m));
    expect(violations).to.deep.equal([]);
  });
});
