/**
 * bench/build-queue: claims per second from a queue of 10,000 builds with 50
 * concurrent claimers, and zero double claims checked at the end.
 *
 * The claimers are simulated workers (no Docker) running the control plane's own claim
 * and completion statements (control-plane/src/builds/queue.ts) on their own
 * connections to a real PostgreSQL (the embedded server): claim one build, complete
 * it, claim the next. Every claim is recorded on the worker's side, so a build handed
 * to two workers would show up twice.
 *
 * Run: npm run bench -- build-queue   (BENCH_BUILDS, BENCH_CLAIMERS to vary)
 */
import pg from 'pg';
import { claimBuilds, completeBuild } from '@a4c/control-plane/builds';
import { startBenchControlPlane } from './agent.js';
import { machine, percentile } from './lib.js';

const BUILDS = Number(process.env.BENCH_BUILDS ?? 10_000);
const CLAIMERS = Number(process.env.BENCH_CLAIMERS ?? 50);

async function main(): Promise<void> {
  // The control plane creates the schema (migrations) in its embedded PostgreSQL.
  const cp = await startBenchControlPlane();
  const pool = new pg.Pool({ connectionString: cp.databaseUrl, max: CLAIMERS + 2 });
  await pool.query(
    `INSERT INTO image_builds (id, user_id, image_name, project, arch, change_number, image_tag, status, created_at)
     SELECT gen_random_uuid(), 'bench', 'img', 'p' || (i % 100), 'linux-x64', 'CL-' || i, 'img:CL-' || i || '-linux-x64', 'SCHEDULED',
            now() + make_interval(secs => i / 1000.0)
       FROM generate_series(1, $1) AS i`,
    [BUILDS],
  );
  // The simulated workers are registered hosts, as real agents are (completion records
  // the built image on its host).
  await pool.query(`INSERT INTO hosts (id, arch) SELECT 'sim-worker-' || i, 'linux-x64' FROM generate_series(0, $1 - 1) AS i`, [CLAIMERS]);
  await pool.query('ANALYZE image_builds');

  const claimed = new Map<string, number>();
  const latencies: number[] = [];
  let discarded = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLAIMERS }, async (_, w) => {
      const host = `sim-worker-${w}`;
      const client = await pool.connect();
      try {
        for (;;) {
          const s = performance.now();
          const [b] = await claimBuilds(client, host, 'linux-x64', 1);
          latencies.push(performance.now() - s);
          if (!b) return;
          claimed.set(b.id, (claimed.get(b.id) ?? 0) + 1);
          await client.query('BEGIN');
          const { outcome } = await completeBuild(client, host, { buildId: b.id, claimId: b.claim_id as string, success: true, imageId: `sha256:${b.id}`, error: '', logLines: [] });
          await client.query('COMMIT');
          if (outcome === 'discarded') discarded++;
        }
      } finally {
        client.release();
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const doubles = [...claimed.values()].filter((n) => n > 1).length;
  const { rows } = await pool.query<{ done: number; attempts_over_1: number; left: number }>(
    `SELECT count(*) FILTER (WHERE status = 'COMPLETED')::int AS done,
            count(*) FILTER (WHERE attempts > 1)::int AS attempts_over_1,
            count(*) FILTER (WHERE status <> 'COMPLETED')::int AS left
       FROM image_builds`,
  );
  await pool.end();
  await cp.stop();
  const sorted = latencies.sort((a, b) => a - b);
  const r = rows[0] as { done: number; attempts_over_1: number; left: number };
  console.log(`build-queue: ${BUILDS} builds, ${CLAIMERS} concurrent claimers (claim one, complete it, repeat), embedded PostgreSQL`);
  console.log(`machine: ${machine()}`);
  console.log(`claims: ${claimed.size} in ${seconds.toFixed(1)} s = ${(claimed.size / seconds).toFixed(0)} per second (each followed by its completion)`);
  console.log(`claim latency: median ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms`);
  console.log(`double claims: ${doubles} (worker side); builds with more than one claim: ${r.attempts_over_1} (database); discarded completions: ${discarded}`);
  console.log(`completed: ${r.done}, not completed: ${r.left}`);
  if (doubles > 0 || r.attempts_over_1 > 0 || r.done !== BUILDS) process.exit(1);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
