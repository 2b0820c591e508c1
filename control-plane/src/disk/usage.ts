import { formatBytes, type Logger, type WorkspaceStatus } from '@a4c/common';
import type { WorkspaceDiskUsage } from '@a4c/proto';
import { inTx, type Db } from '../store/db.js';
import { recordDiskSamples, type DiskSample } from '../store/disk.js';
import type { SessionGuard } from '../store/host-sessions.js';
import { appendEvent } from '../store/events.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { canMove, statusesWhere } from '../workspaces/states.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** What a disk past its limit stops: whatever may move to STOPPING (the states table). */
const STOPPABLE: readonly WorkspaceStatus[] = statusesWhere((_r, s) => s !== 'STOPPING' && canMove(s, 'STOPPING'));

/** The workspace's error (and the stop's reason) when its disk is past the limit. */
export function overLimitMessage(usedBytes: number, limitBytes: number, tier: string): string {
  return `used ${formatBytes(usedBytes)} of ${formatBytes(limitBytes)} (tier ${tier}'s disk: writable layer and /workspace); delete files or ask for a bigger tier`;
}

/**
 * An agent's disk measures: recorded, a warning event at warnPercent (once per
 * crossing), and a workspace past its tier's disk stopped through the normal stop path
 * with the reason in its event and its error. Runs on the agent plane's pool.
 */
export async function applyDiskUsage(
  db: Db,
  workspaces: WorkspaceService,
  hostId: string,
  report: WorkspaceDiskUsage,
  warnPercent: number,
  log: Logger,
  live?: SessionGuard,
): Promise<void> {
  const num = (n: number) => (Number.isFinite(n) && n > 0 ? Math.round(n) : 0);
  const samples: DiskSample[] = report.workspaces
    .filter((w) => UUID.test(w.workspaceId))
    .slice(0, 10_000)
    .map((w) => ({ workspaceId: w.workspaceId, writableBytes: num(w.writableBytes), volumeBytes: num(w.volumeBytes), layerLimitEnforced: w.layerLimitEnforced }));
  const standings = await inTx(db, async (tx) => {
    await live?.(tx);
    const all = await recordDiskSamples(tx, hostId, samples, warnPercent);
    for (const s of all.filter((x) => x.crossedWarning)) {
      const percent = Math.round((s.usedBytes / s.limitBytes) * 100);
      await appendEvent(tx, {
        kind: 'workspace.disk_warning',
        actor: `agent:${hostId}`,
        reason: `uses ${formatBytes(s.usedBytes)} of its ${formatBytes(s.limitBytes)} disk (${percent} %); past 100 % it is stopped: delete files or ask for a bigger tier`,
        workspaceId: s.workspaceId,
        hostId,
        userId: s.userId,
        data: { diskUsedBytes: s.usedBytes, diskLimitBytes: s.limitBytes, percent, warnPercent },
      });
    }
    return all;
  });
  for (const s of standings) {
    if (s.usedBytes <= s.limitBytes || !STOPPABLE.includes(s.status)) continue;
    const message = overLimitMessage(s.usedBytes, s.limitBytes, s.tier);
    log.warn({ workspaceId: s.workspaceId, hostId, usedBytes: s.usedBytes, limitBytes: s.limitBytes }, 'workspace past its disk: stopping it');
    await workspaces
      .stop(s.workspaceId, 'control-plane', {
        reason: `disk limit exceeded: ${message}`,
        error: message,
        data: { diskUsedBytes: s.usedBytes, diskLimitBytes: s.limitBytes },
      })
      .catch((e: unknown) => log.warn({ workspaceId: s.workspaceId, err: (e as Error).message }, 'could not stop a workspace past its disk'));
  }
}
