// One run of `npm test` or `npm run bench`: a directory that holds everything it makes
// on disk, and an end that leaves nothing of it behind, after success, failure or Ctrl-C.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stopEnginesUnder } from './engine.mjs';
import { killGroup, ourProcesses, terminate, unmountUnder } from './hygiene.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Makes /tmp/<prefix>-XXXXXX and points TMPDIR at it for this process and its
 * children, so every temporary directory, private engine (socket, data root) and
 * PostgreSQL data directory of the run is under it: one place to find and remove.
 */
export function makeRunDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  // Embedded PostgreSQL runs as the postgres user and must reach its directory inside.
  chmodSync(dir, 0o755);
  process.env.TMPDIR = dir;
  return dir;
}

/**
 * Interrupts a child started with `detached: true` (its own process group: the
 * terminal's Ctrl-C reaches only us) and whatever it started, and waits up to
 * `graceMs` for that group to empty.
 */
export async function interruptGroup(child, graceMs = 10_000) {
  if (!child?.pid) return;
  if (!killGroup(child.pid, 'SIGINT')) return;
  const deadline = Date.now() + graceMs;
  while (killGroup(child.pid, 0) && Date.now() < deadline) await sleep(100);
  // The leader itself, while it is still our child (endRun ends the rest of its group).
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Ends a run: what is left in the process groups `groups` (the test or bench runner's),
 * every private engine under `runDir`, any other process naming `runDir` on its command
 * line (PostgreSQL, the test registry, agents) and their descendants; then every mount
 * under `runDir` (the tests' tmpfs), then `runDir` itself. Resolves a line for each
 * thing that was still there to end, and for anything that could not be ended.
 */
export async function endRun({ runDir, groups = [] }) {
  const found = [];
  const grouped = ourProcesses({ pgids: groups });
  found.push(...grouped.map((p) => `process ${p.pid} ${p.cmdline}`));
  await terminate(grouped);
  found.push(...(await stopEnginesUnder(runDir)).map((p) => `engine process ${p}`));
  const naming = ourProcesses({ paths: [runDir] });
  found.push(...naming.map((p) => `process ${p.pid} ${p.cmdline}`));
  await terminate(naming);
  found.push(...unmountUnder(runDir).map((m) => `mount ${m}`));
  rmSync(runDir, { recursive: true, force: true });
  const stuck = ourProcesses({ paths: [runDir], pgids: groups });
  found.push(...stuck.map((p) => `STILL RUNNING: process ${p.pid} ${p.cmdline}`));
  return found;
}
