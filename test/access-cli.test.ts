import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Workspace } from '@a4c/common';
import { removeHostContainers, ROOT, spawnAgent, startTestControlPlane, tmpDir, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { freePort, waitFor } from './support/net.js';

const run = promisify(execFile);
const A4C = path.join(ROOT, 'packages/cli/bin/a4c.mjs');

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Real clients users have: OpenSSH, curl, tmux. Missing one is a failure, never a skip. */
async function need(cmd: string): Promise<void> {
  try {
    await run('sh', ['-c', `command -v ${cmd}`]);
  } catch {
    throw new Error(`${cmd} is not installed: npm test installs it (scripts/lib/engine.mjs); install it with apt-get`);
  }
}

describe('a4c ws exec, shell, port-forward and real OpenSSH into a workspace', function () {
  this.timeout(180_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('acli');
  const user = uniqueId('dana');
  let ws: Workspace;
  let env: Record<string, string>;
  const home = tmpDir('acli-home');
  const tmuxSocket = `a4c-test-${process.pid}`;

  const a4c = (args: string[], input?: Buffer): Promise<Run> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [A4C, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      let err = '';
      p.stdout.on('data', (c: Buffer) => out.push(c));
      p.stderr.on('data', (c: Buffer) => (err += c.toString()));
      p.on('exit', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out), stderr: err }));
      p.stdin.end(input ?? Buffer.alloc(0));
    });
  const tmux = (...args: string[]) => run('tmux', ['-L', tmuxSocket, ...args], { env: { ...process.env, ...env } });
  const screen = async () => (await tmux('capture-pane', '-p', '-t', 's')).stdout;

  before(async () => {
    for (const c of ['ssh', 'scp', 'sftp', 'curl', 'tmux']) await need(c);
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0' } });
    await t.api.waitHostConnected(hostId);
    ws = await t.api.createWorkspace(user, { projectName: 'cli', arch: 'linux-x64', tier: 'tiny', name: 'devbox' });
    expect(ws.status).to.equal('RUNNING');
    env = { PATH: process.env.PATH ?? '', HOME: home, A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token, A4C_USER: user, TERM: 'xterm-256color' };
  });

  after(async () => {
    await tmux('kill-server').catch(() => undefined);
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
  });

  it('exec: stdout and stderr kept apart, the exit code becomes the CLI\'s, arguments after -- untouched', async () => {
    const r = await a4c(['ws', 'exec', ws.id, '--', 'sh', '-c', 'echo out; echo err >&2; ls -la / >/dev/null; exit 3']);
    expect(r.code, r.stderr).to.equal(3);
    expect(r.stdout.toString()).to.equal('out\n');
    expect(r.stderr).to.equal('err\n');
  });

  it('exec: stdin is forwarded (a 5 MiB pipe, checksummed inside)', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const r = await a4c(['ws', 'exec', ws.id, '--', 'sha256sum'], data);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.toString().split(' ')[0]).to.equal(createHash('sha256').update(data).digest('hex'));
  });

  it('exec: a workspace that is not yours is not found, and says so', async () => {
    expect((await t.api.call('POST', '/v1/users', { id: `${user}-x` })).status).to.equal(201);
    const tok = (await t.api.call<{ token: string }>('POST', `/v1/users/${user}-x/tokens`, { name: 'x' })).body.token;
    const p = spawn(process.execPath, [A4C, 'ws', 'exec', ws.id, '--', 'true'], { env: { ...env, A4C_TOKEN: tok } });
    let err = '';
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise((r) => p.on('exit', r));
    expect(code).to.equal(1);
    expect(err).to.match(/NOT_FOUND/);
  });

  it('shell: a real terminal through tmux; a resize reaches `stty size`; Ctrl-C goes to the shell, not the CLI', async () => {
    const envArgs = Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    await tmux('new-session', '-d', '-s', 's', '-x', '100', '-y', '30', ...envArgs, `${process.execPath} ${A4C} ws shell ${ws.id}`);
    await waitFor('the shell prompt', async () => /[#$] ?$/m.test(await screen()), 20_000, 100);
    await tmux('send-keys', '-t', 's', 'stty size', 'Enter');
    await waitFor('the first size', async () => (await screen()).includes('30 100'), 10_000, 100);
    await tmux('resize-window', '-t', 's', '-x', '120', '-y', '40');
    await new Promise((r) => setTimeout(r, 300));
    await tmux('send-keys', '-t', 's', 'clear; stty size', 'Enter');
    await waitFor('the new size', async () => (await screen()).includes('40 120'), 10_000, 100);
    await tmux('send-keys', '-t', 's', 'sleep 30', 'Enter');
    await new Promise((r) => setTimeout(r, 300));
    await tmux('send-keys', '-t', 's', 'C-c');
    await tmux('send-keys', '-t', 's', 'echo still-$((6*7))', 'Enter');
    await waitFor('the shell alive after Ctrl-C', async () => (await screen()).includes('still-42'), 10_000, 100);
    await tmux('send-keys', '-t', 's', 'exit', 'Enter');
    await waitFor('the session to end', async () => !(await tmux('has-session', '-t', 's').then(() => true, () => false)), 10_000, 100);
  });

  it('port-forward: curl on 127.0.0.1 reaches a server listening on 127.0.0.1 inside the network-none workspace', async () => {
    const setup = await a4c(['ws', 'exec', ws.id, '--', 'sh', '-c', 'mkdir -p /tmp/pf && echo forwarded-ok > /tmp/pf/index.html && httpd -p 127.0.0.1:8080 -h /tmp/pf']);
    expect(setup.code, setup.stderr).to.equal(0);
    const local = await freePort();
    const pf: ChildProcess = spawn(process.execPath, [A4C, 'ws', 'port-forward', ws.id, `${local}:8080`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    pf.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    try {
      await waitFor('the forward to listen', async () => err.includes('Forwarding'), 10_000, 50);
      for (let i = 0; i < 3; i++) {
        const { stdout } = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${local}/index.html`]);
        expect(stdout).to.equal('forwarded-ok\n');
      }
    } finally {
      pf.kill('SIGINT');
      await new Promise((r) => pf.once('exit', r));
    }
  });

  describe('real OpenSSH through `a4c config-ssh`', () => {
    let sshConfig: string;
    const ssh = (...args: string[]) => run('ssh', ['-F', sshConfig, ...args], { env: { ...process.env, HOME: home }, maxBuffer: 64 * 1024 * 1024 });

    before(async () => {
      sshConfig = path.join(home, '.ssh', 'config');
      const r = await a4c(['config-ssh']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.toString()).to.include('devbox.a4c');
      expect((await t.api.workspace(ws.id)).sshCommand).to.equal('ssh devbox.a4c');
    });

    it('writes one managed block and keeps the rest of ~/.ssh/config; running it again replaces the block', async () => {
      writeFileSync(sshConfig, `Host other\n  HostName example.invalid\n\n${readFileSync(sshConfig, 'utf8')}`);
      expect((await a4c(['config-ssh'])).code).to.equal(0);
      const text = readFileSync(sshConfig, 'utf8');
      expect(text.match(/START A4C/g)).to.have.length(1);
      expect(text).to.include('Host other\n  HostName example.invalid');
      expect(text).to.include('Host devbox.a4c');
    });

    it('ssh devbox.a4c runs a command with its exit status and stderr', async () => {
      const { stdout } = await ssh('devbox.a4c', 'echo hello-$(hostname)');
      expect(stdout.trim()).to.equal(`hello-devbox-${user}`);
      const failed = await ssh('devbox.a4c', 'echo e >&2; exit 5').then(() => undefined, (e: { code: number; stderr: string }) => e);
      expect(failed?.code).to.equal(5);
      expect(failed?.stderr).to.include('e');
    });

    it('an interactive ssh session with a PTY (tmux)', async () => {
      await tmux('new-session', '-d', '-s', 'ssh', '-x', '90', '-y', '25', '-e', `HOME=${home}`, `ssh -F ${sshConfig} -tt devbox.a4c`);
      await waitFor('the prompt', async () => /[#$] ?$/m.test((await tmux('capture-pane', '-p', '-t', 'ssh')).stdout), 20_000, 100);
      await tmux('send-keys', '-t', 'ssh', 'stty size; echo pty-$((2*21))', 'Enter');
      await waitFor('the answer', async () => {
        const s = (await tmux('capture-pane', '-p', '-t', 'ssh')).stdout;
        return s.includes('25 90') && s.includes('pty-42');
      }, 10_000, 100);
      await tmux('send-keys', '-t', 'ssh', 'exit', 'Enter');
    });

    it('scp copies a file in and out (SFTP mode), byte for byte', async () => {
      const local = path.join(home, 'up.bin');
      const back = path.join(home, 'down.bin');
      const data = randomBytes(3 * 1024 * 1024 + 17);
      writeFileSync(local, data);
      await run('scp', ['-F', sshConfig, local, 'devbox.a4c:/workspace/up.bin'], { env: { ...process.env, HOME: home } });
      const inside = await ssh('devbox.a4c', 'sha256sum /workspace/up.bin');
      expect(inside.stdout.split(' ')[0]).to.equal(createHash('sha256').update(data).digest('hex'));
      await run('scp', ['-F', sshConfig, 'devbox.a4c:/workspace/up.bin', back], { env: { ...process.env, HOME: home } });
      expect(createHash('sha256').update(readFileSync(back)).digest('hex')).to.equal(createHash('sha256').update(data).digest('hex'));
    });

    it('ssh -L reaches a server on 127.0.0.1 inside the workspace', async () => {
      await ssh('devbox.a4c', 'mkdir -p /tmp/sl && echo via-ssh-L > /tmp/sl/index.html && httpd -p 127.0.0.1:8081 -h /tmp/sl');
      const local = await freePort();
      const fwd = spawn('ssh', ['-F', sshConfig, '-N', '-L', `127.0.0.1:${local}:127.0.0.1:8081`, 'devbox.a4c'], { env: { ...process.env, HOME: home }, stdio: 'ignore' });
      try {
        const body = await waitFor('the ssh forward', async () => {
          try {
            return (await run('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${local}/index.html`])).stdout;
          } catch {
            return undefined;
          }
        }, 20_000, 200);
        expect(body).to.equal('via-ssh-L\n');
      } finally {
        fwd.kill();
      }
    });

    it('every session is in the workspace\'s audit, with who opened it', async () => {
      const r = await a4c(['ws', 'sessions', ws.id, '-o', 'json']);
      expect(r.code, r.stderr).to.equal(0);
      const kinds = new Set((JSON.parse(r.stdout.toString()) as { sessions: { kind: string; actor: string }[] }).sessions.map((s) => s.kind));
      expect([...kinds].sort()).to.deep.equal(['exec', 'port-forward', 'shell', 'ssh']);
    });
  });
});
