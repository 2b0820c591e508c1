import type { Db, Tx } from './db.js';

export interface EventInput {
  kind: string;
  actor: string;
  workspaceId?: string | null;
  hostId?: string | null;
  data?: Record<string, unknown>;
}

/** Appends to the activity log; call inside the transaction that makes the change. */
export async function appendEvent(tx: Tx | Db, e: EventInput): Promise<void> {
  await tx.query('INSERT INTO events (kind, actor, workspace_id, host_id, data) VALUES ($1, $2, $3, $4, $5)', [
    e.kind,
    e.actor,
    e.workspaceId ?? null,
    e.hostId ?? null,
    JSON.stringify(e.data ?? {}),
  ]);
}
