import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import pg from 'pg';
import { DesiredChain } from '@a4c/agent';
import { AgentServiceClient, type AgentMessage, type ControlMessage, type DesiredState } from '@a4c/proto';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { STATS } from './support/host-stats.js';

/**
 * An agent stream over real gRPC that keeps its desired set with the agent's own
 * DesiredChain (agent/src/session/desired-chain.ts) and asks for a complete set on a
 * gap as the agent's session does; `dropNext` loses the next delta before the chain sees it.
 */
class ChainAgent {
  private readonly client: AgentServiceClient;
  private readonly call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>;
  private readonly beat: NodeJS.Timeout;
  readonly chain = new DesiredChain();
  readonly received: DesiredState[] = [];
  readonly requests: number[] = [];
  sessionId = '';
  hostId = '';
  dropNext = false;

  constructor(
    address: string,
    /** Whether the Hello announces deltas (an older agent's does not). */
    private readonly incremental: boolean,
  ) {
    this.client = new AgentServiceClient(address, grpc.credentials.createInsecure());
    this.call = this.client.connect();
    this.call.on('error', () => undefined);
    this.call.on('data', (m: ControlMessage) => {
      const p = m.payload;
      if (p?.$case === 'welcome') this.sessionId = p.value.sessionId;
      if (p?.$case !== 'desiredState') return;
      this.received.push(p.value);
      if (this.dropNext && p.value.incremental) {
        this.dropNext = false;
        return;
      }
      const step = this.chain.receive(p.value);
      if (step.kind === 'gap' && step.request) {
        this.requests.push(step.request.haveRevision);
        this.call.write({ sessionId: this.sessionId, payload: { $case: 'desiredStateRequest', value: step.request } });
      }
    });
    // Live in placement's eyes (the test control plane's liveness window is 1.5 s).
    this.beat = setInterval(() => {
      if (this.sessionId) this.call.write({ sessionId: this.sessionId, payload: { $case: 'heartbeat', value: { stats: STATS, imagesChanged: false, images: [], workspaceCpu: [] } } });
    }, 300);
  }

  async hello(hostId: string): Promise<void> {
    this.hostId = hostId;
    this.call.write({
      payload: {
        $case: 'hello',
        value: {
          hostId,
          arch: 'linux-x64',
          agentVersion: 't',
          previousSessionId: '',
          images: [{ ref: 'a4c-base:latest', imageId: 'sha256:t', project: '', arch: '', changeNumber: '', createdUnix: 0 }],
          workspaces: [],
          lastAppliedRevision: 0,
          capacity: { memoryBytes: 1e11, cpus: 64, diskBytes: 1e13 },
          stats: STATS,
          ...(this.incremental ? { incrementalDesiredState: true } : {}),
        },
      },
    });
    await waitFor(`the Welcome and first desired state of ${hostId}`, () => this.received.length > 0 || undefined, 15_000);
  }

  /** The ids of the whole set the chain holds, sorted. */
  heldIds(): string[] {
    return (this.chain.current?.workspaces ?? []).map((w) => w.workspaceId).sort();
  }

  /** Waits until a desired state at `revision` or later was received. */
  async until(revision: number): Promise<DesiredState> {
    return waitFor(`a desired state at revision ${revision}`, () => this.received.find((d) => d.revision >= revision), 15_000);
  }

  close(): void {
    clearInterval(this.beat);
    this.call.cancel();
    this.client.close();
  }
}

describe('incremental desired state: complete first, then deltas chained by revision (real PostgreSQL, real gRPC)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  const agents: ChainAgent[] = [];

  const connect = async (hostId: string, incremental = true): Promise<ChainAgent> => {
    const a = new ChainAgent(t.grpcAddress, incremental);
    agents.push(a);
    await a.hello(hostId);
    return a;
  };
  const revision = async (hostId: string) => (await db.query<{ revision: number }>('SELECT revision FROM hosts WHERE id = $1', [hostId])).rows[0]?.revision ?? -1;
  const desiredIds = async (hostId: string) =>
    (
      await db.query<{ id: string }>(
        `SELECT id FROM workspaces WHERE host_id = $1 AND status IN ('CREATING', 'RUNNING', 'STOPPING', 'STOPPED', 'STARTING') ORDER BY id`,
        [hostId],
      )
    ).rows.map((r) => r.id);
  const create = async (user: string, name: string) => {
    const r = await t.api.call<{ id: string; hostId: string }>('POST', `/v1/users/${user}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name });
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    return r.body;
  };
  /** The set the agent's chain holds after everything it was sent so far (at revision `rev` or later). */
  const held = async (a: ChainAgent, rev: number) => {
    await waitFor(`the chain at revision ${rev}`, () => (a.chain.revision >= rev ? true : undefined), 15_000);
    return a;
  };

  before(async () => {
    t = await startTestControlPlane({ A4C_DESIRED_COMPLETE_EVERY: '0' });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
  });
  afterEach(async () => {
    // One host at a time takes the workspaces: the previous test's hosts go away, and
    // are seen gone before the next test creates (or placement may still pick one).
    const gone = agents.splice(0);
    for (const a of gone) a.close();
    await waitFor('the previous test\'s hosts disconnected', async () => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM host_status WHERE host_id = ANY($1) AND connected', [gone.map((a) => a.hostId)]);
      return rows[0]?.n === 0 || undefined;
    }, 15_000);
  });
  after(async () => {
    await db?.end();
    await t?.stop();
  });

  it('sends the complete set first, then one delta per change holding only what changed; a removed workspace arrives as a removal', async () => {
    const hostId = uniqueId('delta');
    const a = await connect(hostId);
    expect(a.received[0]).to.include({ incremental: false });
    const first = await create('u-delta', 'one');
    expect(first.hostId).to.equal(hostId);
    const r1 = await revision(hostId);
    const d1 = await a.until(r1);
    expect(d1).to.include({ incremental: true, appliesTo: a.received[0]?.revision, revision: r1 });
    expect(d1.workspaces.map((w) => w.workspaceId)).to.deep.equal([first.id]);

    const second = await create('u-delta', 'two');
    const r2 = await revision(hostId);
    const d2 = await a.until(r2);
    // Only the new workspace: not the host's whole set again.
    expect(d2).to.include({ incremental: true, appliesTo: r1 });
    expect(d2.workspaces.map((w) => w.workspaceId)).to.deep.equal([second.id]);
    expect(d2.removed).to.deep.equal([]);

    expect((await t.api.call('DELETE', `/v1/workspaces/${first.id}`)).status).to.equal(202);
    const r3 = await revision(hostId);
    const d3 = await a.until(r3);
    expect(d3).to.include({ incremental: true, appliesTo: r2 });
    expect(d3.removed).to.deep.equal([first.id]);
    expect(d3.workspaces).to.deep.equal([]);

    // Level-triggered: what the chain holds is the whole set, as the database has it.
    await held(a, r3);
    expect(a.heldIds()).to.deep.equal(await desiredIds(hostId));
    expect(a.requests).to.deep.equal([]);
  });

  it('after a lost delta the agent asks for the complete set, gets it (even at the revision last sent), and converges', async () => {
    const hostId = uniqueId('gap');
    const a = await connect(hostId);
    const w1 = await create('u-gap', 'one');
    await held(a, await revision(hostId));
    a.dropNext = true;
    const w2 = await create('u-gap', 'two');
    const lost = await revision(hostId);
    await a.until(lost);
    expect(a.chain.revision, 'the dropped delta was not applied').to.be.lessThan(lost);
    const w3 = await create('u-gap', 'three');
    const r = await revision(hostId);
    // The delta to r does not chain: a request, then a complete set at r.
    const complete = await waitFor('a complete set after the request', () => a.received.find((d) => !d.incremental && d.revision >= r), 15_000);
    expect(a.requests).to.have.length(1);
    expect(complete.workspaces.map((w) => w.workspaceId).sort()).to.deep.equal([w1.id, w2.id, w3.id].sort());
    await held(a, r);
    expect(a.heldIds()).to.deep.equal(await desiredIds(hostId));

    // Deltas chain again after it.
    const w4 = await create('u-gap', 'four');
    const r4 = await revision(hostId);
    const d4 = await a.until(r4);
    expect(d4).to.include({ incremental: true, appliesTo: r });
    expect(d4.workspaces.map((w) => w.workspaceId)).to.deep.equal([w4.id]);
  });

  it('a reconnect starts with the complete set', async () => {
    const hostId = uniqueId('again');
    const a = await connect(hostId);
    const w1 = await create('u-again', 'one');
    const w2 = await create('u-again', 'two');
    expect([w1.hostId, w2.hostId]).to.deep.equal([hostId, hostId]);
    await held(a, await revision(hostId));
    a.close();
    await waitFor('the disconnect recorded', async () => {
      const { rows } = await db.query<{ connected: boolean }>('SELECT connected FROM host_status WHERE host_id = $1', [hostId]);
      return rows[0]?.connected === false || undefined;
    }, 15_000);
    const b = await connect(hostId);
    const first = b.received[0] as DesiredState;
    expect(first.incremental).to.equal(false);
    expect(first.revision).to.equal(await revision(hostId));
    expect(first.workspaces.map((w) => w.workspaceId).sort()).to.deep.equal([w1.id, w2.id].sort());
  });

  it('an agent that did not announce deltas in its Hello gets only complete sets', async () => {
    const hostId = uniqueId('old');
    const a = await connect(hostId, false);
    const w1 = await create('u-old', 'one');
    const w2 = await create('u-old', 'two');
    const r = await revision(hostId);
    const last = await a.until(r);
    expect(a.received.every((d) => !d.incremental)).to.equal(true);
    expect(last.workspaces.map((w) => w.workspaceId).sort()).to.deep.equal([w1.id, w2.id].sort());
  });

  it('a workspace that leaves its host by changing host (a move, a retry elsewhere) makes the next desired state complete', async () => {
    const hostId = uniqueId('from');
    const a = await connect(hostId);
    const w1 = await create('u-from', 'one');
    const w2 = await create('u-from', 'two');
    const before = await revision(hostId);
    await held(a, before);
    // What a move's switch does to the source host (moves/mover.ts), reduced to the rows: the
    // workspace changes host, and the source's revision moves on.
    const other = uniqueId('to');
    const c = await connect(other);
    await db.query(`UPDATE workspaces SET host_id = $2, status = 'STOPPED' WHERE id = $1`, [w1.id, other]);
    await db.query('UPDATE hosts SET revision = revision + 1 WHERE id = $1', [hostId]);
    await db.query("SELECT pg_notify('a4c_host', $1)", [hostId]);
    const r = before + 1;
    const next = await a.until(r);
    expect(next.incremental, 'a delta cannot name a workspace that is no longer on the host').to.equal(false);
    expect(next.workspaces.map((w) => w.workspaceId)).to.deep.equal([w2.id]);
    c.close();
  });
});
