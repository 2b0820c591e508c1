/**
 * bench/create-latency: request-to-running time of 20 workspaces created one after
 * another through the REST API with ?wait, against 20 `docker run -d` of the same
 * image and limits on the same engine, interleaved in one run so both see the same
 * machine. Also the Engine API floor: create + start over the socket, no CLI.
 *
 * Run with `npm run bench -- create-latency` (starts a private engine).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { BENCH_TINY_TIER, spawnBenchAgent, startBenchControlPlane, waitUntil } from './agent.js';
import { machine, median, percentile } from './lib.js';

const run = promisify(execFile);
const N = Number(process.env.BENCH_N ?? 20);
const dockerHost = process.env.A4C_BENCH_DOCKER_HOST ?? process.env.DOCKER_HOST;
if (!dockerHost) throw new Error('set A4C_BENCH_DOCKER_HOST (npm run bench does)');
const docker = new Docker({ socketPath: dockerHost.replace(/^unix:\/\//, '') });
const IMAGE = 'a4c-base:latest';
const MEMORY = 64 * 1024 * 1024;

async function main(): Promise<void> {
  // A4C_PLACEMENT_BATCH=false measures the create path without placement batches.
  const cp = await startBenchControlPlane({ A4C_TIERS: BENCH_TINY_TIER, ...(process.env.A4C_PLACEMENT_BATCH ? { A4C_PLACEMENT_BATCH: process.env.A4C_PLACEMENT_BATCH } : {}) });
  const hostId = `bench-${process.pid}`;
  const agent = await spawnBenchAgent({ hostId, controlPlane: `127.0.0.1:${cp.grpcPort}`, dockerHost: dockerHost as string });
  const api = `http://127.0.0.1:${cp.httpPort}`;
  const auth = { authorization: `Bearer ${cp.adminToken}` };
  await waitUntil('agent connected', async () => {
    const r = await fetch(`${api}/v1/hosts/${hostId}`, { headers: auth });
    return r.ok && ((await r.json()) as { connected: boolean }).connected;
  });

  const a4c: number[] = [];
  const cli: number[] = [];
  const engine: number[] = [];
  const raw: string[] = [];
  for (let i = 0; i < N; i++) {
    let t0 = performance.now();
    const res = await fetch(`${api}/v1/users/bench/workspaces?wait=60`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ projectName: 'bench', arch: 'linux-x64', tier: 'tiny', name: `b${i}` }),
    });
    const ws = (await res.json()) as { id: string; status: string };
    if (ws.status !== 'RUNNING') throw new Error(`workspace ${i} ended ${ws.status}: ${JSON.stringify(ws)}`);
    a4c.push(performance.now() - t0);

    t0 = performance.now();
    const { stdout } = await run('docker', ['run', '-d', '--name', `raw-${process.pid}-${i}`, '--memory', '64m', '--memory-swap', '64m', '--cpus', '0.25',
      '--pids-limit', '256', '--network', 'none', '--init', '--security-opt', 'no-new-privileges', '--hostname', `raw${i}`,
      '--label', 'bench=raw', '-v', `raw-home-${process.pid}:/workspace`, IMAGE], { env: { ...process.env, DOCKER_HOST: dockerHost } });
    cli.push(performance.now() - t0);
    raw.push(stdout.trim());

    t0 = performance.now();
    const c = await docker.createContainer({
      name: `api-${process.pid}-${i}`, Image: IMAGE, Hostname: `api${i}`, Labels: { bench: 'api' },
      HostConfig: { Memory: MEMORY, MemorySwap: MEMORY, NanoCpus: 0.25e9, PidsLimit: 256, NetworkMode: 'none', Init: true,
        SecurityOpt: ['no-new-privileges'], Mounts: [{ Type: 'volume', Source: `raw-home-${process.pid}`, Target: '/workspace' }] },
    });
    await c.start();
    engine.push(performance.now() - t0);
    raw.push(c.id);

    // Outside the timings: each path starts every round from the same engine state,
    // and the host's CPU reservations (0.25 of 1.6 allocatable) never run out.
    await fetch(`${api}/v1/workspaces/${ws.id}?wait=60`, { method: 'DELETE', headers: auth });
    for (const id of raw.splice(0)) await docker.getContainer(id).remove({ force: true });
  }
  await agent.stop();
  await cp.stop();

  const fmt = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { median: median(s), p95: percentile(s, 95) };
  };
  const A = fmt(a4c);
  const C = fmt(cli);
  const E = fmt(engine);
  const ms = (n: number) => `${n.toFixed(0)} ms`;
  console.log(`create-latency: ${N} creations each, interleaved, one engine (${dockerHost})`);
  console.log(`machine: ${machine()}`);
  console.log('');
  console.log('| path | median | p95 |');
  console.log('|---|---|---|');
  console.log(`| A4C: POST /v1/users/{u}/workspaces?wait → RUNNING | ${ms(A.median)} | ${ms(A.p95)} |`);
  console.log(`| raw \`docker run -d\` (CLI), same image and limits | ${ms(C.median)} | ${ms(C.p95)} |`);
  console.log(`| Engine API create + start (no CLI) | ${ms(E.median)} | ${ms(E.p95)} |`);
  console.log('');
  console.log(`ratio A4C / docker run: median ${(A.median / C.median).toFixed(2)}×, p95 ${(A.p95 / C.p95).toFixed(2)}×`);
  console.log(`ratio A4C / Engine API: median ${(A.median / E.median).toFixed(2)}×`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
