import { notFound } from '@a4c/common';
import type { Db, Tx } from '../store/db.js';
import { getWorkspace, type WorkspaceRow } from '../store/workspaces.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The workspace's row (locked for update if asked), or the 404 a user sees for an unknown id. */
export async function mustGetWorkspace(db: Db | Tx, id: string, forUpdate = false): Promise<WorkspaceRow> {
  const row = UUID.test(id) ? await getWorkspace(db, id, forUpdate) : undefined;
  if (!row) throw notFound('workspace', id, 'list your workspaces with `a4c ws list`');
  return row;
}
