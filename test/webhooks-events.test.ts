import { expect } from 'chai';
import type { CreatedWebhook, Workspace, WebhookPayload } from '@a4c/common';
import { commitImage, docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { verifyA4cSignature, WebhookReceiver } from './support/webhook-receiver.js';

/**
 * The events people subscribe to come from the ordinary code paths: a workspace that
 * fails on a real agent reaches its owner's webhook, signed, with nothing
 * webhook-specific in the workspace code (test/webhooks.test.ts: delivery itself).
 */
describe('webhooks: a workspace failing on a real agent reaches its owner', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  const rx = new WebhookReceiver();
  const hostId = uniqueId('whe');
  const user = uniqueId('whe-user');
  const image = 'a4c-wh-broken:test';

  before(async () => {
    await commitImage(image, ['CMD ["/no/such/program"]']);
    await rx.start();
    t = await startTestControlPlane({ A4C_WEBHOOK_POLL_MS: '100' });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0', A4C_MAX_RESTARTS: '0' } });
    await t.api.waitHostConnected(hostId);
    expect((await t.api.call('POST', '/v1/users', { id: user })).status).to.equal(201);
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await rx.stop();
    await removeHostContainers(hostId);
    await docker().getImage(image).remove({ force: true }).catch(() => undefined);
  });

  it('workspace.failed, with the failed step and error, and nothing of the kinds it did not ask for', async () => {
    const token = (await t.api.call<{ token: string }>('POST', `/v1/users/${user}/tokens`, { name: 'test' })).body.token;
    const hook = await t.api.call<CreatedWebhook>('POST', '/v1/webhooks', { url: rx.url('/owner'), events: ['workspace.failed', 'build.completed'] }, { token });
    expect(hook.status, JSON.stringify(hook.body)).to.equal(201);
    const ws = await t.api.call<Workspace>('POST', `/v1/users/${user}/workspaces`, { projectName: 'wh', arch: 'linux-x64', tier: 'tiny', image }, { token });
    expect(ws.status, JSON.stringify(ws.body)).to.equal(201);
    const got = await waitFor('workspace.failed delivered', () => rx.on('/owner')[0], 60_000);
    const payload = JSON.parse(got.body) as WebhookPayload;
    expect(payload.kind).to.equal('workspace.failed');
    expect(payload.event).to.include({ workspaceId: ws.body.id, userId: user });
    expect(payload.event.changes.status?.to).to.equal('FAILED');
    expect(payload.event.changes.failedStep?.to, JSON.stringify(payload.event)).to.be.a('string');
    expect(payload.event.reason).to.not.equal('');
    expect(verifyA4cSignature(hook.body.secret, got.body, got.headers['a4c-signature'] as string)).to.equal(true);
    expect((await t.api.workspace(ws.body.id)).status).to.equal('FAILED');
    // workspace.created, .running and the like were not asked for.
    expect(rx.on('/owner').map((r) => (JSON.parse(r.body) as WebhookPayload).kind)).to.deep.equal(['workspace.failed']);
    // The agent removes what the failure left before the suite ends (no container mid-start when the engine stops).
    const del = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${ws.body.id}?wait=30`, undefined, { token });
    expect([del.status, del.body.status]).to.deep.equal([202, 'DELETED']);
  });
});
