/**
 * bench/agent-fleet: what a fleet of agents costs one control-plane replica, and how fast
 * a committed change reaches its agent.
 *
 * 1. Steady state: BENCH_AGENTS simulated agents (default 10,000; bench/sim-agents.ts,
 *    real gRPC streams) heartbeat on the control plane's period (default 5 s, longer as
 *    the fleet grows) for BENCH_SECONDS (default 60), BENCH_SETTLE_SECONDS (default 15)
 *    after the last Welcome. Reported: the control plane's CPU (cores) and resident
 *    memory, PostgreSQL's CPU, and every host that looked unhealthy at any 1 s sample
 *    although its sim was connected (falsely unhealthy).
 * 2. Propagation (BENCH_PROPAGATION_AGENTS, default 1,000; 0 skips it): BENCH_CREATES
 *    creates by 32 clients; for each, from the moment the create was answered (its
 *    placement committed) to the moment its host's sim received a desired state holding
 *    it. Negative values (the push beat the HTTP answer) count as 0.
 *
 * The control plane is its own process with its embedded PostgreSQL; the sims run in
 * this process. BENCH_CONTROL_PLANE=<path to main.js> runs another build (e.g. the one
 * before a change) with the same load.
 *
 * Run: npm run bench -- agent-fleet
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
const AGENTS = Number(process.env.BENCH_AGENTS ?? 10_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const PROPAGATION_AGENTS = Number(process.env.BENCH_PROPAGATION_AGENTS ?? 1000);
const CREATES = Number(process.env.BENCH_CREATES ?? 2000);
const CLIENTS = 32;
const MAIN = process.env.BENCH_CONTROL_PLANE ?? path.join(ROOT, 'control-plane/dist/main.js');
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

interface Replica {
  proc: ChildProcess;
  api: string;
  grpc: string;
  headers: Record<string, string>;
  db: pg.Client;
  stop(): Promise<void>;
}

async function startReplica(env: Record<string, string>): Promise<Replica> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-fleet-'));
  chmodSync(dataDir, 0o755);
  const httpPort = 20000 + Math.floor(Math.random() * 10000);
  const proc = spawn(process.execPath, ['--max-old-space-size=4096', MAIN], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_DATA_DIR: dataDir,
      A4C_HTTP_PORT: String(httpPort),
      A4C_GRPC_PORT: String(httpPort + 1),
      A4C_EMBEDDED_PG_PORT: String(httpPort + 2),
      A4C_DB_POOL_SIZE: '40',
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
    if (i > 600) throw new Error('control plane did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  const db = new pg.Client({ connectionString: `postgres://a4c:a4c@127.0.0.1:${httpPort + 2}/a4c` });
  await db.connect();
  return {
    proc,
    api,
    grpc: `127.0.0.1:${httpPort + 1}`,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    db,
    stop: async () => {
      await db.end();
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

async function steadyState(): Promise<void> {
  const cp = await startReplica({});
  const pid = cp.proc.pid as number;
  const connectCpu0 = cpuSeconds(pid);
  const connectPg0 = postgresCpuSeconds(pid);
  let t0 = performance.now();
  const fleet = await SimFleet.start({ controlPlane: cp.grpc, count: AGENTS, hostPrefix: 'fleet', welcomeTimeoutMs: 60_000 });
  // A build that cannot take the connect storm is measured anyway, with what connected.
  const connectLimit = Number(process.env.BENCH_CONNECT_SECONDS ?? 600);
  let connectNote = '';
  await fleet.waitConnected(connectLimit * 1000).catch((e: unknown) => {
    connectNote = ` — NOT ALL: ${(e as Error).message.slice(0, 300)}`;
  });
  const connectSeconds = (performance.now() - t0) / 1000;
  const connectCpu = cpuSeconds(pid) - connectCpu0;
  const connectPg = postgresCpuSeconds(pid) - connectPg0;
  const connectReconnects = fleet.counters().reconnects;
  // Let the connect storm settle (first desired states, their acks): a full heartbeat
  // period and then some (BENCH_SETTLE_SECONDS, default 15).
  await new Promise((r) => setTimeout(r, Number(process.env.BENCH_SETTLE_SECONDS ?? 15) * 1000));
  const reconnects0 = fleet.counters().reconnects;
  const heartbeats0 = fleet.counters().heartbeats;

  const cpu0 = cpuSeconds(pid);
  const pg0 = postgresCpuSeconds(pid);
  const self0 = process.cpuUsage();
  const falselyUnhealthy = new Set<string>();
  let maxRss = 0;
  let samples = 0;
  let worstLag = 0;
  t0 = performance.now();
  while (performance.now() - t0 < SECONDS * 1000) {
    await new Promise((r) => setTimeout(r, 1000));
    samples++;
    maxRss = Math.max(maxRss, rssMiB(pid));
    // The liveness placement and the host list use: a heartbeat within period × miss
    // limit, the session's own period where the build stores one (migration 140; read
    // through to_jsonb so an older build without the column is measured the same way).
    const { rows } = await cp.db.query<{ host_id: string }>(
      `SELECT host_id FROM host_status s
        WHERE NOT (connected AND last_heartbeat_at > now() - make_interval(secs => GREATEST(15, (to_jsonb(s) ->> 'live_within_seconds')::float8)))`,
    );
    if (fleet.connected === AGENTS) for (const r of rows) falselyUnhealthy.add(r.host_id);
    const lag = (await cp.db.query<{ lag: number }>('SELECT COALESCE(EXTRACT(EPOCH FROM max(now() - last_heartbeat_at)), 0)::float8 AS lag FROM host_status')).rows[0]?.lag ?? 0;
    worstLag = Math.max(worstLag, lag);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  const pgCpu = postgresCpuSeconds(pid) - pg0;
  const self = process.cpuUsage(self0);
  const c = fleet.counters();
  const periods = (
    await cp.db.query<{ ms: number | null; n: number }>(
      `SELECT (to_jsonb(s) ->> 'heartbeat_interval_ms')::int AS ms, count(*)::int AS n FROM host_status s WHERE connected GROUP BY 1 ORDER BY 1`,
    )
  ).rows;
  console.log(`\nsteady state: ${AGENTS} simulated agents, heartbeat period from the Welcome (A4C_HEARTBEAT_MS default 5000), ${seconds.toFixed(0)} s measured`);
  console.log(`  control plane:        ${MAIN}`);
  console.log(`  connect (all Welcomes): ${connectSeconds.toFixed(1)} s${connectNote}`);
  console.log(`  during the connect:   control plane ${connectCpu.toFixed(1)} s CPU (${(connectCpu / connectSeconds).toFixed(2)} cores), PostgreSQL ${connectPg.toFixed(1)} s CPU (${(connectPg / connectSeconds).toFixed(2)} cores), ${connectReconnects} refused or lost streams retried`);
  console.log(`  heartbeat periods told (ms × sessions): ${periods.map((p) => `${p.ms ?? 'not stored'} × ${p.n}`).join(', ')}`);
  console.log(`  connected at the end:  ${fleet.connected} of ${AGENTS}`);
  console.log(`  heartbeats sent:      ${c.heartbeats - heartbeats0} (${((c.heartbeats - heartbeats0) / seconds).toFixed(0)}/s)`);
  console.log(`  control-plane CPU:    ${cpu.toFixed(1)} s = ${(cpu / seconds).toFixed(2)} cores`);
  console.log(`  control-plane RSS:    max ${maxRss} MiB (${samples} samples)`);
  console.log(`  PostgreSQL CPU:       ${pgCpu.toFixed(1)} s = ${(pgCpu / seconds).toFixed(2)} cores`);
  console.log(`  sims + sampler CPU:   ${((self.user + self.system) / 1e6).toFixed(1)} s`);
  console.log(`  oldest heartbeat seen: ${worstLag.toFixed(1)} s`);
  console.log(`  hosts not live at a sample while their sim was connected: ${falselyUnhealthy.size} (of ${AGENTS}; counted only at samples where all ${AGENTS} sims were connected — the liveness query counts any host without a heartbeat within its window: 15 s, or its session's stored one if longer)`);
  console.log(`  stream reconnects during the window: ${c.reconnects - reconnects0}`);
  await fleet.stop();
  await cp.stop();
}

async function propagation(): Promise<void> {
  const cp = await startReplica({});
  const received = new Map<string, number>();
  const fleet = await SimFleet.start({
    controlPlane: cp.grpc,
    count: PROPAGATION_AGENTS,
    hostPrefix: 'prop',
    // A build slow to take the connect storm on a loaded machine is measured anyway.
    welcomeTimeoutMs: 60_000,
    onDesiredState: (_hostId, ds) => {
      const at = performance.now();
      for (const w of ds.workspaces) if (!received.has(w.workspaceId)) received.set(w.workspaceId, at);
    },
  });
  await fleet.waitConnected(300_000);
  for (let i = 0; i < 200; i++) {
    await fetch(`${cp.api}/v1/users/warm${i % 50}/workspaces`, { method: 'POST', headers: cp.headers, body: JSON.stringify({ projectName: 'warm', arch: 'linux-x64', tier: 'standard' }) });
  }
  const answered = new Map<string, number>();
  let next = 0;
  let failures = 0;
  const pid = cp.proc.pid as number;
  const c0 = fleet.counters();
  const cpu0 = cpuSeconds(pid);
  const pg0 = postgresCpuSeconds(pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      while (next < CREATES) {
        const i = next++;
        const r = await fetch(`${cp.api}/v1/users/u${(i * 7 + c) % 5000}/workspaces`, {
          method: 'POST',
          headers: cp.headers,
          body: JSON.stringify({ projectName: 'bench', arch: 'linux-x64', tier: 'standard', name: `w${i}` }),
        });
        const at = performance.now();
        const body = (await r.json()) as { id?: string };
        if (r.ok && body.id) answered.set(body.id, at);
        else failures++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  // Stragglers: wait up to 10 s for the last pushes.
  for (let i = 0; i < 100 && [...answered.keys()].some((id) => !received.has(id)); i++) await new Promise((r) => setTimeout(r, 100));
  const cpu = cpuSeconds(pid) - cpu0;
  const pgCpu = postgresCpuSeconds(pid) - pg0;
  const c1 = fleet.counters();
  const lat = [...answered].map(([id, at]) => Math.max(0, (received.get(id) ?? Infinity) - at)).sort((a, b) => a - b);
  const missing = lat.filter((x) => !Number.isFinite(x)).length;
  const finite = lat.filter(Number.isFinite);
  console.log(`\npropagation: ${PROPAGATION_AGENTS} simulated agents, ${answered.size} creates by ${CLIENTS} clients in ${seconds.toFixed(1)} s (${(answered.size / seconds).toFixed(0)}/s), ${failures} failed`);
  console.log(`  create answered → its agent received it: median ${percentile(finite, 50).toFixed(1)} ms, p95 ${percentile(finite, 95).toFixed(1)} ms, p99 ${percentile(finite, 99).toFixed(1)} ms, max ${(finite.at(-1) ?? 0).toFixed(1)} ms; never received: ${missing}`);
  const n = Math.max(1, answered.size);
  const ds = c1.desiredStates - c0.desiredStates;
  console.log(
    `  desired states received: ${ds} (${c1.desiredComplete - c0.desiredComplete} complete), ${((c1.desiredBytes - c0.desiredBytes) / n).toFixed(0)} bytes and ` +
      `${((c1.desiredSpecs - c0.desiredSpecs) / n).toFixed(2)} workspace specs per create; ${c1.desiredRequests - c0.desiredRequests} requests for a complete set`,
  );
  console.log(`  control-plane CPU: ${cpu.toFixed(1)} s = ${((cpu * 1000) / n).toFixed(2)} ms per create; PostgreSQL CPU: ${pgCpu.toFixed(1)} s = ${((pgCpu * 1000) / n).toFixed(2)} ms per create`);
  await fleet.stop();
  await cp.stop();
}

async function main(): Promise<void> {
  console.log(`bench/agent-fleet on ${machine()}`);
  if (AGENTS > 0) await steadyState();
  if (PROPAGATION_AGENTS > 0) await propagation();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error((e as Error).stack ?? e);
    process.exit(1);
  },
);
