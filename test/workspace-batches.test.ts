import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { ROOT, startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';

interface ErrBody {
  error: string;
  message: string;
  suggestion?: string;
  field?: string;
  limit?: string;
  reason?: string;
}
interface Result {
  index: number;
  userId: string;
  name: string | null;
  status: number;
  workspace?: Workspace;
  error?: ErrBody;
}
interface Batch {
  created: number;
  failed: number;
  results: Result[];
}

const TIERS = JSON.stringify({
  tiny: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256, autostopAfterSeconds: 3600 },
  approved: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256, requiresApproval: true },
});
const IMAGE = 'a4c-base:latest';
const MiB = 1024 * 1024;
const MAX = 300;

/** A connected, heartbeating host as the placement statement sees it: rows only, no agent (as in placement-batch.test.ts). */
async function addHost(db: pg.Pool, id: string, memoryMb: number): Promise<void> {
  await db.query(`INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes) VALUES ($1, 'linux-x64', 'test', $2, 8, $3)`, [id, memoryMb * MiB, 100 * 1024 * MiB]);
  await db.query(
    `INSERT INTO host_status (host_id, arch, connected, connected_at, last_heartbeat_at, disk_percent, memory_percent, docker_ready)
     VALUES ($1, 'linux-x64', true, now(), now() + interval '1 day', 10, 10, true)`,
    [id],
  );
  await db.query(`INSERT INTO host_images (host_id, ref, image_id) VALUES ($1, $2, 'sha256:test')`, [id, IMAGE]);
}

/** Runs the built `a4c` as its own process, with stdin. */
function a4c(args: string[], env: Record<string, string>, stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(ROOT, 'packages/cli/bin/a4c.mjs'), ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    p.stdin.end(stdin);
  });
}

const item = (userId: string, extra: Record<string, unknown> = {}) => ({ userId, projectName: 'p', arch: 'linux-x64', tier: 'tiny', ...extra });

describe('workspace batches: many creates in one request (POST /v1/workspace-batches, real PostgreSQL)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let db: pg.Pool;

  before(async () => {
    t = await startTestControlPlane({
      A4C_TIERS: TIERS,
      A4C_QUOTA_MAX_WORKSPACES: '5',
      A4C_CREATE_RATE_PER_MINUTE: '1',
      A4C_CREATE_RATE_BURST: '3',
      A4C_PLACEMENT_BATCH: 'true',
      A4C_WORKSPACE_BATCH_MAX: String(MAX),
    });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 4 });
  });

  after(async () => {
    await db?.end();
    await t?.stop();
  });

  /** Hosts whose reservation is not the sum of their workspaces', hosts past their allocatable share, and workspaces per host. */
  async function check(hosts: string[]) {
    const { rows } = await db.query<{ id: string; mem: number; smem: number; n: number; sn: number; over: boolean }>(
      `SELECT h.id, h.reserved_memory_mb::int AS mem, h.reserved_workspaces AS n,
              COALESCE(sum(w.memory_mb) FILTER (WHERE a4c_reserves_compute(w.status, w.host_id)), 0)::int AS smem,
              count(w.id) FILTER (WHERE a4c_reserves(w.status, w.host_id))::int AS sn,
              (h.reserved_memory_mb > floor(h.memory_bytes / 1048576.0 * 0.8) OR h.reserved_millicpus > floor(h.cpus * 1000 * 0.8)) AS over
         FROM hosts h LEFT JOIN workspaces w ON w.host_id = h.id WHERE h.id = ANY($1) GROUP BY h.id ORDER BY h.id`,
      [hosts],
    );
    return { mismatched: rows.filter((r) => r.mem !== r.smem || r.n !== r.sn).map((r) => r.id), over: rows.filter((r) => r.over).map((r) => r.id), placed: rows.map((r) => r.sn) };
  }

  it('four concurrent requests of 50 against room for 60: exactly 60 created, never over-committed, the rest CAPACITY_EXHAUSTED each', async () => {
    // 1600 MB less 20 % headroom: room for exactly 20 tiny (64 MB) workspaces on each.
    const hosts = [uniqueId('wb-a'), uniqueId('wb-b'), uniqueId('wb-c')];
    for (const h of hosts) await addHost(db, h, 1600);
    const prefix = uniqueId('cap');
    const bodies = [0, 1, 2, 3].map((r) => ({ workspaces: Array.from({ length: 50 }, (_, i) => item(`${prefix}-${(r * 50 + i) % 100}`, { name: `w${r}-${i}` })) }));
    const answers = await Promise.all(bodies.map((b) => t.api.call<Batch>('POST', '/v1/workspace-batches', b)));
    const results = answers.flatMap((a) => {
      expect(a.status, JSON.stringify(a.body).slice(0, 500)).to.equal(200);
      expect(a.body.results.map((r) => r.index)).to.deep.equal([...Array(50).keys()]);
      expect(a.body.created + a.body.failed).to.equal(50);
      return a.body.results;
    });
    const created = results.filter((r) => r.status === 201);
    expect(created).to.have.length(60);
    for (const r of created) {
      expect(r.workspace?.status).to.equal('CREATING');
      expect(hosts).to.include(r.workspace?.hostId);
      expect(r.workspace?.userId).to.equal(r.userId);
      expect(r.workspace?.name).to.equal(r.name);
    }
    const refused = results.filter((r) => r.status !== 201);
    expect(refused).to.have.length(140);
    for (const r of refused) {
      expect([r.status, r.error?.error, r.error?.reason]).to.deep.equal([503, 'CAPACITY_EXHAUSTED', 'NO_CAPACITY_FOR_TIER']);
      expect(r.error?.suggestion).to.be.a('string').and.not.equal('');
    }
    const c = await check(hosts);
    expect(c.over, 'over-committed hosts').to.deep.equal([]);
    expect(c.mismatched, 'hosts whose reservation is not the sum of their workspaces').to.deep.equal([]);
    expect(c.placed).to.deep.equal([20, 20, 20]);
    // Answered only once committed: every created one is in the database, with its event; in far fewer transactions than workspaces.
    const { rows } = await db.query<{ n: number; txs: number; events: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT xmin::text)::int AS txs,
              (SELECT count(*)::int FROM events e WHERE e.kind = 'workspace.created' AND e.workspace_id = ANY($1::uuid[])) AS events
         FROM workspaces WHERE id = ANY($1::uuid[])`,
      [created.map((r) => r.workspace?.id)],
    );
    expect(rows[0]?.n).to.equal(60);
    expect(rows[0]?.events).to.equal(60);
    expect(rows[0]?.txs).to.be.below(20);
  });

  it("returning users: each one's new workspace goes to the host holding their volume, as a single create's would", async () => {
    const hosts = [uniqueId('wv-a'), uniqueId('wv-b'), uniqueId('wv-c')];
    for (const h of hosts) await addHost(db, h, 1600);
    // Only these hosts have this image: the placements stay among them.
    const image = `only-${hosts[0]}:1`;
    for (const h of hosts) await db.query(`INSERT INTO host_images (host_id, ref, image_id) VALUES ($1, $2, 'sha256:wv')`, [h, image]);
    const users = Array.from({ length: 12 }, (_, i) => uniqueId(`wv${i}`));
    const round = async (n: number, order: string[]) => {
      const r = await t.api.call<Batch>('POST', '/v1/workspace-batches', { workspaces: order.map((u) => item(u, { projectName: 'vol', image, name: `r${n}` })) });
      expect(r.body.created, JSON.stringify(r.body).slice(0, 400)).to.equal(users.length);
      return new Map(r.body.results.map((x) => [x.userId, x.workspace?.hostId]));
    };
    const first = await round(1, users);
    expect(new Set(first.values()).size, 'the first round spreads over the hosts').to.equal(3);
    // In the other order: by placement order alone most would land elsewhere.
    const second = await round(2, [...users].reverse());
    for (const u of users) expect(second.get(u), u).to.equal(first.get(u));
    const c = await check(hosts);
    expect([c.over, c.mismatched]).to.deep.equal([[], []]);
  });

  it("two new workspaces of one user's project on one host: one volume row, both placed in the same transaction", async () => {
    const host = uniqueId('wv-one');
    await addHost(db, host, 1600);
    const image = `only-${host}:1`;
    await db.query(`INSERT INTO host_images (host_id, ref, image_id) VALUES ($1, $2, 'sha256:one')`, [host, image]);
    const user = uniqueId('twice');
    const r = await t.api.call<Batch>('POST', '/v1/workspace-batches', { workspaces: [item(user, { image, name: 'a' }), item(user, { image, name: 'b' })] });
    expect(r.body.results.map((x) => x.workspace?.hostId)).to.deep.equal([host, host]);
    const { rows } = await db.query<{ n: number; txs: number; volumes: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT xmin::text)::int AS txs,
              (SELECT count(*)::int FROM volumes WHERE user_id = $1 AND host_id = $2 AND project = 'p') AS volumes
         FROM workspaces WHERE user_id = $1`,
      [user, host],
    );
    expect(rows[0]).to.deep.equal({ n: 2, txs: 1, volumes: 1 });
  });

  it('an item whose own checks fail fails alone, with the error a single create would give; the rest are created', async () => {
    const quotaUser = uniqueId('q1');
    const rateUser = uniqueId('rate');
    const ok = uniqueId('ok');
    await db.query(`INSERT INTO users (id) VALUES ($1), ($2)`, [quotaUser, rateUser]);
    await db.query(`INSERT INTO user_quotas (user_id, max_workspaces) VALUES ($1, 1), ($2, 100)`, [quotaUser, rateUser]);
    const taken = await t.api.call<Workspace>('POST', `/v1/users/${ok}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'approved', name: 'taken' });
    expect(taken.status).to.equal(201);
    const body = {
      workspaces: [
        item(quotaUser, { tier: 'approved' }), // 0 created
        item(quotaUser, { tier: 'approved' }), // 1 quota
        item(rateUser, { tier: 'approved' }), // 2-4 created (burst 3)
        item(rateUser, { tier: 'approved' }),
        item(rateUser, { tier: 'approved' }),
        item(rateUser, { tier: 'approved' }), // 5 rate
        item(ok, { tier: 'approved', name: 'taken' }), // 6 name taken before
        item(ok, { tier: 'approved', name: 'twice' }), // 7 created
        item(ok, { tier: 'approved', name: 'twice' }), // 8 name taken in this batch
        item(ok, { tier: 'gigantic' }), // 9 unknown tier
      ],
    };
    const r = await t.api.call<Batch>('POST', '/v1/workspace-batches', body);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    const got = r.body.results.map((x) => (x.status === 201 ? x.workspace?.status : `${x.status} ${x.error?.error}`));
    expect(got).to.deep.equal([
      'PENDING_APPROVAL',
      '429 QUOTA_EXCEEDED',
      'PENDING_APPROVAL',
      'PENDING_APPROVAL',
      'PENDING_APPROVAL',
      '429 RATE_LIMITED',
      '409 CONFLICT',
      'PENDING_APPROVAL',
      '409 CONFLICT',
      '400 INVALID_ARGUMENT',
    ]);
    expect([r.body.created, r.body.failed]).to.deep.equal([5, 5]);
    for (const x of r.body.results.filter((y) => y.status !== 201)) expect(x.error?.suggestion, JSON.stringify(x)).to.be.a('string').and.not.equal('');
    expect(r.body.results[1]?.error?.limit).to.equal('maxWorkspaces');
    expect(r.body.results[9]?.error).to.deep.include({ field: 'tier' });
    // The same as the single create answers for the same request.
    const single = await t.api.call<ErrBody>('POST', `/v1/users/${quotaUser}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'approved' });
    expect([single.status, single.body.error]).to.deep.equal([429, 'QUOTA_EXCEEDED']);
    // What was refused was never written.
    const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM workspaces WHERE user_id = ANY($1) AND status <> 'DELETED'`, [[quotaUser, rateUser, ok]]);
    expect(rows[0]?.n).to.equal(1 + 3 + 2);
    // An audit row per item, beside the request's own.
    const audit = await db.query<{ action: string; outcome: number; n: number }>(
      `SELECT action, outcome, count(*)::int AS n FROM audit_log WHERE request_id = (SELECT request_id FROM audit_log WHERE target = $1 ORDER BY id DESC LIMIT 1)
        GROUP BY action, outcome ORDER BY action, outcome`,
      ['/v1/workspace-batches'],
    );
    expect(audit.rows).to.deep.equal([
      { action: 'POST /v1/workspace-batches', outcome: 200, n: 1 },
      { action: 'POST /v1/workspace-batches item', outcome: 201, n: 5 },
      { action: 'POST /v1/workspace-batches item', outcome: 400, n: 1 },
      { action: 'POST /v1/workspace-batches item', outcome: 409, n: 2 },
      { action: 'POST /v1/workspace-batches item', outcome: 429, n: 2 },
    ]);
  });

  it('authorization per item, as the single create decides: a user only their own, a lead only their own, an admin anyone', async () => {
    const team = uniqueId('team');
    const alice = uniqueId('alice');
    const bob = uniqueId('bob');
    const lead = uniqueId('lead');
    for (const [id, role] of [[alice, 'user'], [bob, 'user'], [lead, 'lead']] as const) {
      expect((await t.api.call('POST', '/v1/users', { id, teamId: team, role })).status).to.equal(201);
    }
    const token = async (u: string) => (await t.api.call<{ token: string }>('POST', `/v1/users/${u}/tokens`, { name: 'wb' })).body.token;
    const asAlice = { token: await token(alice) };
    const asLead = { token: await token(lead) };
    const approved = { tier: 'approved' };

    const a = await t.api.call<Batch>('POST', '/v1/workspace-batches', { workspaces: [item(alice, approved), item(bob, approved)] }, asAlice);
    expect(a.status).to.equal(200);
    expect(a.body.results.map((x) => [x.status, x.error?.error])).to.deep.equal([[201, undefined], [404, 'NOT_FOUND']]);
    expect(a.body.results[1]?.error?.suggestion).to.be.a('string');
    // The single create refuses the same.
    expect((await t.api.call('POST', `/v1/users/${bob}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'approved' }, asAlice)).status).to.equal(404);

    const l = await t.api.call<Batch>('POST', '/v1/workspace-batches', { workspaces: [item(lead, approved), item(alice, approved)] }, asLead);
    expect(l.body.results.map((x) => x.status)).to.deep.equal([201, 404]);
    expect((await t.api.call('POST', `/v1/users/${alice}/workspaces`, { projectName: 'p', arch: 'linux-x64', tier: 'approved' }, asLead)).status).to.equal(404);

    // A user may not lift their tier's autostop; an admin may.
    const off = { tier: 'tiny', autostopAfterSeconds: 0 };
    const u = await t.api.call<Batch>('POST', '/v1/workspace-batches', { workspaces: [item(alice, off)] }, asAlice);
    expect([u.body.results[0]?.status, u.body.results[0]?.error?.error, u.body.results[0]?.error?.field]).to.deep.equal([403, 'PERMISSION_DENIED', 'autostopAfterSeconds']);

    const ad = await t.api.call<Batch>('POST', '/v1/workspace-batches', { workspaces: [item(alice, approved), item(bob, { ...approved, autostopAfterSeconds: 0 })] });
    expect(ad.body.results.map((x) => x.status)).to.deep.equal([201, 201]);
    const { rows } = await db.query<{ user_id: string; n: number }>(`SELECT user_id, count(*)::int AS n FROM workspaces WHERE user_id = ANY($1) GROUP BY user_id ORDER BY user_id`, [[alice, bob, lead]]);
    expect(Object.fromEntries(rows.map((r) => [r.user_id, r.n]))).to.deep.equal({ [alice]: 2, [bob]: 1, [lead]: 1 });
  });

  it('limits: at most A4C_WORKSPACE_BATCH_MAX items, at least one, every item well-formed; a refused request creates nothing', async () => {
    const user = uniqueId('lim');
    const many = await t.api.call<ErrBody>('POST', '/v1/workspace-batches', { workspaces: Array.from({ length: MAX + 1 }, () => item(user)) });
    expect([many.status, many.body.error, many.body.field]).to.deep.equal([400, 'INVALID_ARGUMENT', 'workspaces']);
    expect(many.body.message).to.include(`at most ${MAX}`);
    const none = await t.api.call<ErrBody>('POST', '/v1/workspace-batches', { workspaces: [] });
    expect([none.status, none.body.field]).to.deep.equal([400, 'workspaces']);
    const bad = await t.api.call<ErrBody>('POST', '/v1/workspace-batches', { workspaces: [item(user), item(user, { arch: 'sparc' })] });
    expect([bad.status, bad.body.field]).to.deep.equal([400, 'workspaces.1.arch']);
    const missing = await t.api.call<ErrBody>('POST', '/v1/workspace-batches', { workspaces: [{ projectName: 'p', arch: 'linux-x64', tier: 'tiny' }] });
    expect([missing.status, missing.body.field]).to.deep.equal([400, 'workspaces.0.userId']);
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM workspaces WHERE user_id = $1', [user]);
    expect(rows[0]?.n).to.equal(0);
    // The limit itself fits in the body limit: MAX items are parsed (and refused one by one here for want of hosts of that arch).
    const full = await t.api.call<Batch>('POST', '/v1/workspace-batches', {
      workspaces: Array.from({ length: MAX }, (_, i) => item(`${user}-${i}`, { arch: 'linux-arm64', name: `a-rather-long-workspace-name-${i}`, changeNumber: 'CL-123456789' })),
    });
    expect(full.status, JSON.stringify(full.body).slice(0, 300)).to.equal(200);
    expect(full.body.results).to.have.length(MAX);
    expect(new Set(full.body.results.map((x) => x.error?.error))).to.deep.equal(new Set(['CAPACITY_EXHAUSTED']));
  });

  it('without placement batches (A4C_PLACEMENT_BATCH=false) the items are created one after another, with the same per-item results', async () => {
    const one = await startTestControlPlane({ A4C_TIERS: TIERS, A4C_PLACEMENT_BATCH: 'false' });
    try {
      const user = uniqueId('seq');
      const r = await one.api.call<Batch>('POST', '/v1/workspace-batches', {
        workspaces: [item(user, { tier: 'approved', name: 'a' }), item(user, { tier: 'approved', name: 'a' }), item(user, { tier: 'nope' }), item(user, { tier: 'approved', name: 'b' })],
      });
      expect(r.body.results.map((x) => (x.status === 201 ? x.workspace?.name : `${x.status} ${x.error?.error}`))).to.deep.equal(['a', '409 CONFLICT', '400 INVALID_ARGUMENT', 'b']);
    } finally {
      await one.stop();
    }
  });

  it('the CLI: a4c ws create --count N, and a4c ws create-many FILE (- for standard input), one request each', async () => {
    const user = uniqueId('cli');
    const other = uniqueId('cli-other');
    const env = { A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token, A4C_USER: user };
    const r = await a4c(['-o', 'json', 'ws', 'create', '--project', 'p', '--arch', 'linux-x64', '--tier', 'approved', '--name', 'lab', '--count', '2', '--no-wait'], env);
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as Batch;
    expect(out.results.map((x) => [x.workspace?.name, x.workspace?.status, x.userId])).to.deep.equal([1, 2].map((i) => [`lab-${i}`, 'PENDING_APPROVAL', user]));
    expect(r.stderr).to.contain('2 created, 0 refused');
    // (The creation rate, a burst of 3, leaves one for this user.) From standard input: one for --user (no userId), one for another user; one refused (the name is taken): exit 1, its reason shown.
    const items = [
      { projectName: 'p', arch: 'linux-x64', tier: 'approved', name: 'from-file' },
      { userId: other, projectName: 'p', arch: 'linux-x64', tier: 'approved' },
      { projectName: 'p', arch: 'linux-x64', tier: 'approved', name: 'lab-1' },
    ];
    const m = await a4c(['ws', 'create-many', '-', '--no-wait'], env, JSON.stringify(items));
    expect(m.code, m.stderr).to.equal(1);
    expect(m.stdout, m.stdout).to.match(/^0\s+\S+\s+from-file\s+PENDING_APPROVAL/m);
    expect(m.stdout).to.match(new RegExp(`^1\\s+${other}\\s+\\S+\\s+PENDING_APPROVAL`, 'm'));
    expect(m.stdout).to.match(/^2\s+\S+\s+lab-1\s+409 CONFLICT\s+-\s+.*already has a workspace named/m);
    const bad = await a4c(['ws', 'create-many', '-'], env, '{"nope": 1}');
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain('expected a JSON list of workspaces');
    const help = await a4c(['ws', 'create', '--help'], env);
    expect(help.stdout).to.contain('--count <n>');
  });
});
