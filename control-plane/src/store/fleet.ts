import type { WorkspaceStatus } from '@a4c/common';
import type { Db } from './db.js';
import type { EventScope } from './events.js';
import { containsPattern, decodePageCursor, encodePageCursor, type PageKey } from './paging.js';
import { viewSql, type WorkspaceRow } from './workspaces.js';

export type FleetSort = '-createdAt' | 'createdAt' | '-updatedAt' | 'updatedAt';

export interface FleetQuery {
  statuses?: WorkspaceStatus[] | undefined;
  userId?: string | undefined;
  teamId?: string | undefined;
  hostId?: string | undefined;
  project?: string | undefined;
  tier?: string | undefined;
  q?: string | undefined;
  sort: FleetSort;
  limit: number;
  cursor?: string | undefined;
  /** Whose workspaces the caller may see (the same rule as for events). */
  scope: EventScope;
}

/**
 * The text `q` searches: names, project, hostname, host id, failed step and error,
 * lowercased. The same expression is indexed with pg_trgm (migration 021), so both a
 * substring (LIKE '%q%') and a near miss (q <% text: word similarity) are found
 * through the index. Near misses are looked for only when nothing contains q as it is:
 * `rack2-node` must not also bring every `rack1-node`, but `out of memroy` should
 * still find the out-of-memory failures. A page's cursor remembers which it was.
 */
export const WORKSPACE_TEXT_SQL = 'a4c_ws_text(w.name, w.project_name, w.hostname, w.host_id, w.failed_step, w.error)';
const SIMILAR = 'similar';

const SORT_COLUMN: Record<FleetSort, 'created_at' | 'updated_at'> = {
  '-createdAt': 'created_at',
  createdAt: 'created_at',
  '-updatedAt': 'updated_at',
  updatedAt: 'updated_at',
};

/**
 * Workspaces matching the filters, in the sort's order, a page at a time (keyset: see
 * paging.ts). Only the conditions in use are in the SQL, so each combination gets a
 * plan of its own, using the index for its filter (see bench/search.ts).
 */
/**
 * Near misses are looked for only for words (letters and spaces, 4 to 64 characters):
 * typos happen in words like "memroy", and a near miss of an identifier (a hostname, an
 * id) is a different thing, not a typo. Word similarity must also compare q with every
 * candidate the index yields, which for long identifiers is most of the fleet.
 */
const WORDS = /^[\p{L} ]{4,64}$/u;

export async function searchWorkspaces(db: Db, f: FleetQuery, liveWithinSeconds: number): Promise<{ rows: WorkspaceRow[]; nextCursor: string | null }> {
  const cursor = f.cursor ? decodePageCursor(f.cursor) : undefined;
  if (!f.q) return page(db, f, liveWithinSeconds, cursor, undefined);
  if (cursor) return page(db, f, liveWithinSeconds, cursor, cursor.mode === SIMILAR ? SIMILAR : 'substring');
  const exact = await page(db, f, liveWithinSeconds, undefined, 'substring');
  return exact.rows.length || !WORDS.test(f.q) ? exact : page(db, f, liveWithinSeconds, undefined, SIMILAR);
}

async function page(
  db: Db,
  f: FleetQuery,
  liveWithinSeconds: number,
  cursor: PageKey | undefined,
  textMode: 'substring' | typeof SIMILAR | undefined,
): Promise<{ rows: WorkspaceRow[]; nextCursor: string | null }> {
  const params: unknown[] = [liveWithinSeconds];
  const p = (v: unknown) => `$${params.push(v)}`;
  const where: string[] = [];
  where.push(f.statuses?.length ? `w.status = ANY(${p(f.statuses)}::text[])` : `w.status <> 'DELETED'`);
  if (f.userId) where.push(`w.user_id = ${p(f.userId)}`);
  if (f.teamId) where.push(`w.user_id IN (SELECT id FROM users WHERE team_id = ${p(f.teamId)})`);
  if (f.hostId) where.push(`w.host_id = ${p(f.hostId)}`);
  if (f.project) where.push(`w.project_name = ${p(f.project)}`);
  if (f.tier) where.push(`w.tier = ${p(f.tier)}`);
  if (f.q && textMode === 'substring') where.push(`${WORKSPACE_TEXT_SQL} LIKE ${p(containsPattern(f.q))}`);
  if (f.q && textMode === SIMILAR) where.push(`${p(f.q.toLowerCase())} <% ${WORKSPACE_TEXT_SQL}`);
  if (!f.scope.all) {
    // One IN over a union, not an OR: the planner treats it as the list of owners it is.
    const me = p(f.scope.userId);
    where.push(f.scope.teamId ? `w.user_id IN (SELECT id FROM users WHERE team_id = ${p(f.scope.teamId)} UNION SELECT ${me}::text)` : `w.user_id = ${me}`);
  }
  const col = SORT_COLUMN[f.sort];
  const desc = f.sort.startsWith('-');
  if (cursor) where.push(`(w.${col}, w.id) ${desc ? '<' : '>'} (${p(cursor.key)}::timestamptz, ${p(cursor.id)}::uuid)`);
  const dir = desc ? 'DESC' : 'ASC';
  const order = `ORDER BY w.${col} ${dir}, w.id ${dir}`;
  // The page first, then its hosts' liveness: never joined for rows the page drops.
  const pageSql = `(SELECT w.*, w.${col}::text AS page_key FROM workspaces w WHERE ${where.join(' AND ')} ${order} LIMIT ${p(f.limit + 1)})`;
  // Planned for each call (a query object, not a named prepared statement, see
  // store/db.ts): how many rows q or a filter matches differs by orders of magnitude
  // between values, and a generic plan would pick one way for all of them.
  const { rows } = await db.query<WorkspaceRow & { page_key: string }>({ text: `${viewSql(pageSql)} ${order}`, values: params });
  const more = rows.length > f.limit;
  const got = rows.slice(0, f.limit);
  const last = got[got.length - 1];
  return { rows: got, nextCursor: more && last ? encodePageCursor({ key: last.page_key, id: last.id, mode: textMode === SIMILAR ? SIMILAR : undefined }) : null };
}
