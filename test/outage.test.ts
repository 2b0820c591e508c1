import { expect } from 'chai';
import Docker from 'dockerode';
import type { Workspace } from '@a4c/common';
import {
  containersOfHost,
  docker,
  removeHostContainers,
  spawnAgent,
  spawnControlPlane,
  startTestControlPlane,
  tmpDir,
  uniqueId,
  type AgentProcess,
  type ControlPlaneProcess,
  type TestControlPlane,
} from './support/cluster.js';
import { engineLib, type EngineLib, type PrivateEngine } from './support/engine.js';
import { waitFor } from './support/net.js';

const BOUND_MS = 15_000;

describe('control plane killed (-9) for a minute', function () {
  this.timeout(240_000);
  let cp: ControlPlaneProcess;
  const agents: AgentProcess[] = [];
  const hosts = [uniqueId('cpdown-a'), uniqueId('cpdown-b')];
  const user = uniqueId('gina');

  before(async () => {
    cp = await spawnControlPlane();
    for (const hostId of hosts) agents.push(await spawnAgent({ hostId, controlPlane: cp.grpcAddress }));
    for (const h of hosts) await cp.api.waitHostConnected(h);
  });
  after(async () => {
    for (const a of agents) await a.kill();
    await cp?.kill();
    await removeHostContainers(...hosts);
  });

  it('every workspace keeps running; an agent restarted meanwhile removes nothing; on return the agents reconnect and nothing changes', async () => {
    // Two workspaces on each host (the hosts report near-equal usage, so steer them).
    const created: Workspace[] = [];
    for (const [i, target] of hosts.entries()) {
      const other = hosts[1 - i] as string;
      await cp.api.call('POST', `/v1/hosts/${other}/drain`);
      for (let j = 0; j < 2; j++) created.push(await cp.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: `k${i}${j}` }));
      await cp.api.call('POST', `/v1/hosts/${other}/activate`);
      expect(created.slice(-2).map((w) => w.hostId)).to.deep.equal([target, target]);
    }
    const startedAt = new Map<string, string>();
    for (const w of created) startedAt.set(w.containerId as string, (await docker().getContainer(w.containerId as string).inspect()).State.StartedAt);

    await cp.kill('SIGKILL');
    const downAt = Date.now();
    await waitFor('the agents to see the control plane gone', async () => {
      const s = (await (await fetch(`${agents[0]?.statusUrl}/status`)).json()) as { controlPlane: { connected: boolean } };
      return !s.controlPlane.connected;
    }, BOUND_MS);

    // One agent is killed and restarted while the control plane is away: it knows only
    // its persisted state, so it adopts what runs and removes nothing.
    const [a0] = agents as [AgentProcess];
    await a0.kill('SIGKILL');
    agents[0] = await spawnAgent({ hostId: a0.hostId, controlPlane: cp.grpcAddress, stateDir: a0.stateDir });
    const s = (await (await fetch(`${agents[0].statusUrl}/status`)).json()) as { controlPlane: { connected: boolean; since: string }; reconcile: { authoritative: boolean } };
    expect(s.controlPlane.connected).to.equal(false);
    expect(s.reconcile.authoritative, 'no authoritative state without the control plane').to.equal(false);

    while (Date.now() - downAt < 60_000) {
      for (const w of created) {
        const info = await docker().getContainer(w.containerId as string).inspect();
        expect(info.State.Running, `${w.name} running ${Math.round((Date.now() - downAt) / 1000)} s into the outage`).to.equal(true);
      }
      await new Promise((r) => setTimeout(r, 5000));
    }

    await cp.restart();
    const back = Date.now();
    for (const h of hosts) await cp.api.waitHostConnected(h, 30_000);
    console.log(`      (agents reconnected ${Date.now() - back} ms after the control plane came back)`);
    await waitFor('both hosts converged', async () => {
      for (const h of hosts) {
        const v = await cp.api.host(h);
        if (!v || v.appliedRevision !== v.revision) return false;
      }
      return true;
    }, BOUND_MS);
    for (const w of created) {
      const now = await cp.api.workspace(w.id);
      expect(now.status).to.equal('RUNNING');
      expect(now.containerId, 'the same container').to.equal(w.containerId);
      const info = await docker().getContainer(w.containerId as string).inspect();
      expect(info.State.StartedAt, 'never restarted').to.equal(startedAt.get(w.containerId as string));
    }
    const all = [...(await containersOfHost(hosts[0] as string)), ...(await containersOfHost(hosts[1] as string))];
    expect(all.length, 'no container added or removed').to.equal(4);
  });
});

describe('the Docker Engine stopped and started under an agent', function () {
  this.timeout(180_000);
  let lib: EngineLib;
  let engine: PrivateEngine;
  const dataRoot = tmpDir('docker-outage');
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('dockerdown');

  before(async () => {
    lib = await engineLib();
    engine = await lib.startPrivateDockerd({ dataRoot, name: `a4c-outage-${process.pid}` });
    await lib.ensureBaseImage(engine.dockerHost);
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { DOCKER_HOST: engine.dockerHost, A4C_RESTART_BACKOFF_MS: '200' } });
    await t.api.waitHostConnected(hostId);
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await engine?.stop();
  });

  it('the host turns unhealthy and takes nothing new, then healthy again, with no duplicate containers', async () => {
    const own = new Docker({ socketPath: engine.dockerHost.replace(/^unix:\/\//, '') });
    const user = uniqueId('hank');
    const ws = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
    expect(ws.status).to.equal('RUNNING');

    await engine.stop();
    await waitFor('the host unhealthy', async () => (await t.api.host(hostId))?.status === 'unhealthy', BOUND_MS);
    expect((await fetch(`${agent.statusUrl}/readyz`)).status).to.equal(503);
    const refused = await t.api.call<{ error: string; reason: string }>('POST', `/v1/users/${user}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
    expect(refused.status).to.equal(503);
    expect(refused.body.reason).to.equal('NO_HOST_HEALTHY');
    const lost = await t.api.workspace(ws.id);
    expect(lost.hostLost, JSON.stringify(lost)).to.equal(true);

    engine = await lib.startPrivateDockerd({ dataRoot, name: `a4c-outage-${process.pid}` });
    const t0 = Date.now();
    await waitFor('the host healthy again', async () => (await t.api.host(hostId))?.status === 'healthy', 30_000);
    const running = await waitFor('the workspace running again', async () => {
      const w = await t.api.workspace(ws.id);
      const list = await own.listContainers({ all: true, filters: { label: [`a4c.workspace.id=${ws.id}`] } });
      return w.status === 'RUNNING' && !w.hostLost && list.length === 1 && list[0]?.State === 'running' ? list : undefined;
    }, 30_000);
    console.log(`      (healthy and running ${Date.now() - t0} ms after the engine came back)`);
    expect(running.length, 'no duplicates').to.equal(1);
    expect((await fetch(`${agent.statusUrl}/readyz`)).status).to.equal(200);
    // Both changes of reachability are in the host's activity log, in order, once each.
    const kinds = await waitFor('the engine events in the activity log', async () => {
      const r = await t.api.call<{ events: { kind: string; hostId: string }[] }>('GET', `/v1/events?hostId=${hostId}&limit=500`);
      const k = r.body.events.map((e) => e.kind).filter((x) => x.startsWith('agent.docker_'));
      return k.includes('agent.docker_reachable') ? k : undefined;
    }, BOUND_MS);
    expect(kinds).to.deep.equal(['agent.docker_unreachable', 'agent.docker_reachable']);
  });
});
