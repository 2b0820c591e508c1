import { expect } from 'chai';
import type { ActivityEvent, CreatedWebhook, Webhook, WebhookDelivery, WebhookPayload } from '@a4c/common';
import { run } from '@a4c/cli';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { verifyA4cSignature, WebhookReceiver } from './support/webhook-receiver.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Short retries so that a delivery failing a few times settles in about a second. */
const FAST = {
  A4C_WEBHOOK_RETRY_BASE_MS: '200',
  A4C_WEBHOOK_RETRY_MAX_MS: '800',
  A4C_WEBHOOK_TIMEOUT_MS: '20000',
  A4C_WEBHOOK_CONCURRENCY_PER_WEBHOOK: '1',
  A4C_WEBHOOK_POLL_MS: '100',
  A4C_WEBHOOK_MAX_ATTEMPTS: '6',
  A4C_WEBHOOK_CLIENT_ERROR_ATTEMPTS: '2',
  A4C_WEBHOOK_DISABLE_AFTER_FAILURES: '4',
};

describe('webhooks: signed deliveries from the activity log, retried until a receiver takes them', function () {
  this.timeout(90_000);
  let t: TestControlPlane;
  const rx = new WebhookReceiver();
  const s = uniqueId('wh');
  const alice = `alice-${s}`;
  const bob = `bob-${s}`;
  /** alice's team lead */
  const carol = `carol-${s}`;
  const tokens: Record<string, string> = {};
  const as = (who: string) => ({ token: tokens[who] as string });
  let aliceHook: CreatedWebhook;

  const deliveries = async (hookId: string, who: string) => {
    const r = await t.api.call<{ deliveries: WebhookDelivery[] }>('GET', `/v1/webhooks/${hookId}/deliveries`, undefined, as(who));
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    return r.body.deliveries;
  };
  const schedule = async (who: string, change: string) => {
    const r = await t.api.call<{ id: string }>('POST', `/v1/users/${who}/image-schedules`, { imageName: 'wh/img', project: 'wh', arch: 'linux-x64', changeNumber: change }, as(who));
    expect(r.status, JSON.stringify(r.body)).to.equal(202);
    return r.body.id;
  };
  const payloads = (p: string) => rx.on(p).map((r) => JSON.parse(r.body) as WebhookPayload);

  before(async () => {
    await rx.start();
    t = await startTestControlPlane(FAST);
    tokens.admin = t.api.token;
    for (const [id, role, teamId] of [[alice, 'user', `t-${s}`], [bob, 'user', `u-${s}`], [carol, 'lead', `t-${s}`]] as const) {
      expect((await t.api.call('POST', '/v1/users', { id, role, teamId })).status).to.equal(201);
      tokens[id] = (await t.api.call<{ token: string }>('POST', `/v1/users/${id}/tokens`, { name: 'test' })).body.token;
    }
  });
  after(async () => {
    await t?.stop();
    await rx.stop();
  });

  it('delivers an event exactly once, signed, through a receiver that fails twice first (500, then a reset connection); the deliveries list shows each attempt', async () => {
    rx.script('/alice', (n) => (n === 0 ? 500 : n === 1 ? 'reset' : 200));
    const created = await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/alice'), events: ['build.scheduled'], description: 'builds' }, as(alice));
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    aliceHook = created.body;
    expect(aliceHook.userId).to.equal(alice);
    expect(aliceHook.secret).to.match(/^whsec_/);
    expect(aliceHook.secret.startsWith(aliceHook.secretPrefix)).to.equal(true);
    const got = await t.api.call<Webhook>('GET', `/v1/webhooks/${aliceHook.id}`, undefined, as(alice));
    expect(got.body, 'the secret is shown only at creation').to.not.have.property('secret');

    const buildId = await schedule(alice, 'CL-1');
    const [d] = await waitFor('the delivery to succeed', async () => {
      const list = await deliveries(aliceHook.id, alice);
      return list[0]?.status === 'SUCCEEDED' ? list : undefined;
    }, 20_000);
    expect(d).to.include({ webhookId: aliceHook.id, kind: 'build.scheduled', status: 'SUCCEEDED', attempts: 3, lastStatus: 200, nextAttemptAt: null });
    expect(d?.history.map((a) => a.status)).to.deep.equal([500, null, 200]);
    expect(d?.history[0]?.error).to.match(/HTTP 500/);
    expect(d?.history[1]?.error).to.match(/ECONNRESET|reset|closed|socket/i);

    const reqs = rx.on('/alice');
    expect(reqs.map((r) => r.answer)).to.deep.equal([500, 'reset', 200]);
    expect(new Set(reqs.map((r) => r.headers['a4c-delivery'])), 'one delivery id, the receiver\'s idempotency key').to.deep.equal(new Set([d?.id]));
    expect(reqs.map((r) => r.headers['a4c-delivery-attempt'])).to.deep.equal(['1', '2', '3']);
    expect(new Set(reqs.map((r) => r.body)).size, 'the same body on every attempt').to.equal(1);
    const payload = JSON.parse(reqs[2]?.body as string) as WebhookPayload;
    expect(payload).to.include({ id: d?.id, webhookId: aliceHook.id, kind: 'build.scheduled' });
    expect(payload.event).to.include({ kind: 'build.scheduled', buildId, userId: alice, id: d?.eventId });
    for (const r of reqs) {
      expect(r.headers['content-type']).to.equal('application/json');
      expect(r.headers['a4c-signature']).to.match(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(verifyA4cSignature(aliceHook.secret, r.body, r.headers['a4c-signature'] as string), 'valid under the secret').to.equal(true);
      expect(verifyA4cSignature(`whsec_${'x'.repeat(43)}`, r.body, r.headers['a4c-signature'] as string), 'a wrong secret does not verify').to.equal(false);
      expect(verifyA4cSignature(aliceHook.secret, r.body.replace(alice, bob), r.headers['a4c-signature'] as string), 'a changed body does not verify').to.equal(false);
      expect(verifyA4cSignature(aliceHook.secret, r.body, r.headers['a4c-signature'] as string, Math.floor(Date.now() / 1000) + 600), 'too old: outside the replay window').to.equal(false);
    }
    // Settled: nothing more is sent, however long we wait (retries here are under a second apart).
    await sleep(1500);
    expect(rx.on('/alice').length).to.equal(3);
    expect(rx.on('/alice').filter((r) => r.answer === 200).length, 'taken exactly once').to.equal(1);
    // Counted in /metrics: an HTTP error, no answer, a success, and the delivery that ended well.
    const metrics = await (await fetch(`${t.api.baseUrl}/metrics`)).text();
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    for (const result of ['success', 'http_error', 'no_answer']) expect(value(`a4c_webhook_attempts_total{result="${result}"}`), result).to.be.at.least(1);
    expect(value('a4c_webhook_deliveries_total{result="succeeded"}')).to.be.at.least(1);
    expect(value('a4c_webhook_attempt_duration_seconds_count')).to.be.at.least(3);
  });

  it("a user cannot see, change or create webhooks for another user's events, and receives only their own; a lead reads their team's", async () => {
    const other = await t.api.call('POST', '/v1/webhooks', { url: rx.url('/bob'), events: ['*'], userId: alice }, as(bob));
    expect(other.status, JSON.stringify(other.body)).to.equal(404);
    for (const [method, p, body] of [
      ['GET', `/v1/webhooks/${aliceHook.id}`, undefined],
      ['PATCH', `/v1/webhooks/${aliceHook.id}`, { url: rx.url('/bob') }],
      ['DELETE', `/v1/webhooks/${aliceHook.id}`, undefined],
      ['GET', `/v1/webhooks/${aliceHook.id}/deliveries`, undefined],
      ['POST', `/v1/webhooks/${aliceHook.id}/test`, undefined],
      ['GET', `/v1/webhooks?userId=${alice}`, undefined],
    ] as const) {
      const r = await t.api.call(method, p, body, as(bob));
      expect(r.status, `${method} ${p}: ${JSON.stringify(r.body)}`).to.equal(404);
    }
    const bobs = await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/bob'), events: ['build.*', 'webhook.*'] }, as(bob));
    expect(bobs.status, JSON.stringify(bobs.body)).to.equal(201);
    expect(bobs.body.userId, "a user's webhook is theirs, never fleet-wide").to.equal(bob);
    const fleet = await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/fleet'), events: ['build.scheduled'] });
    expect(fleet.status).to.equal(201);
    expect(fleet.body.userId).to.equal(null);
    const ids = async (who: string) => (await t.api.call<{ webhooks: Webhook[] }>('GET', '/v1/webhooks', undefined, as(who))).body.webhooks.map((w) => w.id);
    expect(await ids(bob)).to.deep.equal([bobs.body.id]);
    expect(await ids(alice)).to.deep.equal([aliceHook.id]);
    expect(await ids('admin')).to.include.members([aliceHook.id, bobs.body.id, fleet.body.id]);
    // alice's lead reads her webhooks (never changes them), and nobody else's.
    expect(await ids(carol)).to.deep.equal([]);
    expect((await t.api.call<{ webhooks: Webhook[] }>('GET', `/v1/webhooks?userId=${alice}`, undefined, as(carol))).body.webhooks.map((w) => w.id)).to.deep.equal([aliceHook.id]);
    expect((await t.api.call('GET', `/v1/webhooks/${aliceHook.id}`, undefined, as(carol))).status).to.equal(200);
    expect((await t.api.call('GET', `/v1/webhooks/${aliceHook.id}/deliveries`, undefined, as(carol))).status).to.equal(200);
    expect((await t.api.call('PATCH', `/v1/webhooks/${aliceHook.id}`, { enabled: false }, as(carol))).status).to.equal(403);
    expect((await t.api.call('DELETE', `/v1/webhooks/${aliceHook.id}`, undefined, as(carol))).status).to.equal(403);
    expect((await t.api.call('GET', `/v1/webhooks/${bobs.body.id}`, undefined, as(carol))).status).to.equal(404);
    expect((await t.api.call('GET', `/v1/webhooks/${fleet.body.id}`, undefined, as(carol))).status, 'fleet-wide: admins only').to.equal(404);
    expect((await t.api.call('POST', '/v1/webhooks', { url: rx.url('/carol'), events: ['*'], userId: alice }, as(carol))).status, 'nor creates them for her').to.equal(404);

    const aliceBuild = await schedule(alice, 'CL-2');
    const bobBuild = await schedule(bob, 'CL-1');
    // The fleet-wide webhook hears both; deliveries are made in the event's own transaction,
    // so once both are here, whatever bob's webhook was going to get exists too.
    await waitFor('the fleet webhook to get both builds', () => {
      const builds = payloads('/fleet').map((p) => p.event.buildId);
      return builds.includes(aliceBuild) && builds.includes(bobBuild);
    }, 20_000);
    const bobDeliveries = await waitFor('bob\'s deliveries to settle', async () => {
      const list = await deliveries(bobs.body.id, bob);
      return list.length > 0 && list.every((x) => x.status === 'SUCCEEDED') ? list : undefined;
    }, 20_000);
    const bobEvents: ActivityEvent[] = payloads('/bob').map((p) => p.event);
    expect(bobEvents.map((e) => e.buildId)).to.include(bobBuild);
    expect(bobEvents.map((e) => e.userId), 'only events about bob').to.satisfy((u: string[]) => u.every((x) => x === bob));
    expect(bobDeliveries.map((x) => x.eventId).sort()).to.deep.equal(bobEvents.map((e) => e.id).sort());
    // alice's webhook (build.scheduled) got her second build, not bob's.
    await waitFor('alice\'s second build delivered', () => payloads('/alice').some((p) => p.event.buildId === aliceBuild));
    expect(payloads('/alice').map((p) => p.event.userId)).to.satisfy((u: string[]) => u.every((x) => x === alice));
  });

  it('refuses a bad URL, an unknown event kind or a short secret with a 400 naming the field', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ url: 'ftp://example.com/hook', events: ['build.completed'] }, 'url', /http or https/],
      [{ url: 'not a url', events: ['build.completed'] }, 'url', /absolute URL/],
      [{ url: 'https://me:pw@example.com/hook', events: ['build.completed'] }, 'url', /credentials/],
      [{ events: ['build.completed'] }, 'url', /required/],
      [{ url: 'https://example.com/hook', events: ['build.completed', 'workspace.exploded'] }, 'events.1', /workspace\.exploded.*not an event kind/],
      [{ url: 'https://example.com/hook', events: ['nothing.*'] }, 'events.0', /matches no event kind/],
      [{ url: 'https://example.com/hook', events: [] }, 'events', /at least one/],
      [{ url: 'https://example.com/hook', events: ['*'], secret: 'short' }, 'secret', /16 to 256/],
      [{ url: 'https://example.com/hook', events: ['*'], colour: 'red' }, 'colour', /not a known field/],
    ];
    for (const [body, field, why] of cases) {
      const r = await t.api.call<{ error: string; field: string; message: string }>('POST', '/v1/webhooks', body, as(alice));
      expect(r.status, JSON.stringify(r.body)).to.equal(400);
      expect(r.body.error).to.equal('INVALID_ARGUMENT');
      expect(r.body.field, JSON.stringify(r.body)).to.equal(field);
      expect(r.body.message).to.match(why);
    }
    const patch = await t.api.call<{ field: string }>('PATCH', `/v1/webhooks/${aliceHook.id}`, { events: ['build.completed', 'bogus'] }, as(alice));
    expect([patch.status, patch.body.field]).to.deep.equal([400, 'events.1']);
    // Kinds other features emit, and prefixes, are accepted.
    const ok = await t.api.call<Webhook>('POST', '/v1/webhooks', { url: 'https://example.com/hook', events: ['workspace.autostop_warning', 'workspace.lost', 'host.lost', 'host.drain_*', 'workspace.*'], enabled: false });
    expect(ok.status, JSON.stringify(ok.body)).to.equal(201);
    expect((await t.api.call('DELETE', `/v1/webhooks/${ok.body.id}`)).status).to.equal(200);
  });

  it('a test ping goes to that webhook only; a 4xx other than 408/429 gives up after A4C_WEBHOOK_CLIENT_ERROR_ATTEMPTS', async () => {
    rx.script('/gone', () => 410);
    const hook = (await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/gone'), events: ['build.failed'] }, as(alice))).body;
    const ping = await t.api.call<{ deliveryId: string; eventId: number }>('POST', `/v1/webhooks/${hook.id}/test`, undefined, as(alice));
    expect(ping.status, JSON.stringify(ping.body)).to.equal(202);
    const d = await waitFor('the ping to fail', async () => (await deliveries(hook.id, alice)).find((x) => x.id === ping.body.deliveryId && x.status === 'FAILED'), 20_000);
    expect(d).to.include({ kind: 'webhook.ping', attempts: 2, lastStatus: 410 });
    expect(d.lastError).to.match(/4xx other than 408\/429/);
    expect(rx.on('/gone').map((r) => (JSON.parse(r.body) as WebhookPayload).kind)).to.deep.equal(['webhook.ping', 'webhook.ping']);
    expect(payloads('/alice').some((p) => p.kind === 'webhook.ping'), "another webhook of the same owner does not get the ping").to.equal(false);
  });

  it('disables a webhook after A4C_WEBHOOK_DISABLE_AFTER_FAILURES failed attempts in a row, with an event; enabled again, its delivery resumes', async () => {
    rx.script('/down', (n) => (n < 4 ? 503 : 200));
    const hook = (await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/down'), events: ['build.failed'] }, as(alice))).body;
    const ping = (await t.api.call<{ deliveryId: string }>('POST', `/v1/webhooks/${hook.id}/test`, undefined, as(alice))).body;
    const disabled = await waitFor('the webhook disabled', async () => {
      const w = (await t.api.call<Webhook>('GET', `/v1/webhooks/${hook.id}`, undefined, as(alice))).body;
      return w.enabled ? undefined : w;
    }, 20_000);
    expect(disabled.consecutiveFailures).to.equal(4);
    expect(disabled.disabledReason).to.match(/4 consecutive failed attempts/);
    const events = await t.api.call<{ events: ActivityEvent[] }>('GET', `/v1/events?kind=webhook.disabled&userId=${alice}`, undefined, as(alice));
    expect(events.body.events.map((e) => e.data.webhookId)).to.include(hook.id);
    const [d] = await deliveries(hook.id, alice);
    expect(d).to.include({ id: ping.deliveryId, status: 'PENDING', attempts: 4 });
    const again = await t.api.call<{ suggestion: string }>('POST', `/v1/webhooks/${hook.id}/test`, undefined, as(alice));
    expect(again.status).to.equal(409);
    expect(again.body.suggestion).to.match(/enable/);

    const enabled = await t.api.call<Webhook>('PATCH', `/v1/webhooks/${hook.id}`, { enabled: true }, as(alice));
    expect(enabled.body).to.include({ enabled: true, consecutiveFailures: 0, disabledReason: null });
    const done = await waitFor('the pending delivery to go out', async () => (await deliveries(hook.id, alice)).find((x) => x.status === 'SUCCEEDED'), 20_000);
    expect(done).to.include({ id: ping.deliveryId, attempts: 5, lastStatus: 200 });
  });

  it('a receiver that does not answer holds only A4C_WEBHOOK_CONCURRENCY_PER_WEBHOOK requests; other webhooks and the API go on', async () => {
    rx.script('/slow', () => 'hold');
    const slow = (await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/slow'), events: ['webhook.ping'] }, as(alice))).body;
    const fast = (await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/fast'), events: ['webhook.ping'] }, as(bob))).body;
    for (let i = 0; i < 3; i++) expect((await t.api.call('POST', `/v1/webhooks/${slow.id}/test`, undefined, as(alice))).status).to.equal(202);
    await waitFor('the slow receiver holding a request', () => rx.on('/slow').length === 1);
    const ping = (await t.api.call<{ deliveryId: string }>('POST', `/v1/webhooks/${fast.id}/test`, undefined, as(bob))).body;
    await waitFor("the other webhook's delivery", async () => (await deliveries(fast.id, bob)).find((x) => x.id === ping.deliveryId && x.status === 'SUCCEEDED'));
    expect(rx.on('/slow').length, 'one request at a time to the slow one').to.equal(1);
    const pending = await deliveries(slow.id, alice);
    expect(pending.map((x) => x.status)).to.deep.equal(['PENDING', 'PENDING', 'PENDING']);
    // Answered, the rest follow one at a time.
    for (let i = 1; i <= 3; i++) {
      await waitFor(`request ${i} held`, () => rx.on('/slow').length === i);
      expect(rx.release('/slow'), 'one held at a time').to.equal(1);
    }
    await waitFor('all three delivered', async () => (await deliveries(slow.id, alice)).every((x) => x.status === 'SUCCEEDED'));
    expect(rx.on('/slow').length).to.equal(3);
  });

  it('two replicas on one database share the deliveries (SKIP LOCKED claims): each delivered once', async () => {
    const second = await startTestControlPlane({ ...FAST, DATABASE_URL: t.databaseUrl });
    try {
      const hook = (await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/both'), events: ['webhook.ping'] }, as(alice))).body;
      const pings: string[] = [];
      for (let i = 0; i < 30; i++) {
        // Half the pings asked of each replica: both are woken, both claim.
        const api = i % 2 ? second.api : t.api;
        const r = await api.call<{ deliveryId: string }>('POST', `/v1/webhooks/${hook.id}/test`, undefined, as(alice));
        expect(r.status).to.equal(202);
        pings.push(r.body.deliveryId);
      }
      await waitFor('all 30 delivered', async () => {
        const list = await t.api.call<{ deliveries: WebhookDelivery[] }>('GET', `/v1/webhooks/${hook.id}/deliveries?status=SUCCEEDED&limit=100`, undefined, as(alice));
        return list.body.deliveries.length === 30;
      }, 20_000);
      const ids = rx.on('/both').map((r) => r.headers['a4c-delivery']);
      expect(ids.length, 'no delivery sent twice').to.equal(30);
      expect(new Set(ids)).to.deep.equal(new Set(pings));
    } finally {
      await second.stop();
    }
  });

  it('a4c webhooks create, list, get, update, test, deliveries, delete', async () => {
    // In this process (a process per command is slow on a busy machine; cli.test.ts runs the real bin).
    const a4c = async (...args: string[]) => {
      let stdout = '';
      let stderr = '';
      const io = { out: (x: string) => void (stdout += x), err: (x: string) => void (stderr += x) };
      const code = await run(['--url', t.api.baseUrl, '--token', tokens[bob] as string, '--user', bob, ...args], io);
      return { code, stdout, stderr };
    };
    const created = await a4c('webhooks', 'create', '--endpoint', rx.url('/cli'), '--events', 'build.completed,workspace.failed', '-o', 'json');
    expect(created.code, created.stderr).to.equal(0);
    const hook = JSON.parse(created.stdout) as CreatedWebhook;
    expect(hook).to.include({ userId: bob, url: rx.url('/cli') });
    expect(hook.events).to.deep.equal(['build.completed', 'workspace.failed']);
    const text = await a4c('webhooks', 'create', '--endpoint', rx.url('/cli2'), '--events', 'build.completed');
    expect(text.stdout).to.match(/signing secret \(shown only now/).and.match(/whsec_/);
    const list = await a4c('webhooks', 'list');
    expect(list.code, list.stderr).to.equal(0);
    expect(list.stdout).to.contain(hook.id).and.contain('build.completed,workspace.failed');
    const get = await a4c('webhooks', 'get', hook.id);
    expect(get.stdout).to.contain(`${hook.secretPrefix}…`).and.not.contain(hook.secret);
    expect((await a4c('webhooks', 'update', hook.id, '--disable')).code).to.equal(0);
    const refused = await a4c('webhooks', 'test', hook.id);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.match(/disabled/);
    expect((await a4c('webhooks', 'update', hook.id, '--enable')).code).to.equal(0);
    const test = await a4c('webhooks', 'test', hook.id, '-o', 'json');
    expect(test.code, test.stderr).to.equal(0);
    const { deliveryId } = JSON.parse(test.stdout) as { deliveryId: string };
    await waitFor('the CLI ping delivered', async () => (await deliveries(hook.id, bob)).find((x) => x.id === deliveryId && x.status === 'SUCCEEDED'), 20_000);
    const table = await a4c('webhooks', 'deliveries', hook.id);
    expect(table.stdout).to.match(/webhook\.ping\s+SUCCEEDED\s+1/);
    const bad = await a4c('webhooks', 'create', '--endpoint', 'gopher://x', '--events', 'build.completed');
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/url: must be an http or https URL/);
    expect((await a4c('webhooks', 'delete', hook.id)).code).to.equal(0);
    expect((await a4c('webhooks', 'get', hook.id)).code).to.equal(1);
  });
});
