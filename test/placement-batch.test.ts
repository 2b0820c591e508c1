import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import { parseTiers, type Workspace } from '@a4c/common';
import { placeBatch, type BatchRules, type PlacementRequest } from '@a4c/control-plane/placement-batch';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';

interface ErrBody {
  error?: string;
  reason?: string;
  limit?: string;
  suggestion?: string;
}

const TIERS = JSON.stringify({
  tiny: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256 },
  // Needs an admin's approval: never placed at create, so it tests quotas apart from capacity.
  approved: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256, requiresApproval: true },
});
const IMAGE = 'a4c-base:latest';
const MiB = 1024 * 1024;

/**
 * Hosts as rows only: a connected, heartbeating host as the placement statement sees it
 * (heartbeat far in the future, so the short test heartbeat window never expires it).
 * No agent: what is under test is the placement transaction, not the containers.
 */
async function addHost(db: pg.Pool, id: string, memoryMb: number): Promise<void> {
  await db.query(`INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes) VALUES ($1, 'linux-x64', 'test', $2, 8, $3)`, [id, memoryMb * MiB, 100 * 1024 * MiB]);
  await db.query(
    `INSERT INTO host_status (host_id, arch, connected, connected_at, last_heartbeat_at, disk_percent, memory_percent, docker_ready)
     VALUES ($1, 'linux-x64', true, now(), now() + interval '1 day', 10, 10, true)`,
    [id],
  );
  await db.query(`INSERT INTO host_images (host_id, ref, image_id) VALUES ($1, $2, 'sha256:test')`, [id, IMAGE]);
}

/** Hosts whose reserved_* differ from the sums over their reserving workspaces, and hosts past their allocatable share. */
async function audit(db: pg.Pool, hosts: string[]): Promise<{ mismatched: string[]; over: string[]; placed: Map<string, number> }> {
  const { rows } = await db.query<{ id: string; mem: number; mcpu: number; disk: number; n: number; smem: number; smcpu: number; sdisk: number; sn: number; over: boolean }>(
    `SELECT h.id, h.reserved_memory_mb::int AS mem, h.reserved_millicpus::int AS mcpu, h.reserved_disk_mb::int AS disk, h.reserved_workspaces AS n,
            COALESCE(sum(w.memory_mb) FILTER (WHERE a4c_reserves_compute(w.status, w.host_id)), 0)::int AS smem,
            COALESCE(sum(round(w.cpus * 1000)) FILTER (WHERE a4c_reserves_compute(w.status, w.host_id)), 0)::int AS smcpu,
            COALESCE(sum(round(w.disk_gb * 1024)) FILTER (WHERE a4c_reserves_disk(w.status, w.host_id)), 0)::int AS sdisk,
            count(w.id) FILTER (WHERE a4c_reserves(w.status, w.host_id))::int AS sn,
            (h.reserved_memory_mb > floor(h.memory_bytes / 1048576.0 * 0.8) OR h.reserved_millicpus > floor(h.cpus * 1000 * 0.8)
             OR h.reserved_disk_mb > floor(h.disk_bytes / 1048576.0 * 0.8)) AS over
       FROM hosts h LEFT JOIN workspaces w ON w.host_id = h.id
      WHERE h.id = ANY($1) GROUP BY h.id`,
    [hosts],
  );
  return {
    mismatched: rows.filter((r) => r.mem !== r.smem || r.mcpu !== r.smcpu || r.disk !== r.sdisk || r.n !== r.sn).map((r) => r.id),
    over: rows.filter((r) => r.over).map((r) => r.id),
    placed: new Map(rows.map((r) => [r.id, r.sn])),
  };
}

describe('placement batches: concurrent creates placed many per transaction (real PostgreSQL)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let db: pg.Pool;
  // 1600 MB offered, less 20 % headroom = room for exactly 20 tiny (64 MB) workspaces each.
  const hosts = [uniqueId('batch-a'), uniqueId('batch-b'), uniqueId('batch-c')];

  before(async () => {
    t = await startTestControlPlane({
      A4C_TIERS: TIERS,
      A4C_QUOTA_MAX_WORKSPACES: '5',
      A4C_CREATE_RATE_PER_MINUTE: '1',
      A4C_CREATE_RATE_BURST: '3',
      A4C_PLACEMENT_BATCH: 'true',
    });
    db = new pg.Pool({ connectionString: t.databaseUrl, max: 4 });
    for (const h of hosts) await addHost(db, h, 1600);
  });

  after(async () => {
    await db?.end();
    await t?.stop();
  });

  it('225 concurrent creates: exactly 60 placed, never over-committed, reservations exact, and each refused one with its own error', async () => {
    const quotaUser = uniqueId('quota1');
    const rateUser = uniqueId('rate');
    const nameUser = uniqueId('names');
    await db.query(`INSERT INTO users (id) VALUES ($1), ($2)`, [quotaUser, rateUser]);
    await db.query(`INSERT INTO user_quotas (user_id, max_workspaces) VALUES ($1, 1), ($2, 100)`, [quotaUser, rateUser]);
    type Kind = 'capacity' | 'quota' | 'rate' | 'name';
    const reqs: { kind: Kind; user: string; body: Record<string, unknown> }[] = [];
    // 100 users, 2 each, within their quota (5) and burst (3): only capacity limits them.
    for (let i = 0; i < 200; i++) reqs.push({ kind: 'capacity', user: `cap${i % 100}`, body: { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: `c${i}` } });
    // A user with a quota of one workspace (tier needing approval: no host involved).
    for (let i = 0; i < 10; i++) reqs.push({ kind: 'quota', user: quotaUser, body: { projectName: 'p', arch: 'linux-x64', tier: 'approved', name: `q${i}` } });
    // A user with room for 100 but a creation rate of 1 a minute after a burst of 3.
    for (let i = 0; i < 10; i++) reqs.push({ kind: 'rate', user: rateUser, body: { projectName: 'p', arch: 'linux-x64', tier: 'approved', name: `r${i}` } });
    // The same name five times.
    for (let i = 0; i < 5; i++) reqs.push({ kind: 'name', user: nameUser, body: { projectName: 'p', arch: 'linux-x64', tier: 'approved', name: 'same' } });
    // Interleave the kinds so they share batches.
    reqs.sort(() => Math.random() - 0.5);

    const results = await Promise.all(reqs.map(async (r) => ({ ...r, res: await t.api.call<Workspace & ErrBody>('POST', `/v1/users/${r.user}/workspaces`, r.body) })));
    const by = (kind: Kind) => results.filter((r) => r.kind === kind);
    const ok = (kind: Kind) => by(kind).filter((r) => r.res.status === 201);
    const errors = (kind: Kind) => by(kind).filter((r) => r.res.status !== 201).map((r) => r.res.body.error);
    const summary = JSON.stringify(results.reduce<Record<string, number>>((acc, r) => ({ ...acc, [`${r.kind} ${r.res.status} ${r.res.body.error ?? ''}`]: (acc[`${r.kind} ${r.res.status} ${r.res.body.error ?? ''}`] ?? 0) + 1 }), {}));

    expect(ok('capacity').length, summary).to.equal(60);
    expect(errors('capacity'), summary).to.have.length(140).and.satisfy((es: string[]) => es.every((e) => e === 'CAPACITY_EXHAUSTED'));
    for (const r of by('capacity').filter((x) => x.res.status !== 201)) {
      expect(r.res.body.reason).to.equal('NO_CAPACITY_FOR_TIER');
      expect(r.res.body.suggestion).to.be.a('string');
    }
    expect(ok('quota').length, summary).to.equal(1);
    expect(errors('quota'), summary).to.deep.equal(Array(9).fill('QUOTA_EXCEEDED'));
    expect(by('quota').find((r) => r.res.status !== 201)?.res.body.limit).to.equal('maxWorkspaces');
    expect(ok('rate').length, summary).to.equal(3);
    expect(errors('rate'), summary).to.deep.equal(Array(7).fill('RATE_LIMITED'));
    expect(ok('name').length, summary).to.equal(1);
    expect(errors('name'), summary).to.deep.equal(Array(4).fill('CONFLICT'));
    for (const r of [...ok('quota'), ...ok('rate'), ...ok('name')]) expect(r.res.body.status).to.equal('PENDING_APPROVAL');

    const a = await audit(db, hosts);
    expect(a.over, 'over-committed hosts').to.deep.equal([]);
    expect(a.mismatched, 'hosts whose reservation is not the sum of their workspaces').to.deep.equal([]);
    expect([...a.placed.values()]).to.deep.equal([20, 20, 20]);
    // Every placed workspace is CREATING on a host, with the revision its host was bumped to, and an event.
    const { rows } = await db.query<{ n: number; txs: number; bad: number; events: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT w.xmin::text)::int AS txs,
              count(*) FILTER (WHERE w.status <> 'CREATING' OR w.desired_revision > h.revision OR w.desired_revision < 1)::int AS bad,
              (SELECT count(*)::int FROM events e WHERE e.kind = 'workspace.created' AND e.host_id = ANY($1)) AS events
         FROM workspaces w JOIN hosts h ON h.id = w.host_id WHERE w.host_id = ANY($1)`,
      [hosts],
    );
    expect(rows[0]?.n).to.equal(60);
    expect(rows[0]?.bad).to.equal(0);
    expect(rows[0]?.events).to.equal(60);
    // Placed in batches: fewer transactions than workspaces.
    expect(rows[0]?.txs).to.be.below(60);
  });

  it('within one batch: two creates of a user with a quota of 1, three past a burst, and capacity for one are each decided as if one after another', async () => {
    const host = uniqueId('batch-one');
    // Room for exactly one tiny workspace: 80 MB offered, 64 after headroom.
    await addHost(db, host, 80);
    const quotaUser = uniqueId('q1');
    const rateUser = uniqueId('r');
    await db.query(`INSERT INTO users (id) VALUES ($1), ($2)`, [quotaUser, rateUser]);
    await db.query(`INSERT INTO user_quotas (user_id, max_workspaces) VALUES ($1, 1), ($2, 100)`, [quotaUser, rateUser]);
    // Only this host for the demand: the image is on it alone.
    const image = `only-${host}:1`;
    await db.query(`INSERT INTO host_images (host_id, ref, image_id) VALUES ($1, $2, 'sha256:only')`, [host, image]);
    const tiers = parseTiers(TIERS);
    const tiny = tiers.get('tiny');
    const approved = tiers.get('approved');
    if (!tiny || !approved) throw new Error('test tiers missing');
    const req = (userId: string, tier = approved, img?: string): PlacementRequest => ({
      id: randomUUID(),
      userId,
      name: `w-${randomUUID().slice(0, 8)}`,
      projectName: 'p',
      arch: 'linux-x64',
      tier,
      image: img,
      changeNumber: null,
      hostname: `${randomUUID().slice(0, 8)}.ws.test`,
      autostopAfterSeconds: undefined,
      actor: 'test',
      patientUntil: Date.now() + 10_000,
    });
    const batch = [
      req(quotaUser),
      req(quotaUser),
      req(rateUser),
      req(rateUser),
      req(rateUser),
      req(rateUser),
      req(uniqueId('cap1'), tiny, image),
      req(uniqueId('cap2'), tiny, image),
    ];
    const rules: BatchRules = {
      policy: { liveWithinSeconds: 60, headroom: 0.2, maxDiskPercent: 80, maxMemoryPercent: 90 },
      defaultImage: IMAGE,
      quota: { maxWorkspaces: 5, maxDiskGb: 500, maxConcurrentBuilds: 2 },
      createRate: { perMinute: 1, burst: 3 },
      failedGrace: { seconds: 86_400, clock: { now: () => new Date() } },
    };
    const client = await db.connect();
    let outcomes;
    try {
      await client.query('BEGIN');
      outcomes = await placeBatch(client, batch, rules);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const codes = outcomes.map((o) => ('row' in o ? o.row.status : 'error' in o ? (o.error as { code?: string }).code : 'retry'));
    expect(codes).to.deep.equal([
      'PENDING_APPROVAL',
      'QUOTA_EXCEEDED',
      'PENDING_APPROVAL',
      'PENDING_APPROVAL',
      'PENDING_APPROVAL',
      'RATE_LIMITED',
      'CREATING',
      'CAPACITY_EXHAUSTED',
    ]);
    const a = await audit(db, [host]);
    expect(a.mismatched).to.deep.equal([]);
    expect(a.over).to.deep.equal([]);
    expect(a.placed.get(host)).to.equal(1);
    // What a refused request asked for was never written: only the accepted rows exist.
    const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM workspaces WHERE id = ANY($1)', [batch.map((r) => r.id)]);
    expect(rows[0]?.n).to.equal(5);
  });
});
