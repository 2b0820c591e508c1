import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { createLogger, type ActivityEvent, type HostView, type Workspace } from '@a4c/common';
import type { Clock } from '@a4c/control-plane';
import { sweepLostHosts } from '@a4c/control-plane/lost-hosts';
import {
  containersOfHost,
  removeHostContainers,
  spawnAgent,
  startTestControlPlane,
  uniqueId,
  type AgentProcess,
  type TestControlPlane,
} from './support/cluster.js';
import { waitFor } from './support/net.js';

/** A clock the test moves by hand. */
class ManualClock implements Clock {
  offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
}

interface ErrBody {
  error: string;
  message: string;
  reason?: string;
  hostId?: string;
  suggestion?: string;
}

const MiB = 1024 * 1024;
const LOST_AFTER_SECONDS = 60;

describe('workspace states on real hosts: stopped keeps its disk, hosts that are gone make LOST (real PostgreSQL, real Docker)', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  const clock = new ManualClock();
  const [hostA, hostB, hostC] = [uniqueId('gone-a'), uniqueId('gone-b'), uniqueId('gone-c')];
  const agents = new Map<string, AgentProcess>();
  const user = uniqueId('gone-u');

  const start = async (hostId: string, env: Record<string, string> = {}, stateDir?: string) => {
    const a = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env, ...(stateDir ? { stateDir } : {}) });
    agents.set(hostId, a);
    await t.api.waitHostConnected(hostId);
    return a;
  };
  const host = async (id: string) => (await t.api.host(id)) as HostView;
  const create = (name: string) => t.api.createWorkspace(user, { projectName: 'gone', arch: 'linux-x64', tier: 'tiny', name });
  const action = (id: string, verb: string) => t.api.call<Workspace & ErrBody>('POST', `/v1/workspaces/${id}/${verb}?wait=30`);
  const drain = async (id: string, on: boolean) => expect((await t.api.call('POST', `/v1/hosts/${id}/${on ? 'drain' : 'activate'}`)).status).to.equal(200);
  const events = async (q: string) => (await t.api.call<{ events: ActivityEvent[] }>('GET', `/v1/events?${q}`)).body.events;
  const usage = async () => (await t.api.call<{ usage: { workspaces: number; diskGb: number } }>('GET', `/v1/users/${user}/quota`)).body.usage;
  const containerIdsOf = async (hostId: string) => (await containersOfHost(hostId)).map((c) => c.Labels['a4c.workspace.id']);

  before(async () => {
    t = await startTestControlPlane({ A4C_HOST_LOST_AFTER_SECONDS: String(LOST_AFTER_SECONDS), A4C_QUOTA_MAX_WORKSPACES: '20' }, { clock });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
    // 160 MB less 20 % headroom: room for exactly two tiny (64 MB) workspaces running on A.
    await start(hostA, { A4C_CAPACITY_MEMORY_MB: '160', A4C_CAPACITY_CPUS: '4', A4C_CAPACITY_DISK_GB: '100' });
    await start(hostB, { A4C_CAPACITY_MEMORY_MB: '1000', A4C_CAPACITY_CPUS: '4', A4C_CAPACITY_DISK_GB: '100' });
  });

  after(async () => {
    for (const a of agents.values()) await a.kill();
    await db?.end();
    await t?.stop();
    await removeHostContainers(hostA, hostB, hostC);
  });

  let w1: Workspace;
  let w2: Workspace;

  it('stop frees CPU and memory and keeps the disk; start re-reserves; start with no room is a 503 naming the host and the choices', async () => {
    await drain(hostB, true);
    w1 = await create('w1');
    w2 = await create('w2');
    expect([w1.status, w2.status, w1.hostId, w2.hostId]).to.deep.equal(['RUNNING', 'RUNNING', hostA, hostA]);
    expect((await host(hostA)).reserved).to.deep.equal({ memoryBytes: 128 * MiB, cpus: 0.5, diskBytes: 2 * 1024 * MiB });

    const stopped = await action(w1.id, 'stop');
    expect(stopped.body.status).to.equal('STOPPED');
    expect((await host(hostA)).reserved).to.deep.equal({ memoryBytes: 64 * MiB, cpus: 0.25, diskBytes: 2 * 1024 * MiB });

    // The memory w1 freed goes to someone else.
    const w3 = await create('w3');
    expect(w3.hostId).to.equal(hostA);
    expect((await host(hostA)).reserved).to.deep.equal({ memoryBytes: 128 * MiB, cpus: 0.5, diskBytes: 3 * 1024 * MiB });

    const refused = await action(w1.id, 'start');
    expect(refused.status).to.equal(503);
    expect(refused.body.error).to.equal('CAPACITY_EXHAUSTED');
    expect(refused.body.reason).to.equal('NO_ROOM_ON_HOST');
    expect(refused.body.hostId).to.equal(hostA);
    expect(refused.body.message).to.include(hostA);
    expect(refused.body.suggestion).to.include(`a4c ws move ${w1.id} --to`);
    expect(refused.body.suggestion).to.include(`a4c ws rm ${w1.id}`);
    expect((await t.api.workspace(w1.id)).status).to.equal('STOPPED');
    expect((await host(hostA)).reserved.memoryBytes).to.equal(128 * MiB);

    const gone = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${w3.id}?wait=30`);
    expect(gone.body.status).to.equal('DELETED');
    const started = await action(w1.id, 'start');
    expect(started.status).to.equal(202);
    expect(started.body.status).to.equal('RUNNING');
    expect(started.body.containerId).to.equal(w1.containerId);
    expect((await host(hostA)).reserved).to.deep.equal({ memoryBytes: 128 * MiB, cpus: 0.5, diskBytes: 2 * 1024 * MiB });
  });

  it('a host removed with running workspaces: they are LOST at once, free of reservation and quota; delete settles at once; retry runs it on another agent', async () => {
    await drain(hostB, false);
    const before = await usage();
    const removed = await t.api.call<{ lostWorkspaces: string[] }>('DELETE', `/v1/hosts/${hostA}`);
    expect(removed.status).to.equal(200);
    expect([...removed.body.lostWorkspaces].sort()).to.deep.equal([w1.id, w2.id].sort());

    for (const w of [w1, w2]) {
      const now = await t.api.workspace(w.id);
      expect(now.status).to.equal('LOST');
      expect(now.error).to.include(`its host ${hostA} was removed`);
    }
    expect((await host(hostA)).reserved).to.deep.equal({ memoryBytes: 0, cpus: 0, diskBytes: 0 });
    expect(await usage()).to.deep.include({ workspaces: before.workspaces - 2, diskGb: before.diskGb - 2 });
    const lostEvents = await waitFor('workspace.lost events', async () => {
      const e = await events(`kind=workspace.lost&hostId=${hostA}`);
      return e.length === 2 ? e : undefined;
    });
    expect(lostEvents.map((e) => e.workspaceId).sort()).to.deep.equal([w1.id, w2.id].sort());

    // The removed host's agent (plaintext in tests, so it reconnects) is sent a desired
    // set without them: their containers go. (Waited for before the retry because the
    // test's agents share one Docker Engine, where container names are unique; real
    // hosts each have their own.)
    await waitFor('the removed host to have no workspace containers', async () => (await containerIdsOf(hostA)).length === 0, 30_000);

    const del = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${w2.id}`);
    expect(del.status).to.equal(202);
    expect(del.body.status).to.equal('DELETED');

    const retried = await action(w1.id, 'retry');
    expect(retried.status).to.equal(202);
    expect(retried.body.status, `${retried.body.failedStep}: ${retried.body.error}`).to.equal('RUNNING');
    expect(retried.body.id).to.equal(w1.id);
    expect(retried.body.hostId).to.equal(hostB);
    expect(retried.body.attempt).to.equal(w1.attempt + 1);
    expect(await containerIdsOf(hostB)).to.include(w1.id);
    expect((await host(hostB)).reserved.memoryBytes).to.equal(64 * MiB);

    // Nothing comes back on the removed host: its agent converged to its latest desired state, which is empty.
    await waitFor('the removed host to converge', async () => {
      const h = await host(hostA);
      return h.connected && h.appliedRevision === h.revision;
    }, 30_000);
    expect(await containerIdsOf(hostA)).to.deep.equal([]);
    expect((await t.api.workspace(w2.id)).status).to.equal('DELETED');
    const w1now = await t.api.workspace(w1.id);
    expect([w1now.status, w1now.hostId]).to.deep.equal(['RUNNING', hostB]);
  });

  it('a host without a live agent past A4C_HOST_LOST_AFTER_SECONDS (controlled clock): LOST with events; when its agent returns it removes the container and the workspace stays LOST', async () => {
    const c = await start(hostC);
    await drain(hostB, true);
    const w4 = await create('w4');
    await drain(hostB, false);
    expect([w4.status, w4.hostId]).to.deep.equal(['RUNNING', hostC]);

    await c.kill(); // SIGTERM: the agent leaves its workspaces running
    await waitFor('host C unhealthy', async () => (await host(hostC)).status === 'unhealthy');
    await waitFor('the lost-host sweep to see host C unhealthy', async () => {
      const { rows } = await db.query<{ unhealthy_since: Date | null }>('SELECT unhealthy_since FROM host_status WHERE host_id = $1', [hostC]);
      return rows[0]?.unhealthy_since ?? undefined;
    }, 20_000);
    // Not lost yet: the status is the last known, flagged as on a lost host.
    let now = await t.api.workspace(w4.id);
    expect([now.status, now.hostLost]).to.deep.equal(['RUNNING', true]);
    expect(await containerIdsOf(hostC)).to.include(w4.id);

    clock.offsetMs = (LOST_AFTER_SECONDS + 1) * 1000;
    now = await waitFor('w4 LOST', async () => {
      const w = await t.api.workspace(w4.id);
      return w.status === 'LOST' ? w : undefined;
    }, 20_000);
    expect(now.hostLost).to.equal(false);
    expect(now.error).to.include(`its host ${hostC} has had no live agent session`);
    expect((await host(hostC)).reserved).to.deep.equal({ memoryBytes: 0, cpus: 0, diskBytes: 0 });
    const hostLost = await waitFor('host.lost event', async () => {
      const e = await events(`kind=host.lost&hostId=${hostC}`);
      return e.length ? e : undefined;
    });
    expect(hostLost).to.have.length(1);
    expect((await events(`kind=workspace.lost&workspaceId=${w4.id}`)).map((e) => e.actor)).to.deep.equal(['control-plane']);
    // Other hosts, live all along, are untouched by the clock's jump.
    expect((await t.api.workspace(w1.id)).status).to.equal('RUNNING');

    // The host comes back with the same agent state: its desired set lacks w4.
    await start(hostC, {}, c.stateDir);
    await waitFor('w4 container removed from host C', async () => !(await containerIdsOf(hostC)).includes(w4.id), 30_000);
    now = await t.api.workspace(w4.id);
    expect(now.status).to.equal('LOST');
    expect((await containerIdsOf(hostC)).length).to.equal(0);
    await waitFor('the sweep to forget host C\'s outage', async () => {
      const r = await db.query<{ unhealthy_since: Date | null; lost_at: Date | null }>('SELECT unhealthy_since, lost_at FROM host_status WHERE host_id = $1', [hostC]);
      return r.rows[0]?.lost_at === null && r.rows[0]?.unhealthy_since === null;
    }, 20_000);

    // Delete settles at once; retry could have recreated it instead.
    const del = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${w4.id}`);
    expect(del.body.status).to.equal('DELETED');
  });
});

describe('workspace states: the lost-host sweep on several replicas at once (real PostgreSQL)', () => {
  let t: TestControlPlane;
  let db: pg.Pool;
  const hostId = uniqueId('sweep-h');
  const user = uniqueId('sweep-u');
  const ids = { running: randomUUID(), stopped: randomUUID(), deleting: randomUUID(), failed: randomUUID() };

  before(async () => {
    // The control plane's own sweep runs too, on the real clock, far from its limit.
    t = await startTestControlPlane({ A4C_HOST_LOST_AFTER_SECONDS: '3600' });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 8 });
    await db.query(`INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes) VALUES ($1, 'linux-x64', 'test', $2, 8, $3)`, [hostId, 8 * 1024 ** 3, 100 * 1024 ** 3]);
    await db.query(
      `INSERT INTO host_status (host_id, arch, connected, last_heartbeat_at, docker_ready) VALUES ($1, 'linux-x64', false, now() - interval '1 hour', true)`,
      [hostId],
    );
    for (const [status, id] of [['RUNNING', ids.running], ['STOPPED', ids.stopped], ['DELETING', ids.deleting], ['FAILED', ids.failed]] as const) {
      await db.query(
        `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, hostname, memory_mb, cpus, disk_gb, pids_limit, desired_revision)
         VALUES ($1, $2, $3, 'p', 'linux-x64', 'tiny', 'a4c-base:latest', $4, $5, $3, 64, 0.25, 1, 256, 1)`,
        [id, user, status.toLowerCase(), status, hostId],
      );
    }
  });

  after(async () => {
    await db?.end();
    await t?.stop();
  });

  it('counts from when a sweep first saw the host down, and declares it lost exactly once however many replicas sweep', async () => {
    const clock = new ManualClock();
    const log = createLogger('sweep-test', { A4C_LOG_LEVEL: 'silent' });
    const sweep = () => sweepLostHosts({ db, clock, hostChanged: () => undefined, log, lostAfterSeconds: 600, liveWithinSeconds: 1.5 });
    const { rows: rev0 } = await db.query<{ revision: number }>('SELECT revision FROM hosts WHERE id = $1', [hostId]);

    // Silent for an hour already, but no sweep had seen it: the outage starts now.
    expect(await Promise.all([sweep(), sweep(), sweep()])).to.deep.equal([[], [], []]);
    expect((await t.api.workspace(ids.running)).status).to.equal('RUNNING');

    clock.offsetMs = 601 * 1000;
    const declared = (await Promise.all([sweep(), sweep(), sweep(), sweep()])).flat();
    expect(declared).to.deep.equal([hostId]);

    const status = async (id: string) => (await t.api.workspace(id)).status;
    expect([await status(ids.running), await status(ids.stopped), await status(ids.deleting), await status(ids.failed)]).to.deep.equal([
      'LOST',
      'LOST',
      'DELETED',
      'FAILED',
    ]);
    const { rows: kinds } = await db.query<{ kind: string; n: number }>(
      'SELECT kind, count(*)::int AS n FROM events WHERE host_id = $1 GROUP BY kind ORDER BY kind',
      [hostId],
    );
    expect(kinds).to.deep.equal([
      { kind: 'host.lost', n: 1 },
      { kind: 'workspace.deleted', n: 1 },
      { kind: 'workspace.lost', n: 2 },
    ]);
    const { rows: h } = await db.query<{ revision: number; mem: string; disk: string }>(
      'SELECT revision, reserved_memory_mb AS mem, reserved_disk_mb AS disk FROM hosts WHERE id = $1',
      [hostId],
    );
    expect(h[0]?.revision).to.equal((rev0[0]?.revision ?? 0) + 1);
    expect([Number(h[0]?.mem), Number(h[0]?.disk)]).to.deep.equal([0, 0]);
    // Later sweeps change nothing more.
    expect(await sweep()).to.deep.equal([]);
  });
});
