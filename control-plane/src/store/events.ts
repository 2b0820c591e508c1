import type { ActivityEvent } from '@a4c/common';
import type { EventKind } from '../events/kinds.js';
import type { Db, Tx } from './db.js';

/** Each changed field, as it was and as it is now. */
export type Changes = Record<string, { from: unknown; to: unknown }>;

export interface EventInput {
  kind: EventKind;
  /** Who did it: a user id, `admin`, `agent:<host>`, or `control-plane` for its own sweeps. */
  actor: string;
  /** Why, for a person reading the log. */
  reason: string;
  workspaceId?: string | null;
  hostId?: string | null;
  buildId?: string | null;
  /** Whose thing this is about; default: the owner of the workspace or build. Decides who may read the event. */
  userId?: string | null;
  changes?: Changes;
  data?: Record<string, unknown>;
}

/** The fields of `to` whose values differ from `from`. */
export function changesOf(from: Record<string, unknown>, to: Record<string, unknown>): Changes {
  const out: Changes = {};
  for (const [k, v] of Object.entries(to)) {
    if (JSON.stringify(from[k] ?? null) !== JSON.stringify(v ?? null)) out[k] = { from: from[k] ?? null, to: v ?? null };
  }
  return out;
}

/**
 * Appends to the activity log; call inside the transaction that makes the change. The
 * row records the transaction's id (xid, by the column default), and a statement
 * trigger NOTIFYs a4c_event, delivered at commit, so followers on every replica look.
 */
export async function appendEvent(tx: Tx | Db, e: EventInput): Promise<void> {
  await tx.query(
    `INSERT INTO events (kind, actor, reason, workspace_id, host_id, build_id, user_id, changes, data)
     VALUES ($1, $2, $3, $4, $5, $6,
             COALESCE($7, (SELECT user_id FROM workspaces WHERE id = $4), (SELECT user_id FROM image_builds WHERE id = $6)),
             $8, $9)`,
    [
      e.kind,
      e.actor,
      e.reason,
      e.workspaceId ?? null,
      e.hostId ?? null,
      e.buildId ?? null,
      e.userId ?? null,
      JSON.stringify(e.changes ?? {}),
      JSON.stringify(e.data ?? {}),
    ],
  );
}

// ---------------------------------------------------------------- reading and following

/**
 * Where a reader is in the log: events are ordered by (xid, id), and a cursor stands
 * after every event at or before it in that order.
 *
 * Why not `id > last`: ids come from a sequence when the row is inserted, but rows
 * become visible when their transaction commits, in another order. A reader that saw
 * id 7 and remembered 7 skips id 6 if 6's transaction commits afterwards.
 *
 * What we do instead (the xid8 + snapshot-xmin watermark): each event row carries its
 * transaction's id, and a read only returns events whose transaction id is below the
 * xmin of the read's own snapshot, i.e. older than every transaction still running.
 * Each of those transactions has finished (committed, and visible to that snapshot, or
 * rolled back), so no event can ever again appear at or below a position a reader has
 * passed: a resumed stream neither skips nor repeats. Within one transaction, ids are
 * in insertion order.
 *
 * Why this and not a commit-ordered counter (one row every event-writing transaction
 * updates): the counter's row lock would be held from the event's insert to commit,
 * serialising every state change in the fleet (placements, agent reports) behind one
 * row. The watermark costs writers nothing; readers pay with latency instead: an
 * event is delivered once every transaction older than it has ended (milliseconds,
 * normally). A transaction left open (idle in transaction, a forgotten 2PC) holds
 * delivery back until it ends: set idle_in_transaction_session_timeout. xid8 never
 * wraps around.
 */
export interface Cursor {
  xid: bigint;
  id: bigint;
}

const ID_MAX = 9223372036854775807n;
export const CURSOR_START: Cursor = { xid: 0n, id: 0n };
export const CURSOR_PATTERN = /^(\d{1,20})-(\d{1,20})$/;

export function encodeCursor(c: Cursor): string {
  return `${c.xid}-${c.id}`;
}

export function decodeCursor(s: string): Cursor | undefined {
  const m = CURSOR_PATTERN.exec(s);
  if (!m) return undefined;
  const c = { xid: BigInt(m[1] as string), id: BigInt(m[2] as string) };
  return c.xid <= ID_MAX && c.id <= ID_MAX ? c : undefined;
}

export function compareCursors(a: Cursor, b: Cursor): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  return a.id === b.id ? 0 : a.id < b.id ? -1 : 1;
}

/** The position just below a watermark: past every event whose transaction is older than it. */
function belowWatermark(xmin: bigint): Cursor {
  return { xid: xmin - 1n, id: ID_MAX };
}

export type EventView = ActivityEvent;

/** An event as a follower matches it: its view, its position, and its user's team now. */
export interface LoggedEvent {
  view: EventView;
  at: Date;
  position: Cursor;
  teamId: string | null;
}

export interface EventFilter {
  workspaceId?: string | undefined;
  hostId?: string | undefined;
  userId?: string | undefined;
  buildId?: string | undefined;
  kinds?: string[] | undefined;
  since?: Date | undefined;
}

/**
 * Whose events a principal may read: everything (admins); or their own things' events,
 * and (a lead) those of their team's members. Events about no user (hosts, join tokens,
 * team quotas) are admins' only.
 */
export type EventScope = { all: true } | { all: false; userId: string; teamId: string | null };

interface EventRow {
  watermark: string;
  id: number | null;
  xid: string;
  at: Date;
  kind: string;
  actor: string;
  reason: string;
  workspace_id: string | null;
  host_id: string | null;
  user_id: string | null;
  build_id: string | null;
  changes: Changes;
  data: Record<string, unknown>;
  team_id?: string | null;
}

export interface EventPage {
  events: LoggedEvent[];
  /** Past every event this read could see (and filtered): where the next read starts. */
  covered: Cursor;
}

/**
 * Events after a cursor, oldest first, at most limit, of those whose transactions
 * ended (see Cursor). One statement, so the watermark and the rows come from one
 * snapshot. The SQL holds only the conditions in use: each combination is its own
 * prepared statement with its own plan (see store/db.ts).
 */
export async function readEvents(
  db: Db,
  o: { after: Cursor; filter: EventFilter; scope: EventScope; limit: number; withTeam?: boolean },
): Promise<EventPage> {
  const after = o.filter.since ? maxCursor(o.after, await sinceBound(db, o.filter.since)) : o.after;
  const params: unknown[] = [after.xid.toString(), after.id.toString(), o.limit];
  const p = (v: unknown) => `$${params.push(v)}`;
  const where = ['e.xid < w.xmin', '(e.xid, e.id) > ($1::xid8, $2::bigint)'];
  const f = o.filter;
  if (f.workspaceId) where.push(`e.workspace_id = ${p(f.workspaceId)}::uuid`);
  if (f.hostId) where.push(`e.host_id = ${p(f.hostId)}`);
  if (f.userId) where.push(`e.user_id = ${p(f.userId)}`);
  if (f.buildId) where.push(`e.build_id = ${p(f.buildId)}::uuid`);
  if (f.kinds?.length) where.push(f.kinds.length === 1 ? `e.kind = ${p(f.kinds[0])}` : `e.kind = ANY(${p(f.kinds)}::text[])`);
  if (f.since) where.push(`e.at >= ${p(f.since)}`);
  if (!o.scope.all) {
    // One IN over a union, not an OR: the planner treats it as the list of owners it is.
    const me = p(o.scope.userId);
    where.push(o.scope.teamId ? `e.user_id IN (SELECT id FROM users WHERE team_id = ${p(o.scope.teamId)} UNION SELECT ${me}::text)` : `e.user_id = ${me}`);
  }
  const { rows } = await db.query<EventRow>(
    `WITH w AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
     SELECT w.xmin::text AS watermark, e.* FROM w LEFT JOIN LATERAL (
       SELECT e.id, e.xid::text AS xid, e.at, e.kind, e.actor, e.reason, e.workspace_id, e.host_id, e.user_id, e.build_id, e.changes, e.data
              ${o.withTeam ? ', (SELECT u.team_id FROM users u WHERE u.id = e.user_id) AS team_id' : ''}
         FROM events e WHERE ${where.join(' AND ')}
        ORDER BY e.xid, e.id LIMIT $3) e ON true`,
    params,
  );
  const watermark = BigInt((rows[0] as EventRow).watermark);
  const events = rows.filter((r) => r.id !== null).map(toLogged);
  const last = events[events.length - 1];
  let covered = events.length === o.limit && last ? last.position : belowWatermark(watermark);
  if (compareCursors(covered, after) < 0) covered = after;
  return { events, covered };
}

const maxCursor = (a: Cursor, b: Cursor) => (compareCursors(a, b) >= 0 ? a : b);

/**
 * Where to start reading for ?since. Events are in transaction-id order, not time order,
 * so a time becomes a cursor: past the transaction of the last event that began more
 * than SINCE_SLACK before `since`. A transaction id is assigned after its transaction
 * begins, so, as long as transactions last less than SINCE_SLACK, that id was assigned
 * before `since`, and every event at or after `since` comes after it. The time filter
 * then drops what precedes `since`. Without this, ?since walks the log from its start
 * (seconds on five million events: bench/search.ts).
 */
const SINCE_SLACK_SECONDS = 600;

async function sinceBound(db: Db, since: Date): Promise<Cursor> {
  const { rows } = await db.query<{ xid: string }>(
    `SELECT xid::text AS xid FROM events WHERE at < $1::timestamptz - make_interval(secs => $2) ORDER BY at DESC LIMIT 1`,
    [since, SINCE_SLACK_SECONDS],
  );
  const r = rows[0];
  return r ? { xid: BigInt(r.xid), id: ID_MAX } : CURSOR_START;
}

function toLogged(r: EventRow): LoggedEvent {
  const position = { xid: BigInt(r.xid), id: BigInt(r.id as number) };
  return {
    at: r.at,
    position,
    teamId: r.team_id ?? null,
    view: {
      id: r.id as number,
      cursor: encodeCursor(position),
      at: r.at.toISOString(),
      kind: r.kind,
      actor: r.actor,
      reason: r.reason,
      workspaceId: r.workspace_id,
      hostId: r.host_id,
      userId: r.user_id,
      buildId: r.build_id,
      changes: r.changes,
      data: r.data,
    },
  };
}

/** Where a follower starting "now" begins: past every event already deliverable. */
export async function headCursor(db: Db): Promise<Cursor> {
  const { rows } = await db.query<{ xmin: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin');
  return belowWatermark(BigInt((rows[0] as { xmin: string }).xmin));
}

/** Are there committed events not yet deliverable (an older transaction still runs)? */
export async function eventsPending(db: Db, after: Cursor): Promise<boolean> {
  const { rows } = await db.query<{ pending: boolean }>('SELECT EXISTS (SELECT 1 FROM events WHERE xid > $1::xid8) AS pending', [after.xid.toString()]);
  return rows[0]?.pending ?? false;
}

/** The same rules as readEvents' SQL, for events a follower already holds in memory. */
export function eventMatches(e: LoggedEvent, f: EventFilter, scope: EventScope): boolean {
  const v = e.view;
  if (f.workspaceId && v.workspaceId !== f.workspaceId) return false;
  if (f.hostId && v.hostId !== f.hostId) return false;
  if (f.userId && v.userId !== f.userId) return false;
  if (f.buildId && v.buildId !== f.buildId) return false;
  if (f.kinds?.length && !f.kinds.includes(v.kind)) return false;
  if (f.since && e.at < f.since) return false;
  if (!scope.all) {
    if (v.userId === null) return false;
    if (v.userId !== scope.userId && !(scope.teamId && e.teamId === scope.teamId)) return false;
  }
  return true;
}

/**
 * Deletes events older than the retention, a batch per statement: each batch is its own
 * short transaction holding only its rows' locks, so writers and readers never wait
 * long. Returns how many went.
 */
export async function pruneEvents(db: Db, retentionDays: number, batchSize: number, maxBatches = 1000): Promise<number> {
  let total = 0;
  for (let i = 0; i < maxBatches; i++) {
    const { rowCount } = await db.query(
      `DELETE FROM events WHERE id IN (
         SELECT id FROM events WHERE at < now() - make_interval(days => $1) ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [retentionDays, batchSize],
    );
    total += rowCount ?? 0;
    if ((rowCount ?? 0) < batchSize) break;
  }
  return total;
}
