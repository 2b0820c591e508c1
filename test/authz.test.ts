import { expect } from 'chai';
import pg from 'pg';
import type { Build, Workspace } from '@a4c/common';
import { SseFollower } from './support/sse.js';
import { removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';

type Who = 'alice' | 'bob' | 'carol' | 'dave' | 'admin';
const EVERYONE: Who[] = ['alice', 'bob', 'carol', 'dave', 'admin'];

/**
 * The route x role matrix. alice and bob are users of team t1, carol leads t1, dave is
 * in t2. alice owns a running workspace and a build. Bodies that would change something
 * are invalid on purpose where possible: a 400 proves the caller got past authorization
 * without changing anything.
 */
describe('who may do what (users, leads, admins)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('authz');
  const s = uniqueId('x'); // suffix keeping this suite's users and teams apart
  const ids: Record<Who, string> = { alice: `alice-${s}`, bob: `bob-${s}`, carol: `carol-${s}`, dave: `dave-${s}`, admin: 'admin' };
  const t1 = `t1-${s}`;
  const t2 = `t2-${s}`;
  const tokens = {} as Record<Who, string>;
  let ws: Workspace;
  let build: Build;

  const as = (who: Who) => ({ token: tokens[who] });

  before(async () => {
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    tokens.admin = t.api.token;
    for (const [who, role, team] of [['alice', 'user', t1], ['bob', 'user', t1], ['carol', 'lead', t1], ['dave', 'user', t2]] as const) {
      const u = await t.api.call('POST', '/v1/users', { id: ids[who], teamId: team, role });
      expect(u.status, JSON.stringify(u.body)).to.equal(201);
      const tok = await t.api.call<{ token: string }>('POST', `/v1/users/${ids[who]}/tokens`, { name: 'test' });
      expect(tok.status).to.equal(201);
      tokens[who] = tok.body.token;
    }
    ws = (await t.api.call<Workspace>('POST', `/v1/users/${ids.alice}/workspaces?wait=30`, { projectName: 'p', arch: 'linux-x64', tier: 'tiny' }, as('alice'))).body;
    expect(ws.status).to.equal('RUNNING');
    build = (await t.api.call<Build>('POST', `/v1/users/${ids.alice}/image-schedules`, { imageName: 'img', project: 'p', arch: 'linux-x64', changeNumber: 'CL-1' }, as('alice'))).body;
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  const matrix = (): [string, string, unknown, Record<Who, number>][] => {
    const A = ids.alice;
    return [
      ['GET', `/v1/users/${A}/workspaces`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/workspaces/${ws.id}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/users/${A}/workspaces/${ws.id}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['POST', `/v1/users/${A}/workspaces`, {}, { alice: 400, bob: 404, carol: 404, dave: 404, admin: 400 }],
      ['POST', `/v1/workspaces/${ws.id}/start`, undefined, { alice: 202, bob: 404, carol: 403, dave: 404, admin: 202 }],
      ['POST', `/v1/workspaces/${ws.id}/retry`, undefined, { alice: 409, bob: 404, carol: 403, dave: 404, admin: 409 }],
      ['POST', `/v1/workspaces/${ws.id}/approve`, undefined, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 409 }],
      ['POST', `/v1/workspaces/${ws.id}/reject`, {}, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 409 }],
      ['DELETE', `/v1/users/${ids.bob}/workspaces/${ws.id}`, undefined, { alice: 404, bob: 404, carol: 404, dave: 404, admin: 404 }],
      ['GET', '/v1/hosts', undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
      ['GET', `/v1/hosts/${hostId}`, undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
      ['POST', `/v1/hosts/${hostId}/activate`, undefined, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['POST', `/v1/hosts/${hostId}/drain`, undefined, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['POST', `/v1/hosts/${hostId}/activate`, undefined, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['POST', `/v1/users/${A}/image-schedules`, {}, { alice: 400, bob: 404, carol: 404, dave: 404, admin: 400 }],
      ['GET', `/v1/image-schedules/${build.id}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/image-schedules/${build.id}/logs`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/image-schedules?userId=${A}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', '/v1/users', undefined, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['POST', '/v1/users', {}, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 400 }],
      ['GET', `/v1/users/${A}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['PUT', `/v1/users/${A}`, {}, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['GET', `/v1/users/${A}/tokens`, undefined, { alice: 200, bob: 404, carol: 404, dave: 404, admin: 200 }],
      ['POST', `/v1/users/${A}/tokens`, {}, { alice: 400, bob: 404, carol: 404, dave: 404, admin: 400 }],
      ['GET', `/v1/users/${A}/quota`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['PUT', `/v1/users/${A}/quota`, {}, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['GET', `/v1/teams/${t1}/quota`, undefined, { alice: 404, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['PUT', `/v1/teams/${t1}/quota`, {}, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      ['GET', '/v1/audit', undefined, { alice: 403, bob: 403, carol: 403, dave: 403, admin: 200 }],
      // fleet search: everyone may search, within what they may see; naming what they may not read is a 404
      ['GET', '/v1/workspaces', undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
      ['GET', `/v1/workspaces?userId=${A}&q=p`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/workspaces?teamId=${t1}`, undefined, { alice: 404, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/workspaces?hostId=${hostId}&status=RUNNING`, undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
      ['GET', `/v1/image-schedules?hostId=${hostId}&q=x`, undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
      // the activity log: likewise
      ['GET', '/v1/events', undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
      ['GET', `/v1/events?workspaceId=${ws.id}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/events?userId=${A}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/events?buildId=${build.id}`, undefined, { alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }],
      ['GET', `/v1/events?hostId=${hostId}`, undefined, { alice: 200, bob: 200, carol: 200, dave: 200, admin: 200 }],
    ];
  };

  it('every route answers every role as the policy says', async () => {
    const wrong: string[] = [];
    for (const [method, path, body, expected] of matrix()) {
      for (const who of EVERYONE) {
        const r = await t.api.call<{ error?: string }>(method, path, body, as(who));
        if (r.status !== expected[who]) wrong.push(`${who} ${method} ${path} → ${r.status} ${JSON.stringify(r.body).slice(0, 160)} (expected ${expected[who]})`);
      }
    }
    expect(wrong, wrong.join('\n')).to.deep.equal([]);
    const own = await t.api.call<{ builds: Build[] }>('GET', '/v1/image-schedules', undefined, as('bob'));
    expect(own.body.builds, 'a user lists only their own builds').to.deep.equal([]);
  });

  it('search and the activity log show each role exactly what it may read; the event stream answers as the list does', async () => {
    const owners = async (who: Who, q: string) =>
      new Set((await t.api.call<{ workspaces: Workspace[] }>('GET', `/v1/workspaces?${q}`, undefined, as(who))).body.workspaces.map((w) => w.userId));
    expect(await owners('alice', ''), 'a user: their own').to.deep.equal(new Set([ids.alice]));
    expect(await owners('bob', ''), 'a user: their own (none)').to.deep.equal(new Set());
    expect(await owners('carol', ''), "a lead: their team's").to.deep.equal(new Set([ids.alice]));
    expect(await owners('dave', ''), 'another team: nothing').to.deep.equal(new Set());
    expect((await owners('admin', `hostId=${hostId}`)).has(ids.alice), 'an admin: all').to.equal(true);
    expect(await owners('dave', `hostId=${hostId}`), 'a host filter does not widen what a user sees').to.deep.equal(new Set());

    type Ev = { userId: string | null; hostId: string | null; workspaceId: string | null; kind: string };
    const events = async (who: Who, q = '') => (await t.api.call<{ events: Ev[] }>('GET', `/v1/events?limit=1000&${q}`, undefined, as(who))).body.events;
    const aliceSees = await events('alice');
    expect(aliceSees.length).to.be.greaterThan(0);
    expect(aliceSees.every((e) => e.userId === ids.alice), 'a user: events of their own things only').to.equal(true);
    expect(aliceSees.some((e) => e.kind === 'build.scheduled'), 'including their builds').to.equal(true);
    expect((await events('carol')).some((e) => e.workspaceId === ws.id), "a lead: their team's").to.equal(true);
    expect((await events('dave')).some((e) => e.userId === ids.alice), 'another team: none of them').to.equal(false);
    expect((await events('bob', `hostId=${hostId}`)).some((e) => e.kind.startsWith('host.')), "host events: admins' only").to.equal(false);
    expect((await events('admin', `hostId=${hostId}`)).some((e) => e.kind === 'host.connected')).to.equal(true);

    for (const who of EVERYONE) {
      const f = await new SseFollower(`${t.api.baseUrl}/v1/events/stream?workspaceId=${ws.id}`, tokens[who]).open();
      await f.close();
      expect(f.status, `${who} following alice's workspace`).to.equal({ alice: 200, bob: 404, carol: 200, dave: 404, admin: 200 }[who]);
    }
    const anonymous = await new SseFollower(`${t.api.baseUrl}/v1/events/stream`, 'not-a-token').open();
    expect(anonymous.status).to.equal(401);
  });

  it('a revoked token stops working at once; an expired one is refused; tokens are stored hashed', async () => {
    const tok = await t.api.call<{ id: string; token: string }>('POST', `/v1/users/${ids.dave}/tokens`, { name: 'short-lived' }, as('dave'));
    expect(tok.body).to.include({ lastUsedAt: null });
    expect((await t.api.call('GET', `/v1/users/${ids.dave}`, undefined, { token: tok.body.token })).status).to.equal(200);
    const listed = await t.api.call<{ tokens: { id: string; lastUsedAt: string | null }[] }>('GET', `/v1/users/${ids.dave}/tokens`, undefined, as('dave'));
    expect(listed.body.tokens.find((x) => x.id === tok.body.id)?.lastUsedAt, 'its use is recorded').to.be.a('string');
    const rev = await t.api.call('DELETE', `/v1/users/${ids.dave}/tokens/${tok.body.id}`, undefined, as('dave'));
    expect(rev.status).to.equal(200);
    const after = await t.api.call<{ error: string }>('GET', `/v1/users/${ids.dave}`, undefined, { token: tok.body.token });
    expect(after.status).to.equal(401);
    expect(after.body.error).to.equal('UNAUTHENTICATED');

    const db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ token_hash: string }>('SELECT token_hash FROM api_tokens');
      for (const r of rows) expect(Object.values(tokens)).to.not.include(r.token_hash);
      const exp = await t.api.call<{ id: string; token: string }>('POST', `/v1/users/${ids.dave}/tokens`, { name: 'expiring', ttlSeconds: 60 }, as('admin'));
      await db.query(`UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [exp.body.id]);
      expect((await t.api.call('GET', `/v1/users/${ids.dave}`, undefined, { token: exp.body.token })).status).to.equal(401);
    } finally {
      await db.end();
    }
  });

  it('every mutating call leaves an audit row with actor, action, target and outcome', async () => {
    await t.api.call('POST', `/v1/workspaces/${ws.id}/stop`, undefined, as('bob')); // refused: 404
    await t.api.call('POST', `/v1/workspaces/${ws.id}/stop?wait=30`, undefined, as('alice')); // done
    await t.api.call('POST', '/v1/users', { id: 'x' }, { token: 'not-a-token' }); // 401
    const r = await t.api.call<{ entries: { actor: string; action: string; target: string; outcome: number; requestId: string }[] }>('GET', '/v1/audit?limit=50');
    const e = r.body.entries;
    expect(e.find((x) => x.actor === ids.bob && x.target === `/v1/workspaces/${ws.id}/stop`)?.outcome).to.equal(404);
    const ok = e.find((x) => x.actor === ids.alice && x.target === `/v1/workspaces/${ws.id}/stop`);
    expect(ok?.outcome).to.equal(202);
    expect(ok?.action).to.equal('POST /v1/workspaces/:id/stop');
    expect(ok?.requestId).to.be.a('string').and.not.equal('');
    expect(e.find((x) => x.actor === 'anonymous' && x.target === '/v1/users')?.outcome).to.equal(401);
    const mine = await t.api.call<{ entries: unknown[] }>('GET', `/v1/audit?actor=${ids.alice}`);
    expect(mine.body.entries.length).to.be.greaterThan(0);
  });
});
