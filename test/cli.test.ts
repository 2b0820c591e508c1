import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect } from 'chai';
import type { HostView, Workspace } from '@a4c/common';
import { docker, removeHostContainers, ROOT, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';

describe('the a4c CLI', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('cli');
  const user = uniqueId('erin');

  function a4c(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [path.join(ROOT, 'packages/cli/dist/main.js'), ...args], {
        env: { PATH: process.env.PATH ?? '', A4C_URL: t.api.baseUrl, A4C_TOKEN: t.api.token, A4C_USER: user, ...env },
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      p.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
  }

  before(async () => {
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_POLL_MS: '200' } });
    await t.api.waitHostConnected(hostId);
  });
  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId);
    await docker().getImage('cli-img:CL-5-linux-x64').remove({ force: true }).catch(() => undefined);
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
    await a4c(['quota', 'set', '--max-workspaces', 'inherit']);
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
    expect(help.stdout).to.contain('a4c ws create');
  });
});
