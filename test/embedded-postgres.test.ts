import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { ROOT, tmpDir } from './support/cluster.js';
import { freePort, waitFor } from './support/net.js';

/** The zero-setup path: no DATABASE_URL, so the control plane runs its own PostgreSQL. */
describe('control plane with embedded PostgreSQL (a real process)', () => {
  const dataDir = tmpDir('embedded');
  let proc: ChildProcess | undefined;
  let httpPort = 0;

  async function start(): Promise<ChildProcess> {
    httpPort = await freePort();
    const p = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], {
      env: {
        PATH: process.env.PATH ?? '',
        A4C_DATA_DIR: dataDir,
        A4C_HTTP_PORT: String(httpPort),
        A4C_GRPC_PORT: String(await freePort()),
        A4C_EMBEDDED_PG_PORT: String(await freePort()),
        A4C_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    p.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    await waitFor('the control plane to be ready', async () => {
      if (p.exitCode !== null) throw new Error(`exited ${p.exitCode}: ${err}`);
      return (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok;
    }, 60_000, 200);
    return p;
  }
  const exit = (p: ChildProcess) => new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));

  after(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await exit(proc);
    }
  });

  let token = '';
  it('starts PostgreSQL under A4C_DATA_DIR, migrates, and writes an admin token only its owner can read', async () => {
    proc = await start();
    token = readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
    expect(token).to.match(/^a4c_/);
    expect(statSync(path.join(dataDir, 'admin-token')).mode & 0o777).to.equal(0o600);
    expect(statSync(path.join(dataDir, 'postgres/PG_VERSION')).isFile()).to.equal(true);
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/hosts`, { headers: { authorization: `Bearer ${token}` } });
    expect(r.status).to.equal(200);
  });

  it('after SIGKILL (PostgreSQL left running), starts again on the same data with the same token', async () => {
    const p = proc as ChildProcess;
    p.kill('SIGKILL');
    await exit(p);
    proc = await start();
    expect(readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim()).to.equal(token);
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/hosts`, { headers: { authorization: `Bearer ${token}` } });
    expect(r.status).to.equal(200);
  });

  it('stops gracefully on SIGTERM, taking its PostgreSQL with it', async () => {
    const p = proc as ChildProcess;
    p.kill('SIGTERM');
    await exit(p);
    expect(p.exitCode).to.equal(0);
    const pidFile = path.join(dataDir, 'postgres/postmaster.pid');
    await waitFor('postmaster.pid to go', () => {
      try {
        statSync(pidFile);
        return false;
      } catch {
        return true;
      }
    }, 10_000);
  });
});
