import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { CreatedWebhook, WebhookDelivery } from '@a4c/common';
import { createLogger } from '@a4c/common';
import { loadConfig, startControlPlane, type ControlPlane } from '@a4c/control-plane';
import { decide, kindPatternProblem, loadWebhookConfig, sign, type RetryPolicy } from '@a4c/control-plane/webhooks';
import { Api, freshDatabase, NO_LIMITS, tmpDir } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { verifyA4cSignature, WebhookReceiver } from './support/webhook-receiver.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Webhook delivery over time: the retry policy, signatures, and the injected clock (test/webhooks.test.ts: delivery end to end). */
describe('webhooks: retries wait for the injected clock', function () {
  this.timeout(60_000);
  const rx = new WebhookReceiver();
  /** The control plane's clock: real time plus an offset the test moves. */
  let offsetMs = 0;
  const clock = { now: () => new Date(Date.now() + offsetMs) };
  let cp: ControlPlane;
  let api: Api;

  before(async () => {
    await rx.start();
    const config = loadConfig({
      A4C_DATA_DIR: tmpDir('cp-clock'),
      DATABASE_URL: await freshDatabase(),
      A4C_HTTP_PORT: '0',
      A4C_GRPC_PORT: '0',
      A4C_ADMIN_TOKEN: `test-admin-token-${randomBytes(8).toString('hex')}`,
      A4C_GRPC_INSECURE: 'true',
      ...NO_LIMITS,
      // A minute before the first retry, an hour's maximum age: nothing here waits for either in real time.
      A4C_WEBHOOK_RETRY_BASE_MS: '60000',
      A4C_WEBHOOK_RETRY_MAX_MS: '600000',
      A4C_WEBHOOK_MAX_AGE_SECONDS: '3600',
      A4C_WEBHOOK_POLL_MS: '50',
    });
    cp = await startControlPlane(config, createLogger('test-control-plane', { A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' }), { clock });
    api = new Api(`http://127.0.0.1:${cp.httpPort}`, cp.adminToken);
  });
  after(async () => {
    await cp?.stop();
    await rx.stop();
  });

  const delivery = async (hookId: string, id: string) =>
    (await api.call<{ deliveries: WebhookDelivery[] }>('GET', `/v1/webhooks/${hookId}/deliveries`)).body.deliveries.find((d) => d.id === id);

  it('a failed attempt is retried only once the clock passes its backoff; past the maximum age a delivery is FAILED', async () => {
    rx.script('/clock', (n) => (n === 0 ? 503 : 200));
    const hook = (await api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/clock'), events: ['webhook.ping'] })).body;
    const { deliveryId } = (await api.call<{ deliveryId: string }>('POST', `/v1/webhooks/${hook.id}/test`)).body;
    const first = await waitFor('the first attempt', async () => {
      const d = await delivery(hook.id, deliveryId);
      return d?.attempts === 1 && d.lastStatus === 503 ? d : undefined;
    });
    const wait = Date.parse(first.nextAttemptAt as string) - Date.parse(first.lastAttemptAt as string);
    expect(wait, 'equal jitter: between half and all of the base delay').to.be.within(30_000, 60_000);
    // Many polls later, with the clock standing still, the retry is not due.
    await sleep(500);
    expect((await delivery(hook.id, deliveryId))?.attempts).to.equal(1);
    expect(rx.on('/clock').length).to.equal(1);
    offsetMs += 61_000;
    const done = await waitFor('the retry, once the clock passed it', async () => {
      const d = await delivery(hook.id, deliveryId);
      return d?.status === 'SUCCEEDED' ? d : undefined;
    });
    expect(done.attempts).to.equal(2);

    rx.script('/stale', () => 500);
    const stale = (await api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/stale'), events: ['webhook.ping'] })).body;
    const ping = (await api.call<{ deliveryId: string }>('POST', `/v1/webhooks/${stale.id}/test`)).body;
    await waitFor('its first attempt', async () => (await delivery(stale.id, ping.deliveryId))?.attempts === 1);
    offsetMs += 3_601_000;
    const failed = await waitFor('FAILED for its age', async () => {
      const d = await delivery(stale.id, ping.deliveryId);
      return d?.status === 'FAILED' ? d : undefined;
    });
    expect(failed.lastError).to.match(/maximum age/);
    expect(failed.attempts, 'no attempt starts past the maximum age').to.equal(1);
  });
});

describe('webhooks: the retry policy and signatures, on a controlled clock', () => {
  const policy: RetryPolicy = { maxAttempts: 5, maxAgeMs: 3_600_000, retryBaseMs: 1000, retryMaxMs: 8000, clientErrorAttempts: 2 };
  const created = new Date('2026-01-01T00:00:00Z');
  const at = (ms: number) => new Date(created.getTime() + ms);

  it('backs off exponentially with jitter up to the maximum, and stops at the maximum attempts', () => {
    const delay = (attempt: number, random: number) => {
      const d = decide(policy, attempt, created, at(0), { status: 500 }, () => random);
      if (d.kind !== 'retry') throw new Error(`expected a retry, got ${JSON.stringify(d)}`);
      return d.at.getTime() - created.getTime();
    };
    expect([1, 2, 3, 4].map((n) => delay(n, 0))).to.deep.equal([500, 1000, 2000, 4000]);
    expect([1, 2, 3, 4].map((n) => delay(n, 0.5))).to.deep.equal([750, 1500, 3000, 6000]);
    expect(decide({ ...policy, maxAttempts: 9 }, 8, created, at(0), { status: 500 }, () => 0)).to.deep.equal({ kind: 'retry', at: at(4000) });
    expect(decide(policy, 5, created, at(0), { error: 'refused' }, () => 0)).to.include({ kind: 'failed' });
    expect(decide(policy, 5, created, at(0), { status: 204 }, () => 0)).to.deep.equal({ kind: 'succeeded' });
  });

  it('gives up sooner on a 4xx other than 408/429, honours Retry-After, and never schedules past the maximum age', () => {
    expect(decide(policy, 1, created, at(0), { status: 404 }, () => 0).kind).to.equal('retry');
    expect(decide(policy, 2, created, at(0), { status: 404 }, () => 0).kind).to.equal('failed');
    for (const status of [408, 429, 500, 503]) expect(decide(policy, 2, created, at(0), { status }, () => 0).kind, String(status)).to.equal('retry');
    expect(decide(policy, 1, created, at(0), { status: 429, retryAfterMs: 6000 }, () => 0)).to.deep.equal({ kind: 'retry', at: at(6000) });
    expect(decide(policy, 1, created, at(0), { status: 429, retryAfterMs: 60_000 }, () => 0)).to.deep.equal({ kind: 'retry', at: at(8000) });
    const late = decide(policy, 1, created, at(3_599_800), { status: 500 }, () => 0);
    expect(late.kind).to.equal('failed');
    expect((late as { why: string }).why).to.match(/maximum age/);
  });

  it("signs t=<time>,v1=<HMAC-SHA256(secret, t.body)>, which the documented verifier accepts only with the right secret", () => {
    const header = sign('whsec_right-secret-123', '{"a":1}', 1_700_000_000);
    expect(verifyA4cSignature('whsec_right-secret-123', '{"a":1}', header, 1_700_000_100)).to.equal(true);
    expect(verifyA4cSignature('whsec_wrong-secret-123', '{"a":1}', header, 1_700_000_100)).to.equal(false);
    expect(verifyA4cSignature('whsec_right-secret-123', '{"a":1}', header, 1_700_000_400), 'past the 300 s window').to.equal(false);
  });

  it('validates kinds and settings', () => {
    expect(kindPatternProblem('build.completed')).to.equal(undefined);
    expect(kindPatternProblem('host.drain_*')).to.equal(undefined);
    expect(kindPatternProblem('*')).to.equal(undefined);
    expect(kindPatternProblem('build.exploded')).to.match(/not an event kind/);
    expect(kindPatternProblem('b*ld.*')).to.match(/one \*/);
    expect(() => loadWebhookConfig({ A4C_WEBHOOK_RETRY_BASE_MS: '5000', A4C_WEBHOOK_RETRY_MAX_MS: '1000' })).to.throw(/A4C_WEBHOOK_RETRY_MAX_MS/);
    expect(() => loadWebhookConfig({ A4C_WEBHOOK_CONCURRENCY: '0' })).to.throw(/A4C_WEBHOOK_CONCURRENCY/);
  });
});
