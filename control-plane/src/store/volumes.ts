import type { Db } from './db.js';

export interface VolumeView {
  /** The Docker volume (a4c-home-<user>): one per user and host, shared by their projects there. */
  name: string;
  hostId: string;
  project: string;
  sizeBytes: number | null;
  measuredAt: string | null;
  lastUsedAt: string;
}

interface VolumeRow {
  user_id: string;
  host_id: string;
  project: string;
  name: string;
  size_bytes: number | null;
  measured_at: Date | null;
  last_used_at: Date;
}

export async function listVolumesOfUser(db: Db, userId: string): Promise<VolumeView[]> {
  const { rows } = await db.query<VolumeRow>('SELECT * FROM volumes WHERE user_id = $1 ORDER BY last_used_at DESC, host_id, project', [userId]);
  return rows.map((r) => ({
    name: r.name,
    hostId: r.host_id,
    project: r.project,
    sizeBytes: r.size_bytes,
    measuredAt: r.measured_at?.toISOString() ?? null,
    lastUsedAt: r.last_used_at.toISOString(),
  }));
}
