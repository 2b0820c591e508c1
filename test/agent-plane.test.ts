import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import pg from 'pg';
import { ControlPlaneAddresses, ControlPlaneSession } from '@a4c/agent';
import { createLogger } from '@a4c/common';
import { AgentServiceClient, AgentServiceService, type AgentMessage, type ControlMessage } from '@a4c/proto';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';
import { FakeClock } from './support/fake-clock.js';
import { waitFor } from './support/net.js';
import { STATS } from './support/host-stats.js';

/** A hand-driven agent stream: says exactly what a test tells it to, and records what it gets. */
class RawAgent {
  readonly client: AgentServiceClient;
  readonly call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>;
  readonly received: ControlMessage[] = [];
  sessionId = '';
  readonly ended: Promise<grpc.ServiceError>;

  constructor(address: string) {
    this.client = new AgentServiceClient(address, grpc.credentials.createInsecure());
    this.call = this.client.connect();
    this.call.on('data', (m: ControlMessage) => {
      this.received.push(m);
      if (m.payload?.$case === 'welcome') this.sessionId = m.payload.value.sessionId;
    });
    this.ended = new Promise((resolve) => this.call.on('error', (e: grpc.ServiceError) => resolve(e)));
  }

  async hello(hostId: string): Promise<string> {
    this.call.write({
      payload: {
        $case: 'hello',
        value: { hostId, arch: 'linux-x64', agentVersion: 't', images: [], workspaces: [], lastAppliedRevision: 0, capacity: { memoryBytes: 1e10, cpus: 4, diskBytes: 1e11 }, stats: STATS, previousSessionId: '' },
      },
    });
    return waitFor(`Welcome for ${hostId}`, () => this.sessionId || undefined, 15_000);
  }

  event(message: string, sessionId = this.sessionId): void {
    this.call.write({
      sessionId,
      payload: { $case: 'event', value: { kind: 'orphan_removed', workspaceId: '', containerId: '', message, exitCode: 0, oomKilled: false, atUnixMs: Date.now() } },
    });
  }

  ack(revision: number): void {
    this.call.write({ sessionId: this.sessionId, payload: { $case: 'ack', value: { revision } } });
  }

  heartbeat(): void {
    this.call.write({ sessionId: this.sessionId, payload: { $case: 'heartbeat', value: { stats: STATS, imagesChanged: false, images: [], workspaceCpu: [] } } });
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

describe('agent plane: every agent write bound to the live session, deadlines, bounded inbox', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  const raws: RawAgent[] = [];
  const raw = () => {
    const r = new RawAgent(t.grpcAddress);
    raws.push(r);
    return r;
  };
  const events = async (hostId: string, reason: string) =>
    Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE host_id = $1 AND reason = $2', [hostId, reason])).rows[0]?.n);
  /** The host's live session goes silent in the database's eyes, so a new Hello may replace it. */
  const staleSession = (hostId: string) => db.query("UPDATE host_status SET last_heartbeat_at = now() - interval '1 hour' WHERE host_id = $1", [hostId]);

  before(async () => {
    t = await startTestControlPlane({ A4C_AGENT_HELLO_TIMEOUT_MS: '500', A4C_AGENT_INBOX_DEPTH: '4', A4C_HEARTBEAT_BATCH_MS: '100' });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
  });
  after(async () => {
    for (const r of raws) r.close();
    await db?.end();
    await t?.stop();
  });

  it('a stream superseded by a newer session for its host writes nothing, and is told why', async () => {
    const hostId = uniqueId('superseded');
    const first = raw();
    const firstSession = await first.hello(hostId);
    await staleSession(hostId);
    const second = raw();
    const secondSession = await second.hello(hostId);
    expect(secondSession).to.not.equal(firstSession);

    // The first stream still names its own session, as an honest but late agent would.
    first.event('written by the superseded stream');
    const err = await first.ended;
    expect(err.code).to.equal(grpc.status.ABORTED);
    expect(err.details).to.match(/superseded/);
    expect(await events(hostId, 'written by the superseded stream')).to.equal(0);

    // The live session writes as before.
    second.event('written by the live stream');
    await waitFor('the live session\'s event', async () => (await events(hostId, 'written by the live stream')) === 1 || undefined, 10_000);
    const { rows } = await db.query<{ session_id: string; connected: boolean }>('SELECT session_id, connected FROM host_status WHERE host_id = $1', [hostId]);
    expect(rows[0]).to.deep.equal({ session_id: secondSession, connected: true });
  });

  it('a superseded stream\'s acks and heartbeats are refused while the live session\'s apply', async () => {
    const hostId = uniqueId('superseded-ack');
    const first = raw();
    await first.hello(hostId);
    await staleSession(hostId);
    const second = raw();
    await second.hello(hostId);
    const before = (await db.query<{ applied_revision: number }>('SELECT applied_revision FROM hosts WHERE id = $1', [hostId])).rows[0];
    // In the same heartbeat batch: the live one lands, the superseded one is refused.
    await staleSession(hostId);
    first.heartbeat();
    second.heartbeat();
    const err = await first.ended;
    expect(err.code).to.equal(grpc.status.ABORTED);
    await waitFor('the live heartbeat', async () => {
      const { rows } = await db.query<{ fresh: boolean }>("SELECT last_heartbeat_at > now() - interval '1 minute' AS fresh FROM host_status WHERE host_id = $1", [hostId]);
      return rows[0]?.fresh || undefined;
    }, 10_000);

    const third = raw();
    await staleSession(hostId);
    await third.hello(hostId);
    second.ack(0);
    expect((await second.ended).code).to.equal(grpc.status.ABORTED);
    const after = (await db.query<{ applied_revision: number }>('SELECT applied_revision FROM hosts WHERE id = $1', [hostId])).rows[0];
    expect(after).to.deep.equal(before);
  });

  it('an ack for a revision above the host\'s current one is refused and changes nothing', async () => {
    const hostId = uniqueId('forged-ack');
    const agent = raw();
    await agent.hello(hostId);
    const { rows } = await db.query<{ revision: number; applied_revision: number }>('SELECT revision, applied_revision FROM hosts WHERE id = $1', [hostId]);
    const host = rows[0] as { revision: number; applied_revision: number };
    agent.ack(host.revision + 1000);
    const err = await agent.ended;
    expect(err.code).to.equal(grpc.status.INVALID_ARGUMENT);
    expect(err.details).to.match(/refused: its current revision is/);
    const now = (await db.query('SELECT revision, applied_revision FROM hosts WHERE id = $1', [hostId])).rows[0];
    expect(now).to.deep.equal(host);
  });

  it('a message naming another session than its stream\'s is refused', async () => {
    const hostId = uniqueId('other-session');
    const agent = raw();
    await agent.hello(hostId);
    agent.event('names another session', '00000000-0000-4000-8000-000000000000');
    const err = await agent.ended;
    expect(err.code).to.equal(grpc.status.FAILED_PRECONDITION);
    expect(await events(hostId, 'names another session')).to.equal(0);
  });

  it('a stream that never says Hello is refused after A4C_AGENT_HELLO_TIMEOUT_MS', async () => {
    const silent = raw();
    const err = await silent.ended;
    expect(err.code).to.equal(grpc.status.DEADLINE_EXCEEDED);
    expect(err.details).to.match(/no Hello within 500 ms/);
  });

  it('a burst far past the inbox depth is applied whole and in order, and the host stays live', async () => {
    const hostId = uniqueId('burst');
    const agent = raw();
    await agent.hello(hostId);
    const n = 300;
    for (let i = 0; i < n; i++) agent.event(`burst ${i}`);
    agent.heartbeat();
    const { rows } = await waitFor(
      'every burst event',
      async () => {
        const r = await db.query<{ reason: string }>("SELECT reason FROM events WHERE host_id = $1 AND reason LIKE 'burst %' ORDER BY id", [hostId]);
        return r.rows.length === n ? r : undefined;
      },
      60_000,
    );
    expect(rows.map((r) => r.reason)).to.deep.equal(Array.from({ length: n }, (_, i) => `burst ${i}`));
    const live = await db.query<{ session_id: string; connected: boolean }>('SELECT session_id, connected FROM host_status WHERE host_id = $1', [hostId]);
    expect(live.rows[0]).to.deep.equal({ session_id: agent.sessionId, connected: true });
  });
});

describe('agent plane: the agent gives up a stream that never sends its Welcome', function () {
  this.timeout(30_000);

  it('opens a new stream once the Welcome deadline passes on its clock', async () => {
    // A control plane that takes the stream and the Hello, and never answers.
    const hellos: string[] = [];
    const server = new grpc.Server();
    server.addService(AgentServiceService, {
      connect: (call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) => {
        call.on('data', (m: AgentMessage) => m.payload?.$case === 'hello' && hellos.push(m.payload.value.hostId));
        call.on('error', () => undefined);
      },
      tunnel: () => undefined,
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const clock = new FakeClock();
    const session = new ControlPlaneSession(
      new ControlPlaneAddresses([{ host: '127.0.0.1', port }]),
      async () => grpc.credentials.createInsecure(),
      {
        hello: async () => ({ hostId: 'never-welcomed', arch: 'linux-x64', agentVersion: 't', images: [], workspaces: [], lastAppliedRevision: 0, capacity: undefined, stats: undefined }),
        heartbeat: async () => ({ stats: undefined, images: undefined }),
        onDesiredState: () => undefined,
        onBuildAssignment: () => undefined,
        onBuildCancel: () => undefined,
        onOpenTunnel: () => undefined,
        onNewStream: () => undefined,
      },
      createLogger('test-agent-session', { A4C_LOG_LEVEL: 'silent' }),
      { welcomeTimeoutMs: 5_000, clock },
    );
    try {
      session.start();
      await waitFor('the first Hello', () => hellos.length === 1 || undefined, 10_000);
      await clock.advance(4_999);
      expect(session.state.reconnects).to.equal(0);
      await clock.advance(1);
      expect(session.state.reconnects).to.equal(1);
      expect(session.state.lastError).to.equal('no Welcome within 5000 ms of the Hello');
      // The retry (on its own backoff) says Hello again on a new stream.
      await waitFor('the second Hello', () => hellos.length === 2 || undefined, 10_000);
    } finally {
      session.stop();
      server.forceShutdown();
    }
  });
});
