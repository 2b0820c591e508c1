/**
 * bench/autostop: the autostop sweep's one query per pass over a large fleet. Generates
 * workspaces (70 % RUNNING in a tier with a one-hour autostop, 30 % STOPPED; one in 50
 * with an open session, idle times spread over two days) in a control plane's embedded
 * PostgreSQL, then times findDecisions (what every replica runs every
 * A4C_AUTOSTOP_SWEEP_MS) and the per-workspace view of GET /v1/workspaces/{id}, and
 * prints the decisions found.
 *
 * Run: npm run bench -- autostop   (BENCH_WORKSPACES, default 10000,100000; BENCH_RUNS)
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { autostopFacts, findDecisions, type AutostopPolicy } from '@a4c/control-plane/autostop';
import { startBenchControlPlane } from './agent.js';
import { machine, median, percentile } from './lib.js';

const SIZES = (process.env.BENCH_WORKSPACES ?? '10000,100000').split(',').map(Number);
const RUNS = Number(process.env.BENCH_RUNS ?? 20);

async function generate(db: pg.Pool, n: number): Promise<void> {
  await db.query('TRUNCATE access_sessions, events');
  await db.query('DELETE FROM workspaces');
  await db.query("INSERT INTO users (id) SELECT 'u' || g FROM generate_series(0, 999) g ON CONFLICT DO NOTHING");
  await db.query("INSERT INTO hosts (id, arch) SELECT 'h' || g, 'linux-x64' FROM generate_series(0, 99) g ON CONFLICT DO NOTHING");
  await db.query(
    `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, hostname,
                             memory_mb, cpus, disk_gb, pids_limit, status_changed_at, last_activity_at)
     SELECT gen_random_uuid(), 'u' || (g % 1000), 'w' || g, 'p', 'linux-x64', 'tiny', 'a4c-base:latest',
            CASE WHEN g % 10 < 7 THEN 'RUNNING' ELSE 'STOPPED' END, 'h' || (g % 100), 'w' || g || '.ws',
            64, 0.25, 1, 256, now() - make_interval(secs => 172800 + (g % 1000)), now() - make_interval(secs => (g * 7919) % 172800)
       FROM generate_series(1, $1::int) g`,
    [n],
  );
  await db.query(
    `INSERT INTO access_sessions (id, workspace_id, host_id, actor, kind, replica)
     SELECT gen_random_uuid(), id, host_id, user_id, 'shell', '' FROM workspaces WHERE status = 'RUNNING' AND hashtext(id::text) % 50 = 0`,
  );
  await db.query('VACUUM ANALYZE workspaces');
  await db.query('VACUUM ANALYZE access_sessions');
}

async function time(fn: () => Promise<unknown>): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  // Sweeps off: this process runs them by hand.
  const cp = await startBenchControlPlane({ A4C_AUTOSTOP_SWEEP_MS: '3600000' });
  const db = new pg.Pool({ connectionString: cp.databaseUrl, max: 2 });
  const policy = (): AutostopPolicy => ({
    now: new Date(),
    tierPeriods: { tiny: 3600 },
    warningSeconds: 300,
    dormantAfterSeconds: 86_400,
    deleteDormantAfterSeconds: 7 * 86_400,
    dormantWarningSeconds: 3600,
  });
  console.log(`bench/autostop on ${machine()}`);
  console.log('| workspaces | findDecisions median | p95 | decisions due (limit 500) | GET view median |');
  console.log('|---|---|---|---|---|');
  try {
    for (const n of SIZES) {
      await generate(db, n);
      const found = await findDecisions(db, policy(), 500);
      const sweep = await time(() => findDecisions(db, policy(), 500));
      const ids = (await db.query<{ id: string }>('SELECT id FROM workspaces TABLESAMPLE SYSTEM (1) LIMIT 50')).rows.map((r) => r.id);
      const view = await time(() => autostopFacts(db, policy(), ids[Math.floor(Math.random() * ids.length)] ?? randomUUID()));
      const kinds = Object.entries(found.reduce<Record<string, number>>((a, d) => ({ ...a, [d.action]: (a[d.action] ?? 0) + 1 }), {}))
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      console.log(`| ${n} | ${median(sweep).toFixed(1)} ms | ${percentile(sweep, 95).toFixed(1)} ms | ${found.length} (${kinds}) | ${median(view).toFixed(2)} ms |`);
    }
  } finally {
    await db.end();
    await cp.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
