import type { ActivityEvent } from '@a4c/common';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { EVENT_KIND_NAMES } from '@a4c/control-plane/event-kinds';
import { pruneEvents } from '@a4c/control-plane/events';
import { removeHostContainers, ROOT, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { SseFollower, type StreamedEvent } from './support/sse.js';

type EventJson = ActivityEvent;
interface EventPage {
  events: EventJson[];
  nextCursor: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('activity log: /v1/events and /v1/events/stream', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('evt');
  const s = uniqueId('e');
  const alice = `alice-${s}`;
  const carol = `carol-${s}`;
  const dave = `dave-${s}`;
  const team = `t-${s}`;
  const tokens: Record<string, string> = {};
  const followers: SseFollower[] = [];
  let ws: Workspace;
  let db: pg.Client;

  const follow = async (query = '', token = t.api.token, lastEventId?: string, base = t.api.baseUrl) => {
    const f = new SseFollower(`${base}/v1/events/stream${query}`, token, lastEventId);
    followers.push(f);
    return f.open();
  };
  /** Every event of a query, paging through with the cursor. */
  const readAll = async (query: string, token = t.api.token, pageSize = 1000): Promise<EventJson[]> => {
    const out: EventJson[] = [];
    let after = '';
    for (;;) {
      const sep = query ? '&' : '';
      const r = await t.api.call<EventPage>('GET', `/v1/events?${query}${sep}limit=${pageSize}${after ? `&after=${after}` : ''}`, undefined, { token });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      out.push(...r.body.events);
      after = r.body.nextCursor;
      if (r.body.events.length < pageSize) return out;
    }
  };

  before(async () => {
    t = await startTestControlPlane({ A4C_EVENT_HEARTBEAT_MS: '300' });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    for (const [id, role, teamId] of [[alice, 'user', team], [carol, 'lead', team], [dave, 'user', `other-${s}`]] as const) {
      expect((await t.api.call('POST', '/v1/users', { id, role, teamId })).status).to.equal(201);
      tokens[id] = (await t.api.call<{ token: string }>('POST', `/v1/users/${id}/tokens`, { name: 'test' })).body.token;
    }
    db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
  });
  after(async () => {
    for (const f of followers) await f.close();
    await db?.end();
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  it("a follower over fetch() sees a new workspace's events within a second; headers and heartbeats suit browsers and proxies", async () => {
    const f = await follow(`?userId=${alice}`);
    expect(f.status).to.equal(200);
    expect(f.headers?.get('content-type')).to.match(/^text\/event-stream/);
    expect(f.headers?.get('cache-control')).to.include('no-cache').and.include('no-transform');
    expect(f.headers?.get('x-accel-buffering')).to.equal('no');
    expect(f.headers?.get('content-encoding'), 'never compressed (compression buffers)').to.equal(null);

    const r = await t.api.call<Workspace>('POST', `/v1/users/${alice}/workspaces`, { projectName: 'evt', arch: 'linux-x64', tier: 'tiny' }, { token: tokens[alice] });
    const answered = Date.now();
    expect(r.status).to.equal(201);
    ws = r.body;
    const created = await f.waitFor('workspace.created', (e) => e.event === 'workspace.created' && e.data.workspaceId === ws.id, 5000);
    expect(created.receivedAt - answered, 'ms from the answer to the event').to.be.below(1000);
    expect(created.id).to.equal(created.data.cursor);
    expect(created.data).to.include({ kind: 'workspace.created', actor: alice, userId: alice, hostId });
    expect(created.data.changes).to.deep.equal({ status: { from: null, to: 'CREATING' }, hostId: { from: null, to: hostId } });
    expect(created.data.reason).to.be.a('string').and.not.equal('');
    const running = await f.waitFor('workspace.running', (e) => e.event === 'workspace.running' && e.data.workspaceId === ws.id, 30_000);
    expect(running.data.actor).to.equal(`agent:${hostId}`);
    expect((running.data.changes as Record<string, unknown>).status).to.deep.equal({ from: 'CREATING', to: 'RUNNING' });
    await waitFor('a heartbeat comment', () => f.comments.length > 0, 5000);
  });

  it('resumes with Last-Event-ID: exactly the events missed while away, nothing twice', async () => {
    const f1 = await follow(`?workspaceId=${ws.id}`, t.api.token, undefined);
    // From now on: wait for one event to know where we are.
    expect((await t.api.call('POST', `/v1/workspaces/${ws.id}/stop?wait=30`, undefined, { token: tokens[alice] })).status).to.equal(202);
    const seen = await f1.waitFor('workspace.stopped', (e) => e.event === 'workspace.stopped', 30_000);
    await f1.close();
    const last = f1.lastId as string;
    expect(last).to.equal(seen.id);

    // Away: more changes.
    expect((await t.api.call('POST', `/v1/workspaces/${ws.id}/start?wait=30`, undefined, { token: tokens[alice] })).status).to.equal(202);
    expect((await t.api.call('POST', `/v1/workspaces/${ws.id}/stop?wait=30`, undefined, { token: tokens[alice] })).status).to.equal(202);
    const missed = (await readAll(`workspaceId=${ws.id}&after=${last}`)).map((e) => e.cursor);
    expect(missed.length, 'starting, running, stopping, stopped').to.be.at.least(4);

    const f2 = await follow(`?workspaceId=${ws.id}`, tokens[alice], last);
    await waitFor('the missed events', () => f2.events.length >= missed.length, 10_000);
    await sleep(500); // nothing more may come
    expect(f2.events.map((e) => e.id)).to.deep.equal(missed);
    expect(f2.events.map((e) => e.event)).to.include.members(['workspace.starting', 'workspace.running', 'workspace.stopping', 'workspace.stopped']);
  });

  it('the ordering trap: a reader of id > last skips an event committed late; the cursor does not', async () => {
    const h = uniqueId('trap');
    const a = new pg.Client({ connectionString: t.databaseUrl });
    await a.connect();
    try {
      const insert = "INSERT INTO events (kind, actor, reason, host_id) VALUES ('host.drained', 'test', 'trap', $1) RETURNING id";
      await a.query('BEGIN');
      const early = Number((await a.query<{ id: string }>(insert, [h])).rows[0]?.id);
      const late = Number((await db.query<{ id: string }>(insert, [h])).rows[0]?.id); // commits at once
      expect(early).to.be.below(late);

      const naive = async (after: number) => (await db.query<{ id: string }>('SELECT id FROM events WHERE host_id = $1 AND id > $2 ORDER BY id', [h, after])).rows.map((r) => Number(r.id));
      const naiveFirst = await naive(0);
      expect(naiveFirst, 'the naive reader sees the later id first').to.deep.equal([late]);
      const ours = await t.api.call<EventPage>('GET', `/v1/events?hostId=${h}`);
      expect(ours.body.events, 'nothing while an older transaction is open').to.deep.equal([]);

      await a.query('COMMIT');
      expect(await naive(late), 'and then skips the earlier one for good').to.deep.equal([]);
      // Both once every older transaction (of anyone, e.g. a heartbeat) has ended: at once, or nearly.
      const next = await waitFor('both events', async () => {
        const r = await t.api.call<EventPage>('GET', `/v1/events?hostId=${h}&after=${ours.body.nextCursor}`);
        return r.body.events.length >= 2 ? r.body.events : undefined;
      }, 5000, 20);
      expect(next.map((e) => e.id), 'the cursor delivers both, in log order').to.deep.equal([early, late]);
    } finally {
      await a.end();
    }
  });

  it('never skips nor repeats: concurrent writers, some holding their transactions open or rolling back, and followers', async function () {
    this.timeout(120_000);
    const h = uniqueId('race');
    const live = await follow(`?hostId=${h}`);
    const committed = new Set<string>();
    const rolledBack = new Set<string>();
    const WRITERS = 12;
    const TXS = 25;
    let late: SseFollower | undefined;
    let lateCursor = '';
    const writer = async (w: number) => {
      const c = new pg.Client({ connectionString: t.databaseUrl });
      await c.connect();
      try {
        for (let i = 0; i < TXS; i++) {
          const tags = Array.from({ length: 1 + (i % 3 === 0 ? 1 : 0) }, (_, k) => `${w}-${i}-${k}`);
          await c.query('BEGIN');
          // Take a transaction id early sometimes, so xid order and id order differ.
          if (i % 4 === 1) await c.query("SELECT pg_current_xact_id()");
          for (const tag of tags) {
            await c.query("INSERT INTO events (kind, actor, reason, host_id, data) VALUES ('host.drained', 'race', 'test', $1, $2)", [h, JSON.stringify({ tag })]);
            await sleep(Math.random() * 5);
          }
          const r = Math.random();
          if (r < 0.08) await sleep(500 + Math.random() * 1000); // holds the transaction open
          else await sleep(Math.random() * 20);
          if (Math.random() < 0.1) {
            await c.query('ROLLBACK');
            tags.forEach((x) => rolledBack.add(x));
          } else {
            await c.query('COMMIT');
            tags.forEach((x) => committed.add(x));
          }
          if (w === 0 && i === Math.floor(TXS / 2) && !late) {
            // A second follower that joins half-way, resuming from a cursor read by paging.
            lateCursor = (await t.api.call<EventPage>('GET', `/v1/events?hostId=${h}&limit=1`)).body.nextCursor;
            late = await follow(`?hostId=${h}`, t.api.token, lateCursor);
          }
        }
      } finally {
        await c.end();
      }
    };
    // A poller paging GET /v1/events with small pages while the writers write.
    const polled: EventJson[] = [];
    let writing = true;
    const poller = (async () => {
      let after = '';
      for (;;) {
        const stop = !writing;
        const r = await t.api.call<EventPage>('GET', `/v1/events?hostId=${h}&limit=7${after ? `&after=${after}` : ''}`);
        polled.push(...r.body.events);
        after = r.body.nextCursor;
        if (stop && r.body.events.length < 7) break;
        if (r.body.events.length < 7) await sleep(20);
      }
    })();
    await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    writing = false;
    await poller;

    await waitFor('the live follower has every committed event', () => live.events.length >= committed.size, 20_000, 50);
    await sleep(500);
    const liveTags = live.events.map((e) => (e.data.data as { tag: string }).tag);
    expect(liveTags.length, 'no event twice').to.equal(new Set(liveTags).size);
    expect(new Set(liveTags), 'exactly the committed events').to.deep.equal(committed);
    expect(liveTags.filter((x) => rolledBack.has(x))).to.deep.equal([]);
    const cursors = live.events.map((e) => e.id);
    for (let i = 1; i < cursors.length; i++) expect(cmpCursor(cursors[i - 1] as string, cursors[i] as string), 'cursors increase').to.equal(-1);

    const polledTags = polled.map((e) => (e.data as { tag: string }).tag);
    expect(polledTags.length, 'paging: no event twice').to.equal(new Set(polledTags).size);
    expect(new Set(polledTags), 'paging: exactly the committed events').to.deep.equal(committed);

    // The late joiner: exactly what came after its cursor.
    const expectedLate = (await readAll(`hostId=${h}&after=${lateCursor}`)).map((e) => e.cursor);
    const lateFollower = late as SseFollower;
    await waitFor('the late follower caught up', () => lateFollower.events.length >= expectedLate.length, 20_000, 50);
    await sleep(300);
    expect(lateFollower.events.map((e) => e.id)).to.deep.equal(expectedLate);
    console.log(`      (${committed.size} committed, ${rolledBack.size} rolled back, ${WRITERS} writers; live, late and paging readers exact)`);
  });

  it('works on every replica: a stream on one sees changes made through another', async () => {
    const t2 = await startTestControlPlane({ DATABASE_URL: t.databaseUrl });
    try {
      const f = await follow(`?hostId=${hostId}&kind=host.drained,host.activated`, t2.api.token, undefined, t2.api.baseUrl);
      const asked = Date.now();
      expect((await t.api.call('POST', `/v1/hosts/${hostId}/drain`)).status).to.equal(200);
      const drained = await f.waitFor('host.drained via the other replica', (e) => e.event === 'host.drained', 5000);
      expect(drained.receivedAt - asked).to.be.below(1000);
      expect(drained.data.changes).to.deep.equal({ draining: { from: false, to: true } });
      expect((await t.api.call('POST', `/v1/hosts/${hostId}/activate`)).status).to.equal(200);
      await f.waitFor('host.activated', (e) => e.event === 'host.activated', 5000);
      await f.close();
    } finally {
      await t2.stop();
    }
  });

  it('pages oldest first with filters, and checks cursors, kinds and who may read what', async () => {
    const all = await readAll(`workspaceId=${ws.id}`);
    expect(all.length).to.be.at.least(8);
    const paged = await readAll(`workspaceId=${ws.id}`, t.api.token, 2);
    expect(paged.map((e) => e.id)).to.deep.equal(all.map((e) => e.id));
    expect(all[0]?.kind).to.equal('workspace.created');
    for (const e of all) {
      expect(e.reason, `${e.kind} has a reason`).to.not.equal('');
      expect(e.userId).to.equal(alice);
      if (e.kind.startsWith('workspace.')) expect(e.changes, `${e.kind} says what changed`).to.have.property('status');
    }
    const kinds = await readAll(`workspaceId=${ws.id}&kind=workspace.stopping,workspace.stopped`);
    expect(new Set(kinds.map((e) => e.kind))).to.deep.equal(new Set(['workspace.stopping', 'workspace.stopped']));
    const since = all[3]?.at as string;
    expect((await readAll(`workspaceId=${ws.id}&since=${encodeURIComponent(since)}`)).every((e) => e.at >= since)).to.equal(true);

    const bad = await t.api.call<{ error: string; field: string }>('GET', '/v1/events?after=12');
    expect([bad.status, bad.body.field]).to.deep.equal([400, 'after']);
    const badKind = await t.api.call<{ error: string; field: string }>('GET', '/v1/events?kind=workspace.exploded');
    expect([badKind.status, badKind.body.field]).to.deep.equal([400, 'kind']);
    const badHeader = await follow('', t.api.token, 'nonsense');
    expect(badHeader.status).to.equal(400);

    // Who sees what: alice her own, carol (her lead) too, dave nothing of hers; hosts' events are admins'.
    const mine = await readAll('', tokens[alice]);
    expect(mine.length).to.be.greaterThan(0);
    expect(mine.every((e) => e.userId === alice)).to.equal(true);
    expect((await readAll('', tokens[carol])).some((e) => e.workspaceId === ws.id)).to.equal(true);
    expect((await readAll('', tokens[dave])).some((e) => e.userId === alice)).to.equal(false);
    expect((await t.api.call('GET', `/v1/events?workspaceId=${ws.id}`, undefined, { token: tokens[dave] })).status).to.equal(404);
    expect((await readAll(`hostId=${hostId}`, tokens[alice])).every((e) => e.workspaceId !== null)).to.equal(true);
    expect((await readAll(`hostId=${hostId}`)).some((e) => e.kind === 'host.connected')).to.equal(true);
    const daveStream = await follow(`?workspaceId=${ws.id}`, tokens[dave]);
    expect(daveStream.status).to.equal(404);
  });

  it('user, token and quota changes have events with what changed', async () => {
    expect((await t.api.call('PUT', `/v1/users/${dave}`, { role: 'lead' })).status).to.equal(200);
    expect((await t.api.call('PUT', `/v1/users/${dave}/quota`, { maxWorkspaces: 7 })).status).to.equal(200);
    const tok = await t.api.call<{ id: string }>('POST', `/v1/users/${dave}/tokens`, { name: 'short' }, { token: tokens[dave] });
    expect((await t.api.call('DELETE', `/v1/users/${dave}/tokens/${tok.body.id}`, undefined, { token: tokens[dave] })).status).to.equal(200);
    const evs = await readAll(`userId=${dave}`);
    const by = (k: string) => evs.find((e) => e.kind === k);
    expect(by('user.updated')?.changes).to.deep.equal({ role: { from: 'user', to: 'lead' } });
    expect(by('user.quota_updated')?.changes).to.deep.equal({ maxWorkspaces: { from: null, to: 7 } });
    const issued = evs.find((e) => e.kind === 'user.token_issued' && e.data.tokenId === tok.body.id);
    expect(issued?.actor).to.equal(dave);
    const revoked = evs.find((e) => e.kind === 'user.token_revoked' && e.data.tokenId === tok.body.id);
    expect(revoked?.changes.revokedAt?.from).to.equal(null);
    expect(revoked?.changes.revokedAt?.to).to.be.a('string');
  });

  it('docs/api.md lists every event kind', () => {
    const md = readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
    expect(EVENT_KIND_NAMES.filter((k) => !md.includes(`\`${k}\``))).to.deep.equal([]);
  });

  it('retention prunes old events in batches and keeps the rest', async () => {
    const h = uniqueId('old');
    await db.query(
      `INSERT INTO events (kind, actor, reason, host_id, at)
       SELECT 'host.drained', 'test', 'old', $1, now() - make_interval(days => 100 + g % 5) FROM generate_series(1, 2500) g`,
      [h],
    );
    await db.query("INSERT INTO events (kind, actor, reason, host_id) VALUES ('host.drained', 'test', 'new', $1)", [h]);
    const pool = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
    try {
      const removed = await pruneEvents(pool, 90, 700);
      expect(removed).to.be.at.least(2500);
    } finally {
      await pool.end();
    }
    const left = await db.query<{ reason: string }>('SELECT reason FROM events WHERE host_id = $1', [h]);
    expect(left.rows.map((r) => r.reason)).to.deep.equal(['new']);
    expect((await db.query("SELECT count(*)::int AS n FROM events WHERE at < now() - interval '90 days'")).rows[0]).to.deep.equal({ n: 0 });
  });
});

function cmpCursor(a: string, b: string): number {
  const [ax, ai] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bx, bi] = b.split('-').map(BigInt) as [bigint, bigint];
  if (ax !== bx) return ax < bx ? -1 : 1;
  return ai === bi ? 0 : ai < bi ? -1 : 1;
}

export type { StreamedEvent };
