import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger } from '@a4c/common';
import { loadConfig, startControlPlane, type ControlPlane } from '@a4c/control-plane';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A real a4c-agent process for a benchmark. */
export async function spawnBenchAgent(o: { hostId: string; controlPlane: string; dockerHost: string; env?: Record<string, string> }): Promise<{ pid: number; stop(): Promise<void> }> {
  // BENCH_AGENT_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the agent.
  const nodeArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'agent/dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '',
      A4C_CONTROL_PLANE: o.controlPlane,
      A4C_HOST_ID: o.hostId,
      A4C_STATUS_PORT: '0',
      A4C_STATE_DIR: mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-agent-')),
      A4C_NETWORK_MODE: 'none',
      A4C_LOG_LEVEL: 'warn',
      DOCKER_HOST: o.dockerHost,
      A4C_GRPC_INSECURE: 'true',
      ...o.env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  // A benchmark that fails exits at once: its agent must not outlive it.
  const orphaned = () => proc.kill('SIGKILL');
  process.once('exit', orphaned);
  return {
    pid: proc.pid as number,
    stop: async () => {
      process.off('exit', orphaned);
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A control plane in the benchmark's process, with its embedded PostgreSQL in a fresh
 * directory (which startControlPlane makes reachable for the postgres user itself),
 * plaintext gRPC (benchmarks measure the agent plane, not TLS enrollment), and the
 * given settings on top.
 */
/**
 * Benchmarks measure the system, not its limits: one token and one user send
 * everything, so quotas, rate limits and load shedding are off.
 */
export const NO_LIMITS = {
  A4C_QUOTA_MAX_WORKSPACES: '100000',
  A4C_QUOTA_MAX_DISK_GB: '1e9',
  A4C_QUOTA_MAX_BUILDS: '10000',
  A4C_RATE_LIMIT_RPS: '0',
  A4C_CREATE_RATE_PER_MINUTE: '0',
  A4C_SHED_TARGET_MS: '0',
  A4C_SHED_EVENT_LOOP_LAG_MS: '0',
};

export async function startBenchControlPlane(env: Record<string, string> = {}): Promise<ControlPlane> {
  return startControlPlane(
    loadConfig({
      A4C_DATA_DIR: mkdtempSync(path.join(os.tmpdir(), 'a4c-bench-cp-')),
      A4C_HTTP_PORT: '0',
      A4C_GRPC_PORT: '0',
      A4C_GRPC_INSECURE: 'true',
      A4C_EMBEDDED_PG_PORT: String(20000 + Math.floor(Math.random() * 20000)),
      ...NO_LIMITS,
      ...env,
    }),
    createLogger('bench', { A4C_LOG_LEVEL: 'warn' }),
  );
}

export const BENCH_TINY_TIER = JSON.stringify({ tiny: { memoryMb: 64, cpus: 0.25, diskGb: 1, pidsLimit: 256 } });
