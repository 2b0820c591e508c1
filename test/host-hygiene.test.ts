import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import Docker from 'dockerode';
import { ROOT, tmpDir } from './support/cluster.js';
import { engineLib } from './support/engine.js';

/**
 * `npm test`, `npm run bench` and `npm start` run as root on machines with a Docker
 * Engine of their own (issue 14: a private dockerd with --bridge=none deleted the
 * host's docker0). Starting and stopping a private engine through scripts/lib/engine.mjs
 * must leave the host's network, forwarding sysctls, firewall and mounts as they were,
 * and nothing of the engine running.
 */
const run = promisify(execFile);

describe('host hygiene: a private engine leaves the host as it found it', function () {
  this.timeout(180_000);
  const ALIAS = 'a4c-host-hygiene-test';
  let madeBridge = false;

  const ip = (...args: string[]): unknown => JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8' }) || '[]');
  const sysctl = (name: string): string | undefined => {
    try {
      return readFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const mountInfo = (): string[] => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean);
  const mountPoints = (): string[] => mountInfo().map((l) => l.split(' ')[4] as string);
  /** The cgroup directories named `name`, in every hierarchy. */
  const cgroupsNamed = (name: string): string[] =>
    mountInfo()
      .filter((l) => / - cgroup2? /.test(l))
      .map((l) => path.join(l.split(' ')[4] as string, name))
      .filter((d) => existsSync(d));
  /** Without the lifetimes the kernel counts down on dynamic addresses and routes. */
  const stable = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(stable)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).filter(([k]) => !['valid_life_time', 'preferred_life_time', 'expires'].includes(k)).map(([k, x]) => [k, stable(x)]))
        : v;
  /** What a dockerd could change on the host's network, as the host sees it. */
  const network = () => ({
    links: ip('link', 'show'),
    addresses: stable(ip('address', 'show')),
    routes: stable(ip('route', 'show', 'table', 'all')),
    routes6: stable(ip('-6', 'route', 'show', 'table', 'all')),
    sysctls: Object.fromEntries(
      [
        'net.ipv4.ip_forward',
        'net.ipv6.conf.all.forwarding',
        'net.ipv4.conf.all.route_localnet',
        'net.bridge.bridge-nf-call-iptables',
        'net.bridge.bridge-nf-call-ip6tables',
        // dockerd raises these at start-up where they are low (not per namespace).
        'kernel.keys.root_maxkeys',
        'kernel.keys.root_maxbytes',
      ].map((n) => [n, sysctl(n)]),
    ),
    // Read-only; the rule set the kernel holds, whichever iptables front end wrote it.
    firewall: spawnSync('nft', ['list', 'ruleset'], { encoding: 'utf8' }).stdout ?? '',
  });
  /** Processes whose command line names one of `dirs`, or that are in one of the namespaces `ns` (`mnt:[…]`, `net:[…]`). */
  const processesOf = (dirs: string[], ns: string[] = []): string[] => {
    const found: string[] = [];
    for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        if (stat[stat.lastIndexOf(')') + 2] === 'Z') continue;
        const inNs = () => ns.some((n) => readlinkSync(`/proc/${pid}/ns/${n.slice(0, 3)}`) === n);
        if (dirs.some((d) => cmd.includes(`${d}/`) || cmd.includes(`${d} `)) || inNs()) found.push(`${pid} ${cmd}`);
      } catch {
        // it ended while we looked
      }
    }
    return found;
  };

  /**
   * dockerd processes in the host's network namespace: not ours (ours have their own
   * namespace), but an engine started there by older code (another checkout's
   * `npm test` on a shared machine) deletes docker0 too. Named in failure messages.
   */
  const hostNamespaceEngines = (): string[] => {
    const host = readlinkSync('/proc/self/ns/net');
    const found: string[] = [];
    for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
        if (/^(\S*\/)?dockerd /.test(cmd) && readlinkSync(`/proc/${pid}/ns/net`) === host) found.push(`${pid} ${cmd.slice(0, 100)}`);
      } catch {
        // it ended while we looked
      }
    }
    return found;
  };
  const others = (): string => `(engines of others in the host's network namespace now: ${JSON.stringify(hostNamespaceEngines())})`;

  before(() => {
    // The check needs a docker0 to lose: the machine's own, else one of ours.
    if (spawnSync('ip', ['link', 'show', 'docker0'], { stdio: 'ignore' }).status !== 0) {
      execFileSync('ip', ['link', 'add', 'docker0', 'type', 'bridge']);
      execFileSync('ip', ['link', 'set', 'docker0', 'alias', ALIAS]);
      madeBridge = true;
    }
  });
  after(() => {
    // Ours only: still there and still carrying our alias.
    if (!madeBridge) return;
    const links = ip('link', 'show') as { ifname: string; ifalias?: string }[];
    if (links.some((l) => l.ifname === 'docker0' && l.ifalias === ALIAS)) execFileSync('ip', ['link', 'del', 'docker0']);
  });

  it('starting and stopping one changes no interface, address, route, sysctl, firewall rule or mount of the host, and leaves no process or cgroup behind', async () => {
    const hostMounts = mountPoints().filter((m) => !/a4c|docker|containerd/.test(m)); // other runs on this machine come and go
    const before = network();
    expect((before.links as { ifname: string }[]).map((l) => l.ifname)).to.include('docker0');

    const lib = await engineLib();
    const dataRoot = tmpDir('docker-hygiene');
    const engine = await lib.startPrivateDockerd({ dataRoot, name: `a4c-hygiene-${process.pid}` });
    const runDir = path.dirname(engine.socket);
    const namespaces: string[] = [];
    let left: string[];
    try {
      expect(engine.reused).to.equal(false);
      // A running container: containerd, a shim, overlay and volume mounts all exist now.
      await lib.ensureBaseImage(engine.dockerHost);
      const own = new Docker({ socketPath: engine.socket });
      const c = await own.createContainer({ Image: 'a4c-base:latest', HostConfig: { NetworkMode: 'none', Init: true }, Volumes: { '/workspace': {} } });
      await c.start();
      expect(network(), `the host while the engine runs ${others()}`).to.deep.equal(before);
      expect(mountPoints().filter((m) => m.startsWith(`${dataRoot}/`) || m.startsWith(`${runDir}/`)), "the engine's mounts are not the host's").to.deep.equal([]);
      const pid = Number(readFileSync(path.join(runDir, 'docker.pid'), 'utf8'));
      expect(readlinkSync(`/proc/${pid}/ns/net`), 'the engine has a network namespace of its own').to.not.equal(readlinkSync('/proc/self/ns/net'));
      namespaces.push(readlinkSync(`/proc/${pid}/ns/mnt`), readlinkSync(`/proc/${pid}/ns/net`));
      expect(processesOf([runDir]).some((p) => p.includes('containerd-shim')), 'a shim of the engine runs').to.equal(true);
      const containerPid = (await c.inspect()).State.Pid;
      expect(readFileSync(`/proc/${containerPid}/cgroup`, 'utf8'), "the container's cgroups are under the engine's own parent").to.contain(`/${path.basename(runDir)}/`);
    } finally {
      left = await engine.stop();
    }
    expect(left, 'processes of the engine that outlived dockerd and had to be killed').to.deep.equal([]);
    // Nothing holds its namespaces any more: they are gone with it.
    expect(processesOf([runDir, dataRoot], namespaces), 'processes of the engine after it stopped').to.deep.equal([]);
    expect(network(), `the host after the engine stopped ${others()}`).to.deep.equal(before);
    expect(cgroupsNamed(path.basename(runDir)), "the engine's cgroups after it stopped").to.deep.equal([]);
    expect(mountPoints()).to.include.members(hostMounts);
  });

  /*
   * The same check where nothing else on a shared machine can interfere: in a network
   * namespace the test makes to stand for a host (lo, a docker0 bridge, a bridge with
   * an address and so a route), a node process runs engine.mjs, starts and stops an
   * engine and reports that namespace's links and routes before, during and after.
   */
  it('in a network namespace standing for a host: its docker0, other interfaces and routes stay as they were', async () => {
    const script = `
      import { execFileSync } from 'node:child_process';
      const [url, dataRoot, name] = process.argv.slice(1);
      const lib = await import(url);
      const look = () => ({
        links: JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })),
        routes: JSON.parse(execFileSync('ip', ['-j', 'route', 'show', 'table', 'all'], { encoding: 'utf8' })),
      });
      const before = look();
      const engine = await lib.startPrivateDockerd({ dataRoot, name });
      let during;
      try {
        during = look();
      } finally {
        await engine.stop();
      }
      console.log(JSON.stringify({ before, during, after: look() }));`;
    const setup = [
      'ip link set lo up',
      'ip link add docker0 type bridge',
      'ip link add a4c-hyg0 type bridge',
      // No IPv6 link-local address: the kernel adds it (and its route) a moment after
      // the link comes up, which would read as a change made by the engine.
      'ip link set a4c-hyg0 addrgenmode none',
      'ip address add 10.254.0.1/24 dev a4c-hyg0',
      'ip link set a4c-hyg0 up',
      'exec "$@"',
    ].join(' && ');
    const engineUrl = pathToFileURL(path.join(ROOT, 'scripts/lib/engine.mjs')).href;
    const { stdout } = await run('unshare', ['--net', 'sh', '-c', setup, 'sh', process.execPath, '--input-type=module', '-e', script, engineUrl, tmpDir('docker-hygiene-ns'), `a4c-hygns-${process.pid}`], { timeout: 120_000 });
    const seen = JSON.parse(stdout.trim().split('\n').pop() as string) as Record<'before' | 'during' | 'after', { links: { ifname: string }[]; routes: unknown[] }>;
    expect(seen.before.links.map((l) => l.ifname)).to.include.members(['lo', 'docker0', 'a4c-hyg0']);
    expect(seen.before.routes, 'the bridge with an address has its route').to.not.deep.equal([]);
    expect(seen.during, 'while the engine runs').to.deep.equal(seen.before);
    expect(seen.after, 'after the engine stopped').to.deep.equal(seen.before);
  });
});
