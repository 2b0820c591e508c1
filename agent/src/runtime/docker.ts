import Docker from 'dockerode';
import {
  LABEL_ATTEMPT,
  LABEL_HOST_ID,
  LABEL_MANAGED,
  LABEL_USER_ID,
  LABEL_WORKSPACE_ID,
  containerName,
} from '@a4c/common';
import { scratchTmpfs, workspaceConfinement, type ImageConfig } from './confinement.js';
import type { ContainerDetails, ContainerRuntime, CreateSpec, EngineInfo, ImageSummary, OwnedContainer } from './runtime.js';

export interface DockerRuntimeOptions {
  dockerHost: string | undefined;
  hostId: string;
  networkMode: string;
  stopTimeoutSeconds: number;
  /** Caps writable layers where the storage driver can (disk/storage-opt.ts); absent: never. */
  storageOpt?: {
    forWorkspace(workspaceId: string): Record<string, string> | undefined;
    refused(message: string): void;
  };
  /** Before container and volume names (A4C_ENGINE_NAME_PREFIX); '' on a real host. */
  namePrefix?: string;
}

/** dockerode options from a DOCKER_HOST value (unix:// or tcp://); unset: the default socket. */
export function dockerOptions(dockerHost: string | undefined, timeoutMs?: number): Docker.DockerOptions {
  const base: Docker.DockerOptions = timeoutMs ? { timeout: timeoutMs } : {};
  if (!dockerHost) return { ...base, socketPath: '/var/run/docker.sock' };
  if (dockerHost.startsWith('unix://')) return { ...base, socketPath: dockerHost.slice('unix://'.length) };
  const u = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  return { ...base, host: u.hostname, port: Number(u.port || 2375), protocol: 'http' };
}

/** "repo[:tag]" (the repo may hold a registry host:port) → [repo, tag]. */
export function splitRef(ref: string): [string, string] {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
}

function statusOf(e: unknown): number | undefined {
  return (e as { statusCode?: number }).statusCode;
}

export class DockerRuntime implements ContainerRuntime {
  private readonly docker: Docker;
  /** Short timeout for health checks: a hung engine must read as "not ready" fast. */
  private readonly probe: Docker;
  private readonly ownFilter: string[];

  constructor(private readonly opts: DockerRuntimeOptions) {
    this.docker = new Docker(dockerOptions(opts.dockerHost, 120_000));
    this.probe = new Docker(dockerOptions(opts.dockerHost, 2_000));
    this.ownFilter = [`${LABEL_MANAGED}=true`, `${LABEL_HOST_ID}=${opts.hostId}`];
  }

  async ping(): Promise<void> {
    await this.probe.ping();
  }

  async info(): Promise<EngineInfo> {
    const info = (await this.probe.info()) as { DockerRootDir?: string; Containers?: number };
    return { dataRoot: info.DockerRootDir ?? '/var/lib/docker', containers: info.Containers ?? 0 };
  }

  async listOwned(): Promise<OwnedContainer[]> {
    const list = await this.docker.listContainers({ all: true, filters: { label: this.ownFilter } });
    return list.flatMap((c) => {
      const workspaceId = c.Labels[LABEL_WORKSPACE_ID];
      // Belt and braces: the filter already guarantees both labels.
      if (!workspaceId || c.Labels[LABEL_HOST_ID] !== this.opts.hostId) return [];
      const attempt = Number(c.Labels[LABEL_ATTEMPT] ?? 0);
      return [
        {
          id: c.Id,
          name: (c.Names[0] ?? '').replace(/^\//, ''),
          workspaceId,
          attempt: Number.isInteger(attempt) ? attempt : 0,
          state: c.State as OwnedContainer['state'],
        },
      ];
    });
  }

  async inspect(id: string): Promise<ContainerDetails | undefined> {
    try {
      const c = await this.docker.getContainer(id).inspect();
      return {
        id: c.Id,
        running: c.State.Running,
        exitCode: c.State.ExitCode,
        oomKilled: c.State.OOMKilled,
        error: c.State.Error,
        finishedAt: c.State.FinishedAt,
      };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  async inspectImage(ref: string): Promise<ImageConfig | undefined> {
    try {
      const image = (await this.docker.getImage(ref).inspect()) as { Config?: { Labels?: Record<string, string> | null; User?: string } };
      return { labels: image.Config?.Labels ?? {}, user: image.Config?.User ?? '' };
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  async pullAs(from: string, as: string): Promise<void> {
    const stream = await this.docker.pull(from);
    await new Promise<void>((resolve, reject) =>
      this.docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())),
    );
    const [repo, tag] = splitRef(as);
    await this.docker.getImage(from).tag({ repo, tag });
  }

  async listImages(): Promise<ImageSummary[]> {
    const images = await this.docker.listImages();
    return images.flatMap((img) =>
      (img.RepoTags ?? [])
        .filter((t) => t !== '<none>:<none>')
        .map((ref) => ({ ref, imageId: img.Id, labels: img.Labels ?? {}, createdUnix: img.Created })),
    );
  }

  async cpuUsage(id: string): Promise<{ usageNs: number; atMs: number } | undefined> {
    try {
      // one-shot: the engine answers with one reading at once instead of waiting a
      // second for a second one (Docker API 1.41+); the sampler diffs its own readings.
      const s = (await this.docker.getContainer(id).stats({ stream: false, 'one-shot': true } as { stream: false })) as {
        read?: string;
        cpu_stats?: { cpu_usage?: { total_usage?: number } };
      };
      const usageNs = s.cpu_stats?.cpu_usage?.total_usage;
      const atMs = s.read ? Date.parse(s.read) : NaN;
      return usageNs !== undefined && Number.isFinite(atMs) ? { usageNs, atMs } : undefined;
    } catch (e) {
      if (statusOf(e) === 404) return undefined;
      throw e;
    }
  }

  async create(spec: CreateSpec): Promise<string> {
    // Workspace containers are confined whatever the spec or the agent's settings say.
    // What cannot be confined is refused here, before anything exists on the engine.
    const networkMode = this.opts.networkMode.trim();
    if (networkMode.toLowerCase() === 'host') {
      throw new Error(
        'refusing to create a workspace container with the host network (A4C_NETWORK_MODE=host): it would see and bind the host\'s interfaces; use bridge, none or a user-defined network',
      );
    }
    if (/^container:/i.test(networkMode)) {
      throw new Error(
        `refusing to create a workspace container in another container's network namespace (A4C_NETWORK_MODE=${networkMode}); use bridge, none or a user-defined network`,
      );
    }
    // A limit of 0 means "unlimited" to Docker: never let a missing value mean that.
    if (!(spec.memoryBytes > 0)) throw new Error(`refusing to create a workspace container without a memory limit (memoryBytes=${spec.memoryBytes})`);
    if (!(spec.cpus > 0)) throw new Error(`refusing to create a workspace container without a CPU limit (cpus=${spec.cpus})`);
    // The same default as a tier without pidsLimit (packages/common tiers.ts); 0 or less
    // (an older control plane that sends no resources) would mean unlimited: a fork bomb
    // could exhaust the host's pids.
    const DEFAULT_PIDS_LIMIT = 4096;
    const pidsLimit = Number.isInteger(spec.pidsLimit) && spec.pidsLimit > 0 ? spec.pidsLimit : DEFAULT_PIDS_LIMIT;
    // Every capability is dropped, then only these come back: what root inside a
    // developer workspace needs to install packages, manage files and users of its own
    // container, and run dev servers and sshd. All act within the container's own
    // namespaces. Left out on purpose (from Docker's default set): NET_RAW (raw
    // sockets: ARP/ICMP spoofing and sniffing of neighbours on a bridge), MKNOD (device
    // nodes), SETFCAP (file capabilities), SETPCAP (changing capability sets); and
    // everything Docker never grants (SYS_ADMIN, SYS_PTRACE, SYS_MODULE, NET_ADMIN, ...).
    const CAP_ADD = [
      'CHOWN', // package managers, tar and `chown` give files to the workspace's users
      'DAC_OVERRIDE', // root reads and writes files of other users in the container (apt, npm caches, /workspace)
      'FOWNER', // chmod/utime on files root does not own: tar -p, cp -p, git checkout
      'FSETID', // keep setgid bits on shared directories and package-installed files
      'KILL', // root stops processes started under other users of the container
      'SETGID', // su, sudo, sshd and package maintainer scripts switch groups
      'SETUID', // ... and users (apt drops to _apt, sshd to the logged-in user)
      'NET_BIND_SERVICE', // dev servers on ports below 1024 (80, 443) inside the container
      'SYS_CHROOT', // sshd's privilege-separated pre-auth child chroots (the sshCommand path)
      'AUDIT_WRITE', // sshd, login, su and sudo write PAM audit records; without it PAM logins can fail
    ];
    // The image may ask for more confinement than the tier (labels); applied at creation,
    // so a container is never recreated because its image or tier changed later.
    const confined = workspaceConfinement(
      { readOnlyRootFs: spec.readOnlyRootFs === true, user: spec.user ?? '', runAsNonRoot: spec.runAsNonRoot === true },
      spec.imageConfig,
    );
    if (!confined.ok) throw new Error(`refusing to create the workspace container: ${confined.error}`);
    const { readOnlyRootFs, user } = confined.confinement;
    const c = await this.createCapped(spec.workspaceId, {
      name: `${this.opts.namePrefix ?? ''}${containerName(spec.workspaceId)}`,
      Image: spec.image,
      Hostname: spec.hostname,
      // Unset: the image's USER, as Docker does by default.
      ...(user !== undefined ? { User: user } : {}),
      Labels: {
        [LABEL_MANAGED]: 'true',
        [LABEL_WORKSPACE_ID]: spec.workspaceId,
        [LABEL_USER_ID]: spec.userId,
        [LABEL_HOST_ID]: this.opts.hostId,
        [LABEL_ATTEMPT]: String(spec.attempt),
      },
      StopTimeout: this.opts.stopTimeoutSeconds,
      HostConfig: {
        Memory: spec.memoryBytes,
        // No swap beyond the memory limit: the tier's memory is the workspace's memory.
        MemorySwap: spec.memoryBytes,
        NanoCpus: Math.round(spec.cpus * 1e9),
        PidsLimit: pidsLimit,
        NetworkMode: networkMode,
        // The user's volume is the only mount: no host paths (no Binds), no devices.
        // A read-only root filesystem gets tmpfs scratch space besides (confinement.ts).
        Mounts: [{ Type: 'volume', Source: `${this.opts.namePrefix ?? ''}${spec.volume}`, Target: '/workspace' }],
        ...(readOnlyRootFs ? { ReadonlyRootfs: true, Tmpfs: scratchTmpfs(spec.memoryBytes) } : {}),
        Binds: [],
        Devices: [],
        Privileged: false,
        CapDrop: ['ALL'],
        CapAdd: CAP_ADD,
        PublishAllPorts: false,
        // Its own IPC and cgroup namespaces even where the daemon's default is the host's
        // (cgroup v1): the host's cgroup tree stays out of sight.
        IpcMode: 'private',
        ...({ CgroupnsMode: 'private' } as Record<string, string>),
        // A real init as PID 1 reaps zombies and forwards SIGTERM, so stop is quick.
        Init: true,
        // The agent decides about restarts, with backoff; Docker must not race it.
        RestartPolicy: { Name: 'no' },
        // No setuid binary or file capability can raise a process above this set.
        SecurityOpt: ['no-new-privileges'],
      },
    });
    return c.id;
  }

  /**
   * Creates with the tier's disk as HostConfig.StorageOpt where the driver can cap a
   * writable layer; an engine that refuses the option (xfs without pquota) gets the
   * container without it, and the option is not tried again.
   */
  private async createCapped(workspaceId: string, options: Docker.ContainerCreateOptions): Promise<Docker.Container> {
    const storageOpt = this.opts.storageOpt?.forWorkspace(workspaceId);
    if (!storageOpt) return this.docker.createContainer(options);
    try {
      return await this.docker.createContainer({ ...options, HostConfig: { ...options.HostConfig, StorageOpt: storageOpt } });
    } catch (e) {
      const message = (e as Error).message;
      if (!/storage.?opt|quota|size/i.test(message) || statusOf(e) === 409) throw e;
      this.opts.storageOpt?.refused(message);
      return this.docker.createContainer(options);
    }
  }

  async start(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (e) {
      if (statusOf(e) !== 304) throw e; // already running
    }
  }

  async stop(id: string, timeoutSeconds: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: timeoutSeconds });
    } catch (e) {
      if (statusOf(e) !== 304 && statusOf(e) !== 404) throw e; // already stopped / gone
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: false });
    } catch (e) {
      if (statusOf(e) !== 404 && statusOf(e) !== 409) throw e; // gone / already being removed
    }
  }

  async watch(onEvent: () => void, onEnd: (err?: Error) => void): Promise<() => void> {
    const stream = (await this.docker.getEvents({
      filters: { type: ['container'], label: this.ownFilter },
    })) as NodeJS.ReadableStream & { destroy(): void };
    let ended = false;
    const end = (err?: Error) => {
      if (ended) return;
      ended = true;
      onEnd(err);
    };
    stream.on('data', () => onEvent());
    stream.on('error', (e: Error) => end(e));
    stream.on('end', () => end());
    stream.on('close', () => end());
    return () => {
      ended = true;
      stream.destroy();
    };
  }
}
