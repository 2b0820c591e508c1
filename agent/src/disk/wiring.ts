import Docker from 'dockerode';
import type { Logger } from '@a4c/common';
import type { AgentMessage, WorkspaceSpec } from '@a4c/proto';
import type { AgentConfig } from '../config.js';
import { ImageGc } from '../images/gc.js';
import { dockerOptions } from '../runtime/docker.js';
import { diskOf } from '../stats/collector.js';
import { DesiredView } from './desired.js';
import { DiskMeter } from './meter.js';
import { StorageOptLimit } from './storage-opt.js';

/**
 * Disk and images on this host, put together for agent.ts: the tier's disk as a
 * storage-driver cap where possible (given to the runtime), the periodic measure of
 * each workspace's disk, and image garbage collection.
 */
export class DiskAndImages {
  readonly desired = new DesiredView();
  readonly storageOpt: StorageOptLimit;
  private readonly docker: Docker;
  private meter: DiskMeter | undefined;
  private gc: ImageGc | undefined;
  private stopped = false;

  constructor(
    private readonly config: AgentConfig,
    private readonly send: (m: AgentMessage) => boolean,
    private readonly log: Logger,
    /** Ids of the builds running on this host (their images are never pruned). */
    private readonly buildsInFlight: () => string[] = () => [],
  ) {
    this.docker = new Docker(dockerOptions(config.dockerHost, 120_000));
    this.storageOpt = new StorageOptLimit(this.desired, log);
  }

  onDesiredState(workspaces: WorkspaceSpec[]): void {
    this.desired.update(workspaces);
  }

  /**
   * Detects the storage driver's abilities, then measures and collects on their
   * periods. Not awaited by the agent's start: an engine slow to answer `docker info`
   * must not hold up the agent (until it answers, writable layers are not capped).
   */
  async start(): Promise<void> {
    const c = this.config;
    await this.storageOpt.detect(this.docker, c.disk.storageOpt).catch((e: unknown) => {
      this.log.warn({ err: (e as Error).message }, 'could not ask the engine about its storage driver; measuring disk use only');
    });
    if (this.stopped) return;
    this.meter = new DiskMeter(
      this.docker,
      this.desired,
      (value) => this.send({ payload: { $case: 'diskUsage', value } }),
      { hostId: c.hostId, intervalMs: c.disk.measureIntervalMs, layerLimitEnforced: () => this.storageOpt.enforced },
      this.log,
    );
    this.gc = new ImageGc(
      { ...c.imageGc, stateDir: c.stateDir },
      {
        docker: this.docker,
        diskPercent: async () => (await diskOf(c.diskPath ?? ((await this.docker.info()) as { DockerRootDir: string }).DockerRootDir)).percent,
        desiredImages: () => (this.desired.known ? this.desired.images() : undefined),
        send: (value) => this.send({ payload: { $case: 'imagesPruned', value } }),
        buildsInFlight: this.buildsInFlight,
      },
      this.log,
    );
    this.meter.start();
    this.gc.start();
  }

  stop(): void {
    this.stopped = true;
    this.meter?.stop();
    this.gc?.stop();
  }

  snapshot(): Record<string, unknown> {
    return {
      storageOpt: { enforced: this.storageOpt.enforced, reason: this.storageOpt.reason },
      lastMeasure: this.meter?.lastPass ?? null,
      imageGc: { ...this.config.imageGc, lastRun: this.gc?.lastRun ?? null },
    };
  }
}
