import type { WorkspaceStatus } from '@a4c/common';
import type { Tx } from './db.js';
import { diskLimitBytes } from './workspaces.js';

export interface DiskSample {
  workspaceId: string;
  writableBytes: number;
  volumeBytes: number;
  layerLimitEnforced: boolean;
}

export interface DiskStanding {
  workspaceId: string;
  userId: string;
  tier: string;
  status: WorkspaceStatus;
  usedBytes: number;
  limitBytes: number;
  /** At or past the warning threshold now, and was not at the last measure: warn once. */
  crossedWarning: boolean;
}

/**
 * Records a host's measures of its own workspaces (others' and settled ones are
 * ignored) and says where each stands against its tier's disk. The warned flag is set
 * while use is at or past warnPercent and cleared below it, so each crossing warns
 * once. A host's reports arrive one after another on its one session, so the read and
 * the upsert need no lock of their own.
 */
export async function recordDiskSamples(tx: Tx, hostId: string, samples: DiskSample[], warnPercent: number): Promise<DiskStanding[]> {
  if (!samples.length) return [];
  const { rows } = await tx.query<{ id: string; user_id: string; tier: string; status: WorkspaceStatus; disk_gb: number; warned: boolean | null }>(
    `SELECT w.id, w.user_id, w.tier, w.status, w.disk_gb, d.warned
       FROM workspaces w LEFT JOIN workspace_disk d ON d.workspace_id = w.id
      WHERE w.id = ANY($2::uuid[]) AND w.host_id = $1 AND w.status NOT IN ('DELETING', 'DELETED', 'FAILED')`,
    [hostId, samples.map((s) => s.workspaceId)],
  );
  const byId = new Map(samples.map((s) => [s.workspaceId, s]));
  const out: (DiskStanding & { sample: DiskSample; warnedNow: boolean })[] = rows.map((r) => {
    const sample = byId.get(r.id) as DiskSample;
    const usedBytes = sample.writableBytes + sample.volumeBytes;
    const limitBytes = diskLimitBytes(r);
    const warnedNow = limitBytes > 0 && usedBytes * 100 >= limitBytes * warnPercent;
    return { workspaceId: r.id, userId: r.user_id, tier: r.tier, status: r.status, usedBytes, limitBytes, crossedWarning: warnedNow && !r.warned, sample, warnedNow };
  });
  if (!out.length) return [];
  await tx.query(
    `INSERT INTO workspace_disk AS d (workspace_id, host_id, writable_bytes, volume_bytes, layer_limit_enforced, measured_at, warned)
     SELECT id, $1, writable, volume, enforced, now(), warned
       FROM unnest($2::uuid[], $3::bigint[], $4::bigint[], $5::boolean[], $6::boolean[]) AS t(id, writable, volume, enforced, warned)
     ON CONFLICT (workspace_id) DO UPDATE SET host_id = EXCLUDED.host_id, writable_bytes = EXCLUDED.writable_bytes,
       volume_bytes = EXCLUDED.volume_bytes, layer_limit_enforced = EXCLUDED.layer_limit_enforced,
       measured_at = EXCLUDED.measured_at, warned = EXCLUDED.warned, updated_at = now()`,
    [
      hostId,
      out.map((o) => o.workspaceId),
      out.map((o) => o.sample.writableBytes),
      out.map((o) => o.sample.volumeBytes),
      out.map((o) => o.sample.layerLimitEnforced),
      out.map((o) => o.warnedNow),
    ],
  );
  return out.map(({ sample: _s, warnedNow: _w, ...standing }) => standing);
}
