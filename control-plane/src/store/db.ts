import { createHash } from 'node:crypto';
import pg from 'pg';

// bigint columns (revisions, byte counts) stay well inside 2^53; read them as numbers.
pg.types.setTypeParser(20, (v) => Number(v));

export type Db = pg.Pool;
export type Tx = pg.PoolClient;

type QueryFn = (...args: unknown[]) => unknown;

/**
 * Every parameterised statement runs as a named prepared statement, so PostgreSQL
 * plans it once per connection instead of on every call. For the short statements
 * of the hot paths (placement, heartbeats, reports) planning cost about as much as
 * executing. The name is derived from the text, so the same SQL always maps to the
 * same statement and nothing else has to change.
 */
function preparePerConnection(client: pg.PoolClient | pg.Client): void {
  const query = client.query.bind(client) as QueryFn;
  (client as unknown as { query: QueryFn }).query = (config: unknown, values?: unknown, callback?: unknown) => {
    if (typeof config === 'string' && Array.isArray(values)) {
      const name = `a4c_${createHash('sha1').update(config).digest('hex').slice(0, 16)}`;
      return query({ name, text: config, values }, callback);
    }
    return query(config, values, callback);
  };
}

/** Server-side limits set on every connection (0: none). */
export interface PoolTimeouts {
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
}

/**
 * A pool whose connections carry statement, lock and idle-in-transaction timeouts: a
 * stuck statement, a lock queue behind a wedged transaction, or a client that opened a
 * transaction and went away can hold a connection only this long, never forever.
 */
export function createPool(url: string, max: number, timeouts?: PoolTimeouts): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    connectionTimeoutMillis: 10_000,
    ...(timeouts && {
      statement_timeout: timeouts.statementMs,
      lock_timeout: timeouts.lockMs,
      idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
    }),
  });
  pool.on('connect', (client) => {
    preparePerConnection(client);
    // pg-pool listens for errors only on idle clients: a connection the server ends
    // (a PostgreSQL failover or restart: "terminating connection due to administrator
    // command") while its client is checked out between statements would otherwise
    // crash the process. Its caller's next query fails and the pool drops it.
    client.on('error', () => undefined);
  });
  // An idle client losing its connection (database restarted) must not crash us; the
  // pool replaces it and the next query reports the problem to its caller.
  pool.on('error', () => undefined);
  return pool;
}

/** Runs fn in one transaction; rolls back on any error and rethrows it. */
export async function inTx<T>(pool: pg.Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/** Rejects unless the database answers. */
export async function ping(db: pg.Pool): Promise<void> {
  await db.query('SELECT 1');
}

/** Deadlock, serialization failure, lock not available: another transaction won a race for the same rows. */
const LOST_RACE = new Set(['40P01', '40001', '55P03']);

/**
 * Runs a batch's transaction, and once more if it lost a lock race to another replica's
 * (or batch's) writes; any other error, or a second loss, is the caller's.
 */
export async function retryOnceOnLostRace<T>(run: () => Promise<T>, onRetry: (e: Error) => void): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (!LOST_RACE.has((e as { code?: string }).code ?? '')) throw e;
    onRetry(e as Error);
    return run();
  }
}
