// Docker Engine and base image for `npm start`, `npm test` and the benchmarks.
// Plain Node.js, no dependencies: it runs before `npm install` has.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, symlinkSync, writeFileSync, openSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { namespaceOf, ourProcesses, pidAlive, terminate, unmountUnder } from './hygiene.mjs';

export const BASE_IMAGE = 'a4c-base:latest';

export const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

/**
 * Installs what the product and its tests need from Debian when missing: docker.io
 * (engine and CLI), util-linux and iproute2 (unshare, nsenter and ip: the private
 * engine's namespaces), busybox-static (the base image), systemd (systemd-analyze),
 * shellcheck, docker-registry, curl, openssh-client, tmux and chromium (for the tests). Needs
 * root; otherwise says exactly what to run. This is the one lasting change the scripts
 * make to a machine, and only when a package is missing.
 */
export function ensureHostPackages(log = console.error) {
  const missing = [];
  if (!has('dockerd') || !has('docker')) missing.push('docker.io');
  if (!has('unshare') || !has('nsenter')) missing.push('util-linux');
  if (!has('ip')) missing.push('iproute2');
  if (!existsSync('/bin/busybox')) missing.push('busybox-static');
  // For the deploy tests: systemd-analyze verifies the units, shellcheck the installer.
  if (!has('systemd-analyze')) missing.push('systemd');
  if (!has('shellcheck')) missing.push('shellcheck');
  // For the image-registry test: a registry on the engine's loopback, and curl to ask it.
  if (!has('docker-registry')) missing.push('docker-registry');
  if (!has('curl')) missing.push('curl');
  // For the SSH tests: the real OpenSSH client (ssh, scp, sftp) and a terminal to drive it.
  if (!has('ssh') || !has('scp') || !has('sftp')) missing.push('openssh-client');
  if (!has('tmux')) missing.push('tmux');
  // For the dashboard's browser tests: Debian's Chromium, driven by playwright-core (no browser download).
  if (!existsSync('/usr/bin/chromium')) missing.push('chromium');
  if (!missing.length) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`missing ${missing.join(', ')}: run "sudo apt-get update && sudo apt-get install -y ${missing.join(' ')}" and try again`);
  }
  log(`installing ${missing.join(', ')} from Debian (once)...`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/**
 * promtool, for the tests of the alert rules and of /metrics: Debian's, from its
 * prometheus package. Used from PATH when that package is installed; otherwise the one
 * binary is unpacked from the package (apt-get download, dpkg-deb) into
 * <root>/.a4c/tools, once. Installing the package instead would, on a machine run by
 * systemd, also enable and start a Prometheus server and a node exporter (ports 9090
 * and 9100, the agent's status port): a test run must not leave those behind.
 * Returns the command to run.
 */
export function ensurePromtool(root, log = console.error) {
  if (has('promtool')) return 'promtool';
  const dir = path.join(root, '.a4c/tools');
  const bin = path.join(dir, 'promtool');
  if (existsSync(bin)) return bin;
  if (!has('apt-get') || !has('dpkg-deb')) {
    throw new Error('promtool is missing: install Debian\'s prometheus package ("apt-get install --no-install-recommends prometheus") or put promtool on PATH');
  }
  log('unpacking promtool from Debian\'s prometheus package (once)...');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'a4c-prometheus-deb-'));
  chmodSync(tmp, 0o755); // apt-get download hands the file to its _apt user
  try {
    const download = () => spawnSync('apt-get', ['download', '-qq', 'prometheus'], { cwd: tmp, encoding: 'utf8' });
    let r = download();
    if (r.status !== 0 && process.getuid?.() === 0) {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
      r = download();
    }
    const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (r.status !== 0 || !deb) throw new Error(`"apt-get download prometheus" failed: ${r.stderr || r.error?.message}; as root, run "apt-get update" first`);
    execFileSync('dpkg-deb', ['-x', path.join(tmp, deb), path.join(tmp, 'x')]);
    mkdirSync(dir, { recursive: true });
    copyFileSync(path.join(tmp, 'x/usr/bin/promtool'), `${bin}.tmp`);
    chmodSync(`${bin}.tmp`, 0o755);
    renameSync(`${bin}.tmp`, bin);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return bin;
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
 * root and pidfile, and its own network and mount namespaces.
 *
 * Why namespaces: network interfaces belong to a network namespace, not to a daemon.
 * A dockerd with `--bridge=none` in the host's namespace deletes the host's `docker0`
 * at start-up (Docker removes its default bridge when the bridge driver is off), which
 * breaks the machine's own Docker (issue 14); with iptables or ip-forward on it would
 * also rewrite the host's firewall and sysctls. So the engine runs under
 * `unshare --net`: it has an empty network namespace of its own (only `lo`, brought up
 * here), whatever it does to interfaces, routes, iptables or `net.*` sysctls happens
 * there, and the namespace vanishes with its last process; nothing is bind-mounted
 * (no `ip netns add`, which would leave a mount on /run/netns). Its Unix socket is a
 * file, so clients on the host reach it as before. Workspace containers use network
 * mode "none" and never needed the engine's network; what must reach the engine over
 * TCP (the registry in test/builds.test.ts) runs inside its namespace (see `netns`
 * below and `netnsOf`). The flags that turn the bridge, iptables and forwarding off
 * stay: there is nothing for them to do.
 *
 * The fallback the issue names, a bridge of our own name in the host's namespace, is
 * not taken: every kernel that runs Docker has network namespaces (each container is
 * one), and we run as root, so `unshare --net` failing means dockerd could not run a
 * container either; it fails loudly instead of touching the host's network.
 *
 * `unshare --mount --propagation slave` gives it a mount namespace too: the overlay
 * and volume mounts it makes never appear in the host's mount table (the host's own
 * mounts and unmounts still reach it), and none outlives the engine.
 *
 * `netns`: a network namespace to join instead (a path such as `/proc/<pid>/ns/net`,
 * from `netnsOf`), so two private engines reach one loopback service.
 *
 * Its containers' cgroups go under a parent named like its run directory (cgroupfs
 * driver), not the host engine's /docker.
 *
 * `stop()` ends dockerd, then anything of this engine that outlived it (containerd,
 * shims, container processes: its mount namespace, its run directory on their command
 * line, their descendants), and removes its cgroup parent and its run directory; it
 * resolves what it had to kill that way, which after a clean stop is nothing.
 */
export async function startPrivateDockerd({ dataRoot, name = 'a4c', netns }) {
  // Unix socket paths are limited to 108 bytes: keep the runtime files short, under /tmp.
  const tag = createHash('sha256').update(path.resolve(dataRoot)).digest('hex').slice(0, 10);
  const runDir = path.join(os.tmpdir(), `${name}-${tag}`);
  mkdirSync(runDir, { recursive: true });
  mkdirSync(dataRoot, { recursive: true });
  const socket = path.join(runDir, 'docker.sock');
  const pidfile = path.join(runDir, 'docker.pid');
  const logFile = path.join(runDir, 'dockerd.log');
  const engine = (reused) => {
    const pid = readPid(pidfile);
    // Taken now: once dockerd is gone its namespaces can no longer be named.
    const mntNs = pid && namespaceOf(pid, 'mnt');
    return { dockerHost: `unix://${socket}`, socket, logFile, pid, netns: pid && `/proc/${pid}/ns/net`, reused, stop: () => stopEngine({ pidfile, runDir, dataRoot, mntNs }) };
  };
  if (await engineAnswers(socket)) return engine(true);
  // A dockerd that died uncleanly leaves its pidfile; it would refuse to start.
  if (existsSync(pidfile) && !pidAlive(readPid(pidfile))) rmSync(pidfile, { force: true });
  const dockerd = [
    'dockerd',
    '--host', `unix://${socket}`,
    '--data-root', dataRoot,
    '--exec-root', path.join(runDir, 'exec'),
    '--pidfile', pidfile,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
    // Its containers' cgroups under one parent of its own, removed when it stops,
    // instead of /docker, which the machine's own engine uses.
    '--exec-opt', 'native.cgroupdriver=cgroupfs',
    '--cgroup-parent', `/${path.basename(runDir)}`,
  ];
  const mounts = ['unshare', '--mount', '--propagation', 'slave', '--'];
  // Each step execs the next (no --fork): the child's pid is dockerd's.
  const argv = netns
    ? ['nsenter', `--net=${netns}`, '--', ...mounts, ...dockerd]
    : ['unshare', '--net', ...mounts.slice(1), 'sh', '-c', 'ip link set lo up && exec "$@"', 'sh', ...dockerd];
  const out = openSync(logFile, 'a');
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', out, out] });
  child.unref();
  let exited = null;
  child.on('exit', (code) => (exited = code));
  for (let i = 0; i < 300; i++) {
    if (await engineAnswers(socket)) return engine(false);
    if (exited !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
  throw new Error(`private dockerd did not come up (${argv.slice(0, argv.indexOf('dockerd')).join(' ')} dockerd ...; log ${logFile}):\n${tail}`);
}

/**
 * The network namespace of the private engine at `dockerHost` (started by
 * startPrivateDockerd), as a path for `nsenter --net=` or the `netns` option.
 */
export function netnsOf(dockerHost) {
  const pid = readPid(path.join(path.dirname(dockerHost.replace(/^unix:\/\//, '')), 'docker.pid'));
  if (!pid || !pidAlive(pid)) throw new Error(`no private engine runs at ${dockerHost}`);
  return `/proc/${pid}/ns/net`;
}

function readPid(pidfile) {
  try {
    return Number(readFileSync(pidfile, 'utf8')) || undefined;
  } catch {
    return undefined;
  }
}

async function stopEngine({ pidfile, runDir, dataRoot, mntNs }) {
  await stopDockerd(pidfile);
  const left = ourProcesses({ paths: [runDir], mntNs });
  await terminate(left, { graceMs: 3000 });
  // The engine's mounts live in its own mount namespace; should any have reached the
  // host's (an engine started by older code), they are ours: under its directories.
  unmountUnder(runDir);
  if (dataRoot) unmountUnder(dataRoot);
  removeCgroups(path.basename(runDir));
  rmSync(runDir, { recursive: true, force: true });
  return left.map((p) => `${p.pid} ${p.cmdline}`);
}

/** Removes the cgroup `/<name>` and those under it, in every hierarchy, where empty of processes. */
function removeCgroups(name) {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => l.split(' ')[4]);
  const remove = (dir) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) remove(path.join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch {
      // a process still in it: left as it is
    }
  };
  for (const m of new Set(mounts)) remove(path.join(m, name));
}

/**
 * Stops every private engine whose run directory is directly under `dir` (the engines
 * a run started with TMPDIR=dir: the suite's and those tests started and did not
 * stop). Resolves what had to be killed after dockerd itself stopped.
 */
export async function stopEnginesUnder(dir) {
  const left = [];
  for (const entry of existsSync(dir) ? readdirSync(dir) : []) {
    const runDir = path.join(dir, entry);
    const pidfile = path.join(runDir, 'docker.pid');
    const pid = readPid(pidfile);
    if (!pid || !pidAlive(pid)) continue;
    left.push(...(await stopEngine({ pidfile, runDir, mntNs: namespaceOf(pid, 'mnt') })));
  }
  return left;
}

export async function stopDockerd(pidfile) {
  const pid = readPid(pidfile);
  if (!pid || !pidAlive(pid)) return;
  // dockerd stops its containers (10 s each at most, in parallel) and containerd.
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 300 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
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
