import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import type Docker from 'dockerode';
import type { Workspace } from '@a4c/common';
import { DockerRuntime, type ImageConfig } from '@a4c/agent';
import { loadConfig } from '@a4c/control-plane';
import {
  docker,
  dockerHost,
  removeHostContainers,
  spawnAgent,
  startTestControlPlane,
  TINY_TIERS,
  tmpDir,
  uniqueId,
  type AgentProcess,
  type TestControlPlane,
} from './support/cluster.js';
import { waitFor } from './support/net.js';

/** The capabilities a workspace keeps (agent/src/runtime/docker.ts explains each). */
const ALLOWED_CAPS = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'NET_BIND_SERVICE', 'SYS_CHROOT', 'AUDIT_WRITE'];

/** Bit numbers from linux/capability.h. */
const CAP_BITS: Record<string, number> = {
  CHOWN: 0, DAC_OVERRIDE: 1, DAC_READ_SEARCH: 2, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7, SETPCAP: 8,
  LINUX_IMMUTABLE: 9, NET_BIND_SERVICE: 10, NET_BROADCAST: 11, NET_ADMIN: 12, NET_RAW: 13, IPC_LOCK: 14, IPC_OWNER: 15,
  SYS_MODULE: 16, SYS_RAWIO: 17, SYS_CHROOT: 18, SYS_PTRACE: 19, SYS_PACCT: 20, SYS_ADMIN: 21, SYS_BOOT: 22, SYS_NICE: 23,
  SYS_RESOURCE: 24, SYS_TIME: 25, SYS_TTY_CONFIG: 26, MKNOD: 27, LEASE: 28, AUDIT_WRITE: 29, AUDIT_CONTROL: 30, SETFCAP: 31,
};
const ALLOWED_MASK = ALLOWED_CAPS.reduce((m, c) => m | (1n << BigInt(CAP_BITS[c] as number)), 0n);

const bare = (caps: string[] | null | undefined) => (caps ?? []).map((c) => c.toUpperCase().replace(/^CAP_/, '')).sort();

interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command in a running container the way `docker exec` does: as root, or as
 * `user`; `user` null: as the container's own user (Config.User), like a plain `docker exec`.
 */
async function exec(containerId: string, cmd: string[], user: string | null = 'root'): Promise<ExecResult> {
  const d = docker();
  const e = await d.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, ...(user !== null ? { User: user } : {}) });
  const stream = await e.start({ hijack: true, stdin: false });
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (c: Buffer) => (stdout += c.toString()));
  err.on('data', (c: Buffer) => (stderr += c.toString()));
  d.modem.demuxStream(stream, out, err);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', () => resolve());
    stream.on('close', () => resolve());
    stream.on('error', reject);
  });
  const info = await e.inspect();
  return { exitCode: info.ExitCode ?? -1, stdout, stderr };
}

/** What the agent's image step hands to create: the image's labels and USER. */
async function imageOf(rt: DockerRuntime, ref: string): Promise<ImageConfig> {
  const config = await rt.inspectImage(ref);
  if (!config) throw new Error(`image ${ref} is not on the test engine`);
  return config;
}

/** The agent's own DockerRuntime on the test engine. */
function runtime(hostId: string, networkMode: string): DockerRuntime {
  return new DockerRuntime({ dockerHost: dockerHost(), hostId, networkMode, stopTimeoutSeconds: 1 });
}

describe('workspace containers are confined', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  let hostAgent: AgentProcess | undefined;
  const hostId = uniqueId('conf');
  const hostNetId = uniqueId('confhostnet');
  const runtimeHostId = uniqueId('confrt');
  const user = uniqueId('mallory');
  let ws: Workspace;
  let info: Docker.ContainerInspectInfo;

  before(async () => {
    t = await startTestControlPlane();
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress });
    await t.api.waitHostConnected(hostId);
    ws = await t.api.createWorkspace(user, { projectName: 'sec', arch: 'linux-x64', tier: 'tiny', name: 'box' });
    expect(ws.status, JSON.stringify(ws)).to.equal('RUNNING');
    info = await docker().getContainer(ws.containerId as string).inspect();
  });

  after(async () => {
    await hostAgent?.kill();
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId, hostNetId, runtimeHostId);
  });

  it('is not privileged, drops every capability and adds back exactly the allowed set, with no-new-privileges', () => {
    const hc = info.HostConfig;
    expect(hc.Privileged).to.equal(false);
    expect(bare(hc.CapDrop)).to.include('ALL');
    expect(bare(hc.CapAdd)).to.deep.equal([...ALLOWED_CAPS].sort());
    for (const dangerous of ['NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE', 'MKNOD', 'NET_ADMIN', 'SYS_MODULE', 'SETFCAP', 'SETPCAP', 'DAC_READ_SEARCH']) {
      expect(bare(hc.CapAdd), dangerous).not.to.include(dangerous);
    }
    expect(hc.SecurityOpt).to.include('no-new-privileges');
  });

  it('always has memory, swap, CPU and pids limits', () => {
    const hc = info.HostConfig;
    expect(hc.Memory).to.equal(64 * 1024 * 1024);
    expect(hc.MemorySwap).to.equal(hc.Memory);
    expect(hc.NanoCpus).to.equal(0.25e9);
    expect(hc.PidsLimit).to.equal(256);
  });

  it('has no host mounts, no devices, only its volume at /workspace, no host namespaces and network none', () => {
    const hc = info.HostConfig as Docker.HostConfig & { Mounts?: { Type: string; Source: string; Target: string }[] };
    expect(hc.Binds ?? []).to.deep.equal([]);
    expect(hc.Devices ?? []).to.deep.equal([]);
    expect((hc as { DeviceCgroupRules?: string[] | null }).DeviceCgroupRules ?? []).to.deep.equal([]);
    expect(hc.VolumesFrom ?? []).to.deep.equal([]);
    expect(hc.Mounts).to.deep.equal([{ Type: 'volume', Source: `a4c-home-${user}`, Target: '/workspace' }]);
    expect(info.Mounts.map((m) => ({ type: m.Type, name: m.Name, destination: m.Destination }))).to.deep.equal([
      { type: 'volume', name: `a4c-home-${user}`, destination: '/workspace' },
    ]);
    expect(info.Mounts.filter((m) => m.Type === 'bind')).to.deep.equal([]);
    expect(hc.NetworkMode).to.equal('none');
    expect(Object.keys(info.NetworkSettings.Networks ?? {})).to.deep.equal(['none']);
    expect(hc.PortBindings ?? {}).to.deep.equal({});
    expect(hc.PublishAllPorts).to.equal(false);
    for (const ns of ['PidMode', 'IpcMode', 'UTSMode', 'UsernsMode', 'CgroupnsMode'] as const) {
      expect(String((hc as Record<string, unknown>)[ns] ?? ''), ns).not.to.match(/^(host|container:)/);
    }
  });

  it('inside the running container: root holds only the allowed capabilities and cannot use the dropped ones', async () => {
    const id = ws.containerId as string;
    const status = await exec(id, ['cat', '/proc/self/status']);
    expect(status.exitCode, status.stderr).to.equal(0);
    const field = (name: string) => {
      const m = new RegExp(`^${name}:\\s*([0-9a-f]+)$`, 'm').exec(status.stdout);
      if (!m) throw new Error(`${name} not in /proc/self/status:\n${status.stdout}`);
      return BigInt(`0x${m[1]}`);
    };
    // Effective, permitted and the bounding set: nothing beyond the allowed set, ever.
    expect(field('CapEff').toString(16), 'CapEff').to.equal(ALLOWED_MASK.toString(16));
    expect(field('CapPrm').toString(16), 'CapPrm').to.equal(ALLOWED_MASK.toString(16));
    expect(field('CapBnd').toString(16), 'CapBnd').to.equal(ALLOWED_MASK.toString(16));
    expect(/^NoNewPrivs:\s*1$/m.test(status.stdout), 'NoNewPrivs: 1').to.equal(true);

    // MKNOD is dropped: no device nodes, even as root.
    const mknod = await exec(id, ['mknod', '/tmp/mem', 'c', '1', '1']);
    expect(mknod.exitCode, `mknod: ${mknod.stdout}${mknod.stderr}`).not.to.equal(0);
    expect(mknod.stderr).to.match(/not permitted/i);
    // SYS_ADMIN was never there: no mounts.
    const mount = await exec(id, ['mount', '-t', 'tmpfs', 'none', '/mnt']);
    expect(mount.exitCode, `mount: ${mount.stdout}${mount.stderr}`).not.to.equal(0);
    // SYS_NICE is not granted: no raising priorities over the host's other tenants.
    const nice = await exec(id, ['nice', '-n', '-10', 'true']);
    expect(nice.exitCode, `nice: ${nice.stdout}${nice.stderr}`).not.to.equal(0);
    // CHOWN is granted: a developer can still manage the files of their own container.
    const chown = await exec(id, ['sh', '-c', 'touch /tmp/f && chown 65534:65534 /tmp/f && stat -c %u:%g /tmp/f']);
    expect(chown.exitCode, chown.stderr).to.equal(0);
    expect(chown.stdout.trim()).to.equal('65534:65534');
    // No network beyond loopback (network mode none).
    const ifaces = await exec(id, ['ls', '/sys/class/net']);
    expect(ifaces.stdout.split(/\s+/).filter(Boolean)).to.deep.equal(['lo']);
  });

  it('the REST API refuses every field that asks for more: 400 naming the field, and creates nothing', async () => {
    const valid = { projectName: 'sec', arch: 'linux-x64', tier: 'tiny' };
    const asks: Record<string, unknown>[] = [
      { privileged: true },
      { binds: ['/:/host'] },
      { devices: ['/dev/mem'] },
      { networkMode: 'host' },
      { capAdd: ['SYS_ADMIN'] },
      { securityOpt: ['seccomp=unconfined'] },
      { pidsLimit: 0 },
      { memoryMb: 0 },
      { mounts: [{ Type: 'bind', Source: '/', Target: '/host' }] },
      { hostConfig: { Privileged: true } },
      { HostConfig: { NetworkMode: 'host' } },
      { user: 'root' },
    ];
    for (const extra of asks) {
      const field = Object.keys(extra)[0] as string;
      const r = await t.api.call<{ error: string; field: string; message: string }>('POST', `/v1/users/${user}/workspaces`, { ...valid, ...extra });
      expect(r.status, `${field}: ${JSON.stringify(r.body)}`).to.equal(400);
      expect(r.body.error).to.equal('INVALID_ARGUMENT');
      expect(r.body.field).to.equal(field);
      expect(r.body.message).to.contain(field);
    }
    // A privileged-looking image reference is not an option either.
    const img = await t.api.call<{ field: string }>('POST', `/v1/users/${user}/workspaces`, { ...valid, image: '--privileged' });
    expect(img.status).to.equal(400);
    expect(img.body.field).to.equal('image');
    const list = await t.api.call<{ workspaces: Workspace[] }>('GET', `/v1/users/${user}/workspaces?includeDeleted=true`);
    expect(list.body.workspaces.map((w) => w.id)).to.deep.equal([ws.id]);
  });

  it('the runtime never creates an unlimited or host-network container, whatever the spec or setting says', async () => {
    const rt = runtime(runtimeHostId, 'none');
    const imageConfig = await imageOf(rt, 'a4c-base:latest');
    const spec = (n: string) => ({
      workspaceId: `00000000-0000-4000-8000-${n.padStart(12, '0')}`,
      attempt: 0,
      userId: user,
      image: 'a4c-base:latest',
      imageConfig,
      hostname: 'rt',
      memoryBytes: 64 * 1024 * 1024,
      cpus: 0.25,
      pidsLimit: 256,
      volume: `a4c-home-${user}`,
    });
    // pidsLimit 0 (a spec without resources) would be unlimited: a safe default instead.
    const id = await rt.create({ ...spec('1'), pidsLimit: 0 });
    try {
      const c = await docker().getContainer(id).inspect();
      expect(c.HostConfig.PidsLimit).to.equal(4096);
      expect(c.HostConfig.Privileged).to.equal(false);
      expect(bare(c.HostConfig.CapAdd)).to.deep.equal([...ALLOWED_CAPS].sort());
    } finally {
      await rt.remove(id);
    }
    await expectRefused(rt.create({ ...spec('2'), memoryBytes: 0 }), /memory limit/);
    await expectRefused(rt.create({ ...spec('3'), cpus: 0 }), /CPU limit/);
    for (const mode of ['host', ' HOST ', 'container:abc']) {
      await expectRefused(runtime(runtimeHostId, mode).create(spec('4')), /host network|network namespace/);
    }
    const left = await docker().listContainers({ all: true, filters: { label: [`a4c.host.id=${runtimeHostId}`] } });
    expect(left.map((c) => c.Names)).to.deep.equal([]);
  });

  it('an agent configured with the host network fails the workspace at step create, and no container exists', async () => {
    hostAgent = await spawnAgent({ hostId: hostNetId, controlPlane: t.grpcAddress, env: { A4C_NETWORK_MODE: 'host' } });
    await t.api.waitHostConnected(hostNetId);
    // Only the host-network host may take it.
    const drained = await t.api.call('POST', `/v1/hosts/${hostId}/drain`);
    expect(drained.status).to.equal(200);
    const failed = await t.api.createWorkspace(`${user}-h`, { projectName: 'sec', arch: 'linux-x64', tier: 'tiny' });
    expect(failed.hostId).to.equal(hostNetId);
    expect(failed.status, JSON.stringify(failed)).to.equal('FAILED');
    expect(failed.failedStep).to.equal('create');
    expect(failed.error).to.match(/host network/);
    const mine = await docker().listContainers({ all: true, filters: { label: [`a4c.host.id=${hostNetId}`] } });
    expect(mine.map((c) => c.Names)).to.deep.equal([]);
    await t.api.call('POST', `/v1/hosts/${hostId}/activate`);
  });
});

async function expectRefused(p: Promise<unknown>, why: RegExp): Promise<void> {
  const outcome = await p.then(
    (v) => ({ ok: true as const, v }),
    (e: Error) => ({ ok: false as const, e }),
  );
  expect(outcome.ok, `expected a refusal matching ${why}, got ${JSON.stringify(outcome)}`).to.equal(false);
  if (!outcome.ok) expect(outcome.e.message).to.match(why);
}

/** An image from the base image with extra labels, made with docker commit (no build, no registry). */
async function imageWithLabels(ref: string, labels: Record<string, string>): Promise<void> {
  const c = await docker().createContainer({ Image: 'a4c-base:latest', Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
  const [repo, tag] = ref.split(':');
  try {
    await c.commit({ repo, tag, changes: [...Object.entries(labels).map(([k, v]) => `LABEL ${k}=${v}`), 'CMD ["/bin/sleep", "infinity"]'] });
  } finally {
    await c.remove({ force: true });
  }
}

const MiB = 1024 * 1024;
const tierOf = (extra: Record<string, unknown>) => ({ memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256, ...extra });

describe('workspace containers confined further by tier or image: read-only root filesystem, user', () => {
  let t: TestControlPlane;
  let agent: AgentProcess;
  const hostId = uniqueId('confro');
  const runtimeHostId = uniqueId('confrort');
  const LABELLED = 'a4c-ro-labelled:test';
  const BAD_RO_LABEL = 'a4c-ro-badlabel:test';
  const BAD_USER_LABEL = 'a4c-user-badlabel:test';

  before(async () => {
    await imageWithLabels(LABELLED, { 'a4c.workspace.read-only': 'true', 'a4c.workspace.user': '1000:1000' });
    await imageWithLabels(BAD_RO_LABEL, { 'a4c.workspace.read-only': 'yes' });
    await imageWithLabels(BAD_USER_LABEL, { 'a4c.workspace.user': '1000:1000:1000' });
    t = await startTestControlPlane({
      A4C_TIERS: JSON.stringify({
        ...(JSON.parse(TINY_TIERS) as Record<string, unknown>),
        locked: tierOf({ readOnlyRootFs: true, user: '1000:1000' }),
        nonroot: tierOf({ runAsNonRoot: true }),
        nobody: tierOf({ user: '65534:65534', runAsNonRoot: true }),
      }),
    });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress });
    await t.api.waitHostConnected(hostId);
    await waitFor('the labelled image reported', async () => (await t.api.host(hostId))?.images.includes(LABELLED));
  });

  after(async () => {
    await agent?.kill();
    await t?.stop();
    await removeHostContainers(hostId, runtimeHostId);
    for (const ref of [LABELLED, BAD_RO_LABEL, BAD_USER_LABEL]) await docker().getImage(ref).remove({ force: true }).catch(() => undefined);
  });

  const running = async (tier: string, image?: string): Promise<{ ws: Workspace; info: Docker.ContainerInspectInfo }> => {
    const ws = await t.api.createWorkspace(uniqueId('ro'), { projectName: 'sec', arch: 'linux-x64', tier, ...(image ? { image } : {}) });
    expect(ws.status, JSON.stringify(ws)).to.equal('RUNNING');
    return { ws, info: await docker().getContainer(ws.containerId as string).inspect() };
  };
  const tmpfsOf = (info: Docker.ContainerInspectInfo) => (info.HostConfig as { Tmpfs?: Record<string, string> | null }).Tmpfs ?? {};
  const option = (opts: string, name: string) => opts.split(',').find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);

  /** Read-only root, writable scratch, the workspace's user: what is true inside the container. */
  async function expectConfinedInside(id: string, uid: string): Promise<void> {
    const who = await exec(id, ['id', '-u'], null);
    expect(who.exitCode, who.stderr).to.equal(0);
    expect(who.stdout.trim()).to.equal(uid);
    // The workspace's own processes (PID 1 under the init and its child), not only exec.
    const proc = await exec(id, ['sh', '-c', 'grep ^Uid: /proc/1/status'], null);
    expect(proc.stdout, proc.stderr).to.match(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}\\s*$`, 'm'));
    // Read-only, not merely not permitted: root cannot write the image's files either.
    for (const user of [null, 'root']) {
      const etc = await exec(id, ['touch', '/etc/x'], user);
      expect(etc.exitCode, `touch /etc/x as ${user ?? 'the container user'}`).not.to.equal(0);
      expect(etc.stderr).to.match(/read-only file system/i);
    }
    // Scratch space is writable by the workspace's user, and what is built there runs.
    const tmp = await exec(id, ['sh', '-c', 'touch /tmp/x /var/tmp/x && stat -c %u /tmp/x && printf "#!/bin/sh\\necho ran\\n" > /tmp/s && chmod +x /tmp/s && /tmp/s'], null);
    expect(tmp.exitCode, tmp.stderr).to.equal(0);
    expect(tmp.stdout.split('\n').filter(Boolean)).to.deep.equal([uid, 'ran']);
    const modes = await exec(id, ['stat', '-c', '%a', '/tmp', '/var/tmp'], null);
    expect(modes.stdout.split('\n').filter(Boolean), modes.stderr).to.deep.equal(['1777', '1777']);
    const run = await exec(id, ['touch', '/run/x'], 'root');
    expect(run.exitCode, run.stderr).to.equal(0);
    const mounts = (await exec(id, ['cat', '/proc/mounts'])).stdout;
    expect(/^\S+ \/ \S+ (\S+)/m.exec(mounts)?.[1]?.split(',')).to.include('ro');
    const tmpOpts = /^\S+ \/tmp tmpfs (\S+)/m.exec(mounts)?.[1]?.split(',') ?? [];
    expect(tmpOpts, mounts).to.include.members(['rw', 'nosuid', 'nodev']);
    expect(tmpOpts).not.to.include('noexec');
  }

  it('a tier with readOnlyRootFs and user 1000:1000: docker inspect shows a read-only root, the user, and bounded tmpfs scratch', async () => {
    const { ws, info } = await running('locked');
    expect(info.HostConfig.ReadonlyRootfs).to.equal(true);
    expect(info.Config.User).to.equal('1000:1000');
    const tmpfs = tmpfsOf(info);
    expect(Object.keys(tmpfs).sort()).to.deep.equal(['/run', '/tmp', '/var/tmp']);
    // Bounded by the tier's 64 MB: tmpfs pages count against the container's memory.
    expect(option(tmpfs['/tmp'] as string, 'size')).to.equal(String(32 * MiB));
    expect(option(tmpfs['/var/tmp'] as string, 'size')).to.equal(String(16 * MiB));
    expect(option(tmpfs['/run'] as string, 'size')).to.equal(String(4 * MiB));
    expect(option(tmpfs['/tmp'] as string, 'mode')).to.equal('1777');
    // The rest of the confinement is unchanged, and /workspace is still the only volume.
    expect(info.HostConfig.Privileged).to.equal(false);
    expect(bare(info.HostConfig.CapAdd)).to.deep.equal([...ALLOWED_CAPS].sort());
    expect(info.HostConfig.SecurityOpt).to.include('no-new-privileges');
    expect(info.Mounts.map((m) => ({ type: m.Type, destination: m.Destination }))).to.deep.equal([{ type: 'volume', destination: '/workspace' }]);
    await expectConfinedInside(ws.containerId as string, '1000');
  });

  it('an image labelled a4c.workspace.read-only=true and a4c.workspace.user=1000:1000 gets the same on a tier that sets neither', async () => {
    const { ws, info } = await running('tiny', LABELLED);
    expect(info.HostConfig.ReadonlyRootfs).to.equal(true);
    expect(info.Config.User).to.equal('1000:1000');
    expect(Object.keys(tmpfsOf(info)).sort()).to.deep.equal(['/run', '/tmp', '/var/tmp']);
    await expectConfinedInside(ws.containerId as string, '1000');
  });

  it('a default tier with the base image still has a writable root and the image\'s user (root), and no tmpfs', async () => {
    const { ws, info } = await running('tiny');
    expect(info.HostConfig.ReadonlyRootfs).to.equal(false);
    expect(info.Config.User).to.equal('');
    expect(tmpfsOf(info)).to.deep.equal({});
    const id = ws.containerId as string;
    const who = await exec(id, ['id', '-u'], null);
    expect(who.stdout.trim()).to.equal('0');
    const etc = await exec(id, ['touch', '/etc/x'], null);
    expect(etc.exitCode, etc.stderr).to.equal(0);
  });

  it('the stricter wins: a tier\'s user overrides the image\'s label, and the label\'s read-only holds on a tier without it', async () => {
    const { ws, info } = await running('nobody', LABELLED);
    expect(info.Config.User).to.equal('65534:65534');
    expect(info.HostConfig.ReadonlyRootfs).to.equal(true);
    await expectConfinedInside(ws.containerId as string, '65534');
    // The same tier on the base image: its user, and the root stays writable (for root).
    const plain = await running('nobody');
    expect(plain.info.Config.User).to.equal('65534:65534');
    expect(plain.info.HostConfig.ReadonlyRootfs).to.equal(false);
  });

  it('runAsNonRoot: an image that would run as root fails at step create and leaves no container; one with a uid label runs', async () => {
    const failed = await t.api.createWorkspace(uniqueId('nr'), { projectName: 'sec', arch: 'linux-x64', tier: 'nonroot' });
    expect(failed.status, JSON.stringify(failed)).to.equal('FAILED');
    expect(failed.failedStep).to.equal('create');
    expect(failed.error).to.match(/non-root/);
    expect(failed.error).to.match(/USER/);
    const mine = (await docker().listContainers({ all: true, filters: { label: [`a4c.host.id=${hostId}`] } })).filter(
      (c) => c.Labels['a4c.workspace.id'] === failed.id,
    );
    expect(mine.map((c) => c.Names)).to.deep.equal([]);
    const { ws, info } = await running('nonroot', LABELLED);
    expect(info.Config.User).to.equal('1000:1000');
    await expectConfinedInside(ws.containerId as string, '1000');
  });

  it('the runtime refuses an image label it cannot read, and a malformed user, and creates nothing', async () => {
    const rt = runtime(runtimeHostId, 'none');
    const spec = async (n: string, image: string) => ({
      workspaceId: `00000000-0000-4000-8000-${n.padStart(12, '0')}`,
      attempt: 0,
      userId: 'rt',
      image,
      imageConfig: await imageOf(rt, image),
      hostname: 'rt',
      memoryBytes: 64 * MiB,
      cpus: 0.25,
      pidsLimit: 256,
      volume: 'a4c-home-rt',
    });
    await expectRefused(rt.create(await spec('11', BAD_RO_LABEL)), /a4c\.workspace\.read-only.*true or false/);
    await expectRefused(rt.create(await spec('12', BAD_USER_LABEL)), /a4c\.workspace\.user/);
    await expectRefused(rt.create({ ...(await spec('13', 'a4c-base:latest')), user: '0 --privileged' }), /user/);
    await expectRefused(rt.create({ ...(await spec('14', 'a4c-base:latest')), user: 'dev', runAsNonRoot: true }), /non-root/);
    const left = await docker().listContainers({ all: true, filters: { label: [`a4c.host.id=${runtimeHostId}`] } });
    expect(left.map((c) => c.Names)).to.deep.equal([]);
    // A minimal memory limit still gets scratch space of at least 1 MiB each, within the limit.
    const id = await rt.create({ ...(await spec('15', 'a4c-base:latest')), memoryBytes: 6 * MiB, readOnlyRootFs: true });
    try {
      const c = await docker().getContainer(id).inspect();
      const sizes = Object.values(tmpfsOf(c)).map((o) => Number(option(o, 'size')));
      expect(sizes).to.have.length(3);
      for (const s of sizes) expect(s).to.be.at.least(MiB);
      expect(sizes.reduce((a, b) => a + b, 0)).to.be.at.most(6 * MiB);
    } finally {
      await rt.remove(id);
    }
  });

  it('A4C_TIERS with a bad user, a non-boolean flag, or runAsNonRoot with a user that could be root is a ConfigError naming A4C_TIERS', () => {
    const bad: [Record<string, unknown>, string][] = [
      [{ user: 'root; rm -rf /' }, 'user'],
      [{ user: '0 --privileged' }, 'user'],
      [{ user: '1000:1000:1000' }, 'user'],
      [{ user: '-1' }, 'user'],
      [{ user: '' }, 'user'],
      [{ user: 'Dev' }, 'user'],
      [{ user: '99999999999' }, 'user'],
      [{ user: 1000 }, 'user'],
      [{ readOnlyRootFs: 'yes' }, 'readOnlyRootFs'],
      [{ runAsNonRoot: 1 }, 'runAsNonRoot'],
      [{ runAsNonRoot: true, user: '0:0' }, 'user'],
      [{ runAsNonRoot: true, user: 'dev' }, 'user'],
    ];
    for (const [extra, field] of bad) {
      const env = { A4C_DATA_DIR: tmpDir('cfg'), A4C_TIERS: JSON.stringify({ odd: tierOf(extra) }) };
      let err: Error | undefined;
      try {
        loadConfig(env);
      } catch (e) {
        err = e as Error;
      }
      expect(err, JSON.stringify(extra)).to.be.instanceOf(Error);
      expect(err?.name, JSON.stringify(extra)).to.equal('ConfigError');
      expect(err?.message, JSON.stringify(extra)).to.contain('A4C_TIERS');
      expect(err?.message, JSON.stringify(extra)).to.contain(`odd.${field}`);
    }
    const tiers = loadConfig({
      A4C_DATA_DIR: tmpDir('cfg'),
      A4C_TIERS: JSON.stringify({
        ro: tierOf({ readOnlyRootFs: true, user: '1000:1000', runAsNonRoot: true }),
        named: tierOf({ user: 'dev:staff' }),
        plain: tierOf({}),
      }),
    }).tiers;
    expect(tiers.get('ro')).to.include({ readOnlyRootFs: true, user: '1000:1000', runAsNonRoot: true });
    expect(tiers.get('named')).to.include({ readOnlyRootFs: false, user: 'dev:staff', runAsNonRoot: false });
    expect(tiers.get('plain')).to.include({ readOnlyRootFs: false, runAsNonRoot: false });
    expect(tiers.get('plain')?.user).to.equal(undefined);
    expect(tiers.get('standard')).to.include({ readOnlyRootFs: false, runAsNonRoot: false });
  });
});
