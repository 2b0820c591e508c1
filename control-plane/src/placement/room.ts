import { A4cError } from '@a4c/common';
import type { Tx } from '../store/db.js';

/** A workspace taking its CPU and memory again on the host it is on (a start of a stopped one). */
export interface Return {
  workspaceId: string;
  hostId: string;
  memoryMb: number;
  cpus: number;
}

/**
 * Locks the host row and checks it has the CPU and memory unreserved (capacity less
 * headroom, less what its workspaces reserve), inside the caller's transaction, which
 * then changes the workspace so the reservation trigger adds it. Lock order as
 * everywhere: the workspace row first (the caller holds it), then its host's row.
 * No room: 503 naming the host, with the choices (delete, or move it elsewhere).
 */
export async function ensureRoomToStart(tx: Tx, r: Return, headroom: number): Promise<void> {
  const { rows } = await tx.query<{ fits: boolean; free_memory_mb: number; free_millicpus: number }>(
    `SELECT reserved_memory_mb + $2 <= floor(memory_bytes / 1048576.0 * $4) AND reserved_millicpus + $3 <= floor(cpus * 1000 * $4) AS fits,
            GREATEST(0, floor(memory_bytes / 1048576.0 * $4) - reserved_memory_mb)::int AS free_memory_mb,
            GREATEST(0, floor(cpus * 1000 * $4) - reserved_millicpus)::int AS free_millicpus
       FROM hosts WHERE id = $1 FOR UPDATE`,
    [r.hostId, r.memoryMb, Math.round(r.cpus * 1000), 1 - headroom],
  );
  const h = rows[0];
  if (!h || h.fits) return;
  throw new A4cError(
    'CAPACITY_EXHAUSTED',
    `host ${r.hostId} has no room to start workspace ${r.workspaceId} again: it needs ${r.memoryMb} MB memory and ${r.cpus} CPUs; ` +
      `${h.free_memory_mb} MB and ${h.free_millicpus / 1000} CPUs are unreserved there (a stopped workspace keeps only its disk on its host)`,
    {
      reason: 'NO_ROOM_ON_HOST',
      hostId: r.hostId,
      suggestion: `move it to a host with room (a4c ws move ${r.workspaceId} --to HOST; \`a4c hosts\` shows free capacity), delete it (a4c ws rm ${r.workspaceId}), or try again once other workspaces on ${r.hostId} stop`,
    },
  );
}
