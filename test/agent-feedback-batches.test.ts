import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import pg from 'pg';
import { createLogger } from '@a4c/common';
import { AgentSessions } from '@a4c/control-plane/agent-sessions';
import { WorkspacePhase, type AgentMessage, type ControlMessage } from '@a4c/proto';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

/** The server side of one agent stream, driven by hand (as in agent-plane-flow.test.ts), recording how it was ended. */
class HandCall extends EventEmitter {
  readonly written: ControlMessage[] = [];
  ended: { code: number; details: string } | undefined;
  constructor() {
    super();
    this.on('error', (e: { code: number; details: string }) => {
      this.ended = { code: e.code, details: e.details };
    });
  }
  write(m: ControlMessage): boolean {
    this.written.push(m);
    return true;
  }
  pause(): void {}
  resume(): void {}
  end(): void {
    this.emit('finish');
  }
  getAuthContext(): Record<string, never> {
    return {};
  }
}

const hello = (hostId: string): AgentMessage => ({
  payload: { $case: 'hello', value: { hostId, arch: 'linux-x64', agentVersion: 't', images: [], workspaces: [], lastAppliedRevision: 0, capacity: undefined, stats: undefined, previousSessionId: '' } },
});

const report = (workspaceId: string, phase: WorkspacePhase, containerId: string, extra: { step?: string; error?: string; revision?: number } = {}): AgentMessage => ({
  payload: {
    $case: 'workspaceStatus',
    value: { workspaceId, phase, containerId, step: extra.step ?? '', error: extra.error ?? '', exitCode: 0, oomKilled: false, revision: extra.revision ?? 1_000_000 },
  },
});

const ack = (revision: number): AgentMessage => ({ payload: { $case: 'ack', value: { revision } } });

describe('agent plane: status reports and acks of many sessions applied in batches (real PostgreSQL, streams driven by hand)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  let sessions: AgentSessions;
  const created: { result: string }[] = [];
  const user = uniqueId('batch-u');

  const open = async (hostId: string): Promise<HandCall> => {
    const call = new HandCall();
    sessions.service.connect(call as never);
    call.emit('data', hello(hostId));
    await waitFor('the Welcome', () => call.written.some((m) => m.payload?.$case === 'welcome') || undefined, 10_000);
    return call;
  };

  const insertWorkspace = async (hostId: string, status: string): Promise<string> => {
    const id = randomUUID();
    await db.query(
      `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, hostname, memory_mb, cpus, disk_gb, pids_limit, desired_revision)
       VALUES ($1, $2, $3, 'p', 'linux-x64', 'tiny', 'a4c-base:latest', $4, $5, $6, 256, 1, 2, 256, 0)`,
      [id, user, `ws-${id.slice(0, 8)}`, status, hostId, `ws-${id.slice(0, 8)}.ws.a4c.internal`],
    );
    return id;
  };

  const workspace = async (id: string) =>
    (await db.query<{ status: string; container_id: string | null; desired_revision: number }>('SELECT status, container_id, desired_revision FROM workspaces WHERE id = $1', [id])).rows[0];

  const batches = () => ({ ...sessions.feedback.counts });

  before(async () => {
    t = await startTestControlPlane();
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 4 });
    sessions = new AgentSessions(
      db,
      new EventEmitter() as never,
      {} as never,
      { heartbeatIntervalMs: 5000, buildLeaseMs: 60_000, liveWithinSeconds: 15, resyncIntervalMs: 3_600_000, heartbeatBatchMs: 0 },
      createLogger('test-feedback-batches', { A4C_LOG_LEVEL: 'silent' }),
      {
        workspaceCreated: (result) => created.push({ result }),
        imageBuilt: () => undefined,
        placementConflict: () => undefined,
        placementRetry: () => undefined,
        placement: () => undefined,
      },
    );
  });
  after(async () => {
    await sessions?.stop();
    await db?.end();
    await t?.stop();
  });

  it('reports of many sessions land in one transaction, each applied as it would be alone: status, events, reservations, revision, metrics', async () => {
    const n = 20;
    const hosts = Array.from({ length: n }, (_, i) => uniqueId(`batch-${i}`));
    const calls = await Promise.all(hosts.map(open));
    const ids = await Promise.all(hosts.map((h) => insertWorkspace(h, 'CREATING')));
    const revisionsBefore = new Map((await db.query<{ id: string; revision: number }>('SELECT id, revision FROM hosts WHERE id = ANY($1)', [hosts])).rows.map((r) => [r.id, r.revision]));
    const was = batches();
    const createdBefore = created.length;
    // The last host's workspace fails; every other one runs.
    for (const [i, call] of calls.entries()) {
      const id = ids[i] as string;
      call.emit('data', i === n - 1 ? report(id, WorkspacePhase.WORKSPACE_PHASE_FAILED, `c-${i}`, { step: 'start', error: 'boom' }) : report(id, WorkspacePhase.WORKSPACE_PHASE_RUNNING, `c-${i}`));
    }
    await waitFor('every report applied', async () => {
      const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM workspaces WHERE id = ANY($1) AND status IN ('RUNNING', 'FAILED')", [ids]);
      return rows[0]?.n === n || undefined;
    }, 20_000);
    await waitFor('the batch answered', () => batches().items - was.items === n || undefined, 10_000);
    const now = batches();
    expect(now.batches - was.batches, 'transactions for 20 sessions\' reports').to.equal(1);

    for (const [i, id] of ids.entries()) {
      const w = await workspace(id);
      expect(w?.status).to.equal(i === n - 1 ? 'FAILED' : 'RUNNING');
      expect(w?.container_id).to.equal(`c-${i}`);
    }
    const { rows: events } = await db.query<{ kind: string; actor: string; workspace_id: string; user_id: string; changes: Record<string, { to: unknown }> }>(
      'SELECT kind, actor, workspace_id, user_id, changes FROM events WHERE workspace_id = ANY($1) ORDER BY id',
      [ids],
    );
    expect(events).to.have.length(n);
    for (const e of events) {
      const i = ids.indexOf(e.workspace_id);
      expect(e.kind).to.equal(i === n - 1 ? 'workspace.failed' : 'workspace.running');
      expect(e.actor).to.equal(`agent:${hosts[i]}`);
      expect(e.user_id).to.equal(user);
      expect(e.changes.containerId?.to).to.equal(`c-${i}`);
    }
    // The failed workspace left its host's desired set: its host's revision moved, and it holds nothing there.
    const failedHost = hosts[n - 1] as string;
    const h = (await db.query<{ revision: number; reserved_memory_mb: number; reserved_workspaces: number }>('SELECT revision, reserved_memory_mb, reserved_workspaces FROM hosts WHERE id = $1', [failedHost])).rows[0];
    expect(h?.revision).to.equal((revisionsBefore.get(failedHost) ?? 0) + 1);
    expect((await workspace(ids[n - 1] as string))?.desired_revision).to.equal(h?.revision);
    expect({ mem: Number(h?.reserved_memory_mb), n: Number(h?.reserved_workspaces) }).to.deep.equal({ mem: 0, n: 0 });
    const running = (await db.query<{ revision: number; reserved_memory_mb: number }>('SELECT revision, reserved_memory_mb FROM hosts WHERE id = $1', [hosts[0]])).rows[0];
    expect(running?.revision).to.equal(revisionsBefore.get(hosts[0] as string));
    expect(Number(running?.reserved_memory_mb)).to.equal(256);
    // Creations ended: one metric each.
    const mine = created.slice(createdBefore);
    expect(mine.filter((c) => c.result === 'success')).to.have.length(n - 1);
    expect(mine.filter((c) => c.result === 'failed')).to.have.length(1);
    // The failed host's stream was sent its new desired state, without its workspace.
    const failedCall = calls[n - 1] as HandCall;
    await waitFor('the new desired state', () => failedCall.written.some((m) => m.payload?.$case === 'desiredState' && m.payload.value.revision === h?.revision) || undefined, 10_000);
    for (const c of calls) expect(c.ended).to.equal(undefined);
  });

  it('a superseded session\'s report in a batch with live ones is dropped alone, and its stream is told ABORTED', async () => {
    const [a, b, c] = [uniqueId('sup-a'), uniqueId('sup-b'), uniqueId('sup-c')];
    const oldA = await open(a);
    const [callB, callC] = await Promise.all([open(b), open(c)]);
    // Another replica took the host over: the database names a session this replica does
    // not hold (its NOTIFY is not wired here), so the old stream is still open and writes.
    await db.query("UPDATE host_status SET session_id = $2, last_heartbeat_at = now() - interval '1 hour' WHERE host_id = $1", [a, randomUUID()]);
    const [wa, wb, wc] = await Promise.all([insertWorkspace(a, 'CREATING'), insertWorkspace(b, 'CREATING'), insertWorkspace(c, 'CREATING')]);
    const was = batches();
    oldA.emit('data', report(wa, WorkspacePhase.WORKSPACE_PHASE_RUNNING, 'old'));
    callB.emit('data', report(wb, WorkspacePhase.WORKSPACE_PHASE_RUNNING, 'b'));
    callC.emit('data', report(wc, WorkspacePhase.WORKSPACE_PHASE_RUNNING, 'c'));
    await waitFor('the old stream refused', () => oldA.ended, 10_000);
    expect(oldA.ended?.code).to.equal(grpc.status.ABORTED);
    expect(oldA.ended?.details).to.match(/superseded/);
    await waitFor('the batch answered', () => batches().items - was.items === 3 || undefined, 10_000);
    expect(batches().batches - was.batches).to.equal(1);
    expect((await workspace(wa))?.status).to.equal('CREATING');
    expect((await workspace(wb))?.status).to.equal('RUNNING');
    expect((await workspace(wc))?.status).to.equal('RUNNING');
    expect((await db.query('SELECT 1 FROM events WHERE workspace_id = $1', [wa])).rowCount).to.equal(0);
    for (const call of [callB, callC]) expect(call.ended).to.equal(undefined);
    // The host's agent comes back here: its new session reports as before.
    const newA = await open(a);
    newA.emit('data', report(wa, WorkspacePhase.WORKSPACE_PHASE_RUNNING, 'new'));
    await waitFor('the live report', async () => (await workspace(wa))?.container_id === 'new' || undefined, 10_000);
  });

  it('an ack above its host\'s revision is refused alone; the others in its batch apply', async () => {
    const [good, forged] = [uniqueId('ack-good'), uniqueId('ack-forged')];
    const [callGood, callForged] = await Promise.all([open(good), open(forged)]);
    const deleting = await insertWorkspace(good, 'DELETING');
    // The host was sent revisions up to 3 (the delete's among them); its agent applied none yet.
    await db.query('UPDATE hosts SET revision = revision + 3 WHERE id = $1', [good]);
    const { rows } = await db.query<{ id: string; revision: number; applied_revision: number }>('SELECT id, revision, applied_revision FROM hosts WHERE id = ANY($1)', [[good, forged]]);
    const host = new Map(rows.map((r) => [r.id, r]));
    const goodRev = host.get(good)?.revision as number;
    const was = batches();
    callGood.emit('data', ack(goodRev));
    callForged.emit('data', ack((host.get(forged)?.revision as number) + 1000));
    await waitFor('the forged ack refused', () => callForged.ended, 10_000);
    expect(callForged.ended?.code).to.equal(grpc.status.INVALID_ARGUMENT);
    expect(callForged.ended?.details).to.match(/refused: its current revision is/);
    await waitFor('the batch answered', () => batches().items - was.items === 2 || undefined, 10_000);
    expect(batches().batches - was.batches).to.equal(1);
    expect((await workspace(deleting))?.status).to.equal('DELETED');
    const ev = (await db.query<{ kind: string; reason: string }>('SELECT kind, reason FROM events WHERE workspace_id = $1', [deleting])).rows;
    expect(ev).to.deep.equal([{ kind: 'workspace.deleted', reason: `the host applied revision ${goodRev}, which removed its container` }]);
    const after = new Map((await db.query<{ id: string; revision: number; applied_revision: number }>('SELECT id, revision, applied_revision FROM hosts WHERE id = ANY($1)', [[good, forged]])).rows.map((r) => [r.id, r]));
    expect(after.get(forged)).to.deep.equal(host.get(forged));
    expect(after.get(good)?.applied_revision).to.equal(goodRev);
    expect(goodRev).to.be.greaterThan(host.get(good)?.applied_revision as number);
    expect(callGood.ended).to.equal(undefined);
  });

  it('a stream\'s reports apply in the order it sent them, those waiting together in one batch, beside other streams\'', async () => {
    const [one, other] = [uniqueId('order-1'), uniqueId('order-2')];
    const [callOne, callOther] = await Promise.all([open(one), open(other)]);
    const w = await insertWorkspace(one, 'CREATING');
    const others = await Promise.all([0, 1, 2].map(() => insertWorkspace(other, 'CREATING')));
    const was = batches();
    for (let i = 0; i < 3; i++) {
      callOne.emit('data', report(w, WorkspacePhase.WORKSPACE_PHASE_RUNNING, `c${i}`));
      callOther.emit('data', report(others[i] as string, WorkspacePhase.WORKSPACE_PHASE_RUNNING, `o${i}`));
    }
    await waitFor('every report answered', () => batches().items - was.items === 6 || undefined, 10_000);
    // Each stream's first report is taken at once; the two behind it wait for that batch
    // and then go together, in order: two rounds, each carrying both streams.
    expect(batches().batches - was.batches).to.equal(2);
    expect((await workspace(w))?.container_id).to.equal('c2');
    const { rows } = await db.query<{ changes: Record<string, { from: unknown; to: unknown }> }>('SELECT changes FROM events WHERE workspace_id = $1 ORDER BY id', [w]);
    expect(rows.map((r) => [r.changes.containerId?.from, r.changes.containerId?.to])).to.deep.equal([
      [null, 'c0'],
      ['c0', 'c1'],
      ['c1', 'c2'],
    ]);
    for (const id of others) expect((await workspace(id))?.status).to.equal('RUNNING');
  });

  it('a stream\'s messages after its refused ack are dropped, as they would be one by one', async () => {
    const hostId = uniqueId('after-refusal');
    const call = await open(hostId);
    const [first, later] = await Promise.all([insertWorkspace(hostId, 'CREATING'), insertWorkspace(hostId, 'CREATING')]);
    const revision = (await db.query<{ revision: number }>('SELECT revision FROM hosts WHERE id = $1', [hostId])).rows[0]?.revision as number;
    const was = batches();
    // The first report is taken at once; the forged ack and the report behind it wait, and go together.
    call.emit('data', report(first, WorkspacePhase.WORKSPACE_PHASE_RUNNING, 'first'));
    call.emit('data', ack(revision + 1000));
    call.emit('data', report(later, WorkspacePhase.WORKSPACE_PHASE_RUNNING, 'later'));
    await waitFor('the forged ack refused', () => call.ended, 10_000);
    expect(call.ended?.code).to.equal(grpc.status.INVALID_ARGUMENT);
    await waitFor('both batches answered', () => batches().items - was.items === 3 || undefined, 10_000);
    expect(batches().batches - was.batches).to.equal(2);
    expect((await workspace(first))?.status).to.equal('RUNNING');
    expect((await workspace(later))?.status).to.equal('CREATING');
    expect((await db.query('SELECT 1 FROM events WHERE workspace_id = $1', [later])).rowCount).to.equal(0);
  });
});
