// `npm start`: a whole local A4C on this machine. Installs what it needs, finds or
// starts a Docker Engine, makes the base image, starts the control plane (with its
// embedded PostgreSQL) and one agent, then prints what to run next. Ctrl-C stops it,
// at any point, as does a failure: the agent and the control plane (each in a process
// group of its own, so the terminal's Ctrl-C reaches only this script and each is
// stopped once, in order, the control plane stopping its PostgreSQL), whatever they
// left in their groups, and the private engine if this run started it. Data stays in .a4c/.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BASE_IMAGE, engineAnswers, ensureBaseImage, ensureHostPackages, startPrivateDockerd } from './lib/engine.mjs';
import { ourProcesses, terminate } from './lib/hygiene.mjs';
import { build, ensureInstalled, ROOT } from './lib/setup.mjs';

const say = (m) => console.log(`[a4c] ${m}`);
const STATE = path.join(ROOT, '.a4c');
const HTTP_PORT = process.env.A4C_HTTP_PORT ?? '8080';
const GRPC_PORT = process.env.A4C_GRPC_PORT ?? '9090';
const STATUS_PORT = process.env.A4C_STATUS_PORT ?? '9100';
const HOST_ID = process.env.A4C_HOST_ID ?? os.hostname().toLowerCase().replace(/[^a-z0-9._-]/g, '-');

ensureInstalled(say);
ensureHostPackages(say);
build(say);

let privateEngine;
let startingEngine;
const children = [];
let stopping = false;
// Stopping (Ctrl-C while starting up): stop() ends the process; start nothing more.
const halted = () => new Promise(() => setInterval(() => undefined, 60_000));
process.on('SIGINT', () => void stop(130));
process.on('SIGTERM', () => void stop(143));
process.on('SIGHUP', () => void stop(129));
process.on('uncaughtException', (e) => {
  say(`failed: ${e?.stack ?? e}`);
  void stop(1);
});

// The engine: DOCKER_HOST or the default socket if one answers, else a private dockerd.
let dockerHost = process.env.DOCKER_HOST;
let networkMode = process.env.A4C_NETWORK_MODE;
const socketOf = (h) => (h?.startsWith('unix://') ? h.slice(7) : undefined);
if (dockerHost && socketOf(dockerHost) && !(await engineAnswers(socketOf(dockerHost)))) {
  throw new Error(`DOCKER_HOST=${dockerHost} does not answer; start that engine or unset DOCKER_HOST`);
}
if (!dockerHost && (await engineAnswers('/var/run/docker.sock'))) dockerHost = 'unix:///var/run/docker.sock';
if (!dockerHost) {
  say('no Docker Engine answers; starting a private one (data in .a4c/docker)');
  startingEngine = startPrivateDockerd({ dataRoot: path.join(STATE, 'docker'), name: 'a4c-dev' });
  const engine = await startingEngine;
  // One left running by another `npm start` is that one's to stop.
  if (engine.reused) say(`using the private Docker Engine already running at ${engine.dockerHost}`);
  else privateEngine = engine;
  dockerHost = engine.dockerHost;
  networkMode ??= 'none'; // the private engine has no bridge network
}
networkMode ??= 'bridge';
if (stopping) await halted();
say(`Docker Engine: ${dockerHost}`);
if (await ensureBaseImage(dockerHost)) say(`made the base image ${BASE_IMAGE} from Debian's busybox-static`);

mkdirSync(path.join(STATE, 'logs'), { recursive: true });
function launch(name, script, env) {
  const logFile = path.join(STATE, 'logs', `${name}.log`);
  const out = openSync(logFile, 'a');
  const child = spawn(process.execPath, [path.join(ROOT, script)], { env: { ...process.env, ...env }, stdio: ['ignore', out, out], detached: true });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      say(`${name} exited (${signal ?? code}); its log: ${logFile}`);
      void stop(1);
    }
  });
  children.push(child);
  return { child, logFile };
}

if (stopping) await halted();
const cp = launch('control-plane', 'control-plane/dist/main.js', {
  A4C_DATA_DIR: path.join(STATE, 'control-plane'),
  A4C_HTTP_PORT: HTTP_PORT,
  A4C_GRPC_PORT: GRPC_PORT,
  A4C_TIERS: process.env.A4C_TIERS ?? JSON.stringify({ tiny: { memoryMb: 256, cpus: 0.5, diskGb: 5 } }),
});
const api = `http://127.0.0.1:${HTTP_PORT}`;
await until('the control plane', async () => (await fetch(`${api}/readyz`)).ok, 60_000, cp.logFile);
const token = readFileSync(path.join(STATE, 'control-plane', 'admin-token'), 'utf8').trim();

// The agent plane is TLS with client certificates: the agent enrolls with a single-use
// join token the first time; later starts reuse its certificate. A certificate from
// another CA (the control plane's data was reset) is dropped and the agent enrolls again.
const agentTls = path.join(STATE, 'agent', 'tls');
const cpCa = path.join(STATE, 'control-plane', 'ca', 'ca.crt');
if (existsSync(agentTls) && (!existsSync(path.join(agentTls, 'ca.crt')) || readFileSync(path.join(agentTls, 'ca.crt'), 'utf8') !== readFileSync(cpCa, 'utf8'))) {
  say('the agent certificate is not from this control plane; enrolling again');
  rmSync(agentTls, { recursive: true, force: true });
}
let joinToken;
if (!existsSync(path.join(agentTls, 'agent.crt'))) {
  // A control plane just started may shed load (503, Retry-After) while it warms up.
  let r;
  for (let attempt = 0; attempt < 10; attempt++) {
    r = await fetch(`${api}/v1/join-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ hostId: HOST_ID, ttlSeconds: 600 }),
    });
    if (r.status !== 503) break;
    await new Promise((done) => setTimeout(done, 1000 * Number(r.headers.get('retry-after') ?? 1)));
  }
  if (r.status !== 201) throw new Error(`could not create a join token for the agent: ${r.status} ${await r.text()}`);
  joinToken = (await r.json()).token;
  say(`enrolling agent "${HOST_ID}" with a join token`);
}

if (stopping) await halted();
const agent = launch('agent', 'agent/dist/main.js', {
  A4C_CONTROL_PLANE: `127.0.0.1:${GRPC_PORT}`,
  A4C_CONTROL_PLANE_URL: api,
  ...(joinToken ? { A4C_JOIN_TOKEN: joinToken } : {}),
  A4C_HOST_ID: HOST_ID,
  A4C_STATUS_PORT: STATUS_PORT,
  A4C_STATE_DIR: path.join(STATE, 'agent'),
  A4C_NETWORK_MODE: networkMode,
  DOCKER_HOST: dockerHost,
});
await until('the agent to connect', async () => {
  const r = await fetch(`${api}/v1/hosts/${HOST_ID}`, { headers: { authorization: `Bearer ${token}` } });
  return r.ok && (await r.json()).connected === true;
}, 30_000, agent.logFile);

console.log(`
A4C is running: control plane, embedded PostgreSQL, and agent "${HOST_ID}".

  REST API       ${api}   (admin token: .a4c/control-plane/admin-token)
  dashboard      ${api}/ui/   (sign in with the admin token)
  agent status   http://127.0.0.1:${STATUS_PORT}/status
  logs           .a4c/logs/

Next, in another terminal, create a workspace with the CLI:

  export A4C_URL=${api} A4C_TOKEN=${token} A4C_USER=$USER
  npx a4c ws create --project demo --arch linux-x64 --tier tiny
  npx a4c ws list

or with curl:

  curl -H "Authorization: Bearer ${token}" -H 'Content-Type: application/json' \\
       -d '{"projectName":"demo","arch":"linux-x64","tier":"tiny"}' '${api}/v1/users/alice/workspaces?wait=60'

Ctrl-C stops A4C${privateEngine ? ' and its private Docker Engine (workspaces are recreated at the next start)' : '; workspaces keep running'}.
`);

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  say('stopping...');
  for (const c of [...children].reverse()) {
    if (c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
    }
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // What it started and left in its group (its PostgreSQL, had it not stopped it).
    await terminate(ourProcesses({ pgids: [c.pid] }));
  }
  // An engine still starting is ours once it is up.
  if (!privateEngine && startingEngine) {
    const engine = await startingEngine.catch(() => undefined);
    if (engine && !engine.reused) privateEngine = engine;
  }
  const left = (await privateEngine?.stop()) ?? [];
  if (left.length) say(`ended what the private engine left running:\n${left.join('\n')}`);
  process.exit(code);
}

async function until(what, check, timeoutMs, logFile) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      // not up yet
    }
    if (stopping) await halted();
    await new Promise((r) => setTimeout(r, 200));
  }
  const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-20).join('\n') : '';
  say(`timed out waiting for ${what}; last lines of ${logFile}:\n${tail}`);
  await stop(1);
}
