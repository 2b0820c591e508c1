/**
 * bench/replicas: placements per second through the REST API with 1, 2 or 3
 * control-plane replicas on one PostgreSQL (the first replica's embedded one), all on
 * this machine. The same load as bench/placement (1,000 simulated hosts, 32 clients,
 * tier standard, each create answered once its placement committed); the clients and
 * the simulated hosts are spread evenly over the replicas, as a load balancer and
 * agents' address lists would spread them.
 *
 * Run: BENCH_REPLICAS=2 npm run bench -- replicas   (BENCH_HOSTS, BENCH_CLIENTS, BENCH_CREATES to vary)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { NO_LIMITS } from './agent.js';
import { cpuSeconds, machine, percentile, postgresCpuSeconds } from './lib.js';
import { SimFleet } from './sim-agents.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const REPLICAS = Number(process.env.BENCH_REPLICAS ?? 1);
const HOSTS = Number(process.env.BENCH_HOSTS ?? 1000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 32);
const CREATES = Number(process.env.BENCH_CREATES ?? 5000);

async function ready(api: string, proc: ChildProcess): Promise<void> {
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error(`control plane exited ${proc.exitCode}`);
    try {
      if ((await fetch(`${api}/readyz`)).ok) return;
    } catch {
      // starting
    }
    if (i > 600) throw new Error('control plane did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  if (!Number.isInteger(REPLICAS) || REPLICAS < 1 || REPLICAS > 5) throw new Error(`BENCH_REPLICAS must be 1-5, got ${process.env.BENCH_REPLICAS}`);
  const base = 20000 + Math.floor(Math.random() * 10000);
  const pgPort = base + 99;
  const databaseUrl = `postgres://a4c:a4c@127.0.0.1:${pgPort}/a4c`;
  // The embedded server's 100 connections, shared: API pools sized so the clients fit.
  const poolSize = Math.max(8, Math.ceil(CLIENTS / REPLICAS) + 4);
  const procs: ChildProcess[] = [];
  const apis: string[] = [];
  const grpcs: string[] = [];
  let token = '';
  let postmaster = 0;
  for (let r = 0; r < REPLICAS; r++) {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), `a4c-bench-replica${r}-`));
    chmodSync(dataDir, 0o755);
    const httpPort = base + r * 2;
    const p = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], {
      env: {
        PATH: process.env.PATH ?? '',
        A4C_DATA_DIR: dataDir,
        A4C_HTTP_PORT: String(httpPort),
        A4C_GRPC_PORT: String(httpPort + 1),
        // The first replica runs the embedded PostgreSQL; the others use it.
        ...(r === 0 ? { A4C_EMBEDDED_PG_PORT: String(pgPort) } : { DATABASE_URL: databaseUrl, A4C_ADMIN_TOKEN: token }),
        A4C_DB_POOL_SIZE: String(poolSize),
        A4C_DB_AGENT_POOL_SIZE: String(Math.max(4, Math.ceil(10 / REPLICAS))),
        A4C_LOG_LEVEL: 'warn',
        A4C_GRPC_INSECURE: 'true',
        ...NO_LIMITS,
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    procs.push(p);
    apis.push(`http://127.0.0.1:${httpPort}`);
    grpcs.push(`127.0.0.1:${httpPort + 1}`);
    await ready(apis[r] as string, p);
    if (r === 0) {
      token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
      postmaster = Number(readFileSync(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
    }
  }
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  let t0 = performance.now();
  const fleets = await Promise.all(
    grpcs.map((address, r) => SimFleet.start({ controlPlane: address, count: Math.ceil(HOSTS / REPLICAS), hostPrefix: `sim${r}` })),
  );
  await Promise.all(fleets.map((f) => f.waitConnected(120_000)));
  const connectSeconds = (performance.now() - t0) / 1000;

  for (let i = 0; i < 200; i++) {
    await fetch(`${apis[i % REPLICAS]}/v1/users/warm${i % 50}/workspaces`, { method: 'POST', headers, body: JSON.stringify({ projectName: 'warm', arch: 'linux-x64', tier: 'standard' }) });
  }

  const cp0 = procs.map((p) => cpuSeconds(p.pid as number));
  const pgCpu0 = postgresCpuSeconds(postmaster);
  const self0 = process.cpuUsage();
  const latencies: number[] = [];
  const outcomes = new Map<number, number>();
  let next = 0;
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const api = apis[c % REPLICAS] as string;
      while (next < CREATES) {
        const i = next++;
        const s = performance.now();
        const status = await fetch(`${api}/v1/users/u${(i * 7 + c) % 5000}/workspaces`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ projectName: 'bench', arch: 'linux-x64', tier: 'standard', name: `w${i}` }),
        }).then(
          async (r) => {
            await r.arrayBuffer();
            return r.status;
          },
          () => 0, // no answer (connection closed): counted, not retried
        );
        latencies.push(performance.now() - s);
        outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpCpu = procs.map((p, i) => cpuSeconds(p.pid as number) - (cp0[i] as number));
  const pgCpu = postgresCpuSeconds(postmaster) - pgCpu0;
  const self = process.cpuUsage(self0);
  const placed = outcomes.get(201) ?? 0;

  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const { rows } = await db.query<{ over: number; mismatched: number; dup: number }>(
    `SELECT (SELECT count(*) FROM hosts h WHERE h.reserved_memory_mb > floor(h.memory_bytes / 1048576.0 * 0.8)
                                       OR h.reserved_millicpus > floor(h.cpus * 1000 * 0.8))::int AS over,
            (SELECT count(*) FROM hosts h WHERE h.reserved_memory_mb <> COALESCE((SELECT sum(memory_mb) FROM workspaces w
                                              WHERE w.host_id = h.id AND a4c_reserves(w.status, w.host_id)), 0))::int AS mismatched,
            (SELECT count(*) FROM (SELECT user_id, name FROM workspaces WHERE project_name = 'bench' GROUP BY 1, 2 HAVING count(*) > 1) d)::int AS dup`,
  );
  await db.end();
  const check = rows[0] as { over: number; mismatched: number; dup: number };

  await Promise.all(fleets.map((f) => f.stop()));
  // Replicas using the embedded PostgreSQL stop before the one that runs it.
  for (const p of [...procs].reverse()) {
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
  }

  const sorted = latencies.sort((a, b) => a - b);
  console.log(`replicas: ${REPLICAS} control-plane replica(s) on one PostgreSQL, ${CREATES} creates, ${CLIENTS} clients, ${HOSTS} simulated hosts (tier standard)`);
  console.log(`machine: ${machine()}`);
  console.log(`simulated hosts connected in ${connectSeconds.toFixed(1)} s`);
  console.log('');
  console.log(`placements committed: ${placed} in ${seconds.toFixed(1)} s = ${(placed / seconds).toFixed(0)} per second`);
  console.log(`responses: ${[...outcomes].map(([s, n]) => `${n} × ${s}`).join(', ')}`);
  console.log(`latency per create: median ${percentile(sorted, 50).toFixed(1)} ms, p95 ${percentile(sorted, 95).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms`);
  console.log(`over-committed hosts: ${check.over}; reservation ≠ sum of workspaces: ${check.mismatched}; duplicated workspaces: ${check.dup}`);
  console.log(
    `CPU seconds during the run: control planes ${cpCpu.map((c) => c.toFixed(1)).join(' + ')}, PostgreSQL ${pgCpu.toFixed(1)}, load generator + simulated agents ${((self.user + self.system) / 1e6).toFixed(1)} (of ${(seconds * os.cpus().length).toFixed(1)} available)`,
  );
  if (check.over > 0 || check.mismatched > 0 || check.dup > 0) process.exit(1);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
