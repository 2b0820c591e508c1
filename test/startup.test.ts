import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { expect } from 'chai';
import { ROOT, tmpDir } from './support/cluster.js';
import { freePort } from './support/net.js';

interface Run {
  code: number | null;
  stderr: string;
}

/** Runs the real control plane until it exits (it must, on each of these failures). */
async function run(env: Record<string, string>): Promise<Run> {
  const p = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_HTTP_PORT: String(await freePort()),
      A4C_GRPC_PORT: String(await freePort()),
      A4C_EMBEDDED_PG_PORT: String(await freePort()),
      A4C_LOG_LEVEL: 'silent',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  p.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => p.kill('SIGKILL'), 90_000);
  const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
  clearTimeout(timer);
  return { code, stderr };
}

function expectClear(r: Run, what: RegExp, fix: RegExp): void {
  expect(r.code, r.stderr).to.equal(1);
  expect(r.stderr, 'no stack trace of our own code for a failure outside it').not.to.match(/TypeError|at .*\.js:\d+/);
  expect(r.stderr).to.match(what);
  expect(r.stderr).to.match(/\n {2}fix: /);
  expect(r.stderr).to.match(fix);
}

/** Embedded PostgreSQL processes whose data directory is under dir (none may be left). */
function postgresUnder(dir: string): string[] {
  const ps = spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).stdout;
  return ps.split('\n').filter((l) => /postgres/.test(l) && l.includes(dir));
}

describe('start-up failures say what failed and the fix, and leave nothing running', function () {
  this.timeout(180_000);

  it('a taken REST or gRPC port names the port, the setting and how to find the other process', async () => {
    const squatter = net.createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const port = (squatter.address() as net.AddressInfo).port;
    const dataDir = tmpDir('startup-port');
    try {
      const http = await run({ A4C_DATA_DIR: dataDir, A4C_HTTP_PORT: String(port) });
      expectClear(http, new RegExp(`the REST API cannot listen on 127\\.0\\.0\\.1:${port}: another process already uses that port`), /set A4C_HTTP_PORT to a free port/);
      // The embedded PostgreSQL it had started is stopped again, not left holding its port.
      expect(postgresUnder(dataDir)).to.deep.equal([]);
      const grpc = await run({ A4C_DATA_DIR: dataDir, A4C_GRPC_PORT: String(port) });
      expectClear(grpc, /the agents' gRPC endpoint cannot listen on 127\.0\.0\.1:\d+/, /set A4C_GRPC_PORT to a free port/);
      expect(postgresUnder(dataDir)).to.deep.equal([]);
    } finally {
      squatter.close();
    }
  });

  it('an external PostgreSQL that does not answer, or refuses the password, is named with the fix', async () => {
    const closed = await freePort();
    const down = await run({ A4C_DATA_DIR: tmpDir('startup-db'), DATABASE_URL: `postgres://a4c:secret@127.0.0.1:${closed}/a4c` });
    expectClear(down, new RegExp(`cannot use PostgreSQL at 127\\.0\\.0\\.1:${closed}, database a4c, user a4c`), /start PostgreSQL there, or correct host and port in DATABASE_URL/);
    expect(down.stderr, 'the password is never printed').not.to.include('secret');

    const base = process.env.A4C_TEST_PG_URL;
    if (!base) throw new Error('A4C_TEST_PG_URL is not set: run the suite with `npm test`');
    const wrong = new URL(`${base}/postgres`);
    wrong.password = 'not-the-password';
    const refused = await run({ A4C_DATA_DIR: tmpDir('startup-db2'), DATABASE_URL: wrong.toString() });
    expectClear(refused, /cannot use PostgreSQL at/, /the user or password was refused/);
  });

  it('a data directory the postgres user cannot reach makes the embedded server fail with the chmod that fixes it', async () => {
    // Mode 0700 on a parent, owned by root: the "postgres" user that runs the server
    // cannot enter it (the earlier symptom: "Cannot read properties of undefined").
    const parent = tmpDir('startup-perm');
    const locked = path.join(parent, 'locked');
    mkdirSync(locked, { mode: 0o700 });
    chmodSync(locked, 0o700);
    const dataDir = path.join(locked, 'data');
    const r = await run({ A4C_DATA_DIR: dataDir });
    expectClear(r, /embedded PostgreSQL \(.*locked\/data\/postgres, port \d+\) could not (initialise its data directory|start)/, /"postgres" system user.*chmod o\+x.*or set A4C_DATA_DIR.*or set DATABASE_URL/);
    expect(postgresUnder(dataDir)).to.deep.equal([]);
  });
});
