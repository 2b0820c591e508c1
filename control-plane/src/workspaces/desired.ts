import { userVolumeName } from '@a4c/common';
import { RunState, type WorkspaceSpec } from '@a4c/proto';
import type { Db } from '../store/db.js';
import { desiredWorkspacesOfHost, type WorkspaceRow } from '../store/workspaces.js';
import { stateOf } from './states.js';

/** The host's revision and desired workspaces, read in one snapshot. */
export async function loadDesired(db: Db, hostId: string): Promise<{ revision: number; rows: WorkspaceRow[] }> {
  const client = await db.connect();
  try {
    // One snapshot for both reads, so the rows are exactly those of the revision.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows: h } = await client.query<{ revision: number }>('SELECT revision FROM hosts WHERE id = $1', [hostId]);
    const rows = await desiredWorkspacesOfHost(client, hostId);
    await client.query('COMMIT');
    return { revision: h[0]?.revision ?? 0, rows };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/** A desired workspace as the agent gets it; its run state is the state table's. */
export function toSpec(r: WorkspaceRow): WorkspaceSpec {
  const stopped = stateOf(r.status).desired === 'stopped';
  return {
    workspaceId: r.id,
    userId: r.user_id,
    // A moved workspace's container is made from its source container, committed.
    image: r.run_image ?? r.image,
    hostname: (r.hostname ?? r.id).split('.')[0] as string,
    runState: stopped ? RunState.RUN_STATE_STOPPED : RunState.RUN_STATE_RUNNING,
    resources: {
      memoryBytes: r.memory_mb * 1024 * 1024,
      cpus: r.cpus,
      pidsLimit: r.pids_limit,
      diskBytes: Math.round(r.disk_gb * 1024 ** 3),
    },
    volume: userVolumeName(r.user_id),
    specRevision: r.desired_revision,
    attempt: r.attempt,
    pullFrom: r.pull_ref ?? '',
    confinement: {
      readOnlyRootFs: r.read_only_rootfs,
      user: r.run_as_user ?? '',
      runAsNonRoot: r.run_as_non_root,
    },
  };
}
