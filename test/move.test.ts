import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import type { ActivityEvent, HostView, Workspace } from '@a4c/common';
import {
  containersOfHost,
  docker,
  removeHostContainers,
  ROOT,
  spawnAgent,
  startTestControlPlane,
  uniqueId,
  type AgentProcess,
  type TestControlPlane,
} from './support/cluster.js';
import { freePort, waitFor } from './support/net.js';

interface Move {
  id: string;
  status: string;
  error: string | null;
  fromHostId: string;
  toHostId: string;
  bytesDone: number;
  image: { bytes: number | null; sha256: string | null };
  volume: { bytes: number | null; sha256: string | null };
}
type HostDetail = HostView & { drain: { status: string; remaining: number; moved: number; moving: number; forceStopped: number; deadlineAt: string | null } | null };

/** Runs a command in a workspace's container on the test engine; its stdout. */
async function sh(containerId: string, script: string): Promise<string> {
  const exec = await docker().getContainer(containerId).exec({ Cmd: ['sh', '-c', script], AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => stream.on('end', r));
  const info = await exec.inspect();
  if (info.ExitCode !== 0) throw new Error(`${script} exited ${info.ExitCode}: ${Buffer.concat(chunks).toString()}`);
  // Demultiplex Docker's 8-byte frame headers.
  const raw = Buffer.concat(chunks);
  let out = '';
  for (let i = 0; i + 8 <= raw.length; ) {
    const len = raw.readUInt32BE(i + 4);
    if (raw[i] === 1) out += raw.subarray(i + 8, i + 8 + len).toString();
    i += 8 + len;
  }
  return out;
}

function a4c(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'packages/cli/bin/a4c.mjs'), ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/**
 * Two agents share the test engine; each prefixes its container and volume names
 * (A4C_ENGINE_NAME_PREFIX) so a moved workspace's files really land in another volume
 * and another container, as on two machines.
 */
describe('workspace moves and host drains', function () {
  this.timeout(90_000);
  let t: TestControlPlane;
  const agents: AgentProcess[] = [];
  const a = uniqueId('mv-a');
  const b = uniqueId('mv-b');
  const user = uniqueId('mia');
  let grpcPort = 0;
  let databaseUrl = '';
  // The clock drain deadlines go by: moved forward by the test, never slept on.
  let skewMs = 0;
  const clock = { now: () => new Date(Date.now() + skewMs) };
  const env = () => ({ A4C_GRPC_PORT: String(grpcPort), A4C_DRAIN_TICK_MS: '200', A4C_TUNNEL_ATTACH_TIMEOUT_MS: '3000', ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}) });

  before(async () => {
    grpcPort = await freePort();
    t = await startTestControlPlane(env(), { clock });
    databaseUrl = t.databaseUrl;
    for (const h of [a, b]) agents.push(await spawnAgent({ hostId: h, controlPlane: t.grpcAddress, env: { A4C_ENGINE_NAME_PREFIX: `${h}-` } }));
    await t.api.waitHostConnected(a);
    await t.api.waitHostConnected(b);
  });

  let failed = false;
  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });

  after(async () => {
    if (failed) for (const ag of agents) console.error(`--- agent ${ag.hostId}:\n${ag.output().slice(-6000)}`);
    for (const ag of agents) await ag.kill();
    await t?.stop();
    await removeHostContainers(a, b);
    for (const h of [a, b]) await docker().getVolume(`${h}-a4c-home-${user}`).remove({ force: true }).catch(() => undefined);
  });

  /** Creates a workspace on `host` (the other one drained meanwhile). */
  async function createOn(host: string, name: string): Promise<Workspace> {
    const other = host === a ? b : a;
    await t.api.call('POST', `/v1/hosts/${other}/drain`);
    try {
      const w = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name });
      expect(w.hostId).to.equal(host);
      expect(w.status).to.equal('RUNNING');
      return w;
    } finally {
      await t.api.call('POST', `/v1/hosts/${other}/activate`);
    }
  }

  const events = async (workspaceId: string) =>
    (await t.api.call<{ events: ActivityEvent[] }>('GET', `/v1/events?workspaceId=${workspaceId}&limit=200`)).body.events;
  const host = async (id: string) => (await t.api.call<HostDetail>('GET', `/v1/hosts/${id}`)).body;
  const settled = (id: string, status: string, hostId?: string) =>
    waitFor(`workspace ${id} ${status}${hostId ? ` on ${hostId}` : ''}`, async () => {
      const w = await t.api.workspace(id);
      return w.status === status && (!hostId || w.hostId === hostId) ? w : undefined;
    }, 30_000);

  let moved: Workspace;
  let second: Workspace;

  it('moves a running workspace with its files (volume and writable layer), same id and hostname, reservations with it', async () => {
    const w = await createOn(a, 'mover');
    await sh(w.containerId as string, 'echo hello > /workspace/a.txt && dd if=/dev/urandom of=/workspace/0000-big bs=1k count=128 2>/dev/null && mkdir -p /opt/data && echo layer > /opt/data/b.txt');
    const sums = await sh(w.containerId as string, 'sha256sum /workspace/0000-big');
    const [beforeA, beforeB] = [await host(a), await host(b)];

    const r = await a4c(['ws', 'move', w.id, '--to', b], { A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token, A4C_USER: user });
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    expect(r.stderr).to.contain(`moving workspace ${w.id} from host ${a} to host ${b}`);
    expect(r.stdout).to.match(/moved to host .*verified at both ends/);

    moved = await settled(w.id, 'RUNNING', b);
    expect(moved.id).to.equal(w.id);
    expect(moved.hostname).to.equal(w.hostname);
    expect(moved.containerId).to.not.equal(w.containerId);
    // Read back through the new container: the volume's files and the writable layer's.
    expect(await sh(moved.containerId as string, 'cat /workspace/a.txt')).to.equal('hello\n');
    expect(await sh(moved.containerId as string, 'sha256sum /workspace/0000-big')).to.equal(sums);
    expect(await sh(moved.containerId as string, 'cat /opt/data/b.txt')).to.equal('layer\n');
    expect((await docker().getContainer(moved.containerId as string).inspect()).Config.Hostname).to.equal((w.hostname as string).split('.')[0]);
    // The new container is B's, on B's volume; the old one is gone from A.
    const onB = await containersOfHost(b);
    expect(onB.map((c) => c.Id)).to.include(moved.containerId);
    expect(onB.find((c) => c.Id === moved.containerId)?.Mounts.map((m) => m.Name)).to.deep.equal([`${b}-a4c-home-${user}`]);
    await waitFor('the old container gone from host a', async () => (await containersOfHost(a)).every((c) => c.Labels['a4c.workspace.id'] !== w.id), 15_000);

    const [afterA, afterB] = [await host(a), await host(b)];
    const MiB = 1024 * 1024;
    expect(beforeA.reserved.memoryBytes - afterA.reserved.memoryBytes).to.equal(64 * MiB);
    expect(afterB.reserved.memoryBytes - beforeB.reserved.memoryBytes).to.equal(64 * MiB);

    const m = (await t.api.call<Move>('GET', `/v1/workspaces/${w.id}/move`)).body;
    expect(m.status).to.equal('SUCCEEDED');
    expect(m.volume.sha256).to.match(/^[0-9a-f]{64}$/);
    expect(m.image.sha256).to.match(/^[0-9a-f]{64}$/);
    expect(m.bytesDone).to.equal((m.image.bytes ?? 0) + (m.volume.bytes ?? 0));
    const kinds = (await events(w.id)).map((e) => e.kind);
    for (const k of ['workspace.move_started', 'workspace.move_copying', 'workspace.move_progress', 'workspace.move_verifying', 'workspace.moved', 'workspace.move_succeeded']) {
      expect(kinds, k).to.include(k);
    }
    const vols = (await t.api.call<{ volumes: { hostId: string; project: string }[] }>('GET', `/v1/users/${user}/volumes`)).body.volumes;
    expect(vols.map((v) => `${v.project}@${v.hostId}`)).to.include(`p@${b}`);
  });

  it('refuses a move to the host it is on, or to one that does not exist, saying what to do', async () => {
    const same = await t.api.call<{ error: string; suggestion: string }>('POST', `/v1/workspaces/${moved.id}/move`, { toHostId: b });
    expect(same.status).to.equal(409);
    expect(same.body.suggestion).to.be.a('string');
    const none = await t.api.call<{ error: string }>('POST', `/v1/workspaces/${moved.id}/move`, { toHostId: 'no-such-host' });
    expect(none.status).to.equal(404);
  });

  it('drain --migrate moves every workspace off the host, one at a time, and tells the owners', async () => {
    const w2 = await createOn(b, 'second');
    second = w2;
    const r = await a4c(['hosts', 'drain', b, '--migrate', '--deadline', '1h'], { A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('drain: ACTIVE, migrating 1 at a time');
    const done = await waitFor('the drain of b done', async () => {
      const h = await host(b);
      expect(h.drain?.moving ?? 0).to.be.at.most(1);
      return h.drain?.status === 'DONE' ? h : undefined;
    }, 60_000, 200);
    expect(done.drain?.moved).to.equal(2);
    expect(done.drain?.remaining).to.equal(0);
    for (const id of [moved.id, w2.id]) {
      const ws = await settled(id, 'RUNNING', a);
      expect(ws.hostname).to.not.equal(null);
      const notice = (await events(id)).find((e) => e.kind === 'workspace.drain_notice');
      expect(notice?.userId).to.equal(user);
    }
    // The files went along again.
    const back = await t.api.workspace(moved.id);
    expect(await sh(back.containerId as string, 'cat /workspace/a.txt /opt/data/b.txt')).to.equal('hello\nlayer\n');
    await t.api.call('POST', `/v1/hosts/${b}/activate`);
  });

  it('a drain whose deadline passes stops what is left (the clock moved forward, nothing slept on)', async () => {
    const d = await t.api.call<HostDetail>('POST', `/v1/hosts/${a}/drain`, { deadlineSeconds: 3600 });
    expect(d.status).to.equal(200);
    expect(d.body.drain?.status).to.equal('ACTIVE');
    expect(d.body.drain?.remaining).to.equal(2);
    // Ticks run; before the deadline nothing is stopped.
    await new Promise((r) => setTimeout(r, 600));
    expect((await t.api.workspace(moved.id)).status).to.equal('RUNNING');
    skewMs = 3601 * 1000;
    const h = await waitFor('the drain deadline reached', async () => {
      const v = await host(a);
      return v.drain?.status === 'DEADLINE_REACHED' ? v : undefined;
    }, 20_000, 100);
    expect(h.drain?.forceStopped).to.equal(2);
    await settled(moved.id, 'STOPPED', a);
    const stopped = (await events(moved.id)).find((e) => e.kind === 'workspace.force_stopped');
    expect(stopped?.reason).to.contain('deadline');
    await t.api.call('POST', `/v1/hosts/${a}/activate`);
    skewMs = 0;
  });

  it('a stopped workspace moves and stays stopped; it starts on its new host with the files there', async () => {
    await settled(second.id, 'STOPPED', a); // stopped at the deadline
    const r = await t.api.call<Move>('POST', `/v1/workspaces/${second.id}/move`, {});
    expect(r.status).to.equal(202);
    expect(r.body.toHostId, 'the only other host').to.equal(b);
    const m = await waitFor('the move done', async () => {
      const v = (await t.api.call<Move>('GET', `/v1/workspaces/${second.id}/move`)).body;
      return v.id === r.body.id && (v.status === 'SUCCEEDED' || v.status === 'FAILED') ? v : undefined;
    }, 30_000, 200);
    expect(m.status, m.error ?? '').to.equal('SUCCEEDED');
    const stopped = await waitFor('its stopped container on b', async () => {
      const w = await t.api.workspace(second.id);
      return w.status === 'STOPPED' && w.hostId === b && w.containerId ? w : undefined;
    });
    expect((await docker().getContainer(stopped.containerId as string).inspect()).State.Running).to.equal(false);
    expect((await t.api.call('POST', `/v1/workspaces/${second.id}/start?wait=30`)).status).to.equal(202);
    const running = await settled(second.id, 'RUNNING', b);
    expect(await sh(running.containerId as string, 'cat /workspace/a.txt')).to.equal('hello\n');
  });

  it('a move whose destination agent dies mid-way fails, and the original runs again on its host, untouched', async () => {
    await t.api.call('POST', `/v1/workspaces/${moved.id}/start?wait=30`);
    const w = await settled(moved.id, 'RUNNING', a);
    // Enough bytes that the copy is still going when the destination is killed.
    await sh(w.containerId as string, 'dd if=/dev/urandom of=/workspace/zz-bulk bs=1M count=64 2>/dev/null');
    const before = await sh(w.containerId as string, 'sha256sum /workspace/zz-bulk /workspace/0000-big; cat /opt/data/b.txt');
    const r = await t.api.call<Move>('POST', `/v1/workspaces/${w.id}/move`, { toHostId: b });
    expect(r.status).to.equal(202);
    await waitFor('the copy under way', async () => (await t.api.call<Move>('GET', `/v1/workspaces/${w.id}/move`)).body.status === 'COPYING', 30_000, 20);
    const agentB = agents.find((x) => x.hostId === b) as AgentProcess;
    await agentB.kill('SIGKILL');
    const m = await waitFor('the move to fail', async () => {
      const v = (await t.api.call<Move>('GET', `/v1/workspaces/${w.id}/move`)).body;
      return v.status === 'FAILED' || v.status === 'SUCCEEDED' ? v : undefined;
    }, 30_000, 100);
    expect(m.status).to.equal('FAILED');
    expect(m.error).to.contain(`host ${b}`);
    expect(m.error).to.contain(`stays on host ${a}`);
    const back = await settled(w.id, 'RUNNING', a);
    expect(back.containerId).to.equal(w.containerId);
    expect(await sh(back.containerId as string, 'sha256sum /workspace/zz-bulk /workspace/0000-big; cat /opt/data/b.txt')).to.equal(before);
    await sh(back.containerId as string, 'rm /workspace/zz-bulk');
    // The host comes back with its agent; its workspaces kept running meanwhile.
    agents.splice(agents.indexOf(agentB), 1, await spawnAgent({ hostId: b, controlPlane: t.grpcAddress, stateDir: agentB.stateDir, env: { A4C_ENGINE_NAME_PREFIX: `${b}-` } }));
    await t.api.waitHostConnected(b);
    await waitFor('no move helper left on b', async () => (await docker().listContainers({ all: true, filters: { label: [`a4c.move.host=${b}`] } })).length === 0);
  });

  it('a move whose copy fails verification leaves the original intact and running, with a clear error', async () => {
    // The same database and gRPC port, now with the test hook that flips a byte of the
    // volume stream in transit (inside 0000-big's data, so the tar still extracts).
    await t.stop();
    t = await startTestControlPlane({ ...env(), A4C_TEST_MOVE_CORRUPT_OFFSET: '16384' }, { clock });
    await t.api.waitHostConnected(a);
    await t.api.waitHostConnected(b);
    await t.api.call('POST', `/v1/workspaces/${moved.id}/start?wait=30`);
    const w = await settled(moved.id, 'RUNNING', a);
    const before = await sh(w.containerId as string, 'sha256sum /workspace/0000-big; cat /workspace/a.txt /opt/data/b.txt');
    const reservedB = (await host(b)).reserved.memoryBytes;

    const r = await t.api.call<Move>('POST', `/v1/workspaces/${w.id}/move`, { toHostId: b });
    expect(r.status).to.equal(202);
    const m = await waitFor('the move to fail', async () => {
      const v = (await t.api.call<Move>('GET', `/v1/workspaces/${w.id}/move`)).body;
      return v.id === r.body.id && v.status === 'FAILED' ? v : undefined;
    }, 60_000, 200);
    expect(m.error).to.match(/checksum mismatch on the volume/);
    expect(m.error).to.contain('stays on host');

    const back = await settled(w.id, 'RUNNING', a);
    expect(back.containerId).to.equal(w.containerId);
    expect(await sh(back.containerId as string, 'sha256sum /workspace/0000-big; cat /workspace/a.txt /opt/data/b.txt')).to.equal(before);
    expect((await host(b)).reserved.memoryBytes).to.equal(reservedB);
    expect((await containersOfHost(b)).some((c) => c.Labels['a4c.workspace.id'] === w.id)).to.equal(false);
    const failed = (await events(w.id)).find((e) => e.kind === 'workspace.move_failed' && e.data.moveId === r.body.id);
    expect(failed?.reason).to.match(/checksum mismatch/);
  });
});
