import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import pg from 'pg';
import { ImageGc, loadConfig as loadAgentConfig } from '@a4c/agent';
import { createLogger, type Build } from '@a4c/common';
import type { ImagesPruned } from '@a4c/proto';
import { commitImage, docker, tmpDir, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

/** 0.01 GiB: a workspace that a few MiB written with dd takes past 90 % and then past its limit. */
const LIMIT_BYTES = Math.round(0.01 * 1024 ** 3);
const TIERS = JSON.stringify({
  tiny: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256 },
  mini: { memoryMb: 64, cpus: 0.25, diskGb: 0.01, pidsLimit: 256 },
});
/** Builds sleep (a long step to cancel or outlast); project "readopt" finishes after 6 s. */
const SYNC = 'if [ "$A4C_PROJECT" = readopt ]; then sleep 6; else sleep 120; fi; echo done';
const MAX_BUILD_SECONDS = 12;
const HOST_ENV = { A4C_BUILD_SLOTS: '0', A4C_DISK_MEASURE_INTERVAL_MS: '300' };
/** Whatever this machine's disk holds, it is past 1 %: every pass collects, down to nothing. */
const GC_ENV = { A4C_IMAGE_GC_HIGH_PERCENT: '1', A4C_IMAGE_GC_LOW_PERCENT: '0', A4C_IMAGE_GC_INTERVAL_MS: '500', A4C_IMAGE_GC_MIN_AGE_SECONDS: '0' };

interface EventRow {
  kind: string;
  reason: string;
  workspace_id: string | null;
  build_id: string | null;
  data: Record<string, unknown>;
}

async function events(databaseUrl: string, kind: string): Promise<EventRow[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return (await c.query<EventRow>('SELECT kind, reason, workspace_id, build_id, data FROM events WHERE kind = $1 ORDER BY id', [kind])).rows;
  } finally {
    await c.end();
  }
}

/** Runs a command in a container as root; resolves its exit code. */
async function exec(containerId: string, cmd: string[]): Promise<{ code: number; output: string }> {
  const d = docker();
  const e = await d.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, User: 'root' });
  const stream = await e.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  let output = '';
  out.on('data', (c: Buffer) => (output += c.toString()));
  d.modem.demuxStream(stream, out, out);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', () => resolve());
    stream.on('close', () => resolve());
    stream.on('error', reject);
  });
  return { code: (await e.inspect()).ExitCode ?? -1, output };
}

async function imageExists(ref: string): Promise<boolean> {
  return docker()
    .getImage(ref)
    .inspect()
    .then(
      () => true,
      () => false,
    );
}

describe('disk and images', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let host: AgentProcess;
  let builder: AgentProcess;
  const hostId = uniqueId('disk');
  const builderId = uniqueId('disk-builder');
  const user = uniqueId('dora');
  const images = {
    used: `${uniqueId('gc-used')}:1`,
    stopped: `${uniqueId('gc-stopped')}:1`,
    old: `${uniqueId('gc-old')}:1`,
    foreign: `${uniqueId('gc-foreign')}:1`,
  };
  const extraContainers: string[] = [];

  const build = async (id: string) => (await t.api.call<Build>('GET', `/v1/image-schedules/${id}`)).body;
  const schedule = async (project: string) => {
    const r = await t.api.call<Build>('POST', `/v1/users/${user}/image-schedules`, { imageName: uniqueId('slow'), project, arch: 'darwin-arm64', changeNumber: 'CL-1' });
    expect(r.status, JSON.stringify(r.body)).to.equal(202);
    return r.body;
  };
  /** The RUN step's container of a build: it carries the build's label from the LABEL step before it. */
  const buildContainers = (buildId: string) => docker().listContainers({ all: true, filters: { label: [`a4c.build.id=${buildId}`] } });
  const inProgress = (id: string) =>
    waitFor(`build ${id} running its sleep step`, async () => {
      const b = await build(id);
      return b.status === 'IN_PROGRESS' && (await buildContainers(id)).some((c) => c.State === 'running') ? b : undefined;
    }, 60_000, 200);

  before(async () => {
    // Images for garbage collection, made before the agent that collects starts: two
    // A4C-built (labelled) ones in use, one unused, and an unused one A4C did not build.
    await commitImage(images.used, ['LABEL a4c.build.id=gc-test-used', 'CMD ["sleep", "3600"]']);
    await commitImage(images.stopped, ['LABEL a4c.build.id=gc-test-stopped']);
    await commitImage(images.old, ['LABEL a4c.build.id=gc-test-old']);
    await commitImage(images.foreign, ['LABEL purpose=not-a4c']);
    // A stopped container that is none of A4C's still holds its image.
    const c = await docker().createContainer({ Image: images.stopped, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
    extraContainers.push(c.id);

    t = await startTestControlPlane({ A4C_TIERS: TIERS, A4C_BUILD_MAX_SECONDS: String(MAX_BUILD_SECONDS), A4C_BUILD_LEASE_MS: '30000' });
    host = await spawnAgent({
      hostId,
      controlPlane: t.grpcAddress,
      env: HOST_ENV,
    });
    // Another arch, so workspaces never land on it; it only builds.
    builder = await spawnAgent({
      hostId: builderId,
      controlPlane: t.grpcAddress,
      env: { A4C_ARCH: 'darwin-arm64', A4C_BUILD_SLOTS: '1', A4C_BUILD_POLL_MS: '200', A4C_BUILD_HEARTBEAT_MS: '400', A4C_BUILD_SYNC_COMMAND: SYNC },
    });
    await t.api.waitHostConnected(hostId);
    await t.api.waitHostConnected(builderId);
    await t.api.call('PUT', `/v1/users/${user}/quota`, { maxConcurrentBuilds: 20 });
  });

  after(async () => {
    await host?.kill();
    await builder?.kill();
    await t?.stop();
    await removeHostContainers(hostId, builderId);
    for (const id of extraContainers) await docker().getContainer(id).remove({ force: true }).catch(() => undefined);
    for (const ref of Object.values(images)) await docker().getImage(ref).remove({ force: true }).catch(() => undefined);
  });

  it('a writable layer past 90 % of the tier\'s disk: warned once; past the limit: stopped with the reason', async () => {
    const ws = await t.api.createWorkspace(user, { projectName: 'fill', arch: 'linux-x64', tier: 'mini' });
    expect(ws.status, JSON.stringify(ws)).to.equal('RUNNING');
    const measured = await waitFor('the first disk measure', async () => (await t.api.workspace(ws.id)).disk ?? undefined, 20_000, 200);
    expect(measured.limitBytes).to.equal(LIMIT_BYTES);
    expect(measured.usedBytes).to.be.below(LIMIT_BYTES * 0.5);

    // 9.5 MiB of 10.24: past 90 %, under the limit.
    expect((await exec(ws.containerId as string, ['dd', 'if=/dev/zero', 'of=/fill-1', 'bs=512k', 'count=19'])).code).to.equal(0);
    const [warning] = await waitFor('the disk warning', async () => {
      const e = (await events(t.databaseUrl, 'workspace.disk_warning')).filter((x) => x.workspace_id === ws.id);
      return e.length ? e : undefined;
    }, 20_000, 200);
    expect(warning?.reason).to.match(/of its 10\.2 MiB disk \(9\d %\)/);
    const warned = await t.api.workspace(ws.id);
    expect(warned.status).to.equal('RUNNING');
    expect(warned.disk?.writableBytes).to.be.at.least(19 * 512 * 1024);

    // 2 MiB more: past the limit.
    expect((await exec(ws.containerId as string, ['dd', 'if=/dev/zero', 'of=/fill-2', 'bs=512k', 'count=4'])).code).to.equal(0);
    const stopped = await waitFor('the workspace stopped for its disk', async () => {
      const w = await t.api.workspace(ws.id);
      return w.status === 'STOPPED' ? w : undefined;
    }, 30_000, 200);
    expect(stopped.error).to.match(/^used 11\.\d MiB of 10\.2 MiB .*; delete files or ask for a bigger tier$/);
    expect(stopped.disk?.usedBytes).to.be.above(LIMIT_BYTES);
    const stopping = (await events(t.databaseUrl, 'workspace.stopping')).filter((e) => e.workspace_id === ws.id);
    expect(stopping).to.have.length(1);
    expect(stopping[0]?.reason).to.match(/^disk limit exceeded: used 11\.\d MiB of 10\.2 MiB/);
    expect(stopping[0]?.data).to.include({ diskLimitBytes: LIMIT_BYTES });
    const state = await docker().getContainer(ws.containerId as string).inspect();
    expect(state.State.Running, 'the agent stopped the container').to.equal(false);
    // Still past 90 % since the first warning: no second one for the same crossing.
    expect((await events(t.databaseUrl, 'workspace.disk_warning')).filter((x) => x.workspace_id === ws.id)).to.have.length(1);
  });

  it('cancelling a running build stops its docker build; a queued one never runs', async () => {
    const running = await schedule('cancel-me');
    await inProgress(running.id);
    const queued = await schedule('cancel-queued');
    expect((await build(queued.id)).status, 'one build slot: the second waits').to.equal('SCHEDULED');

    const q = await t.api.call<Build>('POST', `/v1/image-schedules/${queued.id}/cancel`);
    expect(q.status).to.equal(200);
    expect(q.body.status).to.equal('CANCELLED');
    expect(q.body.attempts, 'never claimed').to.equal(0);

    const r = await t.api.call<Build>('POST', `/v1/image-schedules/${running.id}/cancel`);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body.status).to.equal('CANCELLED');
    expect(r.body.error).to.match(/^cancelled by /);
    await waitFor('the build step container gone from the engine', async () => !(await buildContainers(running.id)).some((c) => c.State === 'running'), 30_000, 200);

    const again = await t.api.call<Build>('POST', `/v1/image-schedules/${running.id}/cancel`);
    expect(again.status, 'cancelling a cancelled build changes nothing').to.equal(200);
    expect(again.body.status).to.equal('CANCELLED');
    const cancelled = (await events(t.databaseUrl, 'build.cancelled')).map((e) => e.build_id);
    expect(cancelled).to.have.members([running.id, queued.id]);
    // The stopped build's own (failed) result names a claim that is no longer running: it changes nothing.
    await waitFor('the agent reports the stopped build', async () => (await events(t.databaseUrl, 'build.result_discarded')).some((e) => e.data.buildId === running.id), 30_000, 200);
    expect((await build(running.id)).status).to.equal('CANCELLED');
  });

  it('a build re-claimed by the host still running it carries on under the new claim', async () => {
    const b = await schedule('readopt');
    await inProgress(b.id);
    // Its lease lapses (as when its stream is down long enough): back to the queue.
    const c = new pg.Client({ connectionString: t.databaseUrl });
    await c.connect();
    await c.query(`UPDATE image_builds SET status = 'SCHEDULED', claim_id = NULL, retry_count = retry_count + 1 WHERE id = $1 AND status = 'IN_PROGRESS'`, [b.id]);
    await c.end();
    const done = await waitFor('the build completed', async () => {
      const x = await build(b.id);
      return x.status === 'COMPLETED' || x.status === 'FAILED' ? x : undefined;
    }, 60_000, 200);
    expect(done.status, done.error ?? '').to.equal('COMPLETED');
    expect(done.worker).to.equal(builderId);
    expect(done.attempts, 'claimed twice, run once').to.equal(2);
    const claims = (await events(t.databaseUrl, 'build.claimed')).filter((e) => e.build_id === b.id);
    expect(claims.map((e) => e.data.readopted ?? false)).to.deep.equal([false, true]);
    expect((await events(t.databaseUrl, 'build.result_discarded')).filter((e) => e.data.buildId === b.id)).to.deep.equal([]);

    const late = await t.api.call<{ error: string; suggestion: string }>('POST', `/v1/image-schedules/${b.id}/cancel`);
    expect(late.status, 'a finished build cannot be cancelled').to.equal(409);
    expect(late.body.error).to.equal('CONFLICT');
    expect(late.body.suggestion).to.be.a('string');
    await docker().getImage(done.imageTag).remove({ force: true }).catch(() => undefined);
  });

  it('a build past A4C_BUILD_MAX_SECONDS fails with the reason while its agent still heartbeats, and is stopped', async () => {
    const b = await schedule('too-long');
    await inProgress(b.id);
    const failed = await waitFor('the build failed for its duration', async () => {
      const x = await build(b.id);
      return x.status !== 'IN_PROGRESS' ? x : undefined;
    }, (MAX_BUILD_SECONDS + 30) * 1000, 250);
    expect(failed.status).to.equal('FAILED');
    expect(failed.error).to.match(new RegExp(`^the build ran longer than the maximum of ${MAX_BUILD_SECONDS} s \\(A4C_BUILD_MAX_SECONDS\\) on host ${builderId}`));
    expect(failed.retryCount, 'it was heartbeating: never requeued').to.equal(0);
    const ev = (await events(t.databaseUrl, 'build.failed')).filter((e) => e.build_id === b.id);
    expect(ev.map((e) => e.data.reason)).to.deep.equal(['max_duration']);
    await waitFor('the build step container gone from the engine', async () => !(await buildContainers(b.id)).some((c) => c.State === 'running'), 30_000, 200);
  });
  it('image garbage collection prunes an unused A4C-built image, never one in use or not A4C\'s', async () => {
    const ws = await t.api.createWorkspace(user, { projectName: 'gc', arch: 'linux-x64', tier: 'tiny', image: images.used });
    expect(ws.status, JSON.stringify(ws)).to.equal('RUNNING');
    // No build runs on this engine from here on (the collector takes A4C's images down to none).
    await builder.kill();
    await host.kill();
    host = await spawnAgent({ hostId, controlPlane: t.grpcAddress, stateDir: host.stateDir, env: { ...HOST_ENV, ...GC_ENV } });
    const pruned = await waitFor(`${images.old} pruned`, async () => {
      const e = (await events(t.databaseUrl, 'agent.image_pruned')).filter((x) => (x.data.refs as string[]).includes(images.old));
      return e.length ? e : undefined;
    }, 30_000, 200);
    expect(pruned[0]?.reason).to.match(/past the 1 % threshold/);
    expect(await imageExists(images.old)).to.equal(false);
    // Another collection after the one that pruned: what it kept, it keeps.
    const passes = (await events(t.databaseUrl, 'agent.image_pruned')).length;
    await new Promise((r) => setTimeout(r, 1500));
    for (const ref of [images.used, images.stopped, images.foreign, 'a4c-base:latest']) {
      expect(await imageExists(ref), `${ref} kept`).to.equal(true);
    }
    const all = await events(t.databaseUrl, 'agent.image_pruned');
    const names = all.flatMap((e) => e.data.refs as string[]);
    for (const ref of [images.used, images.stopped, images.foreign]) expect(names).not.to.include(ref);
    expect(all.length).to.be.at.least(passes);
    expect((await t.api.workspace(ws.id)).status).to.equal('RUNNING');
  });
});

describe('disk and images: image GC order and thresholds (in-process, real engine)', function () {
  this.timeout(60_000);
  const refs = { a: `${uniqueId('gco-a')}:1`, b: `${uniqueId('gco-b')}:1`, c: `${uniqueId('gco-c')}:1`, recent: `${uniqueId('gco-recent')}:1` };
  after(async () => {
    for (const ref of Object.values(refs)) await docker().getImage(ref).remove({ force: true }).catch(() => undefined);
  });

  it('prunes least recently used first, stops once below low, keeps what was used within the minimum age', async () => {
    for (const [k, ref] of Object.entries(refs)) await commitImage(ref, [`LABEL a4c.build.id=gc-order-${k}`]);
    const id = async (ref: string) => (await docker().getImage(ref).inspect()).Id;
    // Recorded uses long ago order the three (before anything else an earlier suite left
    // unused, which counts from its creation); the fourth was used seconds ago.
    const now = Date.now();
    const stateDir = tmpDir('gc-order');
    writeFileSync(
      path.join(stateDir, 'image-usage.json'),
      JSON.stringify({ [await id(refs.a)]: 3_000, [await id(refs.b)]: 1_000, [await id(refs.c)]: 2_000, [await id(refs.recent)]: now - 10_000 }),
    );
    // The disk: 90 % with all four images, 84 % once one is gone, 79 % once two are.
    const disk = [90, 84, 79, 70, 60];
    const gone = async () => (await Promise.all(Object.values(refs).map(imageExists))).filter((x) => !x).length;
    const sent: ImagesPruned[] = [];
    const gc = new ImageGc(
      { highPercent: 85, lowPercent: 80, intervalMs: 60_000, minAgeSeconds: 60, stateDir },
      {
        docker: docker(),
        diskPercent: async () => disk[await gone()] as number,
        desiredImages: () => [],
        send: (m) => {
          sent.push(m);
          return true;
        },
        now: () => now,
      },
      createLogger('gc-order', { A4C_LOG_LEVEL: 'silent' }),
    );
    const report = await gc.collect();
    expect(report?.images.map((i) => i.refs[0])).to.deep.equal([refs.b, refs.c]);
    expect(report?.diskPercentBefore).to.equal(90);
    expect(report?.diskPercentAfter).to.equal(79);
    expect(sent).to.have.length(1);
    expect(await imageExists(refs.b)).to.equal(false);
    expect(await imageExists(refs.c)).to.equal(false);
    expect(await imageExists(refs.a), 'below low before its turn').to.equal(true);
    expect(await imageExists(refs.recent), 'used within the minimum age').to.equal(true);
  });

  it('refuses a low threshold that is not below the high one, naming the variable', () => {
    expect(() => loadAgentConfig({ A4C_IMAGE_GC_HIGH_PERCENT: '80', A4C_IMAGE_GC_LOW_PERCENT: '80' })).to.throw(/A4C_IMAGE_GC_LOW_PERCENT.*below A4C_IMAGE_GC_HIGH_PERCENT/);
  });
});
