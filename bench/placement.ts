/**
 * bench/placement: how many placements per second the control plane commits through
 * the REST API, with 1,000 simulated hosts and 32 concurrent clients, and whether any
 * host was over-committed at the end.
 *
 * The control plane runs as its own process with its embedded PostgreSQL; the
 * simulated agents and the HTTP clients run in this process. Each create is answered
 * once its placement has committed (no ?wait); the simulated agents then report the
 * workspaces RUNNING, so the control plane also carries the agent-side load.
 *
 * Each run of the list BENCH_RUNS (mode[:batches in flight]@clients; default `off@32,on@32,on@128`: placement batches
 * off, i.e. one transaction per create as before batching, then on, with 32 and 128
 * concurrent clients; a run ending in /quiet has agents that report nothing, to measure
 * the placement path without the agent plane) starts its own control plane, database and fleet, one after
 * another in the same invocation, so the paths are compared on the same machine state.
 *
 * A run whose mode is `bulk` (e.g. `bulk@32/quiet`) sends the creates as bulk requests
 * instead (POST /v1/workspace-batches, BENCH_BULK items each, one item per user), with
 * placement batches on: each client keeps one bulk request in flight.
 *
 * Run: npm run bench -- placement   (BENCH_RUNS, BENCH_HOSTS, BENCH_CREATES, BENCH_BULK,
 * BENCH_BULK_CREATES to vary; BENCH_CPU_PROF=dir for a CPU profile of the control plane;
 * BENCH_CONTROL_PLANE=<path to main.js> runs another build, e.g. the one before a change,
 * with the same load)
 *
 * With agents reporting, the measured window ends once every created workspace is
 * RUNNING (at most 60 s after the last create was answered), so reports still queued
 * when the creates end are counted too.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { newestProjectImages } from '@a4c/control-plane/placement-store';
import { NO_LIMITS } from './agent.js';
import { cpuSeconds, machine, percentile, postgresCpuSeconds } from './lib.js';
import { SimFleet } from './sim-agents.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000);
const RUNS = (process.env.BENCH_RUNS ?? 'off@32,on@32,on@128').split(',').map((r) => {
  const m = /^(on|off|bulk)(?::(\d+))?@(\d+)(\/quiet)?$/.exec(r.trim());
  if (!m) throw new Error(`BENCH_RUNS: expected mode[:batches in flight]@clients[/quiet] (on@32, on:2@128, off@32/quiet, bulk@32), got ${JSON.stringify(r)}`);
  return { batch: m[1] !== 'off', bulk: m[1] === 'bulk', inFlight: Number(m[2] ?? 1), clients: Number(m[3]), quiet: Boolean(m[4]) };
});
const CREATES = Number(process.env.BENCH_CREATES ?? 10_000);
/** Items per bulk request, and how many creates a bulk run makes (more than single runs: they go faster). */
const BULK = Number(process.env.BENCH_BULK ?? 100);
const BULK_CREATES = Number(process.env.BENCH_BULK_CREATES ?? CREATES);
const MAIN = process.env.BENCH_CONTROL_PLANE ?? path.join(ROOT, 'control-plane/dist/main.js');
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function main(): Promise<void> {
  console.log(`placement: ${CREATES} creates through the REST API per run, ${HOSTS} simulated hosts (tier standard)`);
  console.log(`machine: ${machine()}`);
  let failed = false;
  for (const r of RUNS) failed = (await run(r.batch, r.inFlight, r.clients, r.quiet, r.bulk)) || failed;
  if (failed) process.exit(1);
}

async function run(batch: boolean, inFlight: number, CLIENTS: number, quiet: boolean, bulk: boolean): Promise<boolean> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-placement-'));
  chmodSync(dataDir, 0o755);
  // Ports the kernel hands out as free (a random pick collided with other engineers' servers).
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const pgPort = await freePort();
  // BENCH_CPU_PROF=dir: the control plane writes a V8 CPU profile there when it exits.
  const prof = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const cp = spawn(process.execPath, [...prof, MAIN], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_DATA_DIR: dataDir,
      A4C_HTTP_PORT: String(httpPort),
      A4C_GRPC_PORT: String(grpcPort),
      A4C_EMBEDDED_PG_PORT: String(pgPort),
      A4C_DB_POOL_SIZE: String(Math.max(CLIENTS, 20)),
      A4C_LOG_LEVEL: 'warn',
      A4C_GRPC_INSECURE: 'true', // simulated agents speak plaintext gRPC
      A4C_PLACEMENT_BATCH: batch ? 'true' : 'false',
      A4C_PLACEMENT_BATCHES_IN_FLIGHT: String(inFlight),
      ...NO_LIMITS,
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
    if (i > 600) throw new Error('control plane did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  let t0 = performance.now();
  const fleet = await SimFleet.start({ controlPlane: `127.0.0.1:${grpcPort}`, count: HOSTS, hostPrefix: 'sim', reports: !quiet });
  await fleet.waitConnected(120_000);
  const connectSeconds = (performance.now() - t0) / 1000;

  // Warm-up: JIT, connection pools, plan caches.
  for (let i = 0; i < 200; i++) {
    await fetch(`${api}/v1/users/warm${i % 50}/workspaces`, { method: 'POST', headers, body: JSON.stringify({ projectName: 'warm', arch: 'linux-x64', tier: 'standard' }) });
  }

  // The fleet's own load with no creates (1,000 heartbeats every 5 s): CPU per second of
  // idle, so what the creates cost can be told apart from what the run's length costs.
  const idle0 = { cp: cpuSeconds(cp.pid as number), pg: postgresCpuSeconds(cp.pid as number), at: performance.now() };
  await new Promise((r) => setTimeout(r, 10_000));
  const idleSeconds = (performance.now() - idle0.at) / 1000;
  const idle = { cp: (cpuSeconds(cp.pid as number) - idle0.cp) / idleSeconds, pg: (postgresCpuSeconds(cp.pid as number) - idle0.pg) / idleSeconds };

  const cpCpu0 = cpuSeconds(cp.pid as number);
  const pgCpu0 = postgresCpuSeconds(cp.pid as number);
  const selfCpu0 = process.cpuUsage();
  const latencies: number[] = [];
  const outcomes = new Map<number, number>();
  const total = bulk ? BULK_CREATES : CREATES;
  let next = 0;
  let requests = 0;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      while (next < total) {
        const first = next;
        const n = bulk ? Math.min(BULK, total - first) : 1;
        next += n;
        const s = performance.now();
        const item = (i: number) => ({ projectName: 'bench', arch: 'linux-x64', tier: 'standard', name: `w${i}` });
        const r = bulk
          ? await fetch(`${api}/v1/workspace-batches`, {
              method: 'POST',
              headers,
              body: JSON.stringify({ workspaces: Array.from({ length: n }, (_, k) => ({ userId: `u${(first + k) % 5000}`, ...item(first + k) })) }),
            })
          : await fetch(`${api}/v1/users/u${(first * 7 + c) % 5000}/workspaces`, { method: 'POST', headers, body: JSON.stringify(item(first)) });
        requests++;
        if (bulk && r.ok) {
          const body = (await r.json()) as { results: { status: number }[] };
          for (const x of body.results) outcomes.set(x.status, (outcomes.get(x.status) ?? 0) + 1);
        } else {
          await r.arrayBuffer();
          outcomes.set(r.status, (outcomes.get(r.status) ?? 0) + n);
        }
        latencies.push(performance.now() - s);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  // Over-commitment check (below) and the reports' settling, straight from the database.
  const db = new pg.Client({ connectionString: `postgres://a4c:a4c@127.0.0.1:${pgPort}/a4c` });
  await db.connect();
  let unsettled = 0;
  for (let i = 0; !quiet && i < 300; i++) {
    unsettled = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM workspaces WHERE project_name = 'bench' AND status <> 'RUNNING'")).rows[0]?.n ?? 0;
    if (!unsettled) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const measured = (performance.now() - t0) / 1000;
  const cpCpu = cpuSeconds(cp.pid as number) - cpCpu0;
  const pgCpu = postgresCpuSeconds(cp.pid as number) - pgCpu0;
  const self = process.cpuUsage(selfCpu0);
  const selfCpu = (self.user + self.system) / 1e6;
  const placed = outcomes.get(201) ?? 0;

  const { rows } = await db.query<{ over: number; mismatched: number; hosts_used: number; max_per_host: number }>(
    `SELECT count(*) FILTER (WHERE h.reserved_memory_mb > floor(h.memory_bytes / 1048576.0 * 0.8)
                              OR h.reserved_millicpus > floor(h.cpus * 1000 * 0.8)
                              OR h.reserved_disk_mb > floor(h.disk_bytes / 1048576.0 * 0.8))::int AS over,
            count(*) FILTER (WHERE h.reserved_memory_mb <> COALESCE(s.mem, 0))::int AS mismatched,
            count(*) FILTER (WHERE s.n > 0)::int AS hosts_used,
            COALESCE(max(s.n), 0)::int AS max_per_host
       FROM hosts h LEFT JOIN (SELECT host_id, sum(memory_mb) AS mem, count(*) AS n FROM workspaces
                                WHERE a4c_reserves(status, host_id) GROUP BY host_id) s ON s.host_id = h.id`,
  );
  const check = rows[0] as { over: number; mismatched: number; hosts_used: number; max_per_host: number };
  // Transactions that placed the measured workspaces: the xid of each one's workspace.created event.
  const txsRes = await db.query<{ n: number; txs: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT xid)::int AS txs FROM events WHERE kind = 'workspace.created' AND data->>'projectName' = 'bench'`,
  );
  // What a per-replica cache of the image inventory could save: the one image lookup a
  // placement batch makes (store/placement-batch.ts), timed on the same database, idle now.
  const lookups: number[] = [];
  for (let i = 0; i < 200; i++) {
    const s = performance.now();
    await newestProjectImages(db as pg.PoolClient, ['bench'], ['linux-x64']); // a client of its own: the store only queries
    lookups.push(performance.now() - s);
  }
  lookups.sort((a, b) => a - b);
  // Transactions that applied the agents' RUNNING reports of the measured workspaces.
  const repRes = await db.query<{ n: number; txs: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT e.xid)::int AS txs FROM events e JOIN workspaces w ON w.id = e.workspace_id
      WHERE e.kind = 'workspace.running' AND w.project_name = 'bench'`,
  );
  await db.end();
  const t1 = txsRes.rows[0] ?? { n: 0, txs: 0 };
  const r1 = repRes.rows[0] ?? { n: 0, txs: 0 };

  await fleet.stop();
  cp.kill('SIGTERM');
  await new Promise((r) => cp.once('exit', r));

  const sorted = latencies.sort((a, b) => a - b);
  console.log('');
  console.log(
    `— ${bulk ? `bulk creates (POST /v1/workspace-batches, ${BULK} a request), ` : ''}placement batches ${batch ? `on, ${inFlight} in flight` : 'off'} (A4C_PLACEMENT_BATCH=${batch}), ${CLIENTS} concurrent clients${quiet ? ', agents report nothing (placement path alone)' : ''}`,
  );
  console.log(`control plane: ${MAIN}`);
  console.log(`simulated hosts connected in ${connectSeconds.toFixed(1)} s`);
  console.log(`placements committed: ${placed} in ${seconds.toFixed(1)} s = ${(placed / seconds).toFixed(0)} per second`);
  console.log(`responses: ${[...outcomes].map(([s, n]) => `${n} × ${s}`).join(', ')}`);
  console.log(`HTTP requests: ${requests}`);
  console.log(`latency per ${bulk ? 'bulk request (each of its creates waits as long)' : 'create'}: median ${percentile(sorted, 50).toFixed(1)} ms, p95 ${percentile(sorted, 95).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms`);
  console.log(`over-committed hosts: ${check.over}; hosts whose reservation ≠ sum of their workspaces: ${check.mismatched}`);
  console.log(`hosts used: ${check.hosts_used}, most workspaces on one host: ${check.max_per_host}`);
  if (!quiet) console.log(`every workspace RUNNING ${(measured - seconds).toFixed(1)} s after the last create was answered (${(placed / measured).toFixed(0)} placements per second until all RUNNING)${unsettled ? ` — NOT ALL: ${unsettled} still not RUNNING` : ''}; CPU measured over those ${measured.toFixed(1)} s`);
  const perCreate = (total: number, idlePerSecond: number) => (((total - idlePerSecond * measured) / Math.max(placed, 1)) * 1000).toFixed(2);
  console.log(`idle fleet (no creates, 10 s): control plane ${idle.cp.toFixed(3)} CPU-s/s, PostgreSQL ${idle.pg.toFixed(3)} CPU-s/s`);
  console.log(`CPU per create above the idle fleet's: control plane ${perCreate(cpCpu, idle.cp)} ms, PostgreSQL ${perCreate(pgCpu, idle.pg)} ms, load generator + agents ${((selfCpu / Math.max(placed, 1)) * 1000).toFixed(2)} ms`);
  console.log(`inserting transactions: ${t1.txs} for ${t1.n} workspaces (${(t1.n / Math.max(t1.txs, 1)).toFixed(1)} a transaction)`);
  console.log(
    `image lookup of a batch (what caching the image inventory could save), round trip on the idle database: median ${percentile(lookups, 50).toFixed(3)} ms = ${(percentile(lookups, 50) / Math.max(t1.n / Math.max(t1.txs, 1), 1)).toFixed(4)} ms per create at this batch size`,
  );
  if (!quiet) console.log(`RUNNING reports applied: ${r1.n} in ${r1.txs} transactions (${(r1.n / Math.max(r1.txs, 1)).toFixed(1)} a transaction)`);
  console.log(`CPU seconds during the run: control plane ${cpCpu.toFixed(1)}, PostgreSQL ${pgCpu.toFixed(1)}, load generator + ${HOSTS} simulated agents ${selfCpu.toFixed(1)} (of ${(seconds * os.cpus().length).toFixed(1)} available)`);
  return check.over > 0 || check.mismatched > 0;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
