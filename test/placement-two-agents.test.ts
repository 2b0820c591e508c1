import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import type { Workspace } from '@a4c/common';
import {
  containersOfHost,
  docker,
  removeHostContainers,
  spawnAgent,
  startTestControlPlane,
  tmpDir,
  uniqueId,
  type AgentProcess,
  type TestControlPlane,
} from './support/cluster.js';
import { waitFor } from './support/net.js';

/**
 * Two agents share one Docker Engine but report different disks: each measures a small
 * tmpfs of its own (A4C_DISK_PATH), filled to a level the test controls, and offers
 * 100 GB (A4C_CAPACITY_DISK_GB) so the 20 MB tmpfs does not limit capacity.
 */
describe('two agents on one engine', () => {
  let t: TestControlPlane;
  const agents: AgentProcess[] = [];
  const a = uniqueId('disk-a');
  const b = uniqueId('disk-b');
  const mounts: string[] = [];
  const user = uniqueId('bob');

  function tmpfs(name: string, fillMb: number): string {
    const dir = path.join(tmpDir('tmpfs'), name);
    mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', dir]);
    mounts.push(dir);
    fill(dir, fillMb);
    return dir;
  }
  function fill(dir: string, mb: number): void {
    rmSync(path.join(dir, 'fill'), { force: true });
    if (mb > 0) execFileSync('dd', ['if=/dev/zero', `of=${path.join(dir, 'fill')}`, 'bs=1M', `count=${mb}`], { stdio: 'ignore' });
  }

  before(async () => {
    t = await startTestControlPlane();
    const diskA = tmpfs('a', 12); // 60 %
    const diskB = tmpfs('b', 6); // 30 %
    agents.push(await spawnAgent({ hostId: a, controlPlane: t.grpcAddress, env: { A4C_DISK_PATH: diskA, A4C_CAPACITY_DISK_GB: '100' } }));
    agents.push(await spawnAgent({ hostId: b, controlPlane: t.grpcAddress, env: { A4C_DISK_PATH: diskB, A4C_CAPACITY_DISK_GB: '100' } }));
    await t.api.waitHostConnected(a);
    await t.api.waitHostConnected(b);
  });

  after(async () => {
    for (const ag of agents) await ag.kill();
    await t?.stop();
    await removeHostContainers(a, b);
    for (const m of mounts) execFileSync('umount', [m]);
  });

  const created: Workspace[] = [];

  it('places on the host with the least disk usage, and follows the usage as it changes', async () => {
    expect((await t.api.host(a))?.stats?.diskPercent).to.be.within(55, 65);
    expect((await t.api.host(b))?.stats?.diskPercent).to.be.within(25, 35);

    created.push(await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: 'one' }));
    created.push(await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: 'two' }));
    expect(created.map((w) => w.hostId)).to.deep.equal([b, b]);

    fill(mounts[1] as string, 14); // host b now at 70 %: fuller than a, still under the 80 % threshold
    await waitFor('host b to report its fuller disk', async () => ((await t.api.host(b))?.stats?.diskPercent ?? 0) > 65);
    // Another project: its files are on no host yet, so the least-used disk wins.
    created.push(await t.api.createWorkspace(user, { projectName: 'q', arch: 'linux-x64', tier: 'tiny', name: 'three' }));
    expect(created[2]?.hostId).to.equal(a);
    for (const w of created) expect(w.status).to.equal('RUNNING');
  });

  it("prefers the host already holding the user's volume for the project, and lists the volumes", async () => {
    // b is the fuller disk now, but bob's files for project p are there.
    const four = await t.api.createWorkspace(user, { projectName: 'p', arch: 'linux-x64', tier: 'tiny', name: 'four' });
    expect(four.hostId).to.equal(b);
    const r = await t.api.call<{ volumes: { hostId: string; project: string; name: string; sizeBytes: number | null }[] }>('GET', `/v1/users/${user}/volumes`);
    expect(r.status).to.equal(200);
    const seen = r.body.volumes.map((v) => `${v.project}@${v.hostId}`).sort();
    expect(seen).to.deep.equal([`p@${b}`, `q@${a}`].sort());
    for (const v of r.body.volumes) expect(v.name).to.equal(`a4c-home-${user}`);
    const del = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${four.id}?wait=30`);
    expect(del.body.status).to.equal('DELETED');
  });

  it('each agent runs exactly its own workspaces, and neither touches the other\'s or a foreign host\'s', async () => {
    // A container labelled as an A4C workspace of a host with no agent here.
    const foreignHost = uniqueId('elsewhere');
    const foreign = await docker().createContainer({
      Image: 'a4c-base:latest',
      name: `foreign-${foreignHost}`,
      Labels: { 'a4c.managed': 'true', 'a4c.workspace.id': '00000000-0000-4000-8000-000000000000', 'a4c.host.id': foreignHost },
      HostConfig: { NetworkMode: 'none' },
    });
    await foreign.start();
    try {
      // Several sweeps (1 s each) on both agents.
      await new Promise((r) => setTimeout(r, 3000));
      const onA = (await containersOfHost(a)).map((c) => c.Labels['a4c.workspace.id']);
      const onB = (await containersOfHost(b)).map((c) => c.Labels['a4c.workspace.id']);
      expect(onB.sort()).to.deep.equal([created[0]?.id, created[1]?.id].sort());
      expect(onA).to.deep.equal([created[2]?.id]);
      expect((await foreign.inspect()).State.Running, 'foreign container untouched').to.equal(true);
    } finally {
      await foreign.remove({ force: true });
    }
  });

  it('deleting a workspace removes only its container', async () => {
    const r = await t.api.call<Workspace>('DELETE', `/v1/workspaces/${created[0]?.id}?wait=30`);
    expect(r.body.status).to.equal('DELETED');
    const onB = (await containersOfHost(b)).map((c) => c.Labels['a4c.workspace.id']);
    expect(onB).to.deep.equal([created[1]?.id]);
    expect((await containersOfHost(a)).length).to.equal(1);
  });
});
