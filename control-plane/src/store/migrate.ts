import { readdir, readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { Logger } from '@a4c/common';

const MIGRATIONS_DIR = new URL('../../migrations/', import.meta.url);

/**
 * Forward-only, numbered SQL files (NNN_name.sql), each applied once in its own
 * transaction. An advisory lock makes concurrent replicas starting together take
 * turns instead of racing.
 */
export async function migrate(pool: pg.Pool, log: Logger): Promise<number> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d{3}_.+\.sql$/.test(f)).sort();
  const client = await pool.connect();
  let applied = 0;
  try {
    // Migrations (and waiting for another replica's) may take longer than the pool's
    // statement and lock timeouts allow a request.
    await client.query('SET statement_timeout = 0');
    await client.query('SET lock_timeout = 0');
    await client.query('SELECT pg_advisory_lock(4242001)');
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
    for (const file of files) {
      const version = Number(file.slice(0, 3));
      if (done.has(version)) continue;
      const sql = await readFile(new URL(file, MIGRATIONS_DIR), 'utf8');
      await client.query('BEGIN');
      try {
        await client.query(sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
        await client.query('COMMIT');
      } catch (e) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${file} failed: ${(e as Error).message}`);
      }
      log.info({ migration: file }, 'applied migration');
      applied++;
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock(4242001)').catch(() => undefined);
    // Back to the pool with its connection's own timeouts.
    await client.query('RESET statement_timeout; RESET lock_timeout').catch(() => undefined);
    client.release();
  }
  return applied;
}
