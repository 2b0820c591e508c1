import { execFile } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { ROOT } from './cluster.js';

/** A private Docker Engine started by scripts/lib/engine.mjs. */
export interface PrivateEngine {
  dockerHost: string;
  socket: string;
  logFile: string;
  pid?: number;
  /** Its network namespace, e.g. /proc/<pid>/ns/net. */
  netns?: string;
  reused: boolean;
  /** Stops it; resolves what outlived dockerd and had to be killed (nothing, normally). */
  stop(): Promise<string[]>;
}

/** scripts/lib/engine.mjs: the same code `npm test`, `npm run bench` and `npm start` use. */
export interface EngineLib {
  startPrivateDockerd(o: { dataRoot: string; name?: string; netns?: string }): Promise<PrivateEngine>;
  ensureBaseImage(dockerHost: string): Promise<boolean>;
  netnsOf(dockerHost: string): string;
}

export async function engineLib(): Promise<EngineLib> {
  return (await import(pathToFileURL(path.join(ROOT, 'scripts/lib/engine.mjs')).href)) as EngineLib;
}

const run = promisify(execFile);

/**
 * The HTTP status of a GET made from inside the network namespace `netns` (curl under
 * nsenter): how a test reaches a service that only a private engine must reach.
 * Rejects when nothing answers.
 */
export async function statusInNetns(netns: string, url: string, headers: Record<string, string> = {}): Promise<number> {
  const h = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const { stdout } = await run('nsenter', [`--net=${netns}`, '--', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', ...h, url]);
  return Number(stdout);
}
