import Docker from 'dockerode';
import {
  LABEL_ATTEMPT,
  LABEL_HOST_ID,
  LABEL_MANAGED,
  LABEL_USER_ID,
  LABEL_WORKSPACE_ID,
  containerName,
} from '@a4c/common';
import type { ContainerDetails, ContainerRuntime, CreateSpec, EngineInfo, ImageSummary, OwnedContainer } from './runtime.js';

export interface DockerRuntimeOptions {
  dockerHost: string | undefined;
  hostId: string;
  networkMode: string;
  stopTimeoutSeconds: number;
}

/** dockerode options from a DOCKER_HOST value (unix:// or tcp://); unset: the default socket. */
export function dockerOptions(dockerHost: string | undefined, timeoutMs?: number): Docker.DockerOptions {
  const base: Docker.DockerOptions = timeoutMs ? { timeout: timeoutMs } : {};
  if (!dockerHost) return { ...base, socketPath: '/var/run/docker.sock' };
  if (dockerHost.startsWith('unix://')) return { ...base, socketPath: dockerHost.slice('unix://'.length) };
  const u = new URL(dockerHost.replace(/^tcp:/, 'http:'));
  return { ...base, host: u.hostname, port: Number(u.port || 2375), protocol: 'http' };
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

  async hasImage(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (e) {
      if (statusOf(e) === 404) return false;
      throw e;
    }
  }

  async listImages(): Promise<ImageSummary[]> {
    const images = await this.docker.listImages();
    return images.flatMap((img) =>
      (img.RepoTags ?? [])
        .filter((t) => t !== '<none>:<none>')
        .map((ref) => ({ ref, imageId: img.Id, labels: img.Labels ?? {}, createdUnix: img.Created })),
    );
  }

  async create(spec: CreateSpec): Promise<string> {
    const c = await this.docker.createContainer({
      name: containerName(spec.workspaceId),
      Image: spec.image,
      Hostname: spec.hostname,
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
        PidsLimit: spec.pidsLimit,
        NetworkMode: this.opts.networkMode,
        Mounts: [{ Type: 'volume', Source: spec.volume, Target: '/workspace' }],
        // A real init as PID 1 reaps zombies and forwards SIGTERM, so stop is quick.
        Init: true,
        // The agent decides about restarts, with backoff; Docker must not race it.
        RestartPolicy: { Name: 'no' },
        SecurityOpt: ['no-new-privileges'],
      },
    });
    return c.id;
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
