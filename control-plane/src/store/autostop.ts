import { SESSION_SEEN_INTERVAL_MS } from './access.js';
import type { Db, Tx } from './db.js';

/**
 * What the autostop and dormancy sweep decides for one workspace:
 *  - warn → stop: a RUNNING workspace idle for its period (no live session, no session
 *    traffic, no CPU above the threshold since `idle_since`);
 *  - dormant_warning → dormant: a STOPPED workspace unused for A4C_DORMANT_AFTER_SECONDS;
 *  - delete_warning → delete: a dormant one past A4C_DELETE_DORMANT_AFTER_SECONDS.
 * Every act needs its warning first: a warning counts for a due time if it was recorded
 * within the lead before it, and the act waits at least the lead after the warning (a
 * sweep that was late — every replica down for a while — still warns ahead).
 */
export type AutostopAction = 'warn' | 'stop' | 'dormant_warning' | 'dormant' | 'delete_warning' | 'delete';

export interface AutostopPolicy {
  /** The decision time, from the injected clock. */
  now: Date;
  /** Tier name → idle period in seconds (absent or 0: never). */
  tierPeriods: Record<string, number>;
  warningSeconds: number;
  dormantAfterSeconds: number;
  deleteDormantAfterSeconds: number | undefined;
  dormantWarningSeconds: number;
}

/** A session is live while its replica refreshes it (access.ts); judged on the database's time, as there. */
const LIVE_SESSION_SECONDS = (3 * SESSION_SEEN_INTERVAL_MS) / 1000;

/** The acts that are due, for a given warned-at column: warned for this due time, then act after the lead. */
const due = (warnedAt: string, dueAt: string, lead: string) => ({
  warned: `COALESCE(${warnedAt} >= ${dueAt} - ${lead}, false)`,
  act: `(${warnedAt} >= ${dueAt} - ${lead} AND $1 >= GREATEST(${dueAt}, ${warnedAt} + ${lead}))`,
  warn: `(NOT COALESCE(${warnedAt} >= ${dueAt} - ${lead}, false) AND $1 >= ${dueAt} - ${lead})`,
});
const STOP = due('w.autostop_warned_at', 't.stop_due', 't.stop_lead');
const DORMANT = due('w.dormant_warned_at', 't.dormant_due', 't.dormant_lead');
const DELETE = due('w.delete_warned_at', 't.delete_due', 't.delete_lead');

/**
 * Workspaces (as w) with their idle facts (p) and due times (t). Parameters: $1 now,
 * $2 tier periods, $3 autostop warning, $4 dormant after, $5 delete dormant after
 * (NULL: never), $6 dormancy warning, all in seconds.
 */
const FACTS = `
  FROM workspaces w
  -- Joined, not a subquery per row: over the whole fleet it is one hash of the open sessions.
  LEFT JOIN (SELECT DISTINCT s.workspace_id FROM access_sessions s
              WHERE s.ended_at IS NULL AND s.seen_at > now() - make_interval(secs => ${LIVE_SESSION_SECONDS})) o
         ON o.workspace_id = w.id
  CROSS JOIN LATERAL (SELECT
      COALESCE(w.autostop_after_seconds, ($2::jsonb ->> w.tier)::int, 0) AS period,
      GREATEST(w.status_changed_at, w.last_activity_at, w.cpu_busy_at) AS idle_since,
      GREATEST(w.status_changed_at, w.last_activity_at) AS unused_since,
      o.workspace_id IS NOT NULL AS open_sessions) p
  CROSS JOIN LATERAL (SELECT
      p.idle_since + make_interval(secs => p.period) AS stop_due,
      make_interval(secs => LEAST($3::float8, p.period::float8 / 2)) AS stop_lead,
      p.unused_since + make_interval(secs => $4::float8) AS dormant_due,
      make_interval(secs => LEAST($6::float8, $4::float8 / 2)) AS dormant_lead,
      w.dormant_at + make_interval(secs => $5::float8) AS delete_due,
      make_interval(secs => LEAST($6::float8, $5::float8 / 2)) AS delete_lead) t`;

const ACTION = `
  CASE
    WHEN w.status = 'RUNNING' AND p.period > 0 AND NOT p.open_sessions THEN
      CASE WHEN ${STOP.act} THEN 'stop' WHEN ${STOP.warn} THEN 'warn' END
    WHEN w.status = 'STOPPED' AND w.dormant_at IS NULL AND $4::float8 > 0 THEN
      CASE WHEN ${DORMANT.act} THEN 'dormant' WHEN ${DORMANT.warn} THEN 'dormant_warning' END
    WHEN w.status = 'STOPPED' AND w.dormant_at IS NOT NULL AND $5::float8 IS NOT NULL THEN
      CASE WHEN ${DELETE.act} THEN 'delete' WHEN ${DELETE.warn} THEN 'delete_warning' END
  END`;

/** One decision, with the facts its event explains it by. */
export interface AutostopDecision {
  id: string;
  action: AutostopAction;
  host_id: string | null;
  period: number;
  idle_since: Date;
  unused_since: Date;
  dormant_at: Date | null;
  /** When the act is due (stop, dormant or delete). */
  due_at: Date;
  /** When the act happens at the earliest, given when (or whether) it was warned. */
  act_at: Date;
}

const DECISION_COLUMNS = `
  w.id, ${ACTION} AS action, w.host_id, p.period, p.idle_since, p.unused_since, w.dormant_at,
  CASE WHEN w.status = 'RUNNING' THEN t.stop_due WHEN w.dormant_at IS NULL THEN t.dormant_due ELSE t.delete_due END AS due_at,
  CASE WHEN w.status = 'RUNNING' THEN GREATEST(t.stop_due, COALESCE(CASE WHEN ${STOP.warned} THEN w.autostop_warned_at END, $1) + t.stop_lead)
       WHEN w.dormant_at IS NULL THEN GREATEST(t.dormant_due, COALESCE(CASE WHEN ${DORMANT.warned} THEN w.dormant_warned_at END, $1) + t.dormant_lead)
       ELSE GREATEST(t.delete_due, COALESCE(CASE WHEN ${DELETE.warned} THEN w.delete_warned_at END, $1) + t.delete_lead) END AS act_at`;

function policyParams(p: AutostopPolicy): unknown[] {
  return [p.now, JSON.stringify(p.tierPeriods), p.warningSeconds, p.dormantAfterSeconds, p.deleteDormantAfterSeconds ?? null, p.dormantWarningSeconds];
}

/**
 * Every decision due now across the fleet, oldest due first: one query per sweep,
 * however many workspaces there are. Read without locks; each decision is re-made
 * under its row's lock before it is acted on (decideLocked).
 */
export async function findDecisions(db: Db, policy: AutostopPolicy, limit: number): Promise<AutostopDecision[]> {
  const { rows } = await db.query<AutostopDecision>(
    `SELECT * FROM (SELECT ${DECISION_COLUMNS} ${FACTS} WHERE w.status IN ('RUNNING', 'STOPPED')) d
      WHERE d.action IS NOT NULL ORDER BY d.due_at, d.id LIMIT $7`,
    [...policyParams(policy), limit],
  );
  return rows;
}

/**
 * The decision for one workspace, made again on its locked, latest row; undefined when
 * another replica holds the row (it is deciding) or nothing is due any more.
 */
export async function decideLocked(tx: Tx, policy: AutostopPolicy, id: string, wait: boolean): Promise<AutostopDecision | undefined> {
  const { rows } = await tx.query<AutostopDecision>(
    `SELECT ${DECISION_COLUMNS} ${FACTS} WHERE w.id = $7 FOR UPDATE OF w${wait ? '' : ' SKIP LOCKED'}`,
    [...policyParams(policy), id],
  );
  const d = rows[0];
  return d?.action ? d : undefined;
}

const WARNED_COLUMN = { warn: 'autostop_warned_at', dormant_warning: 'dormant_warned_at', delete_warning: 'delete_warned_at' } as const;

export async function markWarned(tx: Tx, id: string, action: keyof typeof WARNED_COLUMN, now: Date): Promise<void> {
  await tx.query(`UPDATE workspaces SET ${WARNED_COLUMN[action]} = $2 WHERE id = $1`, [id, now]);
}

export async function markDormant(tx: Tx, id: string, now: Date): Promise<void> {
  await tx.query('UPDATE workspaces SET dormant_at = $2, updated_at = now() WHERE id = $1', [id, now]);
}

/** The row PATCH changes, locked: its status, tier, host and own idle period. */
export async function lockAutostopSetting(
  tx: Tx,
  id: string,
): Promise<{ status: string; tier: string; host_id: string | null; autostop_after_seconds: number | null } | undefined> {
  const { rows } = await tx.query<{ status: string; tier: string; host_id: string | null; autostop_after_seconds: number | null }>(
    'SELECT status, tier, host_id, autostop_after_seconds FROM workspaces WHERE id = $1 FOR UPDATE',
    [id],
  );
  return rows[0];
}

/** The workspace's own idle period: null follows its tier, 0 never stops it. */
export async function setAutostopOverride(tx: Tx, id: string, seconds: number | null): Promise<void> {
  await tx.query('UPDATE workspaces SET autostop_after_seconds = $2, updated_at = now() WHERE id = $1', [id, seconds]);
}

/** What GET /v1/workspaces/{id} explains autostop by. */
export interface AutostopFacts {
  status: string;
  override: number | null;
  period: number;
  idle_since: Date;
  last_activity_at: Date | null;
  status_changed_at: Date;
  cpu_percent: number | null;
  cpu_sampled_at: Date | null;
  cpu_busy_at: Date | null;
  stop_due: Date;
  stop_at: Date;
  dormant_at: Date | null;
  delete_at: Date | null;
  sessions: { kind: string; actor: string; count: number }[];
}

export async function autostopFacts(db: Db, policy: AutostopPolicy, id: string): Promise<AutostopFacts | undefined> {
  const { rows } = await db.query<AutostopFacts>(
    `SELECT w.status, w.autostop_after_seconds AS override, p.period, p.idle_since, w.last_activity_at, w.status_changed_at,
            w.cpu_percent, w.cpu_sampled_at, w.cpu_busy_at, t.stop_due,
            GREATEST(t.stop_due, COALESCE(CASE WHEN ${STOP.warned} THEN w.autostop_warned_at END, $1) + t.stop_lead) AS stop_at,
            w.dormant_at, CASE WHEN w.status = 'STOPPED' THEN t.delete_due END AS delete_at,
            COALESCE((SELECT json_agg(json_build_object('kind', g.kind, 'actor', g.actor, 'count', g.n) ORDER BY g.kind, g.actor)
                        FROM (SELECT s.kind, s.actor, count(*)::int AS n FROM access_sessions s
                               WHERE s.workspace_id = w.id AND s.ended_at IS NULL
                                 AND s.seen_at > now() - make_interval(secs => ${LIVE_SESSION_SECONDS})
                               GROUP BY s.kind, s.actor) g), '[]'::json) AS sessions
     ${FACTS} WHERE w.id = $7`,
    [...policyParams(policy), id],
  );
  return rows[0];
}

/**
 * An agent's CPU samples of its running workspaces (100 = one core), in one statement
 * per heartbeat that carries them. A sample at or above the threshold moves cpu_busy_at,
 * which counts as activity. Only the host's own workspaces are touched, and a workspace
 * that was and stays below the threshold is not written at all: an idle fleet costs
 * no writes.
 */
export async function recordCpuSamples(
  db: Db,
  hostId: string,
  samples: { workspaceId: string; cpuPercent: number }[],
  now: Date,
  thresholdPercent: number,
): Promise<void> {
  if (!samples.length) return;
  await db.query(
    `UPDATE workspaces w SET cpu_percent = s.pct, cpu_sampled_at = $4,
            cpu_busy_at = CASE WHEN s.pct >= $5::float8 THEN $4 ELSE w.cpu_busy_at END
       FROM unnest($2::uuid[], $3::float8[]) AS s(id, pct)
      WHERE w.id = s.id AND w.host_id = $1 AND w.status = 'RUNNING'
        AND (w.cpu_percent IS NULL OR s.pct >= $5::float8 OR w.cpu_percent >= $5::float8)`,
    [hostId, samples.map((s) => s.workspaceId), samples.map((s) => s.cpuPercent), now, thresholdPercent],
  );
}
