import { expect } from 'chai';
import type { Workspace } from '@a4c/common';
import { docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

describe('workspace lifecycle (real PostgreSQL, real Docker Engine)', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('life');
  const user = uniqueId('alice');

  before(async () => {
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress });
    await t.api.waitHostConnected(hostId);
  });

  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  let ws: Workspace;

  it('creates a workspace that becomes RUNNING in a real container with the tier limits and owner labels', async () => {
    ws = await t.api.createWorkspace(user, { projectName: 'backend-api', arch: 'linux-x64', tier: 'tiny', name: 'dev' });
    expect(ws.status).to.equal('RUNNING');
    expect(ws.hostId).to.equal(hostId);
    expect(ws.containerId).to.match(/^[0-9a-f]{64}$/);
    expect(ws.hostname).to.equal(`dev-${user}.ws.a4c.internal`);
    expect(ws.sshCommand).to.equal(`ssh dev.a4c`);
    expect(ws.image).to.equal('a4c-base:latest');

    const info = await docker().getContainer(ws.containerId as string).inspect();
    expect(info.Name).to.equal(`/ws-${ws.id}`);
    expect(info.State.Running).to.equal(true);
    expect(info.HostConfig.Memory).to.equal(64 * 1024 * 1024);
    expect(info.HostConfig.NanoCpus).to.equal(0.25e9);
    expect(info.HostConfig.PidsLimit).to.equal(256);
    expect(info.HostConfig.NetworkMode).to.equal('none');
    expect(info.Config.Hostname).to.equal(`dev-${user}`);
    expect(info.Config.Labels).to.include({
      'a4c.managed': 'true',
      'a4c.workspace.id': ws.id,
      'a4c.user.id': user,
      'a4c.host.id': hostId,
    });
    const mount = info.Mounts.find((m) => m.Destination === '/workspace');
    expect(mount?.Name).to.equal(`a4c-home-${user}`);
  });

  it('lists the workspace for its user and shows it by id', async () => {
    const list = await t.api.call<{ workspaces: Workspace[] }>('GET', `/v1/users/${user}/workspaces`);
    expect(list.status).to.equal(200);
    expect(list.body.workspaces.map((w) => w.id)).to.deep.equal([ws.id]);
    const other = await t.api.call<{ workspaces: Workspace[] }>('GET', `/v1/users/${user}-other/workspaces`);
    expect(other.body.workspaces).to.deep.equal([]);
  });

  it('stops the workspace: the container stops and keeps existing', async () => {
    const r = await t.api.call<Workspace>('POST', `/v1/workspaces/${ws.id}/stop?wait=30`);
    expect(r.status).to.equal(202);
    expect(r.body.status).to.equal('STOPPED');
    const info = await docker().getContainer(ws.containerId as string).inspect();
    expect(info.State.Running).to.equal(false);
  });

  it('starts the same container again', async () => {
    const r = await t.api.call<Workspace>('POST', `/v1/workspaces/${ws.id}/start?wait=30`);
    expect(r.status).to.equal(202);
    expect(r.body.status).to.equal('RUNNING');
    expect(r.body.containerId).to.equal(ws.containerId);
    const info = await docker().getContainer(ws.containerId as string).inspect();
    expect(info.State.Running).to.equal(true);
  });

  it('a second stop while stopping or stopped is harmless, and start of a running workspace is a no-op', async () => {
    const again = await t.api.call<Workspace>('POST', `/v1/workspaces/${ws.id}/start`);
    expect(again.status).to.equal(202);
    expect(again.body.status).to.equal('RUNNING');
  });

  it('deletes the workspace: container gone, record DELETED, the user volume kept', async () => {
    const r = await t.api.call<Workspace>('DELETE', `/v1/users/${user}/workspaces/${ws.id}?wait=30`);
    expect(r.status).to.equal(202);
    expect(r.body.status).to.equal('DELETED');
    const gone = await docker().getContainer(ws.containerId as string).inspect().then(() => false, (e: { statusCode?: number }) => e.statusCode === 404);
    expect(gone, 'container removed').to.equal(true);
    const vol = await docker().getVolume(`a4c-home-${user}`).inspect();
    expect(vol.Name).to.equal(`a4c-home-${user}`);
    const list = await t.api.call<{ workspaces: Workspace[] }>('GET', `/v1/users/${user}/workspaces`);
    expect(list.body.workspaces).to.deep.equal([]);
    const all = await t.api.call<{ workspaces: Workspace[] }>('GET', `/v1/users/${user}/workspaces?includeDeleted=true`);
    expect(all.body.workspaces.map((w) => w.status)).to.deep.equal(['DELETED']);
  });

  it('refuses to start a deleted workspace with 409 and says what to do', async () => {
    const r = await t.api.call<{ error: string; message: string; suggestion: string }>('POST', `/v1/workspaces/${ws.id}/start`);
    expect(r.status).to.equal(409);
    expect(r.body.error).to.equal('CONFLICT');
    expect(r.body.suggestion).to.be.a('string');
  });

  it('reports the host with capacity, stats and its workspace count', async () => {
    const h = await t.api.host(hostId);
    expect(h?.connected).to.equal(true);
    expect(h?.status).to.equal('healthy');
    expect(h?.arch).to.equal('linux-x64');
    expect(h?.capacity.memoryBytes).to.be.greaterThan(0);
    expect(h?.capacity.diskBytes).to.be.greaterThan(0);
    expect(h?.stats?.dockerReady).to.equal(true);
    expect(h?.stats?.diskPercent).to.be.within(0.0001, 100);
    expect(h?.images).to.include('a4c-base:latest');
    const list = await t.api.call<{ hosts: { id: string }[] }>('GET', '/v1/hosts');
    expect(list.body.hosts.map((x) => x.id)).to.include(hostId);
  });

  it('the agent status endpoint explains the host', async () => {
    const s = (await (await fetch(`${agent.statusUrl}/status`)).json()) as {
      hostId: string;
      controlPlane: { connected: boolean; since: string };
      reconcile: { appliedRevision: number; workspaces: unknown[] };
      docker: { reachable: boolean };
    };
    expect(s.hostId).to.equal(hostId);
    expect(s.controlPlane.connected).to.equal(true);
    expect(Date.parse(s.controlPlane.since)).to.be.greaterThan(0);
    expect(s.docker.reachable).to.equal(true);
    await waitFor('revision applied', async () => {
      const h = await t.api.host(hostId);
      return h && h.appliedRevision === h.revision;
    });
    const ready = await fetch(`${agent.statusUrl}/readyz`);
    expect(ready.status).to.equal(200);
  });
});
