import { EventEmitter } from 'node:events';
import { expect } from 'chai';
import pg from 'pg';
import { createLogger } from '@a4c/common';
import { AgentSessions } from '@a4c/control-plane/agent-sessions';
import type { AgentMessage, ControlMessage } from '@a4c/proto';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

/**
 * The server side of one agent stream, driven by hand: what a grpc-js duplex call does
 * for the session (data in, write() with its back-pressure answer, pause/resume, drain).
 */
class HandCall extends EventEmitter {
  readonly written: ControlMessage[] = [];
  /** What write() answers: false is a full buffer (the agent reads slowly). */
  accepting = true;
  paused = false;
  pauses = 0;
  write(m: ControlMessage): boolean {
    this.written.push(m);
    return this.accepting;
  }
  pause(): void {
    this.paused = true;
    this.pauses++;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.emit('finish');
  }
  getAuthContext(): Record<string, never> {
    return {};
  }
  desired(): number[] {
    return this.written.flatMap((m) => (m.payload?.$case === 'desiredState' ? [m.payload.value.revision] : []));
  }
}

const hello = (hostId: string): AgentMessage => ({
  payload: { $case: 'hello', value: { hostId, arch: 'linux-x64', agentVersion: 't', images: [], workspaces: [], lastAppliedRevision: 0, capacity: undefined, stats: undefined, previousSessionId: '' } },
});

describe('agent plane: flow control on one stream (real PostgreSQL, the stream driven by hand)', function () {
  this.timeout(60_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  let sessions: AgentSessions;
  const calls: HandCall[] = [];

  const open = async (hostId: string): Promise<HandCall> => {
    const call = new HandCall();
    calls.push(call);
    sessions.service.connect(call as never);
    call.emit('data', hello(hostId));
    await waitFor('the Welcome', () => call.written.some((m) => m.payload?.$case === 'welcome') || undefined, 10_000);
    return call;
  };

  before(async () => {
    // A migrated database; the sessions under test are this test's own, on their own pool.
    t = await startTestControlPlane();
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 4 });
    sessions = new AgentSessions(
      db,
      new EventEmitter() as never,
      {} as never,
      { heartbeatIntervalMs: 5000, buildLeaseMs: 60_000, liveWithinSeconds: 15, resyncIntervalMs: 3_600_000, inboxDepth: 4, heartbeatBatchMs: 0 },
      createLogger('test-agent-plane', { A4C_LOG_LEVEL: 'silent' }),
    );
  });
  after(async () => {
    await sessions?.stop();
    await db?.end();
    await t?.stop();
  });

  it('a slow agent gets no pile of snapshots: at drain, one desired state, the newest', async () => {
    const hostId = uniqueId('slow');
    const call = new HandCall();
    call.accepting = false; // the Welcome already fills its buffer
    calls.push(call);
    sessions.service.connect(call as never);
    call.emit('data', hello(hostId));
    await waitFor('the Welcome', () => call.written.some((m) => m.payload?.$case === 'welcome') || undefined, 10_000);
    for (let i = 0; i < 5; i++) {
      await db.query('UPDATE hosts SET revision = revision + 1 WHERE id = $1', [hostId]);
      sessions.push(hostId);
    }
    // Time for any snapshot that should not be sent to be loaded and written.
    await new Promise((r) => setTimeout(r, 300));
    expect(call.desired()).to.deep.equal([]);
    const { rows } = await db.query<{ revision: number }>('SELECT revision FROM hosts WHERE id = $1', [hostId]);
    call.accepting = true;
    call.emit('drain');
    await waitFor('a desired state after drain', () => call.desired().length > 0 || undefined, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(call.desired()).to.deep.equal([rows[0]?.revision]);
  });

  it('a burst past the inbox depth pauses the stream, resumes it as the inbox empties, and applies every message in order', async () => {
    const hostId = uniqueId('burst');
    const call = await open(hostId);
    const n = 40;
    for (let i = 0; i < n; i++) {
      call.emit('data', {
        payload: { $case: 'event', value: { kind: 'orphan_removed', workspaceId: '', containerId: '', message: `in order ${i}`, exitCode: 0, oomKilled: false, atUnixMs: 0 } },
      } satisfies AgentMessage);
    }
    expect(call.paused, 'paused at once: the burst is 10× the inbox depth').to.equal(true);
    expect(sessions.inboxOf(hostId)?.queued).to.be.greaterThan(4);
    const { rows } = await waitFor('every event of the burst', async () => {
      const r = await db.query<{ reason: string }>("SELECT reason FROM events WHERE host_id = $1 AND reason LIKE 'in order %' ORDER BY id", [hostId]);
      return r.rows.length === n ? r : undefined;
    }, 30_000);
    expect(rows.map((r) => r.reason)).to.deep.equal(Array.from({ length: n }, (_, i) => `in order ${i}`));
    expect(call.paused).to.equal(false);
    expect(call.pauses).to.be.greaterThan(0);
    expect(sessions.inboxOf(hostId)).to.deep.equal({ queued: 0, paused: false });
  });

  it('a heartbeat is applied while the stream\'s inbox is still busy with earlier messages', async () => {
    const hostId = uniqueId('busy');
    const call = await open(hostId);
    await db.query("UPDATE host_status SET last_heartbeat_at = now() - interval '1 minute' WHERE host_id = $1", [hostId]);
    for (let i = 0; i < 300; i++) {
      call.emit('data', {
        payload: { $case: 'event', value: { kind: 'orphan_removed', workspaceId: '', containerId: '', message: `busy ${i}`, exitCode: 0, oomKilled: false, atUnixMs: 0 } },
      } satisfies AgentMessage);
    }
    call.emit('data', { payload: { $case: 'heartbeat', value: { stats: undefined, imagesChanged: false, images: [], workspaceCpu: [] } } } satisfies AgentMessage);
    const queuedAtBeat = await waitFor(
      'the heartbeat applied',
      async () => {
        const { rows } = await db.query<{ fresh: boolean }>("SELECT last_heartbeat_at > now() - interval '30 seconds' AS fresh FROM host_status WHERE host_id = $1", [hostId]);
        return rows[0]?.fresh ? { queued: sessions.inboxOf(hostId)?.queued ?? 0 } : undefined;
      },
      30_000,
      5,
    );
    expect(queuedAtBeat.queued, 'messages sent before the heartbeat were still waiting when it landed').to.be.greaterThan(0);
  });
});
