import { expect } from 'chai';
import type { Workspace } from '@a4c/common';
import { docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

describe('agent killed and restarted', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('restart');
  const user = uniqueId('carol');

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

  it('leaves running workspaces running, and they are still RUNNING in the API afterwards', async () => {
    const ws: Workspace[] = [];
    for (const name of ['w1', 'w2']) ws.push(await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name }));
    const before = await Promise.all(ws.map((w) => docker().getContainer(w.containerId as string).inspect()));

    await agent.kill('SIGKILL');
    await waitFor('the control plane to see the agent gone', async () => (await t.api.host(hostId))?.connected === false, 10_000);
    for (const w of ws) {
      const info = await docker().getContainer(w.containerId as string).inspect();
      expect(info.State.Running, `${w.name} still running with the agent dead`).to.equal(true);
    }

    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, stateDir: agent.stateDir });
    await t.api.waitHostConnected(hostId);
    await waitFor('the restarted agent to converge', async () => {
      const h = await t.api.host(hostId);
      return h && h.appliedRevision === h.revision;
    });
    for (const [i, w] of ws.entries()) {
      const now = await t.api.workspace(w.id);
      expect(now.status).to.equal('RUNNING');
      expect(now.containerId, 'same container, not a new one').to.equal(w.containerId);
      const info = await docker().getContainer(w.containerId as string).inspect();
      expect(info.State.Running).to.equal(true);
      expect(info.State.StartedAt, 'never restarted').to.equal(before[i]?.State.StartedAt);
    }
  });
});
