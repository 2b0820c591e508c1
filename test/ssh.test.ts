import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import type Docker from 'dockerode';
import { createLogger } from '@a4c/common';
import { loadOrCreateHostKey, serveSsh, type HostKey, type SshSummary } from '@a4c/agent';
import { docker, ROOT, tmpDir, uniqueId } from './support/cluster.js';
import { freePort, waitFor } from './support/net.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { input?: string | Buffer; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    // A command that exits without reading its stdin (tmux) must not fail the test with EPIPE.
    child.stdin.on('error', () => undefined);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command in the container as root, straight through the Engine (the test's own eyes). */
async function inContainer(c: Docker.Container, script: string): Promise<Run> {
  const e = await c.exec({ Cmd: ['sh', '-c', script], User: 'root', AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (b: Buffer) => (stdout += b.toString()));
  err.on('data', (b: Buffer) => (stderr += b.toString()));
  docker().modem.demuxStream(stream, out, err);
  await new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
  });
  return { code: (await e.inspect()).ExitCode ?? null, stdout, stderr };
}

const DASH_IMAGE = 'a4c-ssh-test-dash:latest';

/** An image of Debian's dash and the libraries it links: a shell, and no nc or socat. */
async function dashOnlyImage(work: string): Promise<string> {
  const root = path.join(work, 'dash-root');
  const libs = execFileSync('ldd', ['/bin/dash'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /(\/\S+) \(0x/.exec(l)?.[1])
    .filter((p): p is string => !!p);
  for (const [from, to] of [['/bin/dash', '/bin/sh'], ...libs.map((l) => [l, l])] as [string, string][]) {
    mkdirSync(path.join(root, path.dirname(to)), { recursive: true });
    copyFileSync(from, path.join(root, to));
    chmodSync(path.join(root, to), 0o755);
  }
  for (const d of ['workspace', 'tmp', 'proc', 'sys', 'dev', 'etc']) mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\n');
  writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\n');
  const tarball = path.join(work, 'dash.tar');
  execFileSync('tar', ['-C', root, '-cf', tarball, '.']);
  const [repo, tag] = DASH_IMAGE.split(':') as [string, string];
  const progress = await docker().importImage(tarball, { repo, tag });
  await new Promise<void>((resolve, reject) => docker().modem.followProgress(progress, (err: Error | null) => (err ? reject(err) : resolve())));
  return DASH_IMAGE;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** An agent-side SSH endpoint for one container: each connection on its unix socket goes to serveSsh. */
class Endpoint {
  readonly summaries: SshSummary[] = [];
  private server: net.Server | undefined;

  constructor(
    readonly socketPath: string,
    private readonly container: Docker.Container,
    private readonly hostKey: HostKey,
  ) {}

  async start(): Promise<void> {
    const server = net.createServer((s) => {
      void serveSsh(s, {
        docker: docker(),
        containerId: this.container.id,
        workspaceId: 'ws-test',
        hostKeys: [this.hostKey],
        log: createLogger('ssh-test', { A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' }),
        tmpDir: path.dirname(this.socketPath),
      }).then((s) => this.summaries.push(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, resolve);
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** OpenSSH options that reach this endpoint as host "ws.a4c", the way `a4c config-ssh` would. */
  sshOptions(extra: string[] = []): string[] {
    // Extra options first: OpenSSH keeps the first value it is given for an option.
    return [
      ...extra,
      '-F', '/dev/null',
      '-o', `ProxyCommand=${process.execPath} ${path.join(ROOT, 'test/support/unix-bridge.mjs')} ${this.socketPath}`,
      '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'LogLevel=ERROR',
      '-o', 'BatchMode=yes',
    ];
  }
}

describe('ssh: OpenSSH into a workspace container through serveSsh', function () {
  this.timeout(120_000);
  let work = '';
  const started: Docker.Container[] = [];
  let container: Docker.Container;
  let endpoint: Endpoint;
  let hostKey: HostKey;

  async function startContainer(opts: { user?: string; image?: string; cmd?: string[] } = {}): Promise<Docker.Container> {
    const c = await docker().createContainer({
      name: uniqueId('a4c-ssh-test'),
      Image: opts.image ?? 'a4c-base:latest',
      ...(opts.cmd ? { Cmd: opts.cmd, OpenStdin: true } : {}),
      ...(opts.user ? { User: opts.user } : {}),
      HostConfig: { NetworkMode: 'none' },
    });
    started.push(c);
    await c.start();
    return c;
  }

  before(async () => {
    for (const tool of ['ssh', 'scp', 'sftp', 'tmux']) {
      if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
        throw new Error(`${tool} is missing: scripts/lib/engine.mjs installs openssh-client and tmux (run the suite with \`npm test\` as root)`);
      }
    }
    work = tmpDir('ssh');
    hostKey = loadOrCreateHostKey(path.join(work, 'state'));
    container = await startContainer();
    endpoint = new Endpoint(path.join(work, 'ssh.sock'), container, hostKey);
    await endpoint.start();
  });

  after(async () => {
    await endpoint?.stop();
    for (const c of started) await c.remove({ force: true }).catch(() => undefined);
    await docker().getImage(DASH_IMAGE).remove().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs a command: stdin in, stdout and stderr apart, its exit status back', async () => {
    const r = await run('ssh', [...endpoint.sshOptions(), 'ws.a4c', 'tr a-z A-Z; echo "to stderr $(pwd)" >&2; exit 3'], { input: 'hello from stdin\n' });
    expect(r.stdout).to.equal('HELLO FROM STDIN\n');
    expect(r.stderr).to.equal('to stderr /workspace\n');
    expect(r.code).to.equal(3);
    const s = await waitFor('the connection summary', () => endpoint.summaries.find((x) => x.channels.some((c) => c.command?.startsWith('tr a-z'))));
    expect(s.channels).to.deep.include({ kind: 'exec', command: 'tr a-z A-Z; echo "to stderr $(pwd)" >&2; exit 3', pty: false, exitCode: 3 });
    expect(s.bytesIn).to.be.greaterThan(0);
    expect(s.bytesOut).to.be.greaterThan(0);
  });

  it('streams stdin with back-pressure: 8 MiB in, its checksum computed inside', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const r = await run('ssh', [...endpoint.sshOptions(), 'ws.a4c', 'sha256sum'], { input: data });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.split(' ')[0]).to.equal(sha256(data));
  });

  it('gives an interactive login shell a real PTY whose resizes reach `stty size`', async () => {
    const tmuxSock = path.join(work, 'tmux.sock');
    const tmux = (...args: string[]) => run('tmux', ['-S', tmuxSock, ...args]);
    const sshLine = ['ssh', ...endpoint.sshOptions(['-tt']), 'ws.a4c'].map((a) => `'${a}'`).join(' ');
    try {
      let r = await tmux('new-session', '-d', '-s', 'ssh', '-x', '80', '-y', '24', `${sshLine}; echo SSH-EXITED=$?; sleep 60`);
      expect(r.code, r.stderr).to.equal(0);
      const screen = async () => (await tmux('capture-pane', '-p', '-t', 'ssh')).stdout;
      await waitFor('a shell prompt', async () => (await screen()).includes('/workspace #'), 20_000);
      await tmux('send-keys', '-t', 'ssh', 'echo "size=$(stty size) term=$TERM tty=$(tty)"', 'Enter');
      await waitFor('the first size', async () => /size=24 80 term=\S+ tty=\/dev\/pts\/\d+/.test(await screen()), 10_000);
      r = await tmux('resize-window', '-t', 'ssh', '-x', '100', '-y', '30');
      expect(r.code, r.stderr).to.equal(0);
      // The resize travels ssh -> window-change -> the exec's TTY; ask until it has arrived.
      await waitFor(
        'the new size',
        async () => {
          await tmux('send-keys', '-t', 'ssh', 'echo "size=$(stty size)"', 'Enter');
          await new Promise((res) => setTimeout(res, 300));
          return (await screen()).includes('size=30 100');
        },
        10_000,
        0,
      );
      await tmux('send-keys', '-t', 'ssh', 'exit 7', 'Enter');
      await waitFor('ssh to exit with the shell\'s status', async () => (await screen()).includes('SSH-EXITED=7'), 10_000);
      const s = await waitFor('the shell summary', () => endpoint.summaries.find((x) => x.channels.some((c) => c.kind === 'shell')));
      expect(s.channels).to.deep.include({ kind: 'shell', pty: true, exitCode: 7 });
    } finally {
      await tmux('kill-server');
    }
  });

  it('copies a 5 MiB file in and out with scp (SFTP mode), bytes and owner intact', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const local = path.join(work, 'up.bin');
    const back = path.join(work, 'down.bin');
    writeFileSync(local, data);
    let r = await run('scp', [...endpoint.sshOptions(), local, 'ws.a4c:up.bin']);
    expect(r.code, r.stderr).to.equal(0);
    const inside = await inContainer(container, 'sha256sum /workspace/up.bin; stat -c "%s %u:%g %a" /workspace/up.bin');
    expect(inside.stdout).to.equal(`${sha256(data)}  /workspace/up.bin\n${data.length} 0:0 644\n`);
    r = await run('scp', [...endpoint.sshOptions(), 'ws.a4c:/workspace/up.bin', back]);
    expect(r.code, r.stderr).to.equal(0);
    expect(sha256(readFileSync(back))).to.equal(sha256(data));
    r = await run('scp', [...endpoint.sshOptions(), 'ws.a4c:/workspace/missing.bin', back]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/missing\.bin: No such file/);
  });

  it('serves an sftp batch: ls, mkdir, put, rename, get, rm, rmdir', async () => {
    writeFileSync(path.join(work, 'note.txt'), 'a note\n');
    const batch = path.join(work, 'batch');
    writeFileSync(
      batch,
      [`lcd ${work}`, 'pwd', 'mkdir proj', 'cd proj', 'put note.txt', 'rename note.txt renamed.txt', 'ls -l', `get renamed.txt ${path.join(work, 'got.txt')}`, 'rm renamed.txt', 'cd ..', 'rmdir proj', 'ls'].join('\n') + '\n',
    );
    const r = await run('sftp', [...endpoint.sshOptions(['-b', batch]), 'ws.a4c']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.include('Remote working directory: /workspace');
    expect(r.stdout).to.match(/-rw-r--r-- +1 root +root +7 \w{3} [ \d]\d \d\d:\d\d renamed\.txt/);
    expect(readFileSync(path.join(work, 'got.txt'), 'utf8')).to.equal('a note\n');
    const inside = await inContainer(container, 'ls -a /workspace');
    expect(inside.stdout.split('\n')).not.to.include('proj');
    // A failing step fails the batch with the server's reason.
    const bad = await run('sftp', [...endpoint.sshOptions(['-b', '-']), 'ws.a4c'], { input: 'rmdir /workspace/not-there\n' });
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.match(/not-there/);
  });

  it('forwards ssh -L to a server on 127.0.0.1 inside the network-none container', async () => {
    const inner = 8000 + Math.floor(Math.random() * 1000);
    let r = await inContainer(container, `mkdir -p /tmp/www && echo "served inside" > /tmp/www/index.html && httpd -p 127.0.0.1:${inner} -h /tmp/www`);
    expect(r.code, r.stderr).to.equal(0);
    const local = await freePort();
    const ssh = spawn('ssh', [...endpoint.sshOptions(['-N', '-o', 'ExitOnForwardFailure=yes', '-L', `127.0.0.1:${local}:127.0.0.1:${inner}`]), 'ws.a4c'], { stdio: 'ignore' });
    try {
      const body = await waitFor('the page through the forward', async () => {
        const res = await fetch(`http://127.0.0.1:${local}/index.html`);
        return res.status === 200 ? res.text() : undefined;
      }, 20_000);
      expect(body).to.equal('served inside\n');
      // A second connection over the same SSH connection.
      expect(await (await fetch(`http://127.0.0.1:${local}/index.html`)).text()).to.equal('served inside\n');
    } finally {
      ssh.kill();
      r = await inContainer(container, 'pkill httpd || killall httpd');
    }
  });

  it('refuses ssh -L in an image without nc or socat, naming what to add', async () => {
    // Busybox's shell runs its nc applet even without /bin/nc, so an image built on our
    // base always has nc: this one is Debian's dash and its libc alone.
    const bare = await startContainer({ image: await dashOnlyImage(work), cmd: ['/bin/sh', '-c', 'read forever'] });
    const r = await inContainer(bare, 'command -v nc || command -v socat || echo neither');
    expect(r.stdout).to.equal('neither\n');
    const ep = new Endpoint(path.join(work, 'bare.sock'), bare, hostKey);
    await ep.start();
    const local = await freePort();
    const ssh = spawn('ssh', [...ep.sshOptions(['-N', '-o', 'LogLevel=INFO', '-L', `127.0.0.1:${local}:127.0.0.1:8080`]), 'ws.a4c'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    ssh.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      await waitFor('ssh listening', () => new Promise<boolean>((resolve) => {
        const c = net.connect(local, '127.0.0.1', () => {
          c.destroy();
          resolve(true);
        });
        c.on('error', () => resolve(false));
      }), 20_000);
      await waitFor('the refusal', () => stderr.includes('open failed'), 10_000);
      expect(stderr).to.match(/open failed: administratively prohibited: the workspace image has neither nc nor socat.*add busybox, netcat-openbsd or socat to the image/);
    } finally {
      ssh.kill();
      await ep.stop();
    }
  });

  it('acts as the workspace user: uploads get its uid, and SFTP cannot write where it may not', async () => {
    const c = await startContainer({ user: '1000:1000' });
    const prep = await inContainer(c, 'chown 1000:1000 /workspace');
    expect(prep.code, prep.stderr).to.equal(0);
    const ep = new Endpoint(path.join(work, 'user.sock'), c, hostKey);
    await ep.start();
    try {
      writeFileSync(path.join(work, 'mine.txt'), 'mine\n');
      let r = await run('scp', [...ep.sshOptions(), path.join(work, 'mine.txt'), 'ws.a4c:mine.txt']);
      expect(r.code, r.stderr).to.equal(0);
      expect((await inContainer(c, 'stat -c "%u:%g" /workspace/mine.txt')).stdout).to.equal('1000:1000\n');
      r = await run('ssh', [...ep.sshOptions(), 'ws.a4c', 'id -u']);
      expect(r.stdout).to.equal('1000\n');
      r = await run('scp', [...ep.sshOptions(), path.join(work, 'mine.txt'), 'ws.a4c:/etc/passwd']);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/Permission denied/i);
      expect((await inContainer(c, 'head -1 /etc/passwd')).stdout).to.match(/^root:/);
    } finally {
      await ep.stop();
    }
  });

  it('keeps its host key across restarts (known_hosts stays valid)', async () => {
    const stateDir = path.join(work, 'state');
    const again = loadOrCreateHostKey(stateDir);
    expect(again).to.deep.equal(hostKey);
    expect(statSync(path.join(stateDir, 'ssh_host_ed25519_key')).mode & 0o777).to.equal(0o600);
    const knownHosts = path.join(work, 'known_hosts');
    const strict = (ep: Endpoint, mode: string) => ep.sshOptions(['-o', `StrictHostKeyChecking=${mode}`, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'HostKeyAlias=ws.a4c']);
    let r = await run('ssh', [...strict(endpoint, 'accept-new'), 'ws.a4c', 'true']);
    expect(r.code, r.stderr).to.equal(0);
    expect(readFileSync(knownHosts, 'utf8')).to.include(hostKey.publicKey);
    // "Restart": a new endpoint whose key is read back from the state directory.
    const restarted = new Endpoint(path.join(work, 'restarted.sock'), container, loadOrCreateHostKey(stateDir));
    await restarted.start();
    const other = new Endpoint(path.join(work, 'other.sock'), container, loadOrCreateHostKey(path.join(work, 'other-state')));
    await other.start();
    try {
      r = await run('ssh', [...strict(restarted, 'yes'), 'ws.a4c', 'echo same']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.equal('same\n');
      // The check can fail: another key is refused.
      r = await run('ssh', [...strict(other, 'yes'), 'ws.a4c', 'echo other']);
      expect(r.code).to.equal(255);
      expect(r.stderr).to.match(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    } finally {
      await restarted.stop();
      await other.stop();
    }
  });
});
