/**
 * bench/exec: getting into a workspace, side by side with the same engine's own path.
 *
 *  1. Round trip of a trivial command, interleaved: `a4c ws exec ID -- true` (the CLI)
 *     vs `docker exec C true` (Docker's CLI), and the exec WebSocket vs the Engine API's
 *     exec (create + start + inspect), each without a CLI's start-up.
 *  2. Throughput of BENCH_GIB (default 1) GiB in and out: through exec vs a local
 *     `docker exec -i C cat` pipe, and through port-forward vs `docker exec -i C nc`.
 *  3. Memory (RSS, peak) of the control plane and the agent while 50 sessions stream 20 MiB at
 *     once, and while one slow reader pulls a 1 GiB stream at 8 MiB/s.
 *
 * Run with `npm run bench -- exec` (starts a private engine). The control plane runs
 * as its own process here, so its memory is its own. BENCH_N, BENCH_GIB size the runs;
 * BENCH_CP_NODE_ARGS / BENCH_AGENT_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=DIR")
 * profile the control plane or the agent.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { WebSocket } from 'ws';
import { BENCH_TINY_TIER, NO_LIMITS, spawnBenchAgent, waitUntil } from './agent.js';
import { machine, median, percentile } from './lib.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const N = Number(process.env.BENCH_N ?? 30);
const GIB = Number(process.env.BENCH_GIB ?? 1);
const BYTES = Math.round(GIB * 1024 ** 3);
const dockerHost = process.env.A4C_BENCH_DOCKER_HOST ?? process.env.DOCKER_HOST;
if (!dockerHost) throw new Error('set A4C_BENCH_DOCKER_HOST (npm run bench does)');
const docker = new Docker({ socketPath: dockerHost.replace(/^unix:\/\//, '') });
const dockerEnv = { ...process.env, DOCKER_HOST: dockerHost };

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

/** VmRSS and VmHWM (peak) of a process, in MiB. */
function rss(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

async function startControlPlaneProcess(): Promise<{ proc: ChildProcess; api: string; grpc: string; token: string; stop(): Promise<void> }> {
  const [http, grpc, pg] = await Promise.all([freePort(), freePort(), freePort()]);
  const token = `bench-admin-token-${process.pid}`;
  // BENCH_CP_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the control plane.
  const nodeArgs = (process.env.BENCH_CP_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'control-plane/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_DATA_DIR: mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-cp-')),
      A4C_HTTP_PORT: String(http),
      A4C_GRPC_PORT: String(grpc),
      A4C_EMBEDDED_PG_PORT: String(pg),
      A4C_GRPC_INSECURE: 'true',
      A4C_ADMIN_TOKEN: token,
      A4C_TIERS: BENCH_TINY_TIER,
      A4C_LOG_LEVEL: 'warn',
      A4C_SESSIONS_PER_WORKSPACE: '0',
      A4C_SESSIONS_PER_USER: '0',
      ...NO_LIMITS,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const orphaned = () => proc.kill('SIGKILL');
  process.once('exit', orphaned);
  const api = `http://127.0.0.1:${http}`;
  await waitUntil('control plane ready', async () => (await fetch(`${api}/readyz`)).ok, 60_000);
  return {
    proc,
    api,
    grpc: `127.0.0.1:${grpc}`,
    token,
    stop: async () => {
      process.off('exit', orphaned);
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

function openWs(api: string, token: string, p: string): Promise<WebSocket> {
  const ws = new WebSocket(api.replace(/^http/, 'ws') + p, ['a4c.v1'], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** One exec over the WebSocket; resolves with the exit code and the stdout byte count. */
async function wsExec(api: string, token: string, id: string, argv: string[], o: { stdinBytes?: number; readRate?: number } = {}): Promise<{ code: number; out: number }> {
  const q = new URLSearchParams();
  for (const a of argv) q.append('command', a);
  let out = 0;
  let code = -1;
  const ws = new WebSocket(`${api.replace(/^http/, 'ws')}/v1/workspaces/${id}/exec?${q}`, ['a4c.v1'], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
  const started = Date.now();
  ws.on('message', (d: Buffer) => {
    if (d[0] === 1) {
      out += d.length - 1;
      if (o.readRate) {
        // A slow reader: stay under readRate bytes/s by pausing the socket.
        const ahead = out / o.readRate - (Date.now() - started) / 1000;
        if (ahead > 0) {
          ws.pause();
          setTimeout(() => ws.resume(), ahead * 1000);
        }
      }
    } else if (d[0] === 3) {
      const m = JSON.parse(d.subarray(1).toString()) as { type: string; code?: number };
      if (m.type === 'exit') code = m.code ?? -1;
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  if (o.stdinBytes) {
    const chunk = Buffer.alloc(64 * 1024 + 1);
    chunk[0] = 0;
    for (let sent = 0; sent < o.stdinBytes; sent += 64 * 1024) {
      ws.send(chunk);
      while (ws.bufferedAmount > 4 * 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
    }
    ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"type":"eof"}')]));
  }
  await closed;
  return { code, out };
}

/** One port-forward connection over the WebSocket: sends `send` bytes then closes, or reads until the far side closes. */
async function wsForward(api: string, token: string, id: string, port: number, send: number): Promise<number> {
  const ws = await openWs(api, token, `/v1/workspaces/${id}/port-forward?port=${port}`);
  let got = 0;
  ws.on('message', (d: Buffer) => (got += d.length));
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  if (send) {
    const chunk = Buffer.alloc(64 * 1024);
    for (let sent = 0; sent < send; sent += chunk.length) {
      ws.send(chunk);
      while (ws.bufferedAmount > 4 * 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
    }
    // Let the in-workspace sink drain what was sent before closing.
    while (ws.bufferedAmount > 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 200));
    ws.close();
  }
  await closed;
  return got;
}

/** `docker exec -i C argv`, fed `stdinBytes` of zeros; resolves with stdout's byte count. */
function dockerExecPipe(container: string, argv: string[], stdinBytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn('docker', ['exec', '-i', container, ...argv], { env: dockerEnv, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = 0;
    p.stdout.on('data', (d: Buffer) => (out += d.length));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`docker exec exited ${code}`))));
    const chunk = Buffer.alloc(64 * 1024);
    let sent = 0;
    const pump = () => {
      while (sent < stdinBytes) {
        sent += chunk.length;
        if (!p.stdin.write(chunk)) return void p.stdin.once('drain', pump);
      }
      p.stdin.end();
    };
    pump();
  });
}

const ms = (n: number) => `${n.toFixed(0)} ms`;
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: median(s), p95: percentile(s, 95) };
};
const time = async <T>(f: () => Promise<T>, what?: string): Promise<number> => {
  const t0 = performance.now();
  await f();
  const took = performance.now() - t0;
  if (what) console.error(`  ${what}: ${(took / 1000).toFixed(2)} s`);
  return took;
};

async function main(): Promise<void> {
  const cp = await startControlPlaneProcess();
  const hostId = `bench-${process.pid}`;
  const agent = await spawnBenchAgent({ hostId, controlPlane: cp.grpc, dockerHost: dockerHost as string, env: { A4C_LOG_LEVEL: process.env.BENCH_AGENT_LOG_LEVEL ?? 'warn' } });
  const auth = { authorization: `Bearer ${cp.token}` };
  await waitUntil('agent connected', async () => {
    const r = await fetch(`${cp.api}/v1/hosts/${hostId}`, { headers: auth });
    return r.ok && ((await r.json()) as { connected: boolean }).connected;
  });
  const res = await fetch(`${cp.api}/v1/users/bench/workspaces?wait=60`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ projectName: 'bench', arch: 'linux-x64', tier: 'tiny', name: 'exec' }),
  });
  const w = (await res.json()) as { id: string; status: string; containerId: string };
  if (w.status !== 'RUNNING') throw new Error(`workspace ${JSON.stringify(w)}`);
  const agentPid = agent.pid;
  console.error(`workspace ${w.id} running; ${N} round trips of each path...`);
  const cli = path.join(ROOT, 'packages/cli/dist/main.js');
  const cliEnv = { ...process.env, A4C_URL: cp.api, A4C_TOKEN: cp.token };

  // ---- 1. round trips
  const rt = { cli: [] as number[], docker: [] as number[], ws: [] as number[], engine: [] as number[] };
  for (let i = 0; i < N; i++) {
    rt.cli.push(await time(() => run(process.execPath, [cli, 'ws', 'exec', w.id, '--', 'true'], { env: cliEnv })));
    rt.docker.push(await time(() => run('docker', ['exec', w.containerId, 'true'], { env: dockerEnv })));
    rt.ws.push(await time(() => wsExec(cp.api, cp.token, w.id, ['true'])));
    rt.engine.push(
      await time(async () => {
        const e = await docker.getContainer(w.containerId).exec({ Cmd: ['true'], AttachStdout: true, AttachStderr: true });
        const s = await e.start({});
        s.resume();
        await new Promise((r) => s.on('end', r));
        while ((await e.inspect()).Running) await new Promise((r) => setTimeout(r, 2));
      }),
    );
  }

  console.error(`throughput, ${GIB} GiB each way...`);
  // ---- 2. throughput
  const mib = (bytes: number, msTaken: number) => bytes / 1024 ** 2 / (msTaken / 1000);
  const gi = `${GIB} GiB`;
  const tp: [string, number, number][] = [];
  let t = await time(() => wsExec(cp.api, cp.token, w.id, ['sh', '-c', 'cat > /dev/null'], { stdinBytes: BYTES }), 'exec in, A4C');
  let b = await time(() => dockerExecPipe(w.containerId, ['sh', '-c', 'cat > /dev/null'], BYTES), 'exec in, docker exec -i');
  tp.push([`exec in: ${gi} to \`cat > /dev/null\``, mib(BYTES, t), mib(BYTES, b)]);
  t = await time(() => wsExec(cp.api, cp.token, w.id, ['head', '-c', String(BYTES), '/dev/zero']), 'exec out, A4C');
  b = await time(() => dockerExecPipe(w.containerId, ['head', '-c', String(BYTES), '/dev/zero'], 0), 'exec out, docker exec');
  tp.push([`exec out: ${gi} from \`head -c\``, mib(BYTES, t), mib(BYTES, b)]);
  // Port-forward: an in-workspace sink and source on loopback (busybox nc; -e, since a
  // plain `nc -l` with no stdin closes the connection as soon as it accepts it).
  await docker.getContainer(w.containerId).exec({ Cmd: ['sh', '-c', 'while true; do nc -l -p 9000 -e sh -c "cat > /dev/null"; done'] }).then((e) => e.start({ Detach: true }));
  await docker.getContainer(w.containerId).exec({ Cmd: ['sh', '-c', `while true; do nc -l -p 9001 -e head -c ${BYTES} /dev/zero; done`] }).then((e) => e.start({ Detach: true }));
  await new Promise((r) => setTimeout(r, 300));
  t = await time(() => wsForward(cp.api, cp.token, w.id, 9000, BYTES), 'port-forward in, A4C');
  b = await time(() => dockerExecPipe(w.containerId, ['nc', '127.0.0.1', '9000'], BYTES), 'port-forward in, docker exec -i nc');
  tp.push([`port-forward in: ${gi} to an nc sink`, mib(BYTES, t), mib(BYTES, b)]);
  let got = 0;
  t = await time(async () => (got = await wsForward(cp.api, cp.token, w.id, 9001, 0)), 'port-forward out, A4C');
  if (got !== BYTES) console.error(`port-forward out received ${got} of ${BYTES} bytes`);
  b = await time(() => dockerExecPipe(w.containerId, ['nc', '127.0.0.1', '9001'], 0), 'port-forward out, docker exec nc');
  tp.push([`port-forward out: ${gi} from an nc source`, mib(BYTES, t), mib(BYTES, b)]);

  console.error('memory: 50 streams at once, then one slow reader...');
  // ---- 3. memory
  const sample = () => ({ cp: rss(cp.proc.pid as number).rss, agent: agentPid ? rss(agentPid).rss : NaN });
  const idle = sample();
  let peak = { cp: 0, agent: 0 };
  const sampler = setInterval(() => {
    const s = sample();
    peak = { cp: Math.max(peak.cp, s.cp), agent: Math.max(peak.agent, s.agent) };
  }, 50);
  const fifty = await time(() => Promise.all(Array.from({ length: 50 }, () => wsExec(cp.api, cp.token, w.id, ['head', '-c', String(20 * 1024 ** 2), '/dev/zero']))));
  const peak50 = peak;
  peak = { cp: 0, agent: 0 };
  const slowBytes = 80 * 1024 ** 2;
  const slow = wsExec(cp.api, cp.token, w.id, ['head', '-c', String(BYTES), '/dev/zero'], { readRate: 8 * 1024 ** 2 });
  await new Promise((r) => setTimeout(r, (slowBytes / (8 * 1024 ** 2)) * 1000));
  const peakSlow = peak;
  clearInterval(sampler);
  void slow.catch(() => undefined);

  await agent.stop();
  await cp.stop();

  const R = { cli: stats(rt.cli), docker: stats(rt.docker), ws: stats(rt.ws), engine: stats(rt.engine) };
  console.log(`exec: ${N} round trips each, interleaved; ${gi} streams; one engine (${dockerHost})`);
  console.log(`machine: ${machine()}`);
  console.log('');
  console.log('| round trip of `true` | median | p95 |');
  console.log('|---|---|---|');
  console.log(`| \`a4c ws exec ID -- true\` (CLI → control plane → agent → engine) | ${ms(R.cli.median)} | ${ms(R.cli.p95)} |`);
  console.log(`| \`docker exec C true\` (Docker's CLI → engine) | ${ms(R.docker.median)} | ${ms(R.docker.p95)} |`);
  console.log(`| exec WebSocket, no CLI start-up | ${ms(R.ws.median)} | ${ms(R.ws.p95)} |`);
  console.log(`| Engine API exec create + start + inspect, no CLI | ${ms(R.engine.median)} | ${ms(R.engine.p95)} |`);
  console.log('');
  console.log(`ratio a4c / docker CLI: median ${(R.cli.median / R.docker.median).toFixed(2)}×, p95 ${(R.cli.p95 / R.docker.p95).toFixed(2)}×`);
  console.log(`ratio WebSocket / Engine API: median ${(R.ws.median / R.engine.median).toFixed(2)}×`);
  console.log('');
  console.log('| stream | A4C | local `docker exec -i` | ratio |');
  console.log('|---|---|---|---|');
  for (const [what, a, d] of tp) console.log(`| ${what} | ${a.toFixed(0)} MiB/s | ${d.toFixed(0)} MiB/s | ${(a / d).toFixed(2)}× |`);
  console.log('');
  console.log('| memory (RSS) | control plane | agent |');
  console.log('|---|---|---|');
  console.log(`| idle, one workspace | ${idle.cp.toFixed(0)} MiB | ${idle.agent.toFixed(0)} MiB |`);
  console.log(`| peak, 50 sessions each streaming 20 MiB out at once (${(fifty / 1000).toFixed(1)} s) | ${peak50.cp.toFixed(0)} MiB | ${peak50.agent.toFixed(0)} MiB |`);
  console.log(`| peak, one ${gi} stream read at 8 MiB/s for ${(slowBytes / 1024 ** 2 / 8).toFixed(0)} s | ${peakSlow.cp.toFixed(0)} MiB | ${peakSlow.agent.toFixed(0)} MiB |`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
