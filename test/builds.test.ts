import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import Docker from 'dockerode';
import pg from 'pg';
import type { Build } from '@a4c/common';
import { docker, dockerHost, removeHostContainers, spawnAgent, startTestControlPlane, tmpDir, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { engineLib, statusInNetns, type PrivateEngine } from './support/engine.js';
import { freePort, waitFor } from './support/net.js';

/** Fails the build of project "broken" the way a failed source sync would, with output. */
const SYNC = [
  'if [ "$A4C_PROJECT" = broken ]; then echo "cannot sync $A4C_PROJECT@$A4C_CHANGE_NUMBER: no such depot path" >&2; exit 3; fi',
  'mkdir -p /opt/a4c && echo "$A4C_PROJECT@$A4C_CHANGE_NUMBER" > /opt/a4c/source',
].join('; ');
const FAST = { A4C_BUILD_POLL_MS: '200', A4C_BUILD_HEARTBEAT_MS: '400', A4C_BUILD_SYNC_COMMAND: SYNC };

async function eventsOfKind(databaseUrl: string, kind: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  const { rows } = await c.query<{ data: Record<string, unknown> }>('SELECT data FROM events WHERE kind = $1 ORDER BY id', [kind]);
  await c.end();
  return rows.map((r) => r.data);
}

describe('image builds', function () {
  this.timeout(240_000);
  let t: TestControlPlane;
  const agents: AgentProcess[] = [];
  const x64 = [uniqueId('build-a'), uniqueId('build-b')];
  const user = uniqueId('ivan');
  const image = uniqueId('img');
  const tags: string[] = [];

  const schedule = (body: Record<string, string>, u = user) => t.api.call<Build & { error: string; limit: string }>('POST', `/v1/users/${u}/image-schedules`, body);
  const build = async (id: string) => (await t.api.call<Build>('GET', `/v1/image-schedules/${id}`)).body;
  const settled = (id: string, timeoutMs = 60_000) =>
    waitFor(`build ${id} finished`, async () => {
      const b = await build(id);
      return b.status === 'COMPLETED' || b.status === 'FAILED' ? b : undefined;
    }, timeoutMs, 200);

  before(async () => {
    t = await startTestControlPlane({ A4C_BUILD_LEASE_MS: '30000' });
    for (const hostId of x64) agents.push(await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: FAST }));
    for (const h of x64) await t.api.waitHostConnected(h);
    await t.api.call('PUT', `/v1/users/${user}/quota`, { maxConcurrentBuilds: 50 });
  });
  after(async () => {
    for (const a of agents) await a.kill();
    await t?.stop();
    await removeHostContainers(...x64);
    for (const tag of tags) await docker().getImage(tag).remove({ force: true }).catch(() => undefined);
  });

  it('20 builds and 2 agents racing: each runs exactly once, all complete, the images carry their labels', async () => {
    const scheduled: Build[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await schedule({ imageName: image, project: 'web', arch: 'linux-x64', changeNumber: `CL-${1000 + i}` });
      expect(r.status, JSON.stringify(r.body)).to.equal(202);
      expect(r.body.status).to.equal('SCHEDULED');
      expect(r.body.imageTag).to.equal(`${image}:CL-${1000 + i}-linux-x64`);
      scheduled.push(r.body);
      tags.push(r.body.imageTag);
    }
    const done = await Promise.all(scheduled.map((b) => settled(b.id, 180_000)));
    for (const b of done) {
      expect(b.status, `${b.id}: ${b.error}`).to.equal('COMPLETED');
      expect(b.attempts, 'claimed exactly once').to.equal(1);
      expect(b.retryCount).to.equal(0);
      expect(x64).to.include(b.worker);
      expect(b.progress).to.equal(100);
      const img = await docker().getImage(b.imageTag).inspect();
      expect(img.Config.Labels).to.include({ 'a4c.project': 'web', 'a4c.arch': 'linux-x64', 'a4c.change': b.changeNumber, 'a4c.build.id': b.id });
    }
    expect((await eventsOfKind(t.databaseUrl, 'build.completed')).length).to.equal(20);
    expect(await eventsOfKind(t.databaseUrl, 'build.result_discarded')).to.deep.equal([]);

    const list = await t.api.call<{ builds: Build[] }>('GET', `/v1/image-schedules?project=web&arch=linux-x64&status=COMPLETED&userId=${user}`);
    expect(list.body.builds.length).to.equal(20);
    const logs = await t.api.call<{ lines: { seq: number; line: string }[] }>('GET', `/v1/image-schedules/${done[0]?.id}/logs`);
    expect(logs.body.lines.map((l) => l.line).join('\n')).to.match(/Step 1\/4 : FROM a4c-base:latest/);
  });

  it('a Dockerfile step that fails: FAILED, with the failing step\'s output in the logs', async () => {
    const r = await schedule({ imageName: image, project: 'broken', arch: 'linux-x64', changeNumber: 'CL-7' });
    const b = await settled(r.body.id);
    expect(b.status).to.equal('FAILED');
    expect(b.error).to.match(/non-zero code: 3/);
    expect(b.logTail.join('\n')).to.contain('cannot sync broken@CL-7: no such depot path');
  });

  it('an arch with no agents: builds wait SCHEDULED; an agent of that arch appears and takes them', async () => {
    const r = await schedule({ imageName: image, project: 'arm', arch: 'linux-arm64', changeNumber: 'CL-9' });
    tags.push(r.body.imageTag);
    await new Promise((res) => setTimeout(res, 1500));
    expect((await build(r.body.id)).status).to.equal('SCHEDULED');
    const arm = uniqueId('arm');
    agents.push(await spawnAgent({ hostId: arm, controlPlane: t.grpcAddress, env: { ...FAST, A4C_ARCH: 'linux-arm64' } }));
    const b = await settled(r.body.id);
    expect(b.status).to.equal('COMPLETED');
    expect(b.worker).to.equal(arm);
  });

  it('at most 2 concurrent builds per user by default: the third is refused with 429', async () => {
    const u = uniqueId('quota');
    const body = { imageName: image, project: 'q', arch: 'darwin-arm64', changeNumber: 'CL-1' }; // no darwin agent: they stay queued
    expect((await schedule(body, u)).status).to.equal(202);
    expect((await schedule(body, u)).status).to.equal(202);
    const third = await schedule(body, u);
    expect(third.status).to.equal(429);
    expect(third.body.error).to.equal('QUOTA_EXCEEDED');
    expect(third.body.limit).to.equal('maxConcurrentBuilds');
  });

  it('refuses bad build requests with the field named', async () => {
    const r = await schedule({ imageName: 'Bad Name', project: 'p', arch: 'linux-x64', changeNumber: 'CL-1' });
    expect(r.status).to.equal(400);
    expect((r.body as unknown as { field: string }).field).to.equal('imageName');
    const q = await t.api.call<{ field: string }>('GET', '/v1/image-schedules?status=DONE');
    expect(q.status).to.equal(400);
    expect(q.body.field).to.equal('status');
    expect((await t.api.call('GET', '/v1/image-schedules/6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f')).status).to.equal(404);
  });
});

/** Two hosts on two engines: only the builder holds the project's image. */
describe('a built image is placeable', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let engine: PrivateEngine;
  const agents: AgentProcess[] = [];
  const builder = uniqueId('builder');
  const other = uniqueId('other');
  let tag = '';

  before(async () => {
    const lib = await engineLib();
    engine = await lib.startPrivateDockerd({ dataRoot: tmpDir('docker-second'), name: `a4c-second-${process.pid}` });
    await lib.ensureBaseImage(engine.dockerHost);
    t = await startTestControlPlane();
    agents.push(await spawnAgent({ hostId: builder, controlPlane: t.grpcAddress, env: FAST }));
    agents.push(await spawnAgent({ hostId: other, controlPlane: t.grpcAddress, env: { ...FAST, A4C_BUILD_SLOTS: '0', DOCKER_HOST: engine.dockerHost } }));
    for (const h of [builder, other]) await t.api.waitHostConnected(h);
  });
  after(async () => {
    for (const a of agents) await a.kill();
    await t?.stop();
    await removeHostContainers(builder, other);
    if (tag) await docker().getImage(tag).remove({ force: true }).catch(() => undefined);
    await engine?.stop();
  });

  it('a workspace for the built project and arch lands on the host that built the image', async () => {
    const r = await t.api.call<Build>('POST', `/v1/users/${uniqueId('u')}/image-schedules`, { imageName: uniqueId('shop'), project: 'shop', arch: 'linux-x64', changeNumber: 'CL-42' });
    tag = r.body.imageTag;
    const b = await waitFor('the build completed', async () => {
      const x = (await t.api.call<Build>('GET', `/v1/image-schedules/${r.body.id}`)).body;
      return x.status === 'COMPLETED' || x.status === 'FAILED' ? x : undefined;
    }, 60_000, 200);
    expect(b.status, b.error ?? '').to.equal('COMPLETED');
    expect(b.worker).to.equal(builder);
    // The other host is as healthy and as empty as the builder, but it does not hold
    // the image: every workspace goes to the builder.
    for (let i = 0; i < 3; i++) {
      const ws = await t.api.createWorkspace(uniqueId('dev'), { projectName: 'shop', arch: 'linux-x64', tier: 'tiny' });
      expect(ws.status, `${ws.failedStep}: ${ws.error}`).to.equal('RUNNING');
      expect(ws.image).to.equal(b.imageTag);
      expect(ws.hostId).to.equal(builder);
      expect((await docker().getContainer(ws.containerId as string).inspect()).Config.Image).to.equal(b.imageTag);
    }
    const plain = await t.api.createWorkspace(uniqueId('dev'), { projectName: 'no-build-yet', arch: 'linux-x64', tier: 'tiny' });
    expect(plain.image, 'a project without a build gets the default image').to.equal('a4c-base:latest');
  });
});

/**
 * A real registry (Debian's docker-registry) on loopback, two engines. Each private
 * engine has a network namespace of its own (scripts/lib/engine.mjs), so "loopback" is
 * the suite engine's: the registry runs in that namespace (nsenter), the second engine
 * joins it, and the test asks the registry from inside it (curl under nsenter).
 */
describe('built images through a registry (A4C_REGISTRY)', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let engine: PrivateEngine;
  let registryProc: ChildProcess | undefined;
  let registry = '';
  let netns = '';
  const agents: AgentProcess[] = [];
  const builder = uniqueId('pusher');
  const puller = uniqueId('puller');

  before(async () => {
    const lib = await engineLib();
    netns = lib.netnsOf(dockerHost());
    const dir = tmpDir('registry');
    // Free on the host's loopback; the namespace's holds nothing but this run's registries.
    const port = await freePort();
    registry = `127.0.0.1:${port}`;
    writeFileSync(path.join(dir, 'config.yml'), `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${registry}\n`);
    registryProc = spawn('nsenter', [`--net=${netns}`, '--', 'docker-registry', 'serve', path.join(dir, 'config.yml')], { stdio: 'ignore' });
    await waitFor('the registry', async () => (await statusInNetns(netns, `http://${registry}/v2/`)) === 200, 20_000);
    engine = await lib.startPrivateDockerd({ dataRoot: tmpDir('docker-puller'), name: `a4c-puller-${process.pid}`, netns });
    await lib.ensureBaseImage(engine.dockerHost);
    t = await startTestControlPlane();
    agents.push(await spawnAgent({ hostId: builder, controlPlane: t.grpcAddress, env: { ...FAST, A4C_REGISTRY: registry } }));
    agents.push(await spawnAgent({ hostId: puller, controlPlane: t.grpcAddress, env: { ...FAST, A4C_BUILD_SLOTS: '0', DOCKER_HOST: engine.dockerHost } }));
    for (const h of [builder, puller]) await t.api.waitHostConnected(h);
  });
  after(async () => {
    for (const a of agents) await a.kill();
    await t?.stop();
    await removeHostContainers(builder, puller);
    await engine?.stop();
    if (registryProc && registryProc.exitCode === null && registryProc.signalCode === null) {
      const exited = new Promise((r) => registryProc?.once('exit', r));
      registryProc.kill();
      await exited;
    }
  });

  it('the builder pushes the image; another host of the arch pulls it when a workspace is placed there', async () => {
    const r = await t.api.call<Build>('POST', `/v1/users/${uniqueId('u')}/image-schedules`, { imageName: uniqueId('reg'), project: 'api', arch: 'linux-x64', changeNumber: 'CL-77' });
    const b = await waitFor('the build completed', async () => {
      const x = (await t.api.call<Build>('GET', `/v1/image-schedules/${r.body.id}`)).body;
      return x.status === 'COMPLETED' || x.status === 'FAILED' ? x : undefined;
    }, 60_000, 200);
    expect(b.status, b.error ?? '').to.equal('COMPLETED');
    expect(b.worker).to.equal(builder);
    const [repo, tag] = b.imageTag.split(':') as [string, string];
    const manifest = await statusInNetns(netns, `http://${registry}/v2/${repo}/manifests/${tag}`, { accept: 'application/vnd.docker.distribution.manifest.v2+json' });
    expect(manifest, 'the image is in the registry').to.equal(200);

    // Only the host without the image can take the workspace now.
    await t.api.call('POST', `/v1/hosts/${builder}/drain`);
    const ws = await t.api.createWorkspace(uniqueId('dev'), { projectName: 'api', arch: 'linux-x64', tier: 'tiny' });
    expect(ws.status, `${ws.failedStep}: ${ws.error}`).to.equal('RUNNING');
    expect(ws.hostId).to.equal(puller);
    expect(ws.image).to.equal(b.imageTag);
    const own = new Docker({ socketPath: engine.dockerHost.replace(/^unix:\/\//, '') });
    expect((await own.getImage(b.imageTag).inspect()).Config.Labels).to.include({ 'a4c.project': 'api', 'a4c.change': 'CL-77' });
  });
});

/** Its own control plane with a short lease (6 s), so the requeue happens quickly. */
describe('image build leases', function () {
  this.timeout(240_000);
  let t: TestControlPlane;
  const agents: AgentProcess[] = [];
  const tags: string[] = [];
  const build = async (id: string) => (await t.api.call<Build>('GET', `/v1/image-schedules/${id}`)).body;

  before(async () => {
    t = await startTestControlPlane({ A4C_BUILD_LEASE_MS: '6000' });
  });
  after(async () => {
    for (const a of agents) await a.kill();
    await t?.stop();
    for (const tag of tags) await docker().getImage(tag).remove({ force: true }).catch(() => undefined);
  });

  it('the agent running a build is killed: the build is requeued after its lease and completed by another; the late result is discarded', async () => {
    const slow = { ...FAST, A4C_ARCH: 'darwin-arm64', A4C_BUILD_SYNC_COMMAND: `sleep 5; ${SYNC}` };
    const first = await spawnAgent({ hostId: uniqueId('mac-a'), controlPlane: t.grpcAddress, env: slow });
    agents.push(first);
    const r = await t.api.call<Build>('POST', `/v1/users/${uniqueId('lease')}/image-schedules`, { imageName: uniqueId('mac'), project: 'mac', arch: 'darwin-arm64', changeNumber: 'CL-11' });
    tags.push(r.body.imageTag);
    await waitFor('the build claimed by the first agent', async () => {
      const b = await build(r.body.id);
      return b.status === 'IN_PROGRESS' && b.worker === first.hostId;
    }, 60_000, 100);
    // The claim is IN_PROGRESS as soon as the control plane records it; the late result
    // below needs the agent to have persisted the build it took (builds.json) first.
    await waitFor('the first agent to persist the build it took', async () => {
      try {
        return readFileSync(path.join(first.stateDir, 'builds.json'), 'utf8').includes(r.body.id);
      } catch {
        return false;
      }
    }, 30_000, 50);
    await first.kill('SIGKILL');

    const second = await spawnAgent({ hostId: uniqueId('mac-b'), controlPlane: t.grpcAddress, env: { ...FAST, A4C_ARCH: 'darwin-arm64' } });
    agents.push(second);
    const b = await waitFor('the build completed by the second agent', async () => {
      const x = await build(r.body.id);
      return x.status === 'COMPLETED' ? x : undefined;
    }, 60_000, 200);
    expect(b.worker).to.equal(second.hostId);
    expect(b.retryCount).to.equal(1);
    expect(b.attempts).to.equal(2);
    expect((await eventsOfKind(t.databaseUrl, 'build.requeued')).some((e) => e.buildId === r.body.id)).to.equal(true);

    // The first agent comes back, finishes the build it had claimed (it persisted it),
    // and reports with its old claim: discarded.
    const restarted = await spawnAgent({ hostId: first.hostId, controlPlane: t.grpcAddress, stateDir: first.stateDir, env: slow });
    agents.push(restarted);
    await waitFor('the late result discarded', async () => (await eventsOfKind(t.databaseUrl, 'build.result_discarded')).some((e) => e.buildId === r.body.id), 120_000, 200);
    const after = await build(r.body.id);
    expect(after.status).to.equal('COMPLETED');
    expect(after.worker, 'the result of the claim holder stands').to.equal(second.hostId);
    expect(after.attempts).to.equal(2);
  });

});
