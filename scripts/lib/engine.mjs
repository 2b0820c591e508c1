// Docker Engine and base image for `npm start`, `npm test` and the benchmarks.
// Plain Node.js, no dependencies: it runs before `npm install` has.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, openSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export const BASE_IMAGE = 'a4c-base:latest';

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

/**
 * Installs what the product and its tests need from Debian when missing: docker.io
 * (engine and CLI), busybox-static (the base image), systemd (systemd-analyze),
 * shellcheck, docker-registry, openssh-client and tmux (for the tests). Needs root; otherwise says exactly
 * what to run.
 */
export function ensureHostPackages(log = console.error) {
  const missing = [];
  if (!has('dockerd') || !has('docker')) missing.push('docker.io');
  if (!existsSync('/bin/busybox')) missing.push('busybox-static');
  // For the deploy tests: systemd-analyze verifies the units, shellcheck the installer.
  if (!has('systemd-analyze')) missing.push('systemd');
  if (!has('shellcheck')) missing.push('shellcheck');
  // For the image-registry test: a registry on loopback.
  if (!has('docker-registry')) missing.push('docker-registry');
  // For the SSH tests: the real OpenSSH client (ssh, scp, sftp) and a terminal to drive it.
  if (!has('ssh') || !has('scp') || !has('sftp')) missing.push('openssh-client');
  if (!has('tmux')) missing.push('tmux');
  if (!missing.length) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing ${missing.join(', ')}: run "sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}" and try again`);
  }
  log(`installing ${missing.join(', ')} from Debian (once)...`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** GET on the engine's API over its unix socket; resolves the status code, rejects if unreachable. */
export function engineGet(socketPath, urlPath, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: urlPath, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export async function engineAnswers(socketPath) {
  try {
    return (await engineGet(socketPath, '/_ping')).status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts a private dockerd beside any other engine: its own socket, data root, exec
 * root and pidfile; no bridge and no iptables, so it changes nothing on the host's
 * network. Workspace containers on it use network mode "none".
 */
export async function startPrivateDockerd({ dataRoot, name = 'a4c' }) {
  // Unix socket paths are limited to 108 bytes: keep the runtime files short, under /tmp.
  const tag = createHash('sha256').update(path.resolve(dataRoot)).digest('hex').slice(0, 10);
  const runDir = path.join(os.tmpdir(), `${name}-${tag}`);
  mkdirSync(runDir, { recursive: true });
  mkdirSync(dataRoot, { recursive: true });
  const socket = path.join(runDir, 'docker.sock');
  const pidfile = path.join(runDir, 'docker.pid');
  const logFile = path.join(runDir, 'dockerd.log');
  if (await engineAnswers(socket)) return { dockerHost: `unix://${socket}`, socket, logFile, stop: () => stopDockerd(pidfile), reused: true };
  // A dockerd that died uncleanly leaves its pidfile; it would refuse to start.
  if (existsSync(pidfile)) {
    const pid = Number(readFileSync(pidfile, 'utf8'));
    if (!pidAlive(pid)) rmSync(pidfile, { force: true });
  }
  const out = openSync(logFile, 'a');
  const child = spawn(
    'dockerd',
    [
      '--host', `unix://${socket}`,
      '--data-root', dataRoot,
      '--exec-root', path.join(runDir, 'exec'),
      '--pidfile', pidfile,
      '--bridge=none',
      '--iptables=false',
      '--ip6tables=false',
      '--ip-masq=false',
    ],
    { detached: true, stdio: ['ignore', out, out] },
  );
  child.unref();
  let exited = null;
  child.on('exit', (code) => (exited = code));
  for (let i = 0; i < 300; i++) {
    if (await engineAnswers(socket)) return { dockerHost: `unix://${socket}`, socket, logFile, stop: () => stopDockerd(pidfile), reused: false };
    if (exited !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
  throw new Error(`private dockerd did not come up (log ${logFile}):\n${tail}`);
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function stopDockerd(pidfile) {
  if (!existsSync(pidfile)) return;
  const pid = Number(readFileSync(pidfile, 'utf8'));
  if (!pidAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 200 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
}

/**
 * Makes the base image locally (no registry is reachable): a root filesystem of
 * Debian's static busybox, imported with `docker import`. Its command sleeps forever,
 * so a workspace runs until it is stopped.
 */
export async function ensureBaseImage(dockerHost, ref = BASE_IMAGE) {
  const socket = dockerHost.replace(/^unix:\/\//, '');
  if ((await engineGet(socket, `/images/${encodeURIComponent(ref)}/json`)).status === 200) return false;
  const root = mkdtempSync(path.join(os.tmpdir(), 'a4c-rootfs-'));
  try {
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'var/tmp', 'run', 'root', 'workspace', 'proc', 'sys', 'dev']) mkdirSync(path.join(root, d), { recursive: true });
    // Sticky and world-writable, as in every distribution: a workspace running as a
    // non-root user needs them, and a tmpfs mounted there keeps this mode on runc < 1.1.8.
    for (const d of ['tmp', 'var/tmp']) chmodSync(path.join(root, d), 0o1777);
    execFileSync('cp', ['/bin/busybox', path.join(root, 'bin/busybox')]);
    const applets = execFileSync('/bin/busybox', ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const a of applets) {
      const target = path.join(root, a);
      if (a === 'bin/busybox' || existsSync(target)) continue;
      mkdirSync(path.dirname(target), { recursive: true });
      symlinkSync('/bin/busybox', target);
    }
    writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    const tar = spawn('tar', ['-C', root, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const imp = spawn(
      'docker',
      ['import', '-c', 'CMD ["/bin/sleep", "infinity"]', '-c', 'WORKDIR /workspace', '-c', 'LABEL a4c.base=true', '-', ref],
      { stdio: ['pipe', 'ignore', 'inherit'], env: { ...process.env, DOCKER_HOST: dockerHost } },
    );
    tar.stdout.pipe(imp.stdin);
    const code = await new Promise((resolve) => imp.on('exit', resolve));
    if (code !== 0) throw new Error(`docker import of ${ref} failed (exit ${code})`);
    return true;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
