import type { HostEvent, HostStats, ImageInfo } from '@a4c/proto';
import { agentEventKind } from '../events/kinds.js';
import type { EventInput } from '../store/events.js';
import type { HostImageRow, HostStatsColumns } from '../store/host-sessions.js';
import type { HostStatsJson } from '../store/hosts.js';

/** What the agent sends is checked here, once, before it reaches the store. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const pct = (n: number) => (Number.isFinite(n) ? Math.min(100, Math.max(0, Math.round(n * 100) / 100)) : 100);

/** No stats: a host placement must skip (full, Docker not ready). */
export function statsColumns(s: HostStats | undefined): HostStatsColumns {
  if (!s) return { json: null, diskPercent: 100, memoryPercent: 100, dockerReady: false };
  const stats: HostStatsJson = {
    diskPercent: pct(s.diskPercent),
    memoryPercent: pct(s.memoryPercent),
    cpuPercent: pct(s.cpuPercent),
    workspaceContainers: s.workspaceContainers,
    engineContainers: s.engineContainers,
    dockerReady: s.dockerReady,
    diskUsedBytes: s.diskUsedBytes,
    diskTotalBytes: s.diskTotalBytes,
    memoryUsedBytes: s.memoryUsedBytes,
    memoryTotalBytes: s.memoryTotalBytes,
  };
  return { json: JSON.stringify(stats), diskPercent: stats.diskPercent, memoryPercent: stats.memoryPercent, dockerReady: s.dockerReady };
}

export function imageRows(images: ImageInfo[]): HostImageRow[] {
  return images
    .filter((i) => i.ref && i.ref.length <= 512)
    .map((i) => ({ ref: i.ref, imageId: i.imageId, project: i.project, arch: i.arch, changeNumber: i.changeNumber, createdUnix: i.createdUnix }));
}

/** An agent's own event (orphan removed, container vanished or exited), as an activity-log row. */
export function hostEventRow(hostId: string, e: HostEvent): EventInput {
  const kind = /^[a-z_]{1,40}$/.test(e.kind) ? e.kind : 'unknown';
  return {
    kind: agentEventKind(kind),
    actor: `agent:${hostId}`,
    reason: e.message.slice(0, 500) || kind,
    workspaceId: UUID.test(e.workspaceId) ? e.workspaceId : null,
    hostId,
    data: {
      containerId: e.containerId.slice(0, 64) || null,
      ...(agentEventKind(kind) === 'agent.unknown' ? { reportedKind: kind } : {}),
      message: e.message.slice(0, 2000),
      ...(kind === 'container_exited' ? { exitCode: e.exitCode, oomKilled: e.oomKilled } : {}),
      at: Number.isFinite(e.atUnixMs) && e.atUnixMs > 0 ? new Date(e.atUnixMs).toISOString() : null,
    },
  };
}
