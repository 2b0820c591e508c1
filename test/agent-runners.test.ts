import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { createLogger } from '@a4c/common';
import { DockerRuntime, Reconciler, StateStore, type ContainerRuntime, type CreateSpec } from '@a4c/agent';
import { DesiredState, RunState, WorkspacePhase, WorkspaceSpec, type HostEvent, type WorkspaceStatus } from '@a4c/proto';
import { containersOfHost, docker, dockerHost, removeHostContainers, tmpDir, uniqueId } from './support/cluster.js';
import { waitFor } from './support/net.js';

/**
 * The real Docker runtime behind a wrapper that can hold one workspace's create until
 * released (an image slow to arrive, an engine slow to answer) and make the next creates
 * or starts of a workspace fail as an engine that is busy does.
 */
class SteeredRuntime {
  readonly gates = new Map<string, { entered: boolean; release: () => void; released: Promise<void> }>();
  readonly failCreates = new Map<string, number>();
  readonly failStarts = new Map<string, number>();
  readonly creates = new Map<string, number>();

  constructor(private readonly real: ContainerRuntime) {}

  hold(workspaceId: string): void {
    let release = () => undefined as void;
    const released = new Promise<void>((r) => (release = r));
    this.gates.set(workspaceId, { entered: false, release, released });
  }

  runtime(): ContainerRuntime {
    const real = this.real;
    const busy = () => Object.assign(new Error('(HTTP code 503) unexpected - engine busy, try again '), { statusCode: 503, json: { message: 'engine busy, try again' } });
    return {
      ping: () => real.ping(),
      info: () => real.info(),
      listOwned: () => real.listOwned(),
      inspect: (id) => real.inspect(id),
      inspectImage: (ref) => real.inspectImage(ref),
      pullAs: (from, as) => real.pullAs(from, as),
      listImages: () => real.listImages(),
      cpuUsage: (id) => real.cpuUsage(id),
      create: async (spec: CreateSpec) => {
        const id = spec.workspaceId;
        this.creates.set(id, (this.creates.get(id) ?? 0) + 1);
        const gate = this.gates.get(id);
        if (gate) {
          gate.entered = true;
          await gate.released;
        }
        const fails = this.failCreates.get(id) ?? 0;
        if (fails > 0) {
          this.failCreates.set(id, fails - 1);
          throw busy();
        }
        return real.create(spec);
      },
      start: async (containerId) => {
        const owner = (await real.listOwned()).find((c) => c.id === containerId)?.workspaceId ?? '';
        const fails = this.failStarts.get(owner) ?? 0;
        if (fails > 0) {
          this.failStarts.set(owner, fails - 1);
          throw busy();
        }
        return real.start(containerId);
      },
      stop: (id, t) => real.stop(id, t),
      remove: (id) => real.remove(id),
      watch: (onEvent, onEnd) => real.watch(onEvent, onEnd),
    };
  }
}

describe('agent runners: each workspace on its own runner (real Docker behind the runtime seam)', function () {
  this.timeout(120_000);
  const hostId = uniqueId('runners');
  const user = uniqueId('rita');
  const statuses: WorkspaceStatus[] = [];
  const events: HostEvent[] = [];
  const acks: number[] = [];
  let steered: SteeredRuntime;
  let reconciler: Reconciler;
  let revision = 0;

  const spec = (workspaceId: string, runState: RunState, specRevision: number) =>
    WorkspaceSpec.fromPartial({
      workspaceId,
      userId: user,
      image: 'a4c-base:latest',
      hostname: `ws-${workspaceId.slice(0, 8)}`,
      runState,
      resources: { memoryBytes: 64 * 1024 * 1024, cpus: 0.25, pidsLimit: 256 },
      volume: `a4c-home-${user}`,
      specRevision,
      attempt: 0,
    });
  const desire = (...specs: WorkspaceSpec[]) => reconciler.setDesired(DesiredState.fromPartial({ revision: ++revision, workspaces: specs }));
  const latest = (workspaceId: string) => statuses.filter((s) => s.workspaceId === workspaceId).at(-1);
  const reached = (workspaceId: string, phase: WorkspacePhase, atRevision = 0) =>
    waitFor(`${workspaceId} ${WorkspacePhase[phase]}`, () => {
      const s = latest(workspaceId);
      return s && s.phase === phase && s.revision >= atRevision ? s : undefined;
    }, 60_000, 20);
  const stateOf = async (workspaceId: string) => (await containersOfHost(hostId)).find((c) => c.Labels['a4c.workspace.id'] === workspaceId)?.State;

  before(async () => {
    steered = new SteeredRuntime(new DockerRuntime({ dockerHost: dockerHost(), hostId, networkMode: 'none', stopTimeoutSeconds: 1 }));
    reconciler = new Reconciler(
      steered.runtime(),
      new StateStore(tmpDir('runners')),
      {
        report: (s) => (statuses.push(s), true),
        converged: (r) => acks.push(r),
        event: (e) => events.push(e),
      },
      { hostId, parallelism: 4, stopTimeoutSeconds: 1, maxRestarts: 1, restartBackoffMs: 1000, transientAttempts: 4, transientBackoffMs: 50 },
      createLogger('test-runners', { A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' }),
    );
    await reconciler.load();
  });

  after(async () => {
    for (const g of steered?.gates.values() ?? []) g.release();
    await reconciler?.stop();
    await removeHostContainers(hostId);
    await docker().getVolume(`a4c-home-${user}`).remove().catch(() => undefined);
  });

  it("a create held up does not hold up another workspace's stop; the latest order wins once it is free", async () => {
    const a = randomUUID();
    const b = randomUUID();
    await desire(spec(b, RunState.RUN_STATE_RUNNING, 1));
    await reached(b, WorkspacePhase.WORKSPACE_PHASE_RUNNING);

    // A's create is held inside the engine call, as a large image pull or a slow engine would.
    steered.hold(a);
    await desire(spec(a, RunState.RUN_STATE_RUNNING, 2), spec(b, RunState.RUN_STATE_RUNNING, 1));
    await waitFor("A's create under way", () => steered.gates.get(a)?.entered, 30_000, 20);

    const stopAt = revision + 1;
    await desire(spec(a, RunState.RUN_STATE_RUNNING, 2), spec(b, RunState.RUN_STATE_STOPPED, stopAt));
    const stopped = await reached(b, WorkspacePhase.WORKSPACE_PHASE_STOPPED, stopAt);
    expect(await stateOf(b), 'B really stopped on the engine').to.equal('exited');
    expect(stopped.containerId).to.not.equal('');
    // ...while A's create is still held: B did not wait for it.
    expect(steered.gates.get(a)?.entered).to.equal(true);
    const aNow = latest(a);
    expect(aNow?.phase).to.equal(WorkspacePhase.WORKSPACE_PHASE_CREATING);
    expect(aNow?.step).to.equal('create');
    expect(await stateOf(a), 'no container for A yet').to.equal(undefined);
    const shown = reconciler.snapshot().workspaces.find((w) => w.workspaceId === a);
    expect(shown?.runner, '/status shows what its runner does').to.include({ busy: true, doing: 'create', queued: true });
    expect(acks.filter((r) => r >= stopAt), 'not acknowledged while A is being created').to.deep.equal([]);

    // The owner of A stops it meanwhile: once the engine call returns, A is not started.
    const lastAt = revision + 1;
    await desire(spec(a, RunState.RUN_STATE_STOPPED, lastAt), spec(b, RunState.RUN_STATE_STOPPED, stopAt));
    steered.gates.get(a)?.release();
    await reached(a, WorkspacePhase.WORKSPACE_PHASE_STOPPED, lastAt);
    expect(await stateOf(a), 'created, never started').to.equal('created');
    expect(steered.creates.get(a)).to.equal(1);
    await waitFor('the last revision acknowledged', () => acks.includes(lastAt), 30_000, 20);
    expect(statuses.filter((s) => s.workspaceId === a).some((s) => s.phase === WorkspacePhase.WORKSPACE_PHASE_RUNNING)).to.equal(false);
  });

  it('a create and a start that meet a busy engine are retried with backoff, and the workspace runs', async () => {
    const c = randomUUID();
    steered.failCreates.set(c, 2);
    steered.failStarts.set(c, 1);
    const at = revision + 1;
    await desire(spec(c, RunState.RUN_STATE_RUNNING, at));
    const running = await reached(c, WorkspacePhase.WORKSPACE_PHASE_RUNNING, at);
    expect(await stateOf(c)).to.equal('running');
    expect((await docker().getContainer(running.containerId).inspect()).State.Running).to.equal(true);
    expect(steered.creates.get(c), 'two failed creates, then one that worked').to.equal(3);
    const retried = events.filter((e) => e.workspaceId === c && e.kind === 'create_retried');
    expect(retried.map((e) => e.message.split(' ')[0])).to.deep.equal(['create', 'create', 'start']);
    expect(retried[0]?.message).to.match(/engine busy.*try 2 of 4 in 50 ms/);
    expect(retried[1]?.message).to.match(/try 3 of 4 in 100 ms/);
    expect(statuses.filter((s) => s.workspaceId === c).some((s) => s.phase === WorkspacePhase.WORKSPACE_PHASE_FAILED)).to.equal(false);
    expect(reconciler.metrics.transientRetries).to.be.greaterThanOrEqual(3);
    // The set no longer holds the first test's workspaces: their runners removed them.
    await waitFor('the workspaces outside the set removed', async () => (await containersOfHost(hostId)).every((x) => x.Labels['a4c.workspace.id'] === c), 30_000, 50);
    expect(events.filter((e) => e.kind === 'orphan_removed').length).to.equal(2);
  });

  it('a create that keeps meeting a busy engine is FAILED once the tries are used up', async () => {
    const d = randomUUID();
    steered.failCreates.set(d, 10);
    const at = revision + 1;
    await desire(spec(d, RunState.RUN_STATE_RUNNING, at));
    const failed = await reached(d, WorkspacePhase.WORKSPACE_PHASE_FAILED, at);
    expect(failed.step).to.equal('create');
    expect(failed.error).to.match(/could not create the container: .*engine busy/);
    expect(steered.creates.get(d), 'four tries in all').to.equal(4);
    expect(events.filter((e) => e.workspaceId === d && e.kind === 'create_retried').length).to.equal(3);
  });
});
