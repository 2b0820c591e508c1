import { DESIRED_STATUSES, sqlList } from '../workspaces/states.js';
import type { Db, Tx } from './db.js';
import type { WorkspaceRow } from './workspaces.js';

/** What one host's desired state is read from, as of `since` (-1: the whole set). */
export interface DesiredQuery {
  hostId: string;
  since: number;
}

/**
 * One host's answer. complete: `rows` are the whole desired set (asked for, or the
 * host's floor is above `since`, migration 130); otherwise `rows` are the workspaces
 * whose desired state changed after `since`, those that left the set included (their
 * status is then outside it).
 */
export interface DesiredRows {
  revision: number;
  complete: boolean;
  rows: WorkspaceRow[];
}

type Row = WorkspaceRow & { q_host: string; q_revision: number; q_complete: boolean };

const DESIRED_SQL = sqlList(DESIRED_STATUSES);
const WITH_PULL = `SELECT w.*, r.pull_ref FROM workspaces w LEFT JOIN registry_images r ON r.ref = COALESCE(w.run_image, w.image)`;

/**
 * Many hosts' desired states in one statement, so in one snapshot: each host's rows are
 * exactly those of the revision read beside them. The two branches exclude each other
 * on the host's own parameters, so each uses its index (workspaces_host for the whole
 * set, workspaces_host_desired_revision for a delta).
 */
const BATCH_SQL = `
  WITH q AS (
    SELECT x.host_id, h.revision, (x.since < 0 OR x.since < COALESCE(f.floor, 0)) AS complete, x.since
      FROM unnest($1::text[], $2::bigint[]) AS x(host_id, since)
      JOIN hosts h ON h.id = x.host_id
      LEFT JOIN host_desired_floors f ON f.host_id = x.host_id)
  SELECT q.host_id AS q_host, q.revision AS q_revision, q.complete AS q_complete, w.*
    FROM q LEFT JOIN LATERAL (
      ${WITH_PULL} WHERE q.complete AND w.host_id = q.host_id AND w.status IN (${DESIRED_SQL})
      UNION ALL
      ${WITH_PULL} WHERE NOT q.complete AND w.host_id = q.host_id AND w.desired_revision > q.since
    ) w ON true
   ORDER BY q.host_id, w.created_at, w.id`;

export async function loadDesiredRows(db: Db | Tx, queries: readonly DesiredQuery[]): Promise<Map<string, DesiredRows>> {
  const out = new Map<string, DesiredRows>();
  if (!queries.length) return out;
  const { rows } = await db.query<Row>(BATCH_SQL, [queries.map((q) => q.hostId), queries.map((q) => q.since)]);
  for (const r of rows) {
    let host = out.get(r.q_host);
    if (!host) {
      host = { revision: r.q_revision, complete: r.q_complete, rows: [] };
      out.set(r.q_host, host);
    }
    if (r.id === null) continue; // the host has no rows to send
    host.rows.push(r); // the q_ columns ride along unread
  }
  // A host that is not (or no longer) in the table has an empty set at revision 0.
  for (const q of queries) if (!out.has(q.hostId)) out.set(q.hostId, { revision: 0, complete: true, rows: [] });
  return out;
}

/**
 * Records that the workspaces' desired state changed at `revision` of their host (after
 * the caller bumped it in the same transaction): a delta since an older revision names them.
 */
export async function stampDesiredRevision(tx: Tx, workspaceIds: readonly string[], revision: number): Promise<void> {
  if (!workspaceIds.length) return;
  await tx.query('UPDATE workspaces SET desired_revision = $2 WHERE id = ANY($1::uuid[])', [workspaceIds, revision]);
}
