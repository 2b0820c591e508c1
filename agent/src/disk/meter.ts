import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { LABEL_HOST_ID, LABEL_MANAGED, LABEL_WORKSPACE_ID, type Logger } from '@a4c/common';
import type { WorkspaceDisk, WorkspaceDiskUsage } from '@a4c/proto';
import type { DesiredView } from './desired.js';

const run = promisify(execFile);

/** Bytes under a directory as `du -skx` counts them (allocated blocks, one filesystem). */
export async function duBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-skx', dir], { maxBuffer: 1024 * 1024, timeout: 10 * 60_000 });
  const kib = Number(stdout.trim().split(/\s+/)[0]);
  if (!Number.isFinite(kib)) throw new Error(`du printed ${JSON.stringify(stdout.slice(0, 200))}`);
  return kib * 1024;
}

export interface DiskMeterOptions {
  hostId: string;
  intervalMs: number;
  /** Whether writable layers are also capped by the storage driver (reported with each measure). */
  layerLimitEnforced: () => boolean;
  now?: () => number;
}

/**
 * Measures what each workspace of this host holds on disk, on a slow period of its own
 * (never per heartbeat): its container's writable layer (SizeRw, which the engine
 * computes by walking the layer) and the user's volume (du of its mountpoint, once per
 * volume per pass, however many workspaces share it). Containers are measured one at a
 * time so a pass never loads the disk much. The control plane decides what to do.
 */
export class DiskMeter {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  lastPass: { at: number; workspaces: number; errors: number } | undefined;

  constructor(
    private readonly docker: Docker,
    private readonly desired: DesiredView,
    private readonly send: (usage: WorkspaceDiskUsage) => boolean,
    private readonly opts: DiskMeterOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.pass(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One measuring pass; a pass still running is joined, not doubled. */
  pass(): Promise<void> {
    return (this.running ??= this.measure()
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'disk measuring pass failed'))
      .finally(() => {
        this.running = undefined;
      }));
  }

  private async measure(): Promise<void> {
    const now = this.opts.now ?? Date.now;
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_HOST_ID}=${this.opts.hostId}`] } });
    const volumes = new Map<string, Promise<number>>();
    const out: WorkspaceDisk[] = [];
    let errors = 0;
    for (const c of containers) {
      const workspaceId = c.Labels[LABEL_WORKSPACE_ID];
      if (!workspaceId || c.Labels[LABEL_HOST_ID] !== this.opts.hostId) continue;
      try {
        // ?size=true: the engine adds SizeRw (dockerode passes the option through; its types omit it).
        const info = (await this.docker.getContainer(c.Id).inspect({ size: true } as Docker.ContainerInspectOptions)) as { SizeRw?: number; Mounts?: { Type?: string; Name?: string; Destination?: string }[] };
        const volume = this.desired.volume(workspaceId) ?? info.Mounts?.find((m) => m.Type === 'volume' && m.Destination === '/workspace')?.Name;
        let volumeBytes = 0;
        if (volume) {
          if (!volumes.has(volume)) volumes.set(volume, this.volumeBytes(volume));
          volumeBytes = await (volumes.get(volume) as Promise<number>);
        }
        out.push({ workspaceId, writableBytes: Math.max(0, info.SizeRw ?? 0), volumeBytes, layerLimitEnforced: this.opts.layerLimitEnforced(), measuredAtUnixMs: now() });
      } catch (e) {
        errors++;
        this.log.warn({ workspaceId, err: (e as Error).message }, 'could not measure a workspace\'s disk');
      }
    }
    this.lastPass = { at: now(), workspaces: out.length, errors };
    if (out.length) this.send({ workspaces: out });
  }

  /** du of the volume's mountpoint on this host. */
  private async volumeBytes(name: string): Promise<number> {
    const v = await this.docker.getVolume(name).inspect();
    return duBytes(v.Mountpoint);
  }
}
