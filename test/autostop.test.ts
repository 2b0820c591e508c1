import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { WebSocket } from 'ws';
import { ConfigError, createLogger, type ActivityEvent, type Workspace } from '@a4c/common';
import { loadConfig, startControlPlane, type Clock, type ControlPlane } from '@a4c/control-plane';
import { openSocket } from './support/access.js';
import {
  Api,
  commitImage,
  docker,
  freshDatabase,
  HEARTBEAT_MS,
  NO_LIMITS,
  removeHostContainers,
  ROOT,
  spawnAgent,
  tmpDir,
  uniqueId,
  type AgentProcess,
} from './support/cluster.js';
import { waitFor } from './support/net.js';

/** The real clock plus an offset the test moves: idle hours pass without sleeping. */
class TestClock implements Clock {
  private offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
  advance(seconds: number): void {
    this.offsetMs += seconds * 1000;
  }
  reset(): void {
    this.offsetMs = 0;
  }
}

const PERIOD = 3600;
const WARNING = 300;
const DORMANT = 86_400;
const DELETE_DORMANT = 2 * 86_400;
const DORMANT_WARNING = 3600;
const CPU_PERCENT = 10;
const TIERS = JSON.stringify({
  tiny: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256, autostopAfterSeconds: PERIOD },
  small: { memoryMb: 96, cpus: 0.5, diskGb: 2 },
});
const BUSY_IMAGE = 'a4c-autostop-busy:test';

/** The a4c CLI as its user runs it. */
async function a4c(api: Api, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await promisify(execFile)(process.execPath, [path.join(ROOT, 'packages/cli/bin/a4c.mjs'), ...args], {
      env: { PATH: process.env.PATH ?? '', A4C_URL: api.baseUrl, A4C_TOKEN: api.token },
    });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const f = e as { code: number; stdout: string; stderr: string };
    return { code: f.code, out: f.stdout, err: f.stderr };
  }
}

describe('idle autostop and dormancy', function () {
  this.timeout(120_000);
  const clock = new TestClock();
  let cp: ControlPlane;
  let replica: ControlPlane;
  let api: Api;
  let agent: AgentProcess;
  const hostId = uniqueId('autostop');
  const alice = uniqueId('alice');
  let aliceApi: Api;
  const sockets: WebSocket[] = [];

  before(async () => {
    // Made before the agent starts, so that its first Hello lists it.
    await commitImage(BUSY_IMAGE, ['CMD ["sh", "-c", "while :; do :; done"]']);
    const env = {
      DATABASE_URL: await freshDatabase(),
      A4C_HTTP_PORT: '0',
      A4C_GRPC_PORT: '0',
      A4C_TIERS: TIERS,
      A4C_HEARTBEAT_MS: String(HEARTBEAT_MS),
      A4C_ADMIN_TOKEN: `test-admin-token-${randomBytes(8).toString('hex')}`,
      A4C_GRPC_INSECURE: 'true',
      ...NO_LIMITS,
      A4C_AUTOSTOP_SWEEP_MS: '200',
      A4C_AUTOSTOP_WARNING_SECONDS: String(WARNING),
      A4C_AUTOSTOP_CPU_PERCENT: String(CPU_PERCENT),
      A4C_AUTOSTOP_CPU_SAMPLE_MS: '400',
      A4C_DORMANT_AFTER_SECONDS: String(DORMANT),
      A4C_DELETE_DORMANT_AFTER_SECONDS: String(DELETE_DORMANT),
      A4C_DORMANT_WARNING_SECONDS: String(DORMANT_WARNING),
    };
    const log = createLogger('test-autostop', { A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' });
    cp = await startControlPlane(loadConfig({ ...env, A4C_DATA_DIR: tmpDir('cp-autostop') }), log, { clock });
    // A second replica on the same database sweeps too: every "once" below holds across replicas.
    replica = await startControlPlane(loadConfig({ ...env, A4C_DATA_DIR: tmpDir('cp-autostop2') }), log, { clock });
    api = new Api(`http://127.0.0.1:${cp.httpPort}`, cp.adminToken);
    agent = await spawnAgent({ hostId, controlPlane: `127.0.0.1:${cp.grpcPort}`, env: { A4C_BUILD_SLOTS: '0' } });
    await api.waitHostConnected(hostId);
    expect((await api.call('POST', '/v1/users', { id: alice })).status).to.equal(201);
    expect((await api.call('PUT', `/v1/users/${alice}/quota`, { maxWorkspaces: 20 })).status).to.equal(200);
    aliceApi = new Api(api.baseUrl, (await api.call<{ token: string }>('POST', `/v1/users/${alice}/tokens`, { name: 't' })).body.token);
  });

  beforeEach(() => clock.reset());

  after(async () => {
    for (const s of sockets) s.terminate();
    await agent?.kill();
    await replica?.stop();
    await cp?.stop();
    await removeHostContainers(hostId);
    await docker().getImage(BUSY_IMAGE).remove({ force: true }).catch(() => undefined);
  });

  const events = async (id: string): Promise<ActivityEvent[]> =>
    (await api.call<{ events: ActivityEvent[] }>('GET', `/v1/events?workspaceId=${id}&limit=1000`)).body.events;
  const ofKind = async (id: string, kind: string) => (await events(id)).filter((e) => e.kind === kind);
  const waitEvent = (id: string, kind: string) => waitFor(`${kind} for ${id}`, async () => (await ofKind(id, kind))[0], 20_000, 100);
  /** A few sweeps (200 ms each) that must change nothing. */
  const sweeps = () => new Promise((r) => setTimeout(r, 1200));
  const create = (body: Record<string, unknown> = {}) => aliceApi.createWorkspace(alice, { projectName: 'idle', arch: 'linux-x64', tier: 'tiny', ...body });

  it('warns an idle workspace once, then stops it through the normal stop path with the reason in its events', async () => {
    const ws = await create();
    expect(ws.status).to.equal('RUNNING');
    const fresh = await api.workspace(ws.id);
    expect(fresh.autostopAfterSeconds).to.equal(PERIOD);
    expect(Date.parse(fresh.autostopAt as string) - Date.parse(fresh.updatedAt)).to.be.within((PERIOD - 5) * 1000, (PERIOD + 5) * 1000);
    expect(fresh.keptAliveBecause?.map((k) => k.reason)).to.deep.equal(['recent-activity']);
    expect(fresh.keptAliveBecause?.[0]).to.include({ source: 'started' });

    clock.advance(PERIOD - WARNING + 10);
    const warning = await waitEvent(ws.id, 'workspace.autostop_warning');
    expect(warning.actor).to.equal('control-plane');
    expect(warning.reason).to.match(/idle since .* it will be stopped at/);
    await sweeps();
    expect((await api.workspace(ws.id)).status, 'not stopped before the warning lead has passed').to.equal('RUNNING');
    expect(await ofKind(ws.id, 'workspace.autostop_warning'), 'one warning per idle period').to.have.length(1);

    clock.advance(WARNING);
    const stopped = await waitEvent(ws.id, 'workspace.autostopped');
    expect(stopped.reason).to.match(/stopped for idleness: idle since .*no open session/);
    expect(stopped.data).to.include({ autostopAfterSeconds: PERIOD });
    expect(stopped.id, 'the warning came first').to.be.greaterThan(warning.id);
    const stopping = await ofKind(ws.id, 'workspace.stopping');
    expect(stopping).to.have.length(1);
    expect(stopping[0]?.reason).to.match(/^autostop: idle since/);
    await waitFor('the agent stopped it', async () => (await api.workspace(ws.id)).status === 'STOPPED', 30_000, 100);
    await sweeps();
    expect(await ofKind(ws.id, 'workspace.autostopped'), 'stopped once').to.have.length(1);
    const after = await api.workspace(ws.id);
    expect(after.autostopAt).to.equal(null);
  });

  it('keeps a workspace with an open exec session running, and says so in keptAliveBecause', async () => {
    const ws = await create();
    const sock = await openSocket(api.baseUrl, `/v1/workspaces/${ws.id}/exec?command=sleep&command=600`, aliceApi.token);
    sockets.push(sock);
    const held = await waitFor('the session in keptAliveBecause', async () => {
      const w = await api.workspace(ws.id);
      return w.keptAliveBecause?.find((k) => k.reason === 'open-sessions') ? w : undefined;
    });
    expect(held.keptAliveBecause?.[0]).to.deep.include({ reason: 'open-sessions', kind: 'exec', actor: alice, count: 1 });
    // a4c ws get says the same to its user.
    const shown = await a4c(aliceApi, 'ws', 'get', ws.id);
    expect(shown.code, shown.err).to.equal(0);
    expect(shown.out).to.match(/^autostop: +at \S+ \(in 1h\), after 1h idle$/m);
    expect(shown.out).to.match(new RegExp(`^kept alive: +1 open exec session by ${alice}$`, 'm'));

    clock.advance(2 * PERIOD);
    await sweeps();
    const w = await api.workspace(ws.id);
    expect(w.status).to.equal('RUNNING');
    expect(await ofKind(ws.id, 'workspace.autostop_warning'), 'no warning while a session is open').to.have.length(0);
    expect(w.keptAliveBecause?.[0]).to.deep.include({ reason: 'open-sessions', kind: 'exec', count: 1 });
    // While it is held, the earliest stop is a full period from now.
    expect(Date.parse(w.autostopAt as string) - clock.now().getTime()).to.be.within((PERIOD - 5) * 1000, (PERIOD + 5) * 1000);
    sock.terminate();
  });

  it('counts a workspace whose CPU stays above A4C_AUTOSTOP_CPU_PERCENT as active', async () => {
    const ws = await create({ image: BUSY_IMAGE });
    expect(ws.status).to.equal('RUNNING');
    const busy = await waitFor('a CPU sample above the threshold', async () => {
      const w = await api.workspace(ws.id);
      return w.keptAliveBecause?.find((k) => k.reason === 'cpu') ? w : undefined;
    }, 20_000, 200);
    const cpu = busy.keptAliveBecause?.find((k) => k.reason === 'cpu');
    expect(cpu).to.include({ thresholdPercent: CPU_PERCENT });
    expect((cpu as { cpuPercent: number }).cpuPercent).to.be.at.least(CPU_PERCENT);

    // Twice past the idle period, in steps shorter than the warning point, with samples in between.
    // Each step stays short of the warning point only counted from a sample taken after
    // the previous step: wait for that sample (on a busy machine one can be late).
    for (let i = 0; i < 3; i++) {
      clock.advance(PERIOD - WARNING - 600);
      const movedAt = clock.now().getTime();
      await waitFor('a CPU sample taken after the clock moved', async () => {
        const c = (await api.workspace(ws.id)).keptAliveBecause?.find((k) => k.reason === 'cpu') as { sampledAt: string } | undefined;
        return c && Date.parse(c.sampledAt) >= movedAt - 1000 ? true : undefined;
      }, 20_000, 200);
      await sweeps();
    }
    const w = await api.workspace(ws.id);
    expect(w.status).to.equal('RUNNING');
    expect(await ofKind(ws.id, 'workspace.autostop_warning'), 'a busy workspace is not idle').to.have.length(0);
    expect(w.keptAliveBecause?.find((k) => k.reason === 'recent-activity')).to.include({ source: 'cpu' });
    await api.call('DELETE', `/v1/workspaces/${ws.id}?wait=30`);
  });

  it('marks a long-stopped workspace dormant and, as the admin asked, deletes it, with a warning before each; starting clears dormancy', async () => {
    const doomed = await create({ name: 'doomed' });
    const woken = await create({ name: 'woken' });
    for (const w of [doomed, woken]) expect((await aliceApi.call('POST', `/v1/workspaces/${w.id}/stop?wait=30`)).body).to.include({ status: 'STOPPED' });

    clock.advance(DORMANT - DORMANT_WARNING + 10);
    const warned = await waitEvent(doomed.id, 'workspace.dormant_warning');
    expect(warned.reason).to.match(/will be marked dormant at/);
    expect((await api.workspace(doomed.id)).dormantAt).to.equal(null);

    clock.advance(DORMANT_WARNING);
    await waitEvent(doomed.id, 'workspace.dormant');
    await waitEvent(woken.id, 'workspace.dormant');
    const dormant = await api.workspace(doomed.id);
    expect(dormant.status).to.equal('STOPPED');
    expect(dormant.dormantAt).to.be.a('string');
    expect(Date.parse(dormant.deleteAt as string) - Date.parse(dormant.dormantAt as string)).to.equal(DELETE_DORMANT * 1000);

    const started = await aliceApi.call<Workspace>('POST', `/v1/workspaces/${woken.id}/start?wait=30`);
    expect(started.body.status).to.equal('RUNNING');
    expect((await api.workspace(woken.id)).dormantAt, 'starting clears dormancy').to.equal(null);

    clock.advance(DELETE_DORMANT - DORMANT_WARNING);
    const deleteWarning = await waitEvent(doomed.id, 'workspace.dormant_delete_warning');
    expect(deleteWarning.reason).to.match(/will be deleted at .* unless it is started/);
    expect((await api.workspace(doomed.id)).status).to.equal('STOPPED');

    clock.advance(DORMANT_WARNING);
    const deleted = await waitEvent(doomed.id, 'workspace.dormant_deleted');
    expect(deleted.id).to.be.greaterThan(deleteWarning.id);
    await waitFor('the dormant workspace DELETED', async () => (await api.workspace(doomed.id)).status === 'DELETED', 30_000, 100);
    expect(await ofKind(woken.id, 'workspace.dormant_deleted'), 'the started one is not deleted').to.have.length(0);
    for (const kind of ['workspace.dormant_warning', 'workspace.dormant', 'workspace.dormant_delete_warning', 'workspace.dormant_deleted', 'workspace.deleting']) {
      expect(await ofKind(doomed.id, kind), `${kind} once, with two replicas sweeping`).to.have.length(1);
    }
  });

  it('takes a per-workspace period at create and by PATCH: validated, users may only shorten it, the sweep uses it', async () => {
    const bad = await aliceApi.call<{ error: string; field: string; suggestion?: string }>('POST', `/v1/users/${alice}/workspaces`, {
      projectName: 'idle', arch: 'linux-x64', tier: 'tiny', autostopAfterSeconds: 30,
    });
    expect(bad.status).to.equal(400);
    expect(bad.body).to.include({ error: 'INVALID_ARGUMENT', field: 'autostopAfterSeconds' });
    const longer = await aliceApi.call<{ error: string; suggestion: string }>('POST', `/v1/users/${alice}/workspaces`, {
      projectName: 'idle', arch: 'linux-x64', tier: 'tiny', autostopAfterSeconds: 2 * PERIOD,
    });
    expect(longer.status).to.equal(403);
    expect(longer.body.suggestion).to.match(/at most 3600/);

    const ws = await create({ autostopAfterSeconds: 1200 });
    expect((await api.workspace(ws.id)).autostopAfterSeconds).to.equal(1200);

    const patch = (body: unknown, as: Api = aliceApi) => as.call<Workspace & { error?: string; field?: string }>('PATCH', `/v1/workspaces/${ws.id}`, body);
    expect((await patch({ autostopAfterSeconds: 'soon' })).body).to.include({ error: 'INVALID_ARGUMENT', field: 'autostopAfterSeconds' });
    expect((await patch({ autostopAfterSeconds: 600, extra: 1 })).status).to.equal(400);
    expect((await patch({ autostopAfterSeconds: 0 })).status, 'users may not turn off their tier\'s autostop').to.equal(403);
    const shorter = await patch({ autostopAfterSeconds: 600 });
    expect(shorter.status).to.equal(200);
    expect(shorter.body.autostopAfterSeconds).to.equal(600);
    const updated = await waitEvent(ws.id, 'workspace.updated');
    expect(updated.changes).to.deep.equal({ autostopAfterSeconds: { from: 1200, to: 600 } });

    // The sweep goes by the workspace's own period: warned at 600 - 300 s, not the tier's 3600 - 300.
    clock.advance(600 - WARNING + 10);
    await waitEvent(ws.id, 'workspace.autostop_warning');

    const never = await patch({ autostopAfterSeconds: null }, api);
    expect(never.status).to.equal(200);
    expect(never.body).to.include({ autostopAfterSeconds: null, autostopAt: null });
    clock.advance(2 * PERIOD);
    await sweeps();
    expect((await api.workspace(ws.id)).status, 'never stops once an admin turned autostop off').to.equal('RUNNING');

    const untiered = await aliceApi.createWorkspace(alice, { projectName: 'idle', arch: 'linux-x64', tier: 'small' });
    expect(await api.workspace(untiered.id)).to.include({ autostopAfterSeconds: null, autostopAt: null });
    const set = await a4c(aliceApi, 'ws', 'autostop', untiered.id, '15m');
    expect(set.code, set.err).to.equal(0);
    expect(set.out).to.match(/^autostop: .*after 15m idle$/m);
    expect((await a4c(aliceApi, 'ws', 'autostop', untiered.id, '10s')).code, 'under a minute is a usage error').to.equal(2);
    const made = await a4c(aliceApi, '-o', 'json', '--user', alice, 'ws', 'create', '--project', 'idle', '--arch', 'linux-x64', '--tier', 'tiny', '--autostop', '20m', '--no-wait');
    expect(made.code, made.err).to.equal(0);
    expect((await api.workspace((JSON.parse(made.out) as Workspace).id)).autostopAfterSeconds).to.equal(1200);
  });

  it('validates its settings at start-up, naming the variable', () => {
    const base = { A4C_DATA_DIR: tmpDir('cfg') };
    expect(loadConfig(base).autostop).to.include({ dormantAfterSeconds: 7 * 86_400, deleteDormantAfterSeconds: undefined, cpuPercent: undefined, warningSeconds: 300 });
    const refused = (env: Record<string, string>) => {
      try {
        loadConfig({ ...base, ...env });
      } catch (e) {
        if (e instanceof ConfigError) return e.message;
        throw e;
      }
      throw new Error(`accepted ${JSON.stringify(env)}`);
    };
    expect(refused({ A4C_AUTOSTOP_CPU_PERCENT: 'busy' })).to.match(/A4C_AUTOSTOP_CPU_PERCENT/);
    expect(refused({ A4C_DELETE_DORMANT_AFTER_SECONDS: '10' })).to.match(/A4C_DELETE_DORMANT_AFTER_SECONDS/);
    expect(refused({ A4C_DORMANT_AFTER_SECONDS: '0', A4C_DELETE_DORMANT_AFTER_SECONDS: '3600' })).to.match(/A4C_DELETE_DORMANT_AFTER_SECONDS.*needs dormancy/);
    expect(refused({ A4C_TIERS: JSON.stringify({ t: { memoryMb: 64, cpus: 1, diskGb: 1, autostopAfterSeconds: 5 } }) })).to.match(/A4C_TIERS.*autostopAfterSeconds/);
  });
});
