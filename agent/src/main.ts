#!/usr/bin/env node
import { ConfigError, createLogger } from '@a4c/common';
import { startAgent } from './agent.js';
import { CONFIG_HELP, loadConfig } from './config.js';

const HELP = `a4c-agent: runs A4C workspaces on this host's Docker Engine.

Usage: a4c-agent [--help]

Connects to the control plane, reports this host's capacity and stats, and converges
the host to the desired state it receives. SIGTERM or SIGINT stops the agent
gracefully and leaves every workspace running.

${CONFIG_HELP}
`;

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(HELP);
    return;
  }
  let config;
  let log;
  try {
    config = loadConfig();
    log = createLogger('a4c-agent').child({ hostId: config.hostId });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`a4c-agent: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const agent = await startAgent(config, log);
  let signals = 0;
  const shutdown = (signal: string) => {
    if (++signals > 1) process.exit(1);
    log.info({ signal }, 'shutting down');
    agent.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((e: unknown) => {
  process.stderr.write(`a4c-agent: failed to start: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
