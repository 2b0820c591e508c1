import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import pg from 'pg';
import { createLogger, type HostView, type Workspace } from '@a4c/common';
import { loadConfig, startControlPlane, type ControlPlane, type ControlPlaneDeps } from '@a4c/control-plane';
import { freePort, waitFor } from './net.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const TINY_TIERS = JSON.stringify({
  tiny: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256 },
  small: { memoryMb: 96, cpus: 0.5, diskGb: 2 },
});
export const HEARTBEAT_MS = 500;

/**
 * Rate limits and load shedding off: suites create many workspaces quickly with one
 * token, and a loaded 2-core CI machine must not shed their requests. test/limits.test.ts
 * turns each on where it tests it.
 */
export const NO_LIMITS = {
  A4C_RATE_LIMIT_RPS: '0',
  A4C_CREATE_RATE_PER_MINUTE: '0',
  A4C_SHED_TARGET_MS: '0',
  A4C_SHED_EVENT_LOOP_LAG_MS: '0',
};

export function dockerHost(): string {
  const h = process.env.A4C_TEST_DOCKER_HOST;
  if (!h) throw new Error('A4C_TEST_DOCKER_HOST is not set: run the suite with `npm test`');
  return h;
}

export function docker(): Docker {
  return new Docker({ socketPath: dockerHost().replace(/^unix:\/\//, '') });
}

/** A local image made from the base image with Dockerfile-style changes, e.g. `CMD ["/bin/false"]`. */
export async function commitImage(ref: string, changes: string[]): Promise<void> {
  const c = await docker().createContainer({ Image: 'a4c-base:latest', Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
  const [repo, tag] = ref.split(':');
  await c.commit({ repo, tag, changes });
  await c.remove({ force: true });
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString('hex')}`;
}

export function tmpDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `a4c-${prefix}-`));
}

/** A fresh database on the suite's PostgreSQL. */
export async function freshDatabase(): Promise<string> {
  const base = process.env.A4C_TEST_PG_URL;
  if (!base) throw new Error('A4C_TEST_PG_URL is not set: run the suite with `npm test`');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: `${base}/postgres` });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  return `${base}/${name}`;
}

export interface ApiResponse<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

export class Api {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  async call<T = Record<string, unknown>>(method: string, p: string, body?: unknown, init: { token?: string | null; rawBody?: string; contentType?: string } = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    const token = init.token === undefined ? this.token : init.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (init.rawBody !== undefined) payload = init.rawBody;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = init.contentType ?? 'application/json';
    const res = await fetch(`${this.baseUrl}${p}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: left as text for the assertion to show
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  async createWorkspace(userId: string, body: Record<string, unknown>, wait = 30): Promise<Workspace> {
    const r = await this.call<Workspace>('POST', `/v1/users/${userId}/workspaces?wait=${wait}`, body);
    if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async workspace(id: string): Promise<Workspace> {
    const r = await this.call<Workspace>('GET', `/v1/workspaces/${id}`);
    if (r.status !== 200) throw new Error(`get failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async host(id: string): Promise<HostView | undefined> {
    const r = await this.call<HostView>('GET', `/v1/hosts/${id}`);
    return r.status === 200 ? r.body : undefined;
  }

  async waitHostConnected(id: string, timeoutMs = 30_000): Promise<HostView> {
    return waitFor(`host ${id} connected`, async () => {
      const h = await this.host(id);
      return h?.connected && h.status === 'healthy' ? h : undefined;
    }, timeoutMs);
  }
}

export interface TestControlPlane {
  cp: ControlPlane;
  api: Api;
  grpcAddress: string;
  databaseUrl: string;
  stop(): Promise<void>;
}

/** A control plane in this process, on a fresh database and free ports. */
export async function startTestControlPlane(env: Record<string, string> = {}, deps: ControlPlaneDeps = {}): Promise<TestControlPlane> {
  const databaseUrl = env.DATABASE_URL ?? (await freshDatabase());
  const config = loadConfig({
    A4C_DATA_DIR: tmpDir('cp'),
    DATABASE_URL: databaseUrl,
    A4C_HTTP_PORT: '0',
    A4C_GRPC_PORT: '0',
    A4C_TIERS: TINY_TIERS,
    A4C_HEARTBEAT_MS: String(HEARTBEAT_MS),
    A4C_ADMIN_TOKEN: `test-admin-token-${randomBytes(8).toString('hex')}`,
    // Plaintext agent plane unless a test asks for TLS (A4C_GRPC_INSECURE: 'false'): see agent-tls.test.ts.
    A4C_GRPC_INSECURE: 'true',
    ...NO_LIMITS,
    ...env,
  });
  const cp = await startControlPlane(config, createLogger('test-control-plane', { A4C_LOG_LEVEL: process.env.A4C_LOG_LEVEL ?? 'silent' }), deps);
  return {
    cp,
    api: new Api(`http://127.0.0.1:${cp.httpPort}`, cp.adminToken),
    grpcAddress: `127.0.0.1:${cp.grpcPort}`,
    databaseUrl,
    stop: () => cp.stop(),
  };
}

export interface AgentProcess {
  hostId: string;
  stateDir: string;
  statusUrl: string;
  proc: ChildProcess;
  /** Everything the process wrote, for failure messages. */
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface AgentOptions {
  hostId: string;
  controlPlane: string;
  stateDir?: string;
  env?: Record<string, string>;
}

/** A real a4c-agent process against the test engine, with network mode none. */
export async function spawnAgent(o: AgentOptions): Promise<AgentProcess> {
  const statusPort = await freePort();
  const stateDir = o.stateDir ?? tmpDir(`agent-${o.hostId}`);
  const proc = spawn(process.execPath, [path.join(ROOT, 'agent/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      // Its temporary files (build contexts) go under the run's directory, removed with
      // it, also when a test kills the agent in the middle of a build.
      ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
      A4C_CONTROL_PLANE: o.controlPlane,
      A4C_HOST_ID: o.hostId,
      A4C_STATUS_PORT: String(statusPort),
      A4C_STATE_DIR: stateDir,
      A4C_NETWORK_MODE: 'none',
      A4C_RECONCILE_INTERVAL_MS: '1000',
      A4C_STOP_TIMEOUT_SECONDS: '2',
      DOCKER_HOST: dockerHost(),
      A4C_LOG_LEVEL: 'info',
      A4C_GRPC_INSECURE: 'true',
      ...o.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (c: Buffer) => {
    out += c.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const statusUrl = `http://127.0.0.1:${statusPort}`;
  await waitFor(`agent ${o.hostId} status endpoint`, async () => {
    if (proc.exitCode !== null) throw new Error(`agent exited with ${proc.exitCode}: ${out.slice(-2000)}`);
    const r = await fetch(`${statusUrl}/healthz`);
    return r.ok;
  }, 20_000);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    hostId: o.hostId,
    stateDir,
    statusUrl,
    proc,
    output: () => out,
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}

/** Containers on the test engine that belong to an A4C host id. */
export async function containersOfHost(hostId: string): Promise<Docker.ContainerInfo[]> {
  return docker().listContainers({ all: true, filters: { label: [`a4c.host.id=${hostId}`] } });
}

/** Removes what a suite left on the shared engine. */
export async function removeHostContainers(...hostIds: string[]): Promise<void> {
  for (const hostId of hostIds) {
    for (const c of await containersOfHost(hostId)) await docker().getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
}

export interface ControlPlaneProcess {
  api: Api;
  grpcAddress: string;
  databaseUrl: string;
  proc: ChildProcess;
  /** Starts it again on the same ports, database and token (after kill). */
  restart(): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** A real a4c-control-plane process on a fresh database, for kill -9 scenarios. */
export async function spawnControlPlane(env: Record<string, string> = {}): Promise<ControlPlaneProcess> {
  const databaseUrl = await freshDatabase();
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const token = `test-admin-token-${randomBytes(8).toString('hex')}`;
  const fullEnv = {
    PATH: process.env.PATH ?? '',
    A4C_DATA_DIR: tmpDir('cpproc'),
    DATABASE_URL: databaseUrl,
    A4C_HTTP_PORT: String(httpPort),
    A4C_GRPC_PORT: String(grpcPort),
    A4C_TIERS: TINY_TIERS,
    A4C_HEARTBEAT_MS: String(HEARTBEAT_MS),
    A4C_ADMIN_TOKEN: token,
    A4C_LOG_LEVEL: 'warn',
    A4C_GRPC_INSECURE: 'true',
    ...NO_LIMITS,
    ...env,
  };
  const api = new Api(`http://127.0.0.1:${httpPort}`, token);
  const handle: ControlPlaneProcess = {
    api,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    databaseUrl,
    proc: undefined as unknown as ChildProcess,
    restart: async () => {
      const p = spawn(process.execPath, [path.join(ROOT, 'control-plane/dist/main.js')], { env: fullEnv, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr?.on('data', (c: Buffer) => (err += c.toString()));
      handle.proc = p;
      await waitFor('the control plane process to be ready', async () => {
        if (p.exitCode !== null) throw new Error(`control plane exited ${p.exitCode}: ${err.slice(-2000)}`);
        return (await fetch(`${api.baseUrl}/readyz`)).ok;
      }, 30_000);
    },
    kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
      const p = handle.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      p.kill(signal);
      await exited;
    },
  };
  await handle.restart();
  return handle;
}
