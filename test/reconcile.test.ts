import { expect } from 'chai';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { commitImage, containersOfHost, docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

/** Each scenario measures its time to converge and asserts a bound generous enough not to flake. */
const BOUND_MS = 15_000;

async function events(databaseUrl: string, workspaceId: string): Promise<{ kind: string; data: Record<string, unknown> }[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  const { rows } = await c.query<{ kind: string; data: Record<string, unknown> }>('SELECT kind, data FROM events WHERE workspace_id = $1 ORDER BY id', [workspaceId]);
  await c.end();
  return rows;
}

/** An image from the base image with another command, made with docker commit (no build, no registry). */
const imageWithCmd = (ref: string, cmd: string[]) => commitImage(ref, [`CMD ${JSON.stringify(cmd)}`]);

describe('the agent keeps its host right', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('reconcile');
  const user = uniqueId('frank');

  before(async () => {
    await imageWithCmd('a4c-oom:test', ['/bin/sh', '-c', 'sleep 1; head -c 400000000 /dev/zero | tail']);
    await imageWithCmd('a4c-broken:test', ['/no/such/program']);
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_RESTART_BACKOFF_MS: '200', A4C_MAX_RESTARTS: '2' } });
    await t.api.waitHostConnected(hostId);
    await waitFor('the test images reported', async () => {
      const h = await t.api.host(hostId);
      return h?.images.includes('a4c-oom:test') && h.images.includes('a4c-broken:test');
    });
  });

  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
    for (const ref of ['a4c-oom:test', 'a4c-broken:test']) await docker().getImage(ref).remove({ force: true }).catch(() => undefined);
  });

  it('a workspace container removed behind its back (docker rm -f) is created again and the loss reported', async () => {
    const ws = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: 'vanish' });
    const t0 = Date.now();
    await docker().getContainer(ws.containerId as string).remove({ force: true });
    const back = await waitFor(
      'the workspace running in a new container',
      async () => {
        const w = await t.api.workspace(ws.id);
        return w.status === 'RUNNING' && w.containerId && w.containerId !== ws.containerId ? w : undefined;
      },
      BOUND_MS,
      50,
    );
    const ms = Date.now() - t0;
    const info = await docker().getContainer(back.containerId as string).inspect();
    expect(info.State.Running).to.equal(true);
    expect(info.Config.Labels['a4c.workspace.id']).to.equal(ws.id);
    const kinds = (await events(t.databaseUrl, ws.id)).map((e) => e.kind);
    expect(kinds).to.include('agent.container_vanished');
    console.log(`      (recreated in ${ms} ms)`);
  });

  it('a container with our labels and this host id that nobody wants is removed; an unlabelled one beside it is untouched', async () => {
    const orphanId = '11111111-2222-4333-8444-555555555555';
    const orphan = await docker().createContainer({
      Image: 'a4c-base:latest',
      name: `ws-${orphanId}`,
      Labels: { 'a4c.managed': 'true', 'a4c.workspace.id': orphanId, 'a4c.host.id': hostId },
      HostConfig: { NetworkMode: 'none' },
    });
    const bystander = await docker().createContainer({ Image: 'a4c-base:latest', name: uniqueId('bystander'), HostConfig: { NetworkMode: 'none' } });
    const t0 = Date.now();
    // The agent may remove the orphan before it even starts (it watches the engine's events).
    await orphan.start().catch((e: { statusCode?: number }) => {
      if (e.statusCode !== 404) throw e;
    });
    await bystander.start();
    try {
      await waitFor('the orphan removed', () => orphan.inspect().then(() => false, (e: { statusCode?: number }) => e.statusCode === 404), BOUND_MS, 50);
      console.log(`      (orphan removed in ${Date.now() - t0} ms)`);
      await new Promise((r) => setTimeout(r, 2000)); // two more sweeps
      expect((await bystander.inspect()).State.Running).to.equal(true);
      expect((await events(t.databaseUrl, orphanId)).map((e) => e.kind)).to.include('agent.orphan_removed');
    } finally {
      await bystander.remove({ force: true });
    }
  });

  it('a workspace OOM-killed over and over is restarted a bounded number of times, then FAILED with the reason', async () => {
    const ws = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: 'oom', image: 'a4c-oom:test' });
    expect(ws.status).to.equal('RUNNING');
    const failed = await waitFor('the workspace FAILED', async () => {
      const w = await t.api.workspace(ws.id);
      return w.status === 'FAILED' ? w : undefined;
    }, 60_000, 200);
    expect(failed.failedStep).to.equal('run');
    expect(failed.error).to.match(/out of memory.*larger tier/);
    const evs = await events(t.databaseUrl, ws.id);
    const exits = evs.filter((e) => e.kind === 'agent.container_exited');
    expect(exits.length, JSON.stringify(evs)).to.equal(3); // two restarts, then the last exit
    for (const e of exits) expect(e.data.oomKilled).to.equal(true);
    expect(evs.filter((e) => e.kind === 'agent.container_restarted').length).to.equal(2);
    // The failed workspace leaves the host's desired set: its container is cleaned up.
    await waitFor('the failed container removed', async () => !(await containersOfHost(hostId)).some((c) => c.Labels['a4c.workspace.id'] === ws.id), BOUND_MS);
  });

  it('a create that fails at a step can be retried: the leftovers are cleaned first and it comes up', async () => {
    const created = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: 'broken', image: 'a4c-broken:test' });
    // Its command cannot run: it fails at start, at the ready check, or (if it died a
    // moment after the check) once its bounded restarts are used up.
    const ws = await waitFor('the broken workspace FAILED', async () => {
      const w = await t.api.workspace(created.id);
      return w.status === 'FAILED' ? w : undefined;
    }, 30_000, 100);
    expect(['start', 'ready', 'run']).to.include(ws.failedStep);
    expect(ws.error).to.be.a('string').and.not.equal('');
    expect(ws.attempt).to.equal(0);
    // Fix the cause: the image now has a command that runs.
    await docker().getImage('a4c-base:latest').tag({ repo: 'a4c-broken', tag: 'test' });
    const r = await t.api.call<Workspace>('POST', `/v1/workspaces/${ws.id}/retry?wait=30`);
    expect(r.status).to.equal(202);
    expect(r.body.status, `${r.body.failedStep}: ${r.body.error}`).to.equal('RUNNING');
    expect(r.body.attempt).to.equal(1);
    const mine = (await containersOfHost(hostId)).filter((c) => c.Labels['a4c.workspace.id'] === ws.id);
    expect(mine.length, 'exactly one container: the failed attempt\'s was removed').to.equal(1);
    if (ws.containerId) expect(mine[0]?.Id).to.not.equal(ws.containerId);
    expect(mine[0]?.Labels['a4c.attempt']).to.equal('1');
    expect(mine[0]?.State).to.equal('running');
    const again = await t.api.call<{ error: string }>('POST', `/v1/workspaces/${ws.id}/retry`);
    expect(again.status, 'only a FAILED workspace can be retried').to.equal(409);
  });

  it('reports on /metrics in Prometheus format', async () => {
    const text = await (await fetch(`${agent.statusUrl}/metrics`)).text();
    for (const name of [
      'a4c_agent_reconcile_duration_seconds_bucket',
      'a4c_agent_reconcile_errors_total',
      'a4c_agent_orphans_removed_total',
      'a4c_agent_workspaces{',
      'a4c_agent_host_disk_percent',
      'a4c_agent_host_memory_percent',
      'a4c_agent_stream_reconnects_total',
    ]) {
      expect(text, name).to.contain(name);
    }
    expect(text).to.match(/a4c_agent_orphans_removed_total\{host="[^"]+"\} [1-9]/);
    expect(text).to.match(/a4c_agent_vanished_recreated_total\{host="[^"]+"\} [1-9]/);
  });

  it('/status explains the host: events, errors, revisions, phases', async () => {
    const s = (await (await fetch(`${agent.statusUrl}/status`)).json()) as {
      reconcile: { recentEvents: { kind: string }[]; receivedRevision: number; appliedRevision: number; workspaces: { phase: string }[] };
    };
    expect(s.reconcile.recentEvents.map((e) => e.kind)).to.include.members(['container_vanished', 'orphan_removed', 'container_exited']);
    expect(s.reconcile.appliedRevision).to.be.greaterThan(0);
    expect(s.reconcile.workspaces.some((w) => w.phase === 'RUNNING')).to.equal(true);
  });

  it('a second agent claiming the same host id is refused and says why; the first keeps the host', async () => {
    const before = await t.api.host(hostId);
    const second = await spawnAgent({ hostId, controlPlane: t.grpcAddress });
    try {
      const status = await waitFor('the second agent to be refused', async () => {
        const s = (await (await fetch(`${second.statusUrl}/status`)).json()) as { controlPlane: { connected: boolean; lastError?: string } };
        return s.controlPlane.lastError?.includes('already has a live agent session') ? s : undefined;
      }, BOUND_MS);
      expect(status.controlPlane.connected).to.equal(false);
      const after = await t.api.host(hostId);
      expect(after?.connected).to.equal(true);
      expect(after?.sessionId, 'the first session still holds the host').to.equal(before?.sessionId);
    } finally {
      await second.kill();
    }
  });

  it('SIGTERM stops the agent gracefully and leaves every workspace running', async () => {
    const running = (await containersOfHost(hostId)).filter((c) => c.State === 'running');
    expect(running.length).to.be.greaterThan(0);
    await agent.kill('SIGTERM');
    expect(agent.proc.exitCode).to.equal(0);
    for (const c of running) expect((await docker().getContainer(c.Id).inspect()).State.Running, c.Names[0]).to.equal(true);
  });
});

describe('a workspace stuck coming up', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('stuck');

  before(async () => {
    t = await startTestControlPlane({ A4C_CREATE_TIMEOUT_SECONDS: '3' });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress });
    await t.api.waitHostConnected(hostId);
  });
  after(async () => {
    agent?.proc.kill('SIGCONT');
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  it('becomes FAILED after the timeout, naming the step it was stuck at', async () => {
    agent.proc.kill('SIGSTOP'); // connected but silent: the create will never be acted on
    try {
      const r = await t.api.call<Workspace>('POST', `/v1/users/${uniqueId('g')}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
      expect(r.status).to.equal(201);
      const failed = await waitFor('the stuck workspace FAILED', async () => {
        const w = await t.api.workspace(r.body.id);
        return w.status === 'FAILED' ? w : undefined;
      }, 20_000, 200);
      expect(failed.failedStep).to.equal('dispatch');
      expect(failed.error).to.match(/did not finish within 3 s/);
    } finally {
      agent.proc.kill('SIGCONT');
    }
  });
});
