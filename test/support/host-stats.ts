import type { HostStats } from '@a4c/proto';

/** Stats of a healthy, nearly empty host, for agent streams a test drives by hand. */
export const STATS: HostStats = {
  diskPercent: 10,
  memoryPercent: 10,
  cpuPercent: 1,
  workspaceContainers: 0,
  engineContainers: 0,
  dockerReady: true,
  diskUsedBytes: 1,
  diskTotalBytes: 10,
  memoryUsedBytes: 1,
  memoryTotalBytes: 10,
};
