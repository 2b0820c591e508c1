import type Docker from 'dockerode';
import type { Logger } from '@a4c/common';
import type { DesiredView } from './desired.js';

/**
 * Caps a workspace's writable layer at its tier's disk with --storage-opt size= where the
 * engine's storage driver can (overlay2 on xfs mounted with pquota). `docker info` tells
 * the driver and its backing filesystem but not the pquota mount option, so on overlay2
 * over xfs the cap is tried, and the first refusal turns it off for good (the measuring
 * path then does the job alone). Decided once, from `docker info` at start-up.
 */
export class StorageOptLimit {
  private supported = false;
  reason = 'not detected yet';

  constructor(
    private readonly desired: DesiredView,
    private readonly log: Logger,
  ) {}

  async detect(docker: Docker, mode: 'auto' | 'off'): Promise<void> {
    if (mode === 'off') {
      this.reason = 'A4C_STORAGE_OPT=off';
      return;
    }
    const info = (await docker.info()) as { Driver?: string; DriverStatus?: [string, string][] | null };
    const backing = (info.DriverStatus ?? []).find(([k]) => k === 'Backing Filesystem')?.[1] ?? '';
    this.supported = info.Driver === 'overlay2' && backing === 'xfs';
    this.reason = this.supported
      ? 'overlay2 on xfs: writable layers are capped with --storage-opt size (needs the pquota mount option)'
      : `storage driver ${info.Driver ?? 'unknown'} on ${backing || 'an unknown filesystem'} cannot cap a writable layer; disk use is measured instead`;
    this.log.info({ storageOpt: this.supported, driver: info.Driver, backing }, this.reason);
  }

  get enforced(): boolean {
    return this.supported;
  }

  /** HostConfig.StorageOpt for a new workspace container; undefined when not capped. */
  forWorkspace(workspaceId: string): Record<string, string> | undefined {
    const bytes = this.desired.diskBytes(workspaceId);
    return this.supported && bytes > 0 ? { size: String(bytes) } : undefined;
  }

  /** The engine refused the option (xfs without pquota): measure only from now on. */
  refused(message: string): void {
    if (!this.supported) return;
    this.supported = false;
    this.reason = `the engine refused --storage-opt size (${message}); disk use is measured instead`;
    this.log.warn({ err: message }, 'writable layers cannot be capped on this host; measuring them instead');
  }
}
