/**
 * bench/search: fleet search and the activity log at scale. Generates 1,000,000
 * workspaces (20,000 users in 500 teams, 2,000 hosts, 300 projects, 5 % failed with
 * error text) and 5,000,000 events in the control plane's own PostgreSQL, then times
 * every documented filter of GET /v1/workspaces and GET /v1/events, and q, through the
 * REST API (p50 and p99 over varied values), and prints the EXPLAIN (ANALYZE) plan of
 * each one's SQL, to show the index it uses.
 *
 * The control plane runs as its own process with its embedded PostgreSQL; the load
 * generator is this process, one request at a time (latency, not throughput).
 *
 * Run: npm run bench -- search   (BENCH_WORKSPACES, BENCH_EVENTS, BENCH_RUNS to vary)
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { readEvents, type Cursor } from '@a4c/control-plane/events';
import { searchWorkspaces, type FleetQuery } from '@a4c/control-plane/search';
import { NO_LIMITS } from './agent.js';
import { machine, percentile } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WORKSPACES = Number(process.env.BENCH_WORKSPACES ?? 1_000_000);
const EVENTS = Number(process.env.BENCH_EVENTS ?? 5_000_000);
const RUNS = Number(process.env.BENCH_RUNS ?? 200);
const USERS = 20_000;
const TEAMS = 500;
const HOSTS = 2000;
const PROJECTS = 300;

const ERRORS = [
  'container exited with code 137: out of memory (the kernel OOM-killed it); choose a larger tier',
  'image %s:CL-%s-linux-x64 not found on the host and no registry holds it',
  'create did not finish within 600 s: stuck at step start',
  'start failed: OCI runtime create failed: unable to start container process: exec: "/bin/%s": no such file',
  'pull failed: registry.internal:5000/%s: connection refused',
  'disk quota exceeded on /workspace (%s GB)',
  'the agent reported a failure without a reason',
  'mount failed: volume a4c-home-%s is in use by another container',
];

type Api = (p: string) => Promise<{ status: number; body: unknown }>;

const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;

async function generate(db: pg.Client): Promise<void> {
  const t0 = performance.now();
  await db.query(`INSERT INTO users (id, team_id, role)
                  SELECT 'u' || g, 'team' || (g % ${TEAMS}), CASE WHEN g < ${TEAMS} THEN 'lead' ELSE 'user' END
                    FROM generate_series(0, ${USERS - 1}) g`);
  await db.query(`INSERT INTO hosts (id, arch) SELECT 'rack' || (g / 40) || '-node-' || g, 'linux-x64' FROM generate_series(0, ${HOSTS - 1}) g`);
  await db.query('ALTER TABLE workspaces DISABLE TRIGGER USER');
  // Bulk load: indexes are built once afterwards, not maintained row by row.
  const wsIndexes = await dropIndexes(db, 'workspaces');
  const evIndexes = await dropIndexes(db, 'events');
  await db.query(`CREATE TEMP TABLE errs (n int, t text)`);
  await db.query(`INSERT INTO errs SELECT i - 1, t FROM unnest($1::text[]) WITH ORDINALITY AS x(t, i)`, [ERRORS]);
  const batch = 200_000;
  for (let from = 0; from < WORKSPACES; from += batch) {
    await db.query(
      `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, hostname, failed_step, error,
                               memory_mb, cpus, disk_gb, pids_limit, created_at, updated_at, status_changed_at)
       SELECT gen_random_uuid(), 'u' || u, p || '-' || g, p, 'linux-x64', tier, 'a4c-base:latest', st,
              CASE WHEN st = 'PENDING_APPROVAL' THEN NULL ELSE 'rack' || (h / 40) || '-node-' || h END,
              p || '-' || g || '-u' || u || '.ws.a4c.internal',
              CASE WHEN st = 'FAILED' THEN (ARRAY['image', 'create', 'start', 'ready', 'run'])[(1 + g % 5)::int] END,
              CASE WHEN st = 'FAILED' THEN replace((SELECT t FROM errs WHERE n = g % 8), '%s', p) END,
              8192, 2, 50, 4096, c, c + make_interval(secs => (g % 86400)), now()
         FROM (SELECT g, (g * 7919) % ${USERS} AS u, (g * 104729) % ${HOSTS} AS h,
                      'proj' || floor(${PROJECTS} * power(random(), 2))::int AS p,
                      CASE WHEN g % 20 < 14 THEN 'standard' WHEN g % 20 < 19 THEN 'large' ELSE 'xl' END AS tier,
                      CASE WHEN g % 100 < 25 THEN 'RUNNING' WHEN g % 100 < 45 THEN 'STOPPED' WHEN g % 100 < 50 THEN 'FAILED'
                           WHEN g % 100 < 98 THEN 'DELETED' WHEN g % 100 < 99 THEN 'CREATING' ELSE 'PENDING_APPROVAL' END AS st,
                      timestamptz '2024-01-01' + make_interval(secs => g * (63072000.0 / ${WORKSPACES})) AS c
                 FROM generate_series($1::bigint, $2::bigint) g) x`,
      [from, Math.min(WORKSPACES, from + batch) - 1],
    );
  }
  await db.query('ALTER TABLE workspaces ENABLE TRIGGER USER');
  const tWs = performance.now();
  // Events: one transaction per batch, so the log has many transaction ids, as in life.
  const kinds = ['workspace.created', 'workspace.running', 'workspace.stopping', 'workspace.stopped', 'workspace.starting', 'workspace.deleting', 'workspace.deleted', 'workspace.failed', 'agent.container_exited'];
  await db.query('CREATE TEMP TABLE wsids AS SELECT row_number() OVER () - 1 AS n, id, user_id, host_id FROM workspaces');
  await db.query('CREATE INDEX ON wsids (n)');
  const evBatch = 250_000;
  for (let from = 0; from < EVENTS; from += evBatch) {
    await db.query(
      `INSERT INTO events (at, kind, actor, reason, workspace_id, host_id, user_id, changes, data)
       SELECT timestamptz '2024-01-01' + make_interval(secs => g * (63072000.0 / ${EVENTS})), k, w.user_id, 'generated',
              w.id, w.host_id, w.user_id, jsonb_build_object('status', jsonb_build_object('from', 'A', 'to', 'B')), '{}'
         FROM (SELECT g, ($3::text[])[(1 + g % ${kinds.length})::int] AS k, (g * 48271) % ${WORKSPACES} AS n FROM generate_series($1::bigint, $2::bigint) g) x
         JOIN wsids w ON w.n = x.n`,
      [from, Math.min(EVENTS, from + evBatch) - 1, kinds],
    );
  }
  // Host events (admins'), about 1 %.
  await db.query(
    `INSERT INTO events (at, kind, actor, reason, host_id)
     SELECT timestamptz '2024-01-01' + make_interval(secs => g * (63072000.0 / ${EVENTS / 100})), 'host.connected', 'agent', 'generated',
            'rack' || ((g % ${HOSTS}) / 40) || '-node-' || (g % ${HOSTS})
       FROM generate_series(0, ${EVENTS / 100 - 1}) g`,
  );
  const tEv = performance.now();
  for (const sql of [...wsIndexes, ...evIndexes]) await db.query(sql);
  await db.query('VACUUM ANALYZE'); // not autovacuum during the timings
  console.log(
    `generated ${WORKSPACES} workspaces in ${((tWs - t0) / 1000).toFixed(0)} s, ${EVENTS + EVENTS / 100} events in ${((tEv - tWs) / 1000).toFixed(0)} s, ` +
      `indexes built in ${((performance.now() - tEv) / 1000).toFixed(0)} s`,
  );
}

/**
 * Drops a table's plain indexes (not its primary key, unique ones, or the small partial
 * one the stuck-workspace sweep needs meanwhile); returns the statements that recreate them.
 */
async function dropIndexes(db: pg.Client, table: string): Promise<string[]> {
  const { rows } = await db.query<{ indexname: string; indexdef: string }>(
    `SELECT indexname, indexdef FROM pg_indexes
      WHERE tablename = $1 AND indexname NOT LIKE '%_pkey' AND indexdef NOT LIKE 'CREATE UNIQUE%' AND indexname <> 'workspaces_coming_up'`,
    [table],
  );
  for (const r of rows) await db.query(`DROP INDEX ${r.indexname}`);
  return rows.map((r) => r.indexdef);
}

interface Case {
  name: string;
  /** A request path with fresh values each run. */
  path: () => string;
  /** The same query through the store code, for EXPLAIN. */
  explain: (db: pg.Pool) => Promise<unknown>;
  who?: 'admin' | 'lead' | 'user';
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-search-'));
  chmodSync(dataDir, 0o755);
  const httpPort = 20000 + Math.floor(Math.random() * 10000);
  const pgPort = httpPort + 2;
  const cp = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_DATA_DIR: dataDir,
      A4C_HTTP_PORT: String(httpPort),
      A4C_GRPC_PORT: String(httpPort + 1),
      A4C_EMBEDDED_PG_PORT: String(pgPort),
      A4C_LOG_LEVEL: 'info',
      A4C_GRPC_INSECURE: 'true',
      A4C_EVENT_RETENTION_DAYS: '0', // the generated log reaches back two years
      ...NO_LIMITS,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const orphaned = () => cp.kill('SIGKILL');
  process.once('exit', orphaned);
  const base = `http://127.0.0.1:${httpPort}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // starting
    }
    if (i > 600) throw new Error('control plane did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const adminToken = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  const url = `postgres://a4c:a4c@127.0.0.1:${pgPort}/a4c`;
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  await generate(db);

  // A lead of team7 and a plain user, with tokens.
  const tokenFor = async (id: string): Promise<string> => {
    const r = await fetch(`${base}/v1/users/${id}/tokens`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: '{"name":"bench"}' });
    return ((await r.json()) as { token: string }).token;
  };
  const tokens = { admin: adminToken, lead: await tokenFor('u7'), user: await tokenFor('u1234') };
  const call = (who: keyof typeof tokens): Api => async (p) => {
    const r = await fetch(`${base}${p}`, { headers: { authorization: `Bearer ${tokens[who]}` } });
    return { status: r.status, body: await r.json() };
  };

  const sample = async (sql: string): Promise<string[]> => (await db.query<{ v: string }>(sql)).rows.map((r) => r.v);
  const users = await sample(`SELECT 'u' || (g * 37 % ${USERS}) AS v FROM generate_series(1, 50) g`);
  const teams = await sample(`SELECT 'team' || (g * 13 % ${TEAMS}) AS v FROM generate_series(1, 50) g`);
  const hosts = await sample(`SELECT 'rack' || ((g * 41 % ${HOSTS}) / 40) || '-node-' || (g * 41 % ${HOSTS}) AS v FROM generate_series(1, 50) g`);
  const projects = await sample(`SELECT 'proj' || (g * 7 % ${PROJECTS}) AS v FROM generate_series(1, 50) g`);
  const workspaceIds = await sample(`SELECT id::text AS v FROM workspaces TABLESAMPLE SYSTEM (0.1) LIMIT 50`);
  const hostnames = await sample(`SELECT hostname AS v FROM workspaces TABLESAMPLE SYSTEM (0.1) LIMIT 50`);
  const times = await sample(`SELECT (timestamptz '2024-01-01' + make_interval(days => g * 14))::text AS v FROM generate_series(1, 50) g`);
  // Cursors in the middle of the log, for paging from them.
  const cursors = await sample(`SELECT xid::text || '-' || id AS v FROM events TABLESAMPLE SYSTEM (0.01) LIMIT 50`);
  const searches = ['out of memory', 'no such file', 'connection refused', 'stuck at step start', 'disk quota exceeded'];
  const typos = ['out of memroy', 'conection refused', 'stuk at step start'];

  const pool = new pg.Pool({ connectionString: url, max: 2 });
  const fleet = (f: Partial<FleetQuery>): ((p: pg.Pool) => Promise<unknown>) => (p) =>
    searchWorkspaces(p, { sort: '-createdAt', limit: 50, scope: { all: true }, ...f }, 15);
  const log = (f: { after?: Cursor; filter?: Parameters<typeof readEvents>[1]['filter']; scope?: Parameters<typeof readEvents>[1]['scope'] }): ((p: pg.Pool) => Promise<unknown>) => (p) =>
    readEvents(p, { after: f.after ?? { xid: 0n, id: 0n }, filter: f.filter ?? {}, scope: f.scope ?? { all: true }, limit: 100 });
  const cursorOf = (s: string): Cursor => {
    const [x, i] = s.split('-');
    return { xid: BigInt(x as string), id: BigInt(i as string) };
  };
  const enc = encodeURIComponent;

  const cases: Case[] = [
    { name: 'workspaces (no filter, newest first)', path: () => '/v1/workspaces?limit=50', explain: fleet({}) },
    { name: 'workspaces ?status=FAILED', path: () => '/v1/workspaces?status=FAILED&limit=50', explain: fleet({ statuses: ['FAILED'] }) },
    { name: 'workspaces ?status=DELETED (2nd page)', path: () => '/v1/workspaces?status=DELETED&limit=50', explain: fleet({ statuses: ['DELETED'] }) },
    { name: 'workspaces ?userId=', path: () => `/v1/workspaces?userId=${pick(users)}`, explain: fleet({ userId: users[0] }) },
    { name: 'workspaces ?teamId=', path: () => `/v1/workspaces?teamId=${pick(teams)}`, explain: fleet({ teamId: teams[0] }) },
    { name: 'workspaces ?hostId=', path: () => `/v1/workspaces?hostId=${pick(hosts)}`, explain: fleet({ hostId: hosts[0] }) },
    { name: 'workspaces ?project=', path: () => `/v1/workspaces?project=${pick(projects)}`, explain: fleet({ project: projects[0] }) },
    { name: 'workspaces ?tier=xl', path: () => '/v1/workspaces?tier=xl', explain: fleet({ tier: 'xl' }) },
    { name: 'workspaces ?status=FAILED&hostId=', path: () => `/v1/workspaces?status=FAILED&hostId=${pick(hosts)}`, explain: fleet({ statuses: ['FAILED'], hostId: hosts[0] }) },
    { name: 'workspaces ?sort=-updatedAt', path: () => '/v1/workspaces?sort=-updatedAt', explain: fleet({ sort: '-updatedAt' }) },
    { name: 'workspaces ?q= (error text)', path: () => `/v1/workspaces?q=${enc(pick(searches))}`, explain: fleet({ q: searches[0] }) },
    { name: 'workspaces ?status=FAILED&q=', path: () => `/v1/workspaces?status=FAILED&q=${enc(pick(searches))}`, explain: fleet({ statuses: ['FAILED'], q: searches[0] }) },
    { name: 'workspaces ?q= (a hostname)', path: () => `/v1/workspaces?q=${enc(pick(hostnames))}`, explain: fleet({ q: hostnames[0] }) },
    { name: 'workspaces ?q= (a typo: near misses)', path: () => `/v1/workspaces?q=${enc(pick(typos))}`, explain: fleet({ q: typos[0] }) },
    { name: 'workspaces as a lead (their team)', who: 'lead', path: () => '/v1/workspaces', explain: fleet({ scope: { all: false, userId: 'u7', teamId: 'team7' } }) },
    { name: 'workspaces as a user (their own)', who: 'user', path: () => '/v1/workspaces', explain: fleet({ scope: { all: false, userId: 'u1234', teamId: null } }) },
    { name: 'events (no filter, oldest first)', path: () => '/v1/events', explain: log({}) },
    { name: 'events ?after= (a page mid-log)', path: () => `/v1/events?after=${pick(cursors)}`, explain: log({ after: cursorOf(cursors[0] as string) }) },
    { name: 'events ?workspaceId=', path: () => `/v1/events?workspaceId=${pick(workspaceIds)}`, explain: log({ filter: { workspaceId: workspaceIds[0] } }) },
    { name: 'events ?hostId=', path: () => `/v1/events?hostId=${pick(hosts)}`, explain: log({ filter: { hostId: hosts[0] } }) },
    { name: 'events ?userId=', path: () => `/v1/events?userId=${pick(users)}`, explain: log({ filter: { userId: users[0] } }) },
    { name: 'events ?kind=workspace.failed', path: () => '/v1/events?kind=workspace.failed', explain: log({ filter: { kinds: ['workspace.failed'] } }) },
    { name: 'events ?since=', path: () => `/v1/events?since=${enc(new Date(pick(times)).toISOString())}`, explain: log({ filter: { since: new Date(times[10] as string) } }) },
    { name: 'events ?hostId=&kind=host.connected', path: () => `/v1/events?hostId=${pick(hosts)}&kind=host.connected`, explain: log({ filter: { hostId: hosts[0], kinds: ['host.connected'] } }) },
    { name: 'events as a lead (their team)', who: 'lead', path: () => '/v1/events', explain: log({ scope: { all: false, userId: 'u7', teamId: 'team7' } }) },
    { name: 'events as a user (their own)', who: 'user', path: () => '/v1/events', explain: log({ scope: { all: false, userId: 'u1234', teamId: null } }) },
  ];

  console.log(`search: ${WORKSPACES} workspaces, ${EVENTS + EVENTS / 100} events; ${RUNS} requests per case through the REST API, one at a time`);
  console.log(`machine: ${machine()}`);
  console.log('');
  const results: { name: string; p50: number; p99: number; max: number }[] = [];
  for (const c of cases) {
    const api = call(c.who ?? 'admin');
    for (let i = 0; i < 10; i++) await api(c.path()); // warm: plans, caches
    const ms: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const p = c.path();
      const s = performance.now();
      const r = await api(p);
      ms.push(performance.now() - s);
      if (r.status !== 200) throw new Error(`${p}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    ms.sort((a, b) => a - b);
    const row = { name: c.name, p50: percentile(ms, 50), p99: percentile(ms, 99), max: ms[ms.length - 1] as number };
    results.push(row);
    console.log(`${c.name.padEnd(44)} p50 ${row.p50.toFixed(1).padStart(6)} ms   p99 ${row.p99.toFixed(1).padStart(6)} ms   max ${row.max.toFixed(1).padStart(6)} ms`);
  }

  console.log('\nplans (EXPLAIN ANALYZE of the SQL each case runs, first value of each):');
  for (const c of cases) {
    const plans: string[] = [];
    const explaining = {
      query: async (q: string | { text: string; values: unknown[] }, params?: unknown[]) => {
        const text = typeof q === 'string' ? q : q.text;
        const values = typeof q === 'string' ? params : q.values;
        const { rows } = await pool.query<{ 'QUERY PLAN': string }>({ text: `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) ${text}`, values });
        plans.push(rows.map((r) => r['QUERY PLAN']).join('\n'));
        return pool.query({ text, values }); // the code goes on with the real rows, as it would
      },
    } as unknown as pg.Pool;
    await c.explain(explaining);
    console.log(`\n### ${c.name}\n${plans.join('\n-- then\n')}`);
  }

  const slow = results.filter((r) => r.p99 >= 50);
  console.log(`\n${results.length - slow.length} of ${results.length} cases with p99 < 50 ms${slow.length ? `; slower: ${slow.map((r) => r.name).join(', ')}` : ''}`);
  await pool.end();
  await db.end();
  cp.kill('SIGTERM');
  await new Promise((r) => cp.once('exit', r));
  process.off('exit', orphaned);
  rmSync(dataDir, { recursive: true, force: true });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
