import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { closeLiveSockets, execSession, openSocket, sendControl, sendStdin, UpgradeRefused } from './support/access.js';
import { docker, removeHostContainers, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

interface SessionView {
  id: string;
  kind: string;
  actor: string;
  command: string[] | null;
  exitCode: number | null;
  endReason: string | null;
  bytesIn: number;
  bytesOut: number;
  endedAt: string | null;
  durationSeconds: number | null;
}

async function refused(p: Promise<unknown>): Promise<UpgradeRefused> {
  try {
    await p;
  } catch (e) {
    if (e instanceof UpgradeRefused) return e;
    throw e;
  }
  throw new Error('the upgrade was accepted');
}

describe('getting into a workspace: exec and port-forward through the agent\'s tunnel', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('access');
  const alice = uniqueId('alice');
  const mallory = uniqueId('mallory');
  let aliceToken: string;
  let malloryToken: string;
  let ws: Workspace;

  before(async () => {
    t = await startTestControlPlane({ A4C_SESSIONS_PER_WORKSPACE: '3', A4C_SESSION_IDLE_TIMEOUT_SECONDS: '600' });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    for (const u of [alice, mallory]) {
      expect((await t.api.call('POST', '/v1/users', { id: u })).status).to.equal(201);
    }
    aliceToken = (await t.api.call<{ token: string }>('POST', `/v1/users/${alice}/tokens`, { name: 't' })).body.token;
    malloryToken = (await t.api.call<{ token: string }>('POST', `/v1/users/${mallory}/tokens`, { name: 't' })).body.token;
    ws = await t.api.createWorkspace(alice, { projectName: 'access', arch: 'linux-x64', tier: 'tiny', name: 'box' });
    expect(ws.status).to.equal('RUNNING');
  });

  // Each test starts with no open session: what one test opened is closed after it (also
  // when it failed half-way), and the sessions must really end, processes included.
  afterEach(async function () {
    closeLiveSockets();
    if (!t || !ws || this.currentTest?.title.includes('control plane shuts down')) return;
    await waitFor('every session of the test to end', async () => {
      const r = await t.api.call<{ sessions: SessionView[] }>('GET', `/v1/workspaces/${ws.id}/sessions`, undefined, { token: aliceToken });
      const open = r.body.sessions.filter((s) => s.endedAt === null);
      if (open.length) throw new Error(`still open: ${open.map((s) => `${s.kind} ${JSON.stringify(s.command)}`).join(', ')}`);
      return true;
    }, 20_000, 100);
  });

  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  it('runs a command: stdout and stderr apart, stdin forwarded, its exit code, as the workspace user in /workspace', async () => {
    const r = await execSession(t.api.baseUrl, ws.id, aliceToken, {
      command: ['sh', '-c', 'pwd; echo to-err >&2; read line; echo "got $line"; exit 7'],
      stdin: [Buffer.from('hello\n')],
    });
    expect(r.error).to.equal(undefined);
    expect(r.exitCode).to.equal(7);
    expect(r.stdout.toString()).to.equal('/workspace\ngot hello\n');
    expect(r.stderr.toString()).to.equal('to-err\n');
    expect(r.closeCode).to.equal(1000);
  });

  it('streams 50 MiB in, and the workspace sees exactly those bytes', async () => {
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    for (let i = 0; i < 50 * 4; i++) {
      const c = randomBytes(256 * 1024);
      hash.update(c);
      chunks.push(c);
    }
    const r = await execSession(t.api.baseUrl, ws.id, aliceToken, { command: ['sh', '-c', 'sha256sum; wc -c'], stdin: chunks });
    expect(r.exitCode).to.equal(0);
    const [sum, , count] = r.stdout.toString().trim().split(/\s+/);
    expect(sum).to.equal(hash.digest('hex'));
    expect(Number(count)).to.equal(0); // sha256sum consumed everything; wc sees the end
  });

  it('streams 20 MiB out unchanged', async () => {
    const r = await execSession(t.api.baseUrl, ws.id, aliceToken, { command: ['sh', '-c', 'head -c 20971520 /dev/urandom | tee /tmp/out | sha256sum >&2; cat /tmp/out; rm /tmp/out'] });
    expect(r.exitCode).to.equal(0);
    expect(r.stdout.length).to.equal(20 * 1024 * 1024);
    expect(createHash('sha256').update(r.stdout).digest('hex')).to.equal(r.stderr.toString().split(/\s+/)[0]);
  });

  it('back-pressure: a slow reader of a fast producer pauses it, and the agent\'s memory stays flat', async () => {
    const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${agent.proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    const before = rssMiB();
    let peak = before;
    let got = 0;
    const sock = await openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/exec?command=head&command=-c&command=1073741824&command=/dev/zero`, aliceToken, false, (d) => {
      got += d.length;
    });
    // A reader that takes a sip every 200 ms for 5 s: the 1 GiB producer must wait for it,
    // and nothing between may hold more than its bounded buffers. (The bound here leaves
    // room for garbage not yet collected; bench/exec measures the memory itself.)
    for (let i = 0; i < 25; i++) {
      sock.pause();
      await new Promise((r) => setTimeout(r, 200));
      peak = Math.max(peak, rssMiB());
      sock.resume();
      await new Promise((r) => setTimeout(r, 5));
    }
    sock.close();
    // The session is over, so is its producer: the agent ends what the session started.
    await waitFor('the producer to be ended with its session', async () => {
      const r = await execSession(t.api.baseUrl, ws.id, aliceToken, { command: ['sh', '-c', 'pidof head || echo none'] });
      return r.stdout.toString().trim() === 'none';
    }, 15_000, 250);
    expect(got, 'the producer was held back to what the reader read').to.be.lessThan(300 * 1024 * 1024);
    expect(peak - before, `agent RSS grew from ${before.toFixed(0)} to ${peak.toFixed(0)} MiB while the reader got ${(got / 2 ** 20).toFixed(0)} MiB`).to.be.lessThan(64);
  });

  it('gives a terminal whose size follows the user\'s window, and accepts the token as a browser subprotocol', async () => {
    let out = '';
    const sock = await openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/exec?tty=true&cols=100&rows=30`, aliceToken, true);
    expect(sock.protocol).to.equal('a4c.v1');
    sock.on('message', (d: Buffer) => {
      if (d[0] === 1) out += d.subarray(1).toString();
    });
    const closed = new Promise<number>((resolve) => sock.on('close', (code) => resolve(code)));
    sendStdin(sock, 'stty size\n');
    await waitFor('the first size', async () => out.includes('30 100'), 20_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}; the terminal showed ${JSON.stringify(out)}`);
    });
    sendControl(sock, { type: 'resize', cols: 132, rows: 43 });
    await new Promise((r) => setTimeout(r, 200));
    sendStdin(sock, 'stty size; exit 4\n');
    expect(await closed).to.equal(1000);
    expect(out).to.include('43 132');
  });

  it('refuses another user with 404 before any tunnel is opened, and plain HTTP with 426', async () => {
    const e = await refused(execSession(t.api.baseUrl, ws.id, malloryToken, { command: ['true'] }));
    expect(e.status).to.equal(404);
    expect(JSON.stringify(e.body)).to.not.include(hostId);
    const noToken = await refused(openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/exec?command=true`, 'bogus-token'));
    expect(noToken.status).to.equal(401);
    const plain = await t.api.call('GET', `/v1/workspaces/${ws.id}/exec?command=true`, undefined, { token: aliceToken });
    expect(plain.status).to.equal(426);
    expect(plain.body).to.include({ error: 'UPGRADE_REQUIRED' });
  });

  it('forwards a TCP connection to a server listening on 127.0.0.1 inside the network-none workspace', async () => {
    const info = await docker().getContainer(ws.containerId as string).inspect();
    expect(info.HostConfig.NetworkMode).to.equal('none');
    const setup = await execSession(t.api.baseUrl, ws.id, aliceToken, {
      command: ['sh', '-c', 'mkdir -p /tmp/www && echo "hello through the tunnel" > /tmp/www/index.html && httpd -p 127.0.0.1:8080 -h /tmp/www'],
    });
    expect(setup.exitCode).to.equal(0);
    const sock = await openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/port-forward?port=8080`, aliceToken);
    let got = '';
    sock.on('message', (d: Buffer) => (got += d.toString()));
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    sock.send(Buffer.from('GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n'));
    await closed;
    expect(got).to.match(/^HTTP\/1\.[01] 200/);
    expect(got).to.include('hello through the tunnel');
  });

  it('says clearly when nothing listens on the forwarded port', async () => {
    const sock = await openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/port-forward?port=9`, aliceToken);
    const { code, reason } = await new Promise<{ code: number; reason: string }>((resolve) => sock.on('close', (c, r) => resolve({ code: c, reason: r.toString() })));
    expect(code).to.equal(1011);
    expect(reason).to.match(/refused/i);
  });

  it('refuses a session past the per-workspace limit with 429, and counts it free again once one ends', async () => {
    const held = await Promise.all([0, 1, 2].map(() => openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/exec?command=sleep&command=30`, aliceToken)));
    const over = await refused(openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/exec?command=true`, aliceToken));
    expect(over.status).to.equal(429);
    expect(over.body).to.include({ error: 'TOO_MANY_SESSIONS', limit: 3 });
    const gone = new Promise((r) => held[0]?.once('close', r));
    held[0]?.close();
    await gone;
    await waitFor('a place to free up', async () => {
      try {
        const r = await execSession(t.api.baseUrl, ws.id, aliceToken, { command: ['true'] });
        return r.exitCode === 0;
      } catch (e) {
        if (e instanceof UpgradeRefused && e.status === 429) return false;
        throw e;
      }
    }, 10_000, 100);
    for (const h of held.slice(1)) h.close();
  });

  it('records every session (who, kind, command, bytes, exit code, duration) and the workspace\'s lastActivityAt', async () => {
    const before = await t.api.workspace(ws.id);
    expect(before.lastActivityAt).to.be.a('string');
    const r = await t.api.call<{ sessions: SessionView[] }>('GET', `/v1/workspaces/${ws.id}/sessions`, undefined, { token: aliceToken });
    expect(r.status).to.equal(200);
    const first = r.body.sessions.find((s) => s.command?.includes('pwd; echo to-err >&2; read line; echo "got $line"; exit 7'));
    expect(first).to.include({ kind: 'exec', actor: alice, exitCode: 7, bytesIn: 6 });
    expect(first?.bytesOut).to.be.greaterThan(10);
    expect(first?.endedAt).to.be.a('string');
    expect(r.body.sessions.some((s) => s.kind === 'port-forward' && s.endReason)).to.equal(true);
    expect((await t.api.call('GET', `/v1/workspaces/${ws.id}/sessions`, undefined, { token: malloryToken })).status).to.equal(404);
  });

  it('ends a session with a clear message when the workspace is stopped', async () => {
    const result = execSession(t.api.baseUrl, ws.id, aliceToken, {
      command: ['sleep', '60'],
      onStarted: () => void t.api.call('POST', `/v1/workspaces/${ws.id}/stop`, undefined, { token: aliceToken }),
    });
    const r = await result;
    expect(r.exitCode, JSON.stringify({ ...r, stdout: r.stdout.toString(), stderr: r.stderr.toString() })).to.equal(null);
    expect(r.error?.message).to.match(/being stopped/);
    const stopped = await waitFor('stopped', async () => ((await t.api.workspace(ws.id)).status === 'STOPPED' ? true : undefined), 30_000);
    expect(stopped).to.equal(true);
    const notRunning = await refused(openSocket(t.api.baseUrl, `/v1/workspaces/${ws.id}/exec?command=true`, aliceToken));
    expect(notRunning.status).to.equal(409);
    expect(String(notRunning.body.suggestion)).to.include('a4c ws start');
    expect((await t.api.call('POST', `/v1/workspaces/${ws.id}/start?wait=30`, undefined, { token: aliceToken })).status).to.equal(202);
  });

  it('ends a session with a clear message when the host\'s agent dies, and serves again once it is back', async () => {
    const r = await execSession(t.api.baseUrl, ws.id, aliceToken, {
      command: ['sleep', '60'],
      onStarted: () => void agent.kill('SIGKILL'),
    });
    expect(r.closeCode, JSON.stringify({ ...r, stdout: r.stdout.toString(), stderr: r.stderr.toString() })).to.equal(1011);
    expect(r.error?.message).to.match(/connection to host .* was lost/);
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' }, stateDir: agent.stateDir });
    await t.api.waitHostConnected(hostId);
    const again = await execSession(t.api.baseUrl, ws.id, aliceToken, { command: ['echo', 'back'] });
    expect(again.stdout.toString()).to.equal('back\n');
  });
});

describe('a session across replicas: the user on one, the agent\'s stream on another', function () {
  this.timeout(120_000);
  let a: TestControlPlane;
  let b: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('xrep');
  const user = uniqueId('carol');

  before(async () => {
    b = await startTestControlPlane();
    // Replica A tells agents to dial it back at its own gRPC address.
    const { freePort } = await import('./support/net.js');
    const grpcPort = await freePort();
    a = await startTestControlPlane({
      DATABASE_URL: b.databaseUrl,
      A4C_GRPC_PORT: String(grpcPort),
      A4C_ADVERTISE_GRPC_ADDRESS: `127.0.0.1:${grpcPort}`,
      A4C_ADMIN_TOKEN: b.api.token,
      A4C_SESSION_IDLE_TIMEOUT_SECONDS: '2',
    });
    agent = await spawnAgent({ hostId, controlPlane: b.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await b.api.waitHostConnected(hostId);
  });

  after(async () => {
    await agent?.kill();
    await a?.stop();
    await b?.stop();
    await removeHostContainers(hostId);
  });

  it('runs an exec whose user connection is on replica A while the agent is connected to replica B', async () => {
    const w = await a.api.createWorkspace(user, { projectName: 'x', arch: 'linux-x64', tier: 'tiny' });
    expect(w.status).to.equal('RUNNING');
    const db = new pg.Client({ connectionString: a.databaseUrl });
    await db.connect();
    const { rows } = await db.query<{ session_id: string }>('SELECT session_id FROM host_status WHERE host_id = $1', [hostId]);
    await db.end();
    expect(rows[0]?.session_id).to.be.a('string');
    const r = await execSession(a.api.baseUrl, w.id, a.api.token, { command: ['sh', '-c', 'echo across; hostname'] });
    expect(r.exitCode).to.equal(0);
    expect(r.stdout.toString().split('\n')[0]).to.equal('across');
    wsId = w.id;
  });

  let wsId = '';

  it('closes a session idle past A4C_SESSION_IDLE_TIMEOUT_SECONDS, saying so', async () => {
    const started = Date.now();
    const r = await execSession(a.api.baseUrl, wsId, a.api.token, { command: ['sleep', '60'] });
    expect(r.closeCode).to.equal(4008);
    expect(r.error?.message).to.match(/without input or output/);
    expect(Date.now() - started).to.be.lessThan(30_000);
  });

  it('ends live sessions with a message when their control plane shuts down, and the host serves the next one from the other replica', async () => {
    const r = await execSession(a.api.baseUrl, wsId, a.api.token, { command: ['sleep', '60'], onStarted: () => void a.stop() });
    expect(r.closeCode).to.equal(1012);
    expect(r.error?.message).to.match(/shutting down/);
    const again = await execSession(b.api.baseUrl, wsId, b.api.token, { command: ['echo', 'still-here'] });
    expect(again.stdout.toString()).to.equal('still-here\n');
  });
});
