import { statfs } from 'node:fs/promises';
import os from 'node:os';
import si from 'systeminformation';
import type { HostCapacity, HostStats } from '@a4c/proto';
import type { ContainerRuntime } from '../runtime/runtime.js';

export interface DiskUsage {
  totalBytes: number;
  usedBytes: number;
  percent: number;
}

/**
 * The disk that matters is the one holding the Docker data root (images, container
 * layers, volumes), not "/" by chance. statfs(2) on the path itself names exactly that
 * filesystem, whatever is mounted where. Percent is computed as df does: used over
 * what non-root users can have (used + available), so reserved blocks count as full.
 */
export async function diskOf(target: string): Promise<DiskUsage> {
  const s = await statfs(target);
  const used = (s.blocks - s.bfree) * s.bsize;
  const avail = s.bavail * s.bsize;
  return { totalBytes: s.blocks * s.bsize, usedBytes: used, percent: used + avail > 0 ? (used / (used + avail)) * 100 : 0 };
}

export class StatsCollector {
  private diskPath: string | undefined;

  constructor(
    private readonly runtime: ContainerRuntime,
    configuredDiskPath: string | undefined,
    private readonly offer: { memoryMb?: number; cpus?: number; diskGb?: number } = {},
  ) {
    this.diskPath = configuredDiskPath;
  }

  private async resolveDiskPath(): Promise<string> {
    if (!this.diskPath) this.diskPath = (await this.runtime.info()).dataRoot;
    return this.diskPath;
  }

  async capacity(): Promise<HostCapacity> {
    const [mem, disk] = await Promise.all([si.mem(), this.resolveDiskPath().then(diskOf).catch(() => undefined)]);
    const o = this.offer;
    return {
      memoryBytes: o.memoryMb !== undefined ? o.memoryMb * 1024 * 1024 : mem.total,
      cpus: o.cpus ?? os.cpus().length,
      diskBytes: o.diskGb !== undefined ? Math.round(o.diskGb * 1024 ** 3) : (disk?.totalBytes ?? 0),
    };
  }

  async collect(workspaceContainers: number): Promise<HostStats> {
    const [mem, load, engine] = await Promise.all([
      si.mem(),
      si.currentLoad(),
      this.runtime.info().then(
        (i) => ({ ready: true, containers: i.containers }),
        () => ({ ready: false, containers: 0 }),
      ),
    ]);
    const disk = await this.resolveDiskPath().then(diskOf).catch(() => undefined);
    // "available" counts reclaimable page cache as free, as the kernel does for new work.
    const memUsed = mem.total - mem.available;
    return {
      diskPercent: disk?.percent ?? 0,
      memoryPercent: mem.total ? (memUsed / mem.total) * 100 : 0,
      cpuPercent: load.currentLoad,
      workspaceContainers,
      engineContainers: engine.containers,
      diskUsedBytes: disk?.usedBytes ?? 0,
      diskTotalBytes: disk?.totalBytes ?? 0,
      memoryUsedBytes: memUsed,
      memoryTotalBytes: mem.total,
      dockerReady: engine.ready,
    };
  }
}
