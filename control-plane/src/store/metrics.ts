import pg from 'pg';

/** One host as the fleet gauges show it. */
export interface FleetHost {
  id: string;
  /** Last reported usage; null before the first report. */
  diskPercent: number | null;
  memoryPercent: number | null;
  /** A live agent session: connected and heartbeating within the liveness window. */
  connected: boolean;
  dockerReady: boolean;
  draining: boolean;
  revision: number;
  appliedRevision: number;
  /** Workspaces holding a reservation on the host. */
  workspaces: number;
}

export interface FleetState {
  hosts: FleetHost[];
  /** Workspaces by status, DELETED left out (it only grows). */
  workspaces: Record<string, number>;
  /** Image builds by status, the unfinished ones (SCHEDULED, IN_PROGRESS). */
  builds: Record<string, number>;
}

/**
 * The whole fleet in one statement: one snapshot, one round trip. Removed hosts are
 * left out. Each part reads an index or a small table; the workspaces count reads the
 * index of the workspaces that are not DELETED (migration 030).
 */
const FLEET_SQL = `
  SELECT
    (SELECT COALESCE(json_agg(json_build_object(
              'id', h.id,
              'diskPercent', CASE WHEN s.stats IS NULL THEN NULL ELSE s.disk_percent END,
              'memoryPercent', CASE WHEN s.stats IS NULL THEN NULL ELSE s.memory_percent END,
              'connected', COALESCE(s.connected AND s.last_heartbeat_at > now() - make_interval(secs => GREATEST($1, s.live_within_seconds)), false),
              'dockerReady', COALESCE(s.docker_ready, false),
              'draining', h.draining,
              'revision', h.revision,
              'appliedRevision', h.applied_revision,
              'workspaces', h.reserved_workspaces) ORDER BY h.id), '[]'::json)
       FROM hosts h LEFT JOIN host_status s ON s.host_id = h.id
      WHERE h.removed_at IS NULL) AS hosts,
    (SELECT COALESCE(json_object_agg(status, n), '{}'::json)
       FROM (SELECT status, count(*)::int AS n FROM workspaces WHERE status <> 'DELETED' GROUP BY status) w) AS workspaces,
    (SELECT COALESCE(json_object_agg(status, n), '{}'::json)
       FROM (SELECT status, count(*)::int AS n FROM image_builds WHERE status IN ('SCHEDULED', 'IN_PROGRESS') GROUP BY status) b) AS builds`;

export const METRICS_APPLICATION_NAME = 'a4c-control-plane-metrics';

/**
 * A pool of one connection for the metrics, apart from the API's and the agents': a
 * scrape must answer while the API pool is exhausted (that is when on-call looks), and
 * must never take a connection a request or a heartbeat needs. Short timeouts: a
 * database that does not answer within them counts as down for a4c_database_up.
 */
export function createMetricsPool(url: string, timeoutMs: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: 1,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + 500,
    // Tells the metrics' connection apart in pg_stat_activity.
    application_name: METRICS_APPLICATION_NAME,
  });
  pool.on('error', () => undefined);
  return pool;
}

export async function readFleet(db: pg.Pool, liveWithinSeconds: number): Promise<FleetState> {
  const { rows } = await db.query<FleetState>(FLEET_SQL, [liveWithinSeconds]);
  const r = rows[0];
  if (!r) throw new Error('the fleet query returned no row');
  return r;
}
