import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import pg from 'pg';
import { createLogger } from '@a4c/common';
import { sweepLostHosts } from '@a4c/control-plane/lost-hosts';
import { HelloBatcher } from '@a4c/control-plane/hello-batcher';
import { closeHostSessions, recordHeartbeats } from '@a4c/control-plane/host-sessions';
import { openHostSessions, type ClaimPolicy, type HelloClaim } from '@a4c/control-plane/session-claims';
import { AgentServiceClient, type AgentMessage, type ControlMessage } from '@a4c/proto';
import { HEARTBEAT_MS, startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { STATS } from './support/host-stats.js';

const GiB = 1024 ** 3;
/** The control plane's own window: A4C_HEARTBEAT_MS (test default) × the default miss limit of 3. */
const CONFIGURED_WINDOW_S = (HEARTBEAT_MS * 3) / 1000;

/** One agent stream driven by hand: a Hello naming (or not) a previous session, and what comes back. */
class Stream {
  readonly client: AgentServiceClient;
  readonly call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>;
  welcome: { sessionId: string; heartbeatIntervalMs: number } | undefined;
  readonly ended: Promise<grpc.ServiceError>;

  constructor(address: string) {
    this.client = new AgentServiceClient(address, grpc.credentials.createInsecure());
    this.call = this.client.connect();
    this.call.on('data', (m: ControlMessage) => {
      if (m.payload?.$case === 'welcome') this.welcome = m.payload.value;
    });
    this.ended = new Promise((resolve) => this.call.on('error', (e: grpc.ServiceError) => resolve(e)));
  }

  hello(hostId: string, previousSessionId = ''): void {
    this.call.write({
      payload: {
        $case: 'hello',
        value: {
          hostId,
          arch: 'linux-x64',
          agentVersion: 't',
          images: [],
          workspaces: [],
          lastAppliedRevision: 0,
          capacity: { memoryBytes: 10 * GiB, cpus: 4, diskBytes: 100 * GiB },
          stats: STATS,
          previousSessionId,
        },
      },
    });
  }

  async welcomed(): Promise<string> {
    return waitFor('a Welcome', () => this.welcome?.sessionId, 15_000);
  }

  event(message: string): void {
    this.call.write({
      sessionId: this.welcome?.sessionId ?? '',
      payload: { $case: 'event', value: { kind: 'orphan_removed', workspaceId: '', containerId: '', message, exitCode: 0, oomKilled: false, atUnixMs: Date.now() } },
    });
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

describe('agent sessions at fleet scale: batched Hellos, heartbeat periods that grow with the fleet, takeover by the previous session id (real PostgreSQL)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  const streams: Stream[] = [];
  const stream = () => {
    const s = new Stream(t.grpcAddress);
    streams.push(s);
    return s;
  };
  const claim = (hostId: string, over: Partial<HelloClaim> = {}): HelloClaim => ({
    hostId,
    arch: 'linux-x64',
    agentVersion: 't',
    memoryBytes: 10 * GiB,
    cpus: 4,
    diskBytes: 100 * GiB,
    stats: { json: JSON.stringify(STATS), diskPercent: 10, memoryPercent: 10, dockerReady: true },
    images: [],
    containers: 0,
    lastAppliedRevision: 0,
    sessionId: uniqueId('s'),
    previousSessionId: '',
    serial: null,
    ...over,
  });
  const session = async (hostId: string) =>
    (await db.query<{ session_id: string; connected: boolean; heartbeat_interval_ms: number; live_within_seconds: number }>(
      'SELECT session_id, connected, heartbeat_interval_ms, live_within_seconds FROM host_status WHERE host_id = $1',
      [hostId],
    )).rows[0];
  const connectedEvents = async (hostId: string) =>
    (await db.query<{ xid: string; reason: string; data: Record<string, unknown> }>(
      "SELECT xid::text AS xid, reason, data FROM events WHERE host_id = $1 AND kind = 'host.connected' ORDER BY id",
      [hostId],
    )).rows;

  before(async () => {
    // A fleet rate of 1 heartbeat per second: every connected host lengthens the period by 1 s.
    t = await startTestControlPlane({ A4C_MAX_HEARTBEATS_PER_SECOND: '1' });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 4 });
  });
  after(async () => {
    for (const s of streams) s.close();
    await db?.end();
    await t?.stop();
  });

  it('records a batch of Hellos in one transaction, judging each alone: a live host and a bad certificate refuse only their own Hello', async () => {
    const held = uniqueId('held');
    const policy: ClaimPolicy = { liveWithinSeconds: CONFIGURED_WINDOW_S, heartbeatMissLimit: 3, periodMs: (n) => Math.max(HEARTBEAT_MS, n * 1000) };
    const [first] = await openHostSessions(db, [claim(held)], policy);
    expect(first?.ok).to.equal(true);
    const before = await session(held);

    const [a, b] = [uniqueId('batch-a'), uniqueId('batch-b')];
    const badCert = uniqueId('bad-cert');
    const results = await openHostSessions(db, [claim(a), claim(held), claim(badCert, { serial: 'not-a-serial-we-issued' }), claim(b)], policy);
    expect(results.map((r) => (r.ok ? 'ok' : r.refusal))).to.deep.equal(['ok', 'live', 'certificate', 'ok']);
    expect(results[1]).to.include({ ok: false });
    expect(!results[1]!.ok && results[1]!.message).to.match(/already has a live agent session/);
    expect(!results[2]!.ok && results[2]!.message).to.match(/was not issued by this control plane's enrollment/);
    // The refused host keeps its session; the certificate's host was never recorded.
    expect((await session(held))?.session_id).to.equal(before?.session_id);
    expect((await db.query('SELECT 1 FROM hosts WHERE id = $1', [badCert])).rowCount).to.equal(0);
    // Both accepted Hellos committed together: their events carry one transaction id.
    const [ea, eb] = [await connectedEvents(a), await connectedEvents(b)];
    expect(ea).to.have.length(1);
    expect(eb).to.have.length(1);
    expect(ea[0]!.xid).to.equal(eb[0]!.xid);
    // The period grew with the fleet, and each session keeps its own liveness window.
    const connected = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM host_status WHERE connected')).rows[0]?.n);
    const ok = results[0]!;
    expect(ok.ok && ok.heartbeatIntervalMs).to.equal(Math.max(HEARTBEAT_MS, connected * 1000));
    expect(await session(a)).to.deep.include({ connected: true, heartbeat_interval_ms: connected * 1000, live_within_seconds: connected * 3 });
  });

  it('never puts two Hellos of one host in one batch: the later one meets the session the earlier one opened; Hellos still waiting count for the period', async () => {
    const policy: ClaimPolicy = { liveWithinSeconds: CONFIGURED_WINDOW_S, heartbeatMissLimit: 3, periodMs: (n) => n * 1000 };
    const connected = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM host_status WHERE connected')).rows[0]?.n);
    const batcher = new HelloBatcher(db, policy, 1000, createLogger('test', { A4C_LOG_LEVEL: 'silent' }));
    const hostId = uniqueId('twice');
    // The first Hello goes alone (nothing waits yet); the other three gather while it commits.
    const [other, first, second, third] = await Promise.all([
      batcher.submit(claim(uniqueId('alone'))),
      batcher.submit(claim(hostId)),
      batcher.submit(claim(hostId)),
      batcher.submit(claim(uniqueId('beside'))),
    ]);
    expect([other, first, second, third].map((r) => (r.ok ? 'ok' : r.refusal))).to.deep.equal(['ok', 'ok', 'live', 'ok']);
    expect(batcher.counts).to.deep.equal({ batches: 3, hellos: 4 });
    // The first batch saw nothing waiting; the second counted its own two, the first's
    // host, and the Hello that waited for the third batch.
    expect(other.ok && other.heartbeatIntervalMs).to.equal((connected + 1) * 1000);
    expect(first.ok && first.heartbeatIntervalMs).to.equal((connected + 4) * 1000);
    expect((await connectedEvents(hostId)).length).to.equal(1);
    const refused = await openHostSessions(db, [claim(hostId), claim(hostId)], policy).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(refused?.message).to.match(/two Hellos for host/);
  });

  it('judges a host by its own period everywhere: host view, placement and the lost-host sweep keep it live past the configured window', async () => {
    const long = uniqueId('long-period');
    const short = uniqueId('short-period');
    const image = `${uniqueId('img')}:1`;
    const img = { ref: image, imageId: 'sha256:t', project: '', arch: '', changeNumber: '', createdUnix: 0 };
    await openHostSessions(db, [claim(long, { images: [img] })], { liveWithinSeconds: CONFIGURED_WINDOW_S, heartbeatMissLimit: 3, periodMs: () => 60_000 });
    await openHostSessions(db, [claim(short, { images: [img] })], { liveWithinSeconds: CONFIGURED_WINDOW_S, heartbeatMissLimit: 3, periodMs: () => HEARTBEAT_MS });
    // Both last heartbeated 20 s ago: far past the configured window, well within the long period's.
    await db.query("UPDATE host_status SET last_heartbeat_at = now() - interval '20 seconds' WHERE host_id = ANY($1)", [[long, short]]);

    expect(await t.api.host(long)).to.include({ connected: true, status: 'healthy', heartbeatIntervalMs: 60_000 });
    expect((await t.api.host(short))?.connected).to.equal(false);

    const log = createLogger('test', { A4C_LOG_LEVEL: 'silent' });
    await sweepLostHosts({ db, clock: { now: () => new Date() }, hostChanged: () => undefined, log, lostAfterSeconds: 600, liveWithinSeconds: CONFIGURED_WINDOW_S });
    const unhealthy = async (h: string) => (await db.query<{ u: boolean }>('SELECT unhealthy_since IS NOT NULL AS u FROM host_status WHERE host_id = $1', [h])).rows[0]?.u;
    expect(await unhealthy(long)).to.equal(false);
    expect(await unhealthy(short)).to.equal(true);

    // Placement: only the long-period host holds the image, and it is live, so it takes the workspace.
    const r = await t.api.call<{ hostId: string }>('POST', `/v1/users/${uniqueId('u')}/workspaces?wait=0`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', image });
    expect(r.status, JSON.stringify(r.body)).to.be.oneOf([201, 202]);
    expect(r.body.hostId).to.equal(long);

    // A Hello of another agent for the long-period host is refused: its session is live.
    const other = stream();
    other.hello(long);
    expect((await other.ended).code).to.equal(grpc.status.ALREADY_EXISTS);
  });

  it("an agent naming its previous session takes its host over at once, though that session still looks alive; the old stream is closed and writes nothing", async () => {
    const hostId = uniqueId('takeover');
    const old = stream();
    old.hello(hostId);
    const oldSession = await old.welcomed();
    // The Welcome's period is connected hosts / A4C_MAX_HEARTBEATS_PER_SECOND (1 here),
    // longer than A4C_HEARTBEAT_MS, and it is the one stored for the session.
    const connected = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM host_status WHERE connected')).rows[0]?.n);
    expect(connected * 1000).to.be.greaterThan(HEARTBEAT_MS);
    expect(old.welcome?.heartbeatIntervalMs).to.equal(connected * 1000);
    expect(await session(hostId)).to.deep.include({ heartbeat_interval_ms: connected * 1000, live_within_seconds: connected * 3 });

    const back = stream();
    back.hello(hostId, oldSession);
    const newSession = await back.welcomed();
    expect(newSession).to.not.equal(oldSession);
    expect(await session(hostId)).to.deep.include({ session_id: newSession, connected: true });
    const err = await old.ended;
    expect(err.code).to.equal(grpc.status.ABORTED);
    expect(err.details).to.match(/superseded/);
    old.event('written by the replaced stream');
    back.event('written by the new stream');
    await waitFor('the new session\'s event', async () => (await db.query("SELECT 1 FROM events WHERE host_id = $1 AND reason = 'written by the new stream'", [hostId])).rowCount || undefined, 10_000);
    expect((await db.query("SELECT 1 FROM events WHERE host_id = $1 AND reason = 'written by the replaced stream'", [hostId])).rowCount).to.equal(0);
    const events = await connectedEvents(hostId);
    expect(events.at(-1)?.data).to.deep.include({ sessionId: newSession, supersededSessionId: oldSession, takeover: true });
  });

  it("a heartbeat applied after its session's end was recorded is refused and leaves the host disconnected (a beat sent just before the stream closed)", async () => {
    const hostId = uniqueId('late-beat');
    const policy: ClaimPolicy = { liveWithinSeconds: CONFIGURED_WINDOW_S, heartbeatMissLimit: 3, periodMs: () => HEARTBEAT_MS };
    const c = claim(hostId);
    const [opened] = await openHostSessions(db, [c], policy);
    expect(opened?.ok).to.equal(true);
    await closeHostSessions(db, [{ hostId, sessionId: c.sessionId }]);
    const applied = await recordHeartbeats(db, [{ hostId, sessionId: c.sessionId, stats: c.stats, serial: null, images: undefined }]);
    expect(applied.has(c.sessionId)).to.equal(false);
    expect(await session(hostId)).to.deep.include({ session_id: c.sessionId, connected: false });
  });

  it('sessions that end together are recorded together: each host disconnected with its own event, in fewer transactions than sessions; a host a newer session holds stays connected', async () => {
    const hosts = Array.from({ length: 40 }, (_, i) => uniqueId(`bye-${i}`));
    const opened = hosts.map((h) => {
      const s = stream();
      s.hello(h);
      return s;
    });
    const ids = await Promise.all(opened.map((s) => s.welcomed()));
    // The first host's session is taken over by a newer one before the old stream ends.
    const newer = stream();
    newer.hello(hosts[0] as string, ids[0]);
    const newerId = await newer.welcomed();
    for (const s of opened) s.close();
    await waitFor('every other host disconnected', async () => {
      const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM host_status WHERE host_id = ANY($1) AND NOT connected', [hosts.slice(1)]);
      return rows[0]?.n === hosts.length - 1 || undefined;
    }, 20_000);
    const { rows } = await db.query<{ host_id: string; xid: string; session: string }>(
      "SELECT host_id, xid::text AS xid, data->>'sessionId' AS session FROM events WHERE host_id = ANY($1) AND kind = 'host.disconnected'",
      [hosts],
    );
    expect(rows.map((r) => r.host_id).sort(), 'one event per host whose session ended, none for the host taken over').to.deep.equal(hosts.slice(1).sort());
    for (const r of rows) expect(r.session).to.equal(ids[hosts.indexOf(r.host_id)]);
    expect(new Set(rows.map((r) => r.xid)).size, 'recorded in batches').to.be.lessThan(rows.length);
    expect(await session(hosts[0] as string)).to.deep.include({ session_id: newerId, connected: true });
  });

  it('a Hello naming any other session than the live one is refused, and the live session keeps its host', async () => {
    const hostId = uniqueId('wrong-previous');
    const first = stream();
    first.hello(hostId);
    const firstSession = await first.welcomed();
    const second = stream();
    second.hello(hostId, firstSession);
    const liveSession = await second.welcomed();
    // Another agent guessing an id, and the host's own older session (no longer its current one).
    for (const previous of ['00000000-0000-0000-0000-000000000000', firstSession]) {
      const s = stream();
      s.hello(hostId, previous);
      const err = await s.ended;
      expect(err.code, previous).to.equal(grpc.status.ALREADY_EXISTS);
      expect(err.details).to.match(/already has a live agent session/);
    }
    expect((await session(hostId))?.session_id).to.equal(liveSession);
    second.event('still the live stream');
    await waitFor('the live session still writes', async () => (await db.query("SELECT 1 FROM events WHERE host_id = $1 AND reason = 'still the live stream'", [hostId])).rowCount || undefined, 10_000);
  });
});
