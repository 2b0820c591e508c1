import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Api, HEARTBEAT_MS, NO_LIMITS, ROOT, TINY_TIERS, tmpDir } from './cluster.js';
import { freePort, waitFor } from './net.js';

/** One control-plane replica as a real process (kill -9 must be real), on a shared database. */
export interface ReplicaProcess {
  name: string;
  api: Api;
  grpcAddress: string;
  dataDir: string;
  proc: ChildProcess;
  /** What it wrote to stderr. */
  stderr(): string;
  /** Resolves with the exit code (null after a signal) once it has exited. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ReplicaOptions {
  name: string;
  databaseUrl: string;
  adminToken: string;
  env?: Record<string, string>;
  /** false: do not wait for /readyz (a start expected to fail). */
  waitReady?: boolean;
}

/** A replica with TLS on the agent plane (the CA comes from the shared database). */
export async function spawnReplica(o: ReplicaOptions): Promise<ReplicaProcess> {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const dataDir = o.env?.A4C_DATA_DIR ?? tmpDir(`replica-${o.name}`);
  const proc = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_DATA_DIR: dataDir,
      DATABASE_URL: o.databaseUrl,
      A4C_HTTP_PORT: String(httpPort),
      A4C_GRPC_PORT: String(grpcPort),
      A4C_TIERS: TINY_TIERS,
      A4C_HEARTBEAT_MS: String(HEARTBEAT_MS),
      A4C_ADMIN_TOKEN: o.adminToken,
      A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'warn',
      A4C_GRPC_INSECURE: 'false',
      A4C_DB_POOL_SIZE: '8',
      A4C_DB_AGENT_POOL_SIZE: '4',
      ...NO_LIMITS,
      ...o.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const api = new Api(`http://127.0.0.1:${httpPort}`, o.adminToken);
  if (o.waitReady !== false) {
    await waitFor(`replica ${o.name} to be ready`, async () => {
      if (proc.exitCode !== null) throw new Error(`replica ${o.name} exited ${proc.exitCode}: ${err.slice(-2000)}`);
      return (await fetch(`${api.baseUrl}/readyz`).catch(() => undefined))?.ok;
    }, 60_000, 200);
  }
  return {
    name: o.name,
    api,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    dataDir,
    proc,
    stderr: () => err,
    exited,
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}
