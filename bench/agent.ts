import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A real a4c-agent process for a benchmark. */
export async function spawnBenchAgent(o: { hostId: string; controlPlane: string; dockerHost: string; env?: Record<string, string> }): Promise<{ stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'agent/dist/main.js')], {
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
  return {
    stop: async () => {
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
