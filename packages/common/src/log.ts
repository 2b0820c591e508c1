import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs; A4C_LOG_LEVEL sets the level (default info; "silent" in tests). */
export function createLogger(name: string, env: Record<string, string | undefined> = process.env): Logger {
  return pino({ name, level: env.A4C_LOG_LEVEL ?? 'info', base: { name } });
}
