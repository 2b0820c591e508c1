import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import type { HostView, Workspace } from '@a4c/common';
import {
  containersOfHost,
  removeHostContainers,
  spawnAgent,
  startTestControlPlane,
  tmpDir,
  uniqueId,
  type AgentProcess,
  type TestControlPlane,
} from './support/cluster.js';
import { waitFor } from './support/net.js';

interface ErrBody {
  error: string;
  message: string;
  reason?: string;
  suggestion?: string;
  limit?: string;
  current?: number;
  max?: number;
}

const MiB = 1024 * 1024;

describe('placement under concurrency: 100 creates, room for exactly 60', function () {
  this.timeout(300_000);
  let t: TestControlPlane;
  const hosts = [uniqueId('cap-a'), uniqueId('cap-b'), uniqueId('cap-c')];
  const agents: AgentProcess[] = [];

  before(async () => {
    // The burst saturates this 2-core machine (100 requests, 60 container creations,
    // PostgreSQL): allow 10 missed 0.5 s heartbeats (production: 3 × 5 s) so a late
    // heartbeat is not mistaken for a lost host.
    t = await startTestControlPlane({ A4C_QUOTA_MAX_WORKSPACES: '1000', A4C_QUOTA_MAX_DISK_GB: '100000', A4C_HEARTBEAT_MISS_LIMIT: '10' });
    // 1600 MB offered, less 20 % headroom = 1280 MB = exactly 20 tiny (64 MB) workspaces per host.
    for (const hostId of hosts) {
      agents.push(
        await spawnAgent({
          hostId,
          controlPlane: t.grpcAddress,
          env: { A4C_CAPACITY_MEMORY_MB: '1600', A4C_CAPACITY_CPUS: '8', A4C_CAPACITY_DISK_GB: '100', A4C_PARALLELISM: '6' },
        }),
      );
    }
    for (const h of hosts) await t.api.waitHostConnected(h);
  });

  after(async () => {
    for (const a of agents) await a.kill();
    await t?.stop();
    await removeHostContainers(...hosts);
  });

  it('places exactly 60, refuses 40 with CAPACITY_EXHAUSTED, never over-commits, and the 60 really run', async () => {
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        t.api.call<Workspace & ErrBody>('POST', `/v1/users/u${i % 10}/workspaces`, { projectName: 'load', arch: 'linux-x64', tier: 'tiny', name: `w${i}` }),
      ),
    );
    const placed = results.filter((r) => r.status === 201);
    const refused = results.filter((r) => r.status === 503);
    const outcomes = results.reduce<Record<string, number>>((acc, r) => {
      const key = `${r.status} ${r.body.reason ?? r.body.error ?? ''}`;
      acc[key] = (acc[key] ?? 0) + 1;
      return acc;
    }, {});
    expect(placed.length, JSON.stringify(outcomes)).to.equal(60);
    expect(refused.length, JSON.stringify(outcomes)).to.equal(40);
    for (const r of refused) {
      expect(r.body.error).to.equal('CAPACITY_EXHAUSTED');
      expect(r.body.reason).to.equal('NO_CAPACITY_FOR_TIER');
      expect(r.body.suggestion).to.be.a('string');
    }

    const perHost = new Map<string, number>();
    for (const r of placed) perHost.set(r.body.hostId as string, (perHost.get(r.body.hostId as string) ?? 0) + 1);
    expect([...perHost.keys()].sort()).to.deep.equal([...hosts].sort());
    for (const n of perHost.values()) expect(n).to.equal(20);

    for (const h of hosts) {
      const view = (await t.api.host(h)) as HostView;
      expect(view.reserved.memoryBytes, `${h} reserved`).to.be.at.most(view.allocatable.memoryBytes);
      expect(view.reserved.memoryBytes).to.equal(20 * 64 * MiB);
      expect(view.reserved.cpus).to.equal(5);
    }
    // The counters the placement relies on agree with the workspaces themselves.
    const db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
    const { rows } = await db.query<{ id: string; reserved: number; summed: number }>(
      `SELECT h.id, h.reserved_memory_mb::int AS reserved,
              (SELECT COALESCE(sum(memory_mb), 0)::int FROM workspaces w WHERE w.host_id = h.id AND a4c_reserves_compute(w.status, w.host_id)) AS summed
         FROM hosts h`,
    );
    await db.end();
    for (const r of rows) expect(r.reserved, r.id).to.equal(r.summed);

    // Every placed workspace becomes RUNNING in a real container with its limit.
    await waitFor(
      'all 60 workspaces running',
      async () => {
        const states = await Promise.all(placed.map((r) => t.api.workspace(r.body.id)));
        return states.every((w) => w.status === 'RUNNING');
      },
      180_000,
      500,
    );
    let running = 0;
    for (const h of hosts) {
      const list = await containersOfHost(h);
      running += list.filter((c) => c.State === 'running').length;
    }
    expect(running).to.equal(60);
  });

  it('frees the reservation on delete, and the next create fits again', async () => {
    const list = await t.api.call<{ workspaces: Workspace[] }>('GET', '/v1/users/u0/workspaces');
    const victim = list.body.workspaces[0] as Workspace;
    const del = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${victim.id}?wait=30`);
    expect(del.body.status).to.equal('DELETED');
    const again = await t.api.createWorkspace('u0', { projectName: 'load', arch: 'linux-x64', tier: 'tiny', name: 'again' });
    expect(again.status).to.equal('RUNNING');
    expect(again.hostId).to.equal(victim.hostId);
    const refused = await t.api.call<ErrBody>('POST', '/v1/users/u0/workspaces', { projectName: 'load', arch: 'linux-x64', tier: 'tiny', name: 'one-too-many' });
    expect(refused.status).to.equal(503);
  });
});

describe('quotas', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('quota');

  before(async () => {
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_CAPACITY_DISK_GB: '1000' } });
    await t.api.waitHostConnected(hostId);
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  const create = (user: string, name: string, tier = 'tiny') =>
    t.api.call<Workspace & ErrBody>('POST', `/v1/users/${user}/workspaces`, { projectName: 'q', arch: 'linux-x64', tier, name });

  it('ten concurrent creates by a user with room for two yield exactly two', async () => {
    const user = uniqueId('ten');
    const set = await t.api.call('PUT', `/v1/users/${user}/quota`, { maxWorkspaces: 2 });
    expect(set.status).to.equal(200);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => create(user, `c${i}`)));
    expect(results.filter((r) => r.status === 201).length).to.equal(2);
    const refused = results.filter((r) => r.status === 429);
    expect(refused.length).to.equal(8);
    for (const r of refused) {
      expect(r.body.error).to.equal('QUOTA_EXCEEDED');
      expect(r.body.limit).to.equal('maxWorkspaces');
      expect(r.body.current).to.equal(2);
      expect(r.body.max).to.equal(2);
      expect(r.body.message).to.contain('2 of 2');
    }
  });

  it('the default is 5 workspaces; a team default applies to its members; a user override beats it; null clears it', async () => {
    const user = uniqueId('member');
    const team = uniqueId('team');
    let q = await t.api.call<{ limits: { maxWorkspaces: number }; source: { maxWorkspaces: string } }>('GET', `/v1/users/${user}/quota`);
    expect(q.body.limits.maxWorkspaces).to.equal(5);
    expect(q.body.source.maxWorkspaces).to.equal('default');

    expect((await t.api.call('PUT', `/v1/users/${user}`, { teamId: team })).status).to.equal(200);
    expect((await t.api.call('PUT', `/v1/teams/${team}/quota`, { maxWorkspaces: 1 })).status).to.equal(200);
    q = await t.api.call('GET', `/v1/users/${user}/quota`);
    expect(q.body.limits.maxWorkspaces).to.equal(1);
    expect(q.body.source.maxWorkspaces).to.equal('team');
    expect((await create(user, 'a')).status).to.equal(201);
    expect((await create(user, 'b')).status).to.equal(429);

    await t.api.call('PUT', `/v1/users/${user}/quota`, { maxWorkspaces: 2 });
    q = await t.api.call('GET', `/v1/users/${user}/quota`);
    expect(q.body.source.maxWorkspaces).to.equal('user');
    expect((await create(user, 'b')).status).to.equal(201);

    await t.api.call('PUT', `/v1/users/${user}/quota`, { maxWorkspaces: null });
    q = await t.api.call('GET', `/v1/users/${user}/quota`);
    expect(q.body.limits.maxWorkspaces).to.equal(1);
    expect(q.body.source.maxWorkspaces).to.equal('team');
    const team_ = await t.api.call<{ members: number; limits: { maxWorkspaces: number } }>('GET', `/v1/teams/${team}/quota`);
    expect(team_.body.members).to.equal(1);
  });

  it('the disk quota counts the tiers of the user\'s workspaces', async () => {
    const user = uniqueId('disk');
    await t.api.call('PUT', `/v1/users/${user}/quota`, { maxDiskGb: 2.5 });
    expect((await create(user, 'd1', 'small')).status).to.equal(201); // 2 GB
    const r = await create(user, 'd2', 'tiny'); // +1 GB > 2.5
    expect(r.status).to.equal(429);
    expect(r.body.limit).to.equal('maxDiskGb');
    expect(r.body.current).to.equal(2);
  });

  it('refuses bad quota bodies with the field named', async () => {
    const r = await t.api.call<ErrBody & { field: string }>('PUT', '/v1/users/x/quota', { maxWorkspaces: -1 });
    expect(r.status).to.equal(400);
    expect(r.body.field).to.equal('maxWorkspaces');
    const r2 = await t.api.call<ErrBody & { field: string }>('PUT', '/v1/teams/x/quota', { maxWorkspaces: 1.5 });
    expect(r2.status).to.equal(400);
  });
});

describe('tiers that need approval (xl)', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('xl');

  before(async () => {
    // xl keeps its name and its need for approval but is sized for a 2-CPU test machine
    // (Docker refuses a CPU limit above the machine's CPUs).
    t = await startTestControlPlane({
      A4C_TIERS: JSON.stringify({ xl: { memoryMb: 256, cpus: 1, diskGb: 200, requiresApproval: true } }),
    });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_CAPACITY_DISK_GB: '1000' } });
    await t.api.waitHostConnected(hostId);
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  it('an xl request waits unplaced for approval; approval places it with the xl limits', async () => {
    const user = uniqueId('big');
    const ws = await t.api.createWorkspace(user, { projectName: 'ml', arch: 'linux-x64', tier: 'xl' });
    expect(ws.status).to.equal('PENDING_APPROVAL');
    expect(ws.hostId).to.equal(null);
    expect((await t.api.host(hostId))?.reserved.memoryBytes).to.equal(0);
    expect((await containersOfHost(hostId)).length).to.equal(0);

    const ok = await t.api.call<Workspace>('POST', `/v1/workspaces/${ws.id}/approve?wait=30`);
    expect(ok.status).to.equal(202);
    expect(ok.body.status, `${ok.body.failedStep}: ${ok.body.error}`).to.equal('RUNNING');
    expect(ok.body.hostId).to.equal(hostId);
    const [c] = await containersOfHost(hostId);
    expect(c?.Labels['a4c.workspace.id']).to.equal(ws.id);
    expect((await t.api.host(hostId))?.reserved.memoryBytes).to.equal(256 * MiB);

    const again = await t.api.call<ErrBody>('POST', `/v1/workspaces/${ws.id}/approve`);
    expect(again.status).to.equal(409);
  });

  it('a rejected request ends REJECTED with the reason, never placed', async () => {
    const ws = await t.api.createWorkspace(uniqueId('big'), { projectName: 'ml', arch: 'linux-x64', tier: 'xl' });
    const r = await t.api.call<Workspace>('POST', `/v1/workspaces/${ws.id}/reject`, { reason: 'use large' });
    expect(r.status).to.equal(200);
    expect(r.body.status).to.equal('REJECTED');
    expect(r.body.error).to.contain('use large');
    expect(r.body.hostId).to.equal(null);
  });
});

describe('host health and maintenance', () => {
  let t: TestControlPlane;
  const agents: AgentProcess[] = [];
  const full = uniqueId('full');
  const healthy = uniqueId('healthy');
  let mount = '';

  before(async () => {
    t = await startTestControlPlane();
    mount = path.join(tmpDir('tmpfs'), 'disk');
    mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mount]);
    execFileSync('dd', ['if=/dev/zero', `of=${path.join(mount, 'fill')}`, 'bs=1M', 'count=17'], { stdio: 'ignore' }); // 85 %
    agents.push(await spawnAgent({ hostId: full, controlPlane: t.grpcAddress, env: { A4C_DISK_PATH: mount, A4C_CAPACITY_DISK_GB: '100', A4C_ARCH: 'linux-arm64' } }));
    agents.push(await spawnAgent({ hostId: healthy, controlPlane: t.grpcAddress, env: { A4C_CAPACITY_DISK_GB: '1000' } }));
    await t.api.waitHostConnected(full);
    await t.api.waitHostConnected(healthy);
  });
  after(async () => {
    for (const a of agents) await a.kill('SIGKILL');
    await t?.stop();
    await removeHostContainers(full, healthy);
    execFileSync('umount', [mount]);
  });

  it('a host past the disk threshold gets nothing, and the refusal says why', async () => {
    expect((await t.api.host(full))?.stats?.diskPercent).to.be.above(80);
    const r = await t.api.call<ErrBody>('POST', `/v1/users/${uniqueId('u')}/workspaces`, { projectName: 'p', arch: 'linux-arm64', tier: 'tiny' });
    expect(r.status).to.equal(503);
    expect(r.body.reason).to.equal('ALL_FULL');
    expect(r.body.message).to.contain('disk');
  });

  it('a draining host gets nothing until it is activated', async () => {
    const d = await t.api.call<HostView>('POST', `/v1/hosts/${healthy}/drain`);
    expect(d.status).to.equal(200);
    expect(d.body.status).to.equal('draining');
    const user = uniqueId('u');
    const r = await t.api.call<ErrBody>('POST', `/v1/users/${user}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
    expect(r.status).to.equal(503);
    expect(r.body.reason).to.equal('ALL_DRAINING');
    const a = await t.api.call<HostView>('POST', `/v1/hosts/${healthy}/activate`);
    expect(a.body.status).to.equal('healthy');
    const ok = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
    expect(ok.status).to.equal('RUNNING');
    expect((await t.api.call('POST', '/v1/hosts/no-such-host/drain')).status).to.equal(404);
  });

  it('an agent that stops heartbeating turns its host unhealthy, its workspaces show the host lost, and both recover', async () => {
    const user = uniqueId('u');
    const ws = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
    expect(ws.hostLost).to.equal(false);
    const agent = agents[1] as AgentProcess;
    agent.proc.kill('SIGSTOP'); // alive, stream open, silent
    try {
      await waitFor('host unhealthy', async () => (await t.api.host(healthy))?.status === 'unhealthy', 15_000);
      const lost = await t.api.workspace(ws.id);
      expect(lost.status, 'the record is kept').to.equal('RUNNING');
      expect(lost.hostLost).to.equal(true);
      const r = await t.api.call<ErrBody>('POST', `/v1/users/${user}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' });
      expect(r.status).to.equal(503);
      expect(r.body.reason).to.equal('NO_HOST_CONNECTED');
    } finally {
      agent.proc.kill('SIGCONT');
    }
    await waitFor('host healthy again', async () => (await t.api.host(healthy))?.status === 'healthy', 15_000);
    const back = await t.api.workspace(ws.id);
    expect(back.hostLost).to.equal(false);
    expect(back.status).to.equal('RUNNING');
  });
});
