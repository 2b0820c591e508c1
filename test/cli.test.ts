import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, mkdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { buildProgram, commandPath, leafCommands } from '@a4c/cli';
import type { Build, HostView, Workspace } from '@a4c/common';
import { commitImage, docker, removeHostContainers, ROOT, spawnAgent, startTestControlPlane, TINY_TIERS, tmpDir, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `a4c` that npm links (packages/cli/bin/a4c.mjs) as its own process. */
function runA4c(args: string[], env: Record<string, string>, bin = path.join(ROOT, 'packages/cli/bin/a4c.mjs')): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** An `a4c` that keeps running (a4c events --follow): its output so far, and a way to stop it. */
function startA4c(args: string[], env: Record<string, string>): { proc: ChildProcessWithoutNullStreams; out: () => string; err: () => string; exit: Promise<number> } {
  const proc = spawn(process.execPath, [path.join(ROOT, 'packages/cli/bin/a4c.mjs'), ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exit = new Promise<number>((resolve) => proc.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
  return { proc, out: () => stdout, err: () => stderr, exit };
}

/** Every command a4c has, as a person types it: the help and the tests below hold to this list. */
const COMMANDS = [
  'ws create', 'ws create-many', 'ws list', 'ws get', 'ws stop', 'ws start', 'ws rm', 'ws retry', 'ws approve', 'ws autostop', 'ws reject',
  'ws move', 'ws volumes',
  'ws exec', 'ws shell', 'ws port-forward', 'ws ssh-proxy', 'ws sessions',
  'config-ssh',
  'build schedule', 'build get', 'build list', 'build cancel', 'build logs',
  'hosts list', 'hosts get', 'hosts drain', 'hosts activate',
  'events',
  'webhooks create', 'webhooks list', 'webhooks get', 'webhooks update', 'webhooks delete', 'webhooks deliveries', 'webhooks test',
  'quota get', 'quota set',
  'users create', 'users list', 'users set-team',
  'tokens issue', 'tokens list', 'tokens revoke',
  'audit',
];

describe('the a4c CLI (packages/cli): commands, options and help, before any request', () => {
  // Nothing listens here: a command that got as far as a request would exit 1 with
  // "cannot reach the control plane", not 2 with the usage error these tests expect.
  const a4c = (args: string[]) => runA4c(args, { A4C_URL: 'http://127.0.0.1:9', A4C_TOKEN: 'unused', A4C_USER: 'nobody' });

  it('npm links the committed bin shim, which runs the built CLI', async () => {
    expect(realpathSync(path.join(ROOT, 'node_modules/.bin/a4c'))).to.equal(path.join(ROOT, 'packages/cli/bin/a4c.mjs'));
    const r = await runA4c(['--help'], {}, path.join(ROOT, 'node_modules/.bin/a4c'));
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^Usage: a4c <command> \[options\]/);
  });

  it('the bin shim says to run npm run build when the CLI is not built', async () => {
    const dir = tmpDir('cli-unbuilt');
    mkdirSync(path.join(dir, 'bin'));
    copyFileSync(path.join(ROOT, 'packages/cli/bin/a4c.mjs'), path.join(dir, 'bin/a4c.mjs'));
    const r = await runA4c(['ws', 'list'], {}, path.join(dir, 'bin/a4c.mjs'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('the CLI is not built yet');
    expect(r.stderr).to.contain('npm run build');
  });

  it('a4c --help, and a4c alone, list every command with its group, generated from the definitions', async () => {
    expect(leafCommands(buildProgram().program).map((c) => commandPath(c).replace(/^a4c /, ''))).to.deep.equal(COMMANDS);
    for (const args of [['--help'], []]) {
      const r = await a4c(args);
      expect(r.code, r.stderr).to.equal(0);
      for (const c of COMMANDS) expect(r.stdout, c).to.match(new RegExp(`^  ${c}\\b`, 'm'));
      for (const heading of ['Workspaces:', 'Image builds:', 'Hosts:', 'Activity:', 'Quotas, users, tokens and the audit log:']) expect(r.stdout).to.contain(heading);
      for (const global of ['--url <url>', '--token <token>', '--user <user>', '-o, --output <format>', '--timeout <seconds>']) expect(r.stdout).to.contain(global);
    }
  });

  it("each group's help lists its commands; each command's help shows its own options and the global ones", async () => {
    const groups = new Map<string, string[]>();
    for (const c of COMMANDS) {
      const [group, verb] = c.split(' ');
      if (group && verb) groups.set(group, [...(groups.get(group) ?? []), verb]);
    }
    for (const [group, verbs] of groups) {
      const r = await a4c([group, '--help']);
      expect(r.code, r.stderr).to.equal(0);
      for (const v of verbs) expect(r.stdout, `${group} ${v}`).to.match(new RegExp(`^  ${v}\\b`, 'm'));
    }
    const create = await a4c(['ws', 'create', '--help']);
    expect(create.code).to.equal(0);
    expect(create.stdout).to.match(/^Usage: a4c ws create \[options\]/);
    expect(create.stdout).to.match(/--project <name>.*\(required\)/);
    expect(create.stdout).to.contain('--no-wait');
    expect(create.stdout).to.contain('linux-x64, linux-arm64, darwin-arm64');
    expect(create.stdout).to.match(/Global Options:[^]*-o, --output <format>/);
    expect(create.stdout).to.not.contain('--image-name');
    // The same help, for every command, from the program object (a process each is slow).
    for (const cmd of leafCommands(buildProgram().program)) {
      const help = cmd.helpInformation();
      expect(help, commandPath(cmd)).to.match(new RegExp(`^Usage: ${commandPath(cmd)}\\b`));
      expect(help, commandPath(cmd)).to.match(/Global Options:[^]*--output/);
    }
  });

  it("refuses an option another command has (exit 2), naming it and the command's help", async () => {
    const cases: [string[], string, string][] = [
      [['ws', 'list', '--image-name', 'x'], '--image-name', 'a4c ws list --help'],
      [['ws', 'get', 'w1', '--reason', 'x'], '--reason', 'a4c ws get --help'],
      [['ws', 'stop', 'w1', '--all'], '--all', 'a4c ws stop --help'],
      [['build', 'list', '--tier', 'tiny'], '--tier', 'a4c build list --help'],
      [['hosts', 'drain', 'h1', '--follow'], '--follow', 'a4c hosts drain --help'],
      [['hosts', '--all'], '--all', 'a4c hosts list --help'],
      [['quota', 'get', '--max-workspaces', '3'], '--max-workspaces', 'a4c quota get --help'],
      [['users', 'list', '--role', 'admin'], '--role', 'a4c users list --help'],
      [['tokens', 'revoke', 't1', '--ttl', '5'], '--ttl', 'a4c tokens revoke --help'],
      [['audit', '--mine'], '--mine', 'a4c audit --help'],
    ];
    for (const [args, flag, help] of cases) {
      const r = await a4c(args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stdout).to.equal('');
      expect(r.stderr, args.join(' ')).to.contain(`a4c: unknown option '${flag}'`);
      expect(r.stderr, args.join(' ')).to.contain(`hint: see ${help}`);
    }
  });

  it('refuses missing or bad values (exit 2) and says which', async () => {
    const cases: [string[], RegExp][] = [
      [['ws', 'create', '--project', 'p', '--arch', 'linux-x64'], /required option '--tier <tier>' not specified/],
      [['build', 'schedule', '--project', 'p', '--arch', 'linux-x64', '--change', 'c'], /required option '--image-name <name>' not specified/],
      [['ws', 'get'], /missing required argument 'id'/],
      [['ws', 'get', 'a', 'b'], /too many arguments/],
      [['ws', 'list', '-o', 'yaml'], /argument 'yaml' is invalid\. Allowed choices are table, json/],
      [['--timeout', '9999', 'ws', 'list'], /--timeout <seconds>' argument '9999' is invalid\. It must be a whole number of seconds from 0 to 3600/],
      [['quota', 'set', '--max-workspaces', 'many'], /argument 'many' is invalid\. It must be a number or "inherit"/],
      [['quota', 'set'], /a4c quota set needs --max-workspaces, --max-disk-gb or --max-builds/],
      [['quota', 'get', '--user', 'a', '--team', 'b'], /pass --user or --team, not both/],
    ];
    for (const [args, message] of cases) {
      const r = await a4c(args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stderr, args.join(' ')).to.match(message);
    }
  });

  it('an unknown command says so and what to run instead (exit 2)', async () => {
    const top = await a4c(['frob']);
    expect(top.code).to.equal(2);
    expect(top.stderr).to.equal("a4c: unknown command 'frob'\nhint: run a4c --help to see every command\n");
    const verb = await a4c(['ws', 'lsit']);
    expect(verb.code).to.equal(2);
    expect(verb.stderr).to.contain("a4c: unknown command 'lsit'");
    expect(verb.stderr).to.contain('(Did you mean list?)');
    expect(verb.stderr).to.contain('hint: run a4c ws --help to see its commands');
    const bare = await a4c(['ws']);
    expect(bare.code, 'a group alone shows its commands, as an error').to.equal(2);
    expect(bare.stderr).to.match(/^Usage: a4c ws/);
    expect(bare.stderr).to.contain('create [options]');
  });

  it('passes everything after "--" to a command untouched (as `a4c ws exec ID -- CMD ARGS` will need)', async () => {
    // The real program, with a command of exec's shape attached here: the global options
    // before "--" are parsed, and nothing after it is, not even "-o" or another "--".
    const { program } = buildProgram({ out: () => undefined, err: () => undefined });
    const ws = program.commands.find((c) => c.name() === 'ws');
    let seen: { id: string; cmd: string[]; tty: boolean } | undefined;
    ws?.command('exec-shaped')
      .argument('<id>')
      .argument('<cmd...>')
      .option('--tty')
      .action((id, cmd, opts) => {
        seen = { id, cmd, tty: opts.tty === true };
      });
    await program.parseAsync(['ws', 'exec-shaped', '--tty', 'w1', '-o', 'json', '--timeout', '5', '--', 'ls', '-la', '-o', 'x', '--', '--tty'], { from: 'user' });
    expect(seen).to.deep.equal({ id: 'w1', cmd: ['ls', '-la', '-o', 'x', '--', '--tty'], tty: true });
    expect(program.opts()).to.include({ output: 'json', timeout: 5 });
    seen = undefined;
    await program.parseAsync(['ws', 'exec-shaped', 'w2', '--', 'sh', '-c', 'echo --url'], { from: 'user' });
    expect(seen).to.deep.equal({ id: 'w2', cmd: ['sh', '-c', 'echo --url'], tty: false });
    let refused = '';
    await program.parseAsync(['ws', 'exec-shaped', 'w3', 'ls', '-la'], { from: 'user' }).catch((e: { code?: string }) => (refused = e.code ?? ''));
    expect(refused, 'without "--", -la is an option exec does not have').to.equal('commander.unknownOption');
  });
});

describe('the a4c CLI (packages/cli) against a control plane', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('cli');
  const user = uniqueId('erin');
  const a4c = (args: string[], env: Record<string, string> = {}) => runA4c(args, { A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token, A4C_USER: user, ...env });

  before(async () => {
    // Fails at start, every time (a command that cannot run would start under the init
    // process and only then exit, racing the check after start).
    await commitImage('cli-broken:test', ['USER nosuchuser']);
    // "gated": a tiny tier that needs an admin's approval, as xl does.
    const tiers = { ...(JSON.parse(TINY_TIERS) as object), gated: { memoryMb: 64, cpus: 0.25, diskGb: 1, requiresApproval: true } };
    t = await startTestControlPlane({ A4C_TIERS: JSON.stringify(tiers) });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_POLL_MS: '200', A4C_RESTART_BACKOFF_MS: '200', A4C_MAX_RESTARTS: '0' } });
    await t.api.waitHostConnected(hostId);
    await waitFor('the broken image reported', async () => (await t.api.host(hostId))?.images.includes('cli-broken:test'));
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
    for (const image of ['cli-img:CL-5-linux-x64', 'cli-broken:test']) await docker().getImage(image).remove({ force: true }).catch(() => undefined);
  });

  let id = '';
  it('ws create waits, shows progress on stderr, and prints the running workspace as JSON', async () => {
    const r = await a4c(['ws', 'create', '--project', 'web', '--arch', 'linux-x64', '--tier', 'tiny', '--name', 'cli', '-o', 'json']);
    expect(r.code, r.stderr).to.equal(0);
    const ws = JSON.parse(r.stdout) as Workspace;
    expect(ws.status).to.equal('RUNNING');
    expect(ws.userId).to.equal(user);
    expect(r.stderr).to.match(/cli: CREATING on /);
    expect(r.stderr).to.match(/cli: RUNNING on /);
    id = ws.id;
  });

  it('ws list and hosts print tables, and JSON on request', async () => {
    const table = await a4c(['ws', 'list']);
    expect(table.code).to.equal(0);
    expect(table.stdout).to.match(/^ID\s+NAME\s+PROJECT/);
    expect(table.stdout).to.contain(id);
    const hosts = await a4c(['hosts', '-o', 'json']);
    expect((JSON.parse(hosts.stdout) as { hosts: HostView[] }).hosts.map((h) => h.id)).to.include(hostId);
  });

  it('ws stop, start and rm go through the states', async () => {
    const stop = await a4c(['ws', 'stop', id, '-o', 'json']);
    expect((JSON.parse(stop.stdout) as Workspace).status).to.equal('STOPPED');
    const start = await a4c(['ws', 'start', id, '-o', 'json']);
    expect((JSON.parse(start.stdout) as Workspace).status).to.equal('RUNNING');
    const rm = await a4c(['ws', 'rm', id, '-o', 'json']);
    expect((JSON.parse(rm.stdout) as Workspace).status).to.equal('DELETED');
  });

  it('quota set/get, users set-team, hosts drain/activate', async () => {
    const team = uniqueId('team');
    expect((await a4c(['users', 'set-team', '--team', team])).code).to.equal(0);
    expect((await a4c(['quota', 'set', '--team', team, '--max-workspaces', '3'])).code).to.equal(0);
    let q = JSON.parse((await a4c(['quota', 'get', '-o', 'json'])).stdout) as { limits: { maxWorkspaces: number }; source: { maxWorkspaces: string }; teamId: string };
    expect(q.teamId).to.equal(team);
    expect(q.limits.maxWorkspaces).to.equal(3);
    expect(q.source.maxWorkspaces).to.equal('team');
    await a4c(['quota', 'set', '--max-workspaces', '4']);
    q = JSON.parse((await a4c(['quota', 'get', '-o', 'json'])).stdout);
    expect([q.limits.maxWorkspaces, q.source.maxWorkspaces]).to.deep.equal([4, 'user']);
    expect((await a4c(['quota', 'set', '--max-workspaces', 'inherit'])).code).to.equal(0);
    q = JSON.parse((await a4c(['quota', 'get', '-o', 'json'])).stdout);
    expect(q.source.maxWorkspaces).to.equal('team');
    const text = await a4c(['quota', 'get']);
    expect(text.stdout).to.match(/workspaces\s+0 of 3\s+\(team\)/);

    const drained = JSON.parse((await a4c(['hosts', 'drain', hostId, '-o', 'json'])).stdout) as HostView;
    expect(drained.status).to.equal('draining');
    const active = JSON.parse((await a4c(['hosts', 'activate', hostId, '-o', 'json'])).stdout) as HostView;
    expect(active.status).to.equal('healthy');
  });

  it('build schedule follows the log to completion; build get/list show it', async () => {
    const r = await a4c(['build', 'schedule', '--image-name', 'cli-img', '--project', 'cliproj', '--arch', 'linux-x64', '--change', 'CL-5', '-o', 'json']);
    expect(r.code, r.stderr).to.equal(0);
    const b = JSON.parse(r.stdout) as { id: string; status: string; imageTag: string };
    expect(b.status).to.equal('COMPLETED');
    expect(b.imageTag).to.equal('cli-img:CL-5-linux-x64');
    expect(r.stderr).to.match(/build cli-img:CL-5-linux-x64: COMPLETED on /);
    const list = await a4c(['build', 'list', '--mine']);
    expect(list.stdout).to.contain(b.id);
    const logs = await a4c(['build', 'logs', b.id]);
    expect(logs.stdout).to.contain('project=cliproj');
    // A finished build cannot be cancelled: the CLI says why and what to do.
    const cancel = await a4c(['build', 'cancel', b.id]);
    expect(cancel.code).to.not.equal(0);
    expect(cancel.stderr).to.match(/already finished \(COMPLETED\)/);
  });

  it('users create, tokens issue/list/revoke: a user acts with their own token', async () => {
    const who = uniqueId('kim');
    expect((await a4c(['users', 'create', '--user', who, '--role', 'user'])).code).to.equal(0);
    const issued = JSON.parse((await a4c(['tokens', 'issue', '--user', who, '--name', 'laptop', '-o', 'json'])).stdout) as { id: string; token: string };
    expect(issued.token).to.match(/^a4c_u_/);
    const mine = await a4c(['ws', 'list', '-o', 'json'], { A4C_TOKEN: issued.token, A4C_USER: who });
    expect(mine.code, mine.stderr).to.equal(0);
    const others = await a4c(['ws', 'list'], { A4C_TOKEN: issued.token, A4C_USER: user });
    expect(others.code).to.equal(1);
    expect(others.stderr).to.contain('NOT_FOUND');
    expect((await a4c(['tokens', 'list', '--user', who])).stdout).to.contain('laptop');
    expect((await a4c(['tokens', 'revoke', issued.id, '--user', who])).code).to.equal(0);
    const after = await a4c(['ws', 'list'], { A4C_TOKEN: issued.token, A4C_USER: who });
    expect(after.stderr).to.contain('UNAUTHENTICATED');
    expect((await a4c(['audit', '--actor', 'admin'])).stdout).to.match(/POST \/v1\/users\/:userId\/tokens/);
  });

  it('explains errors and exits non-zero', async () => {
    const bad = await a4c(['ws', 'create', '--project', 'web', '--arch', 'linux-x64', '--tier', 'nope']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.contain('unknown tier "nope"');
    const noToken = await a4c(['ws', 'list'], { A4C_TOKEN: '' });
    expect(noToken.code).to.equal(2);
    expect(noToken.stderr).to.contain('A4C_TOKEN');
    const down = await a4c(['ws', 'list'], { A4C_URL: 'http://127.0.0.1:9' });
    expect(down.code).to.equal(1);
    expect(down.stderr).to.contain('cannot reach the control plane');
    const help = await a4c(['--help']);
    expect(help.stdout).to.contain('ws create [options]');
  });

  it('a create that fails exits 1 and says how to retry; ws retry brings it up once the cause is fixed', async () => {
    const failed = await a4c(['ws', 'create', '--project', 'web', '--arch', 'linux-x64', '--tier', 'tiny', '--name', 'broken', '--image', 'cli-broken:test']);
    expect(failed.code, failed.stderr).to.equal(1);
    expect(failed.stdout).to.match(/^status:\s+FAILED$/m);
    const id = /^id:\s+(\S+)$/m.exec(failed.stdout)?.[1] ?? '';
    expect(failed.stderr).to.contain(`retry it with: a4c ws retry ${id}`);
    await docker().getImage('a4c-base:latest').tag({ repo: 'cli-broken', tag: 'test' });
    const retried = await a4c(['ws', 'retry', id, '-o', 'json']);
    expect(retried.code, retried.stderr).to.equal(0);
    expect((JSON.parse(retried.stdout) as Workspace).status).to.equal('RUNNING');
    expect((await a4c(['ws', 'rm', id])).code).to.equal(0);
  });

  it('a tier that needs approval waits for an admin: ws approve and ws reject', async () => {
    const pending = await a4c(['ws', 'create', '--project', 'web', '--arch', 'linux-x64', '--tier', 'gated', '--name', 'gated1']);
    expect(pending.code, pending.stderr).to.equal(0);
    expect(pending.stdout).to.match(/^status:\s+PENDING_APPROVAL$/m);
    const first = /^id:\s+(\S+)$/m.exec(pending.stdout)?.[1] ?? '';
    expect(pending.stderr).to.contain(`needs an admin's approval: a4c ws approve ${first}`);
    const approved = await a4c(['ws', 'approve', first, '-o', 'json']);
    expect(approved.code, approved.stderr).to.equal(0);
    expect((JSON.parse(approved.stdout) as Workspace).status).to.equal('RUNNING');
    const second = JSON.parse((await a4c(['ws', 'create', '--project', 'web', '--arch', 'linux-x64', '--tier', 'gated', '-o', 'json'])).stdout) as Workspace;
    expect(second.status).to.equal('PENDING_APPROVAL');
    const rejected = await a4c(['ws', 'reject', second.id, '--reason', 'not this week', '-o', 'json']);
    expect(rejected.code, rejected.stderr).to.equal(0);
    expect((JSON.parse(rejected.stdout) as Workspace).status).to.equal('REJECTED');
    expect((await a4c(['ws', 'rm', first, '--no-wait'])).code).to.equal(0);
  });

  it('every command that prints answers -o json (and --output json) with the API\'s own object', async () => {
    const ws = JSON.parse((await a4c(['ws', 'create', '--project', 'web', '--arch', 'linux-x64', '--tier', 'tiny', '--no-wait', '-o', 'json'])).stdout) as Workspace;
    expect(ws.status).to.equal('CREATING');
    const builds = JSON.parse((await a4c(['build', 'list', '--output', 'json'])).stdout) as { builds: Build[] };
    const build = builds.builds[0]?.id ?? '';
    expect(build, 'the build schedule test left a build').to.not.equal('');
    const who = uniqueId('lee');
    const json = async (args: string[]): Promise<Record<string, unknown>> => {
      const r = await a4c([...args, '-o', 'json']);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).to.equal(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    expect((await json(['ws', 'get', ws.id])).id).to.equal(ws.id);
    expect(await json(['ws', 'list', '--all'])).to.have.property('workspaces');
    await waitFor('the workspace running', async () => (await t.api.workspace(ws.id)).status === 'RUNNING');
    expect((await json(['ws', 'rm', ws.id])).status).to.equal('DELETED');
    expect((await json(['build', 'get', build])).id).to.equal(build);
    expect(await json(['build', 'logs', build])).to.have.property('lines');
    const queued = await json(['build', 'schedule', '--image-name', 'cli-img', '--project', 'cliproj', '--arch', 'linux-x64', '--change', 'CL-5', '--no-wait']);
    expect(queued.status).to.be.oneOf(['SCHEDULED', 'IN_PROGRESS', 'COMPLETED']);
    expect(await json(['hosts'])).to.have.property('hosts');
    expect(await json(['hosts', 'list'])).to.have.property('hosts');
    expect((await json(['hosts', 'get', hostId])).id).to.equal(hostId);
    expect(await json(['quota'])).to.have.property('limits');
    expect(await json(['quota', 'set', '--max-builds', '2'])).to.have.nested.property('limits.maxConcurrentBuilds', 2);
    expect((await json(['users', 'create', '--user', who])).id).to.equal(who);
    expect((await json(['users', 'set-team', '--user', who, '--team', 'none'])).teamId).to.equal(null);
    expect(await json(['users', 'list'])).to.have.property('users');
    const issued = await json(['tokens', 'issue', '--user', who, '--ttl', '600']);
    expect(issued.expiresAt).to.be.a('string');
    expect(await json(['tokens', '--user', who])).to.have.property('tokens');
    expect((await json(['tokens', 'revoke', String(issued.id), '--user', who])).id).to.equal(issued.id);
    expect(await json(['audit', '--actor', 'admin'])).to.have.property('entries');
    expect(await json(['events', '--since', '1d', '--limit', '5'])).to.have.property('events');
  });

  it("events: the activity log as a table and JSON, followed live with --follow; ws get shows a workspace's history", async () => {
    const ws = await t.api.createWorkspace(user, { projectName: 'evt', arch: 'linux-x64', tier: 'tiny', name: 'evt' });
    expect(ws.status).to.equal('RUNNING');
    const listed = await a4c(['events', '--workspace', ws.id]);
    expect(listed.code, listed.stderr).to.equal(0);
    expect(listed.stdout).to.match(/^AT\s+KIND\s+ACTOR\s+ABOUT\s+CHANGES\s+REASON/);
    expect(listed.stdout).to.match(/workspace\.created .*status -→CREATING/);
    expect(listed.stdout).to.match(new RegExp(`workspace\\.running\\s+agent:${hostId}\\s+${ws.id}\\s+status CREATING→RUNNING`));
    const asJson = JSON.parse((await a4c(['events', '--workspace', ws.id, '--kind', 'workspace.running', '-o', 'json'])).stdout) as { events: { kind: string }[]; nextCursor: string };
    expect(asJson.events.map((e) => e.kind)).to.deep.equal(['workspace.running']);
    expect(asJson.nextCursor).to.be.a('string');

    // From a moment that is already past when it connects: however slow the start, the
    // follower replays from there, then follows live.
    const from = new Date().toISOString();
    const follower = startA4c(['events', '--follow', '--since', from, '--workspace', ws.id, '-o', 'json'], { A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token, A4C_USER: user });
    try {
      expect((await t.api.call('POST', `/v1/workspaces/${ws.id}/stop?wait=30`)).status).to.equal(202);
      await waitFor('workspace.stopped on the follower', () => follower.out().includes('"kind":"workspace.stopped"'), 15_000);
      follower.proc.kill('SIGINT');
      expect(await follower.exit, follower.err()).to.equal(0);
      const lines = follower.out().trim().split('\n').map((l) => JSON.parse(l) as { kind: string; workspaceId: string });
      expect(lines.map((e) => e.kind)).to.deep.equal(['workspace.stopping', 'workspace.stopped']);
      expect(lines.every((e) => e.workspaceId === ws.id)).to.equal(true);
    } finally {
      follower.proc.kill('SIGKILL');
    }

    const got = await a4c(['ws', 'get', ws.id]);
    expect(got.code, got.stderr).to.equal(0);
    expect(got.stdout).to.match(/^status:\s+STOPPED$/m);
    expect(got.stdout).to.match(/^history:$/m);
    for (const kind of ['workspace.created', 'workspace.running', 'workspace.stopping', 'workspace.stopped']) expect(got.stdout).to.match(new RegExp(`^  \\S+  ${kind.replace('.', '\\.')}\\s`, 'm'));
    expect(got.stdout).to.not.match(/^host lost:/m);
    expect((await a4c(['ws', 'rm', ws.id])).code).to.equal(0);
  });

  it('ws list --all-users --status FAILED --host H --search TEXT finds failures across users by their error text', async () => {
    await commitImage('cli-broken2:test', ['CMD ["/no/such/program"]']);
    await waitFor('the image reported', async () => (await t.api.host(hostId))?.images.includes('cli-broken2:test'));
    const other = uniqueId('fay');
    try {
      const created = await t.api.call<Workspace>('POST', `/v1/users/${other}/workspaces`, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', image: 'cli-broken2:test' });
      expect(created.status, JSON.stringify(created.body)).to.equal(201);
      const failed = await waitFor('the workspace FAILED', async () => {
        const w = await t.api.workspace(created.body.id);
        return w.status === 'FAILED' ? w : undefined;
      }, 30_000);
      const words = (failed.error ?? '').split(/\s+/).slice(0, 3).join(' ');
      expect(words).to.not.equal('');
      const found = await a4c(['ws', 'list', '--all-users', '--status', 'FAILED', '--host', hostId, '--search', words.toUpperCase(), '-o', 'json']);
      expect(found.code, found.stderr).to.equal(0);
      expect((JSON.parse(found.stdout) as { workspaces: Workspace[] }).workspaces.map((w) => w.id)).to.deep.equal([failed.id]);
      const table = await a4c(['ws', 'list', '--all-users', '--status', 'FAILED', '--search', words]);
      expect(table.stdout).to.contain(failed.id);
      expect(table.stdout).to.match(/^ID\s+NAME\s+PROJECT\s+TIER\s+STATUS/);
      const none = await a4c(['ws', 'list', '--all-users', '--status', 'FAILED', '--search', 'qqqq zzzz wwww', '-o', 'json']);
      expect((JSON.parse(none.stdout) as { workspaces: Workspace[] }).workspaces).to.deep.equal([]);
      const mine = await a4c(['ws', 'list', '--status', 'FAILED', '-o', 'json']);
      expect((JSON.parse(mine.stdout) as { workspaces: Workspace[] }).workspaces.map((w) => w.id), "without --all-users: only the user's own").to.not.include(failed.id);
      const bad = await a4c(['ws', 'list', '--all-users', '--status', 'BROKEN']);
      expect(bad.code).to.equal(1);
      expect(bad.stderr).to.contain('status must be one or more of');
      expect((await t.api.call('DELETE', `/v1/workspaces/${failed.id}?wait=30`)).status).to.equal(202);
    } finally {
      await docker().getImage('cli-broken2:test').remove({ force: true }).catch(() => undefined);
    }
  });

  it('ws get and ws list say when a workspace is on a lost host (last: it stops the agent)', async () => {
    const ws = await t.api.createWorkspace(user, { projectName: 'lost', arch: 'linux-x64', tier: 'tiny', name: 'lost' });
    expect(ws.status).to.equal('RUNNING');
    await agent.kill();
    await waitFor('hostLost', async () => (await t.api.workspace(ws.id)).hostLost, 15_000, 200);
    const got = await a4c(['ws', 'get', ws.id]);
    expect(got.stdout).to.match(/^host lost:\s+yes: the host stopped heartbeating/m);
    const listed = await a4c(['ws', 'list']);
    expect(listed.stdout).to.match(new RegExp(`${ws.id}.*RUNNING \\(host lost\\)`));
    const asJson = JSON.parse((await a4c(['ws', 'get', ws.id, '-o', 'json'])).stdout) as Workspace;
    expect(asJson.hostLost).to.equal(true);
  });
});
