/**
 * bench/metrics-scrape: what a scrape of the control plane's /metrics costs with a big
 * fleet in PostgreSQL, when every scrape reads the fleet (A4C_METRICS_CACHE_MS=0), and
 * what a cached scrape costs.
 *
 * The control plane runs as its own process with its embedded PostgreSQL. The fleet is
 * generated in SQL (hosts with stats, workspaces in every status, builds), not made
 * through the API: only the read is measured.
 *
 * Run: npm run bench -- metrics-scrape   (BENCH_HOSTS, BENCH_WORKSPACES, BENCH_SCRAPES to vary)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { NO_LIMITS } from './agent.js';
import { machine, percentile } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000);
const WORKSPACES = Number(process.env.BENCH_WORKSPACES ?? 1_000_000);
const SCRAPES = Number(process.env.BENCH_SCRAPES ?? 50);

const dataDir = mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-metrics-'));
chmodSync(dataDir, 0o755);
const httpPort = 20000 + Math.floor(Math.random() * 10000);

/** The control plane on dataDir (the same embedded PostgreSQL data each time). */
async function startControlPlane(env: Record<string, string>): Promise<{ cp: ChildProcess; api: string; pgUrl: string }> {
  const cp = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_DATA_DIR: dataDir,
      A4C_HTTP_PORT: String(httpPort),
      A4C_GRPC_PORT: String(httpPort + 1),
      A4C_EMBEDDED_PG_PORT: String(httpPort + 2),
      A4C_LOG_LEVEL: 'warn',
      A4C_GRPC_INSECURE: 'true',
      ...NO_LIMITS,
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const api = `http://127.0.0.1:${httpPort}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${api}/readyz`)).ok) break;
    } catch {
      // starting
    }
    if (cp.exitCode !== null) throw new Error(`control plane exited with ${cp.exitCode}`);
    if (i > 1800) throw new Error(`control plane did not start within 180 s (exit code ${cp.exitCode})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { cp, api, pgUrl: `postgres://a4c:a4c@127.0.0.1:${httpPort + 2}/a4c` };
}

async function scrapes(api: string, n: number): Promise<{ sorted: number[]; bytes: number }> {
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    const r = await fetch(`${api}/metrics`);
    bytes = (await r.text()).length;
    if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`);
    times.push(performance.now() - s);
  }
  return { sorted: times.sort((a, b) => a - b), bytes };
}

async function main(): Promise<void> {
  const { cp, api, pgUrl } = await startControlPlane({ A4C_METRICS_CACHE_MS: '0' });
  process.on('exit', () => cp.kill('SIGTERM'));
  const db = new pg.Client({ connectionString: pgUrl });
  await db.connect();
  let t0 = performance.now();
  await db.query(
    `INSERT INTO hosts (id, arch, memory_bytes, cpus, disk_bytes, revision, applied_revision)
     SELECT 'h' || i, 'linux-x64', 256 * 2^30, 64, 4 * 2^40, 10 + i % 3, 10 FROM generate_series(1, $1) i`,
    [HOSTS],
  );
  await db.query(
    `INSERT INTO host_status (host_id, arch, session_id, connected, connected_at, last_heartbeat_at, stats, disk_percent, memory_percent, docker_ready)
     SELECT 'h' || i, 'linux-x64', 's' || i, i % 10 <> 0, now(), now(), '{"diskPercent": 50}', 30 + i % 60, 20 + i % 70, true FROM generate_series(1, $1) i`,
    [HOSTS],
  );
  // Mostly DELETED, as a long-lived fleet is: 20 % live. The reservation trigger is off
  // for the bulk insert (a row-by-row update of the hosts), and the sums are set after.
  await db.query('ALTER TABLE workspaces DISABLE TRIGGER workspaces_reservation');
  await db.query(
    `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, memory_mb, cpus, disk_gb, pids_limit)
     SELECT gen_random_uuid(), 'u' || (i % 5000), 'w' || i, 'p', 'linux-x64', 'standard', 'img',
            (ARRAY['DELETED','DELETED','DELETED','DELETED','DELETED','DELETED','DELETED','DELETED','RUNNING','STOPPED'])[1 + i % 10],
            'h' || (1 + i % $2), 8192, 2, 50, 4096
       FROM generate_series(1, $1) i`,
    [WORKSPACES, HOSTS],
  );
  await db.query('ALTER TABLE workspaces ENABLE TRIGGER workspaces_reservation');
  await db.query(
    `UPDATE hosts h SET reserved_memory_mb = s.mem, reserved_millicpus = s.mcpu, reserved_disk_mb = s.disk, reserved_workspaces = s.n
       FROM (SELECT host_id, sum(memory_mb) AS mem, sum(round(cpus * 1000)) AS mcpu, sum(round(disk_gb * 1024)) AS disk, count(*) AS n
               FROM workspaces WHERE a4c_reserves(status, host_id) GROUP BY host_id) s
      WHERE h.id = s.host_id`,
  );
  await db.query(
    `INSERT INTO image_builds (id, user_id, image_name, project, arch, change_number, image_tag, status)
     SELECT gen_random_uuid(), 'u' || i, 'img', 'p', 'linux-x64', 'CL-' || i, 'img:CL-' || i, (ARRAY['COMPLETED','FAILED','SCHEDULED','IN_PROGRESS'])[1 + i % 4]
       FROM generate_series(1, 20000) i`,
  );
  await db.query('VACUUM ANALYZE'); // as autovacuum would have by then: index-only scans need the visibility map
  const loadSeconds = (performance.now() - t0) / 1000;
  const live = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM workspaces WHERE status <> 'DELETED'")).rows[0]?.n ?? 0;

  await scrapes(api, 5); // warm-up: JIT, plan cache
  t0 = performance.now();
  const cold = await scrapes(api, SCRAPES);
  const coldSeconds = (performance.now() - t0) / 1000;
  const { rows: plan } = await db.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, BUFFERS) SELECT status, count(*)::int AS n FROM workspaces WHERE status <> 'DELETED' GROUP BY status`,
  );
  await db.end();
  cp.kill('SIGTERM');
  await new Promise((r) => cp.once('exit', r));

  // The same fleet, the default cache: scrapes within 2 s of a read are served from memory.
  const cached = await startControlPlane({});
  await scrapes(cached.api, 5);
  const warm = await scrapes(cached.api, SCRAPES);
  cached.cp.kill('SIGTERM');
  await new Promise((r) => cached.cp.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });

  const fmt = (s: number[]) => `median ${percentile(s, 50).toFixed(1)} ms, p95 ${percentile(s, 95).toFixed(1)} ms, p99 ${percentile(s, 99).toFixed(1)} ms`;
  console.log(`metrics-scrape: ${HOSTS} hosts, ${WORKSPACES} workspaces (${live} not DELETED), 20000 builds; ${SCRAPES} scrapes one after another`);
  console.log(`machine: ${machine()}`);
  console.log(`fleet generated in ${loadSeconds.toFixed(1)} s`);
  console.log('');
  console.log(`every scrape reads the fleet (A4C_METRICS_CACHE_MS=0): ${fmt(cold.sorted)}; ${(SCRAPES / coldSeconds).toFixed(1)} scrapes/s; ${cold.bytes} bytes`);
  console.log(`the default cache (A4C_METRICS_CACHE_MS=2000), scrapes back to back: ${fmt(warm.sorted)}`);
  console.log('the workspaces count, the one part that scans:');
  for (const r of plan) console.log(`  ${r['QUERY PLAN']}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
