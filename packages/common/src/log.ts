import { pino, type Logger } from 'pino';
import { ConfigError } from './env.js';

export type { Logger };

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** Structured JSON logs; A4C_LOG_LEVEL sets the level (default info; "silent" in tests). */
export function createLogger(name: string, env: Record<string, string | undefined> = process.env): Logger {
  const level = env.A4C_LOG_LEVEL || 'info';
  if (!LEVELS.includes(level)) throw new ConfigError('A4C_LOG_LEVEL', `must be one of ${LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  return pino({ name, level, base: { name } });
}
