// What `npm test`, `npm run bench` and `npm start` do to clean up after themselves on
// a machine they share with its owner (and, on CI, with other runs): find the processes
// and mounts that are theirs, and only those, and end them. Plain Node.js, no
// dependencies: it runs before `npm install` has.
//
// "Ours" is always decided by something the project created: a directory of ours named
// on the process's command line, a process group we made, a mount namespace our engine
// holds, or being a descendant of one of those. Never by a process name alone: the
// machine's own dockerd, containerd and PostgreSQL look just like ours.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether `pid` runs (a zombie, dead but not yet reaped, does not). */
export function pidAlive(pid) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** The namespace a process is in, as the kernel names it (`mnt:[4026532178]`), or undefined once it is gone. */
export function namespaceOf(pid, kind) {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

/** Every process on the machine: pid, parent, process group, command line, mount namespace. */
export function listProcesses() {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      out.push({ pid, ppid: Number(rest[1]), pgid: Number(rest[2]), state: rest[0], cmdline, mntNs: namespaceOf(pid, 'mnt') });
    } catch {
      // it ended while we looked
    }
  }
  return out;
}

/**
 * The processes that are ours: those naming one of `paths` (directories this run made)
 * on their command line, those in process group `pgids` or mount namespace `mntNs`, and
 * every descendant of those. This process and its ancestors are never included.
 */
export function ourProcesses({ paths = [], pgids = [], mntNs } = {}) {
  const all = listProcesses().filter((p) => p.state !== 'Z');
  const keep = new Set();
  for (let p = process.pid; p > 1; ) {
    keep.add(p);
    p = all.find((x) => x.pid === p)?.ppid ?? 0;
  }
  const roots = paths.map((d) => path.resolve(d));
  const ownGroup = all.find((x) => x.pid === process.pid)?.pgid;
  pgids = pgids.filter((g) => g !== ownGroup);
  // A namespace shared with this process is the host's, not ours: never a reason to kill.
  if (mntNs && mntNs === namespaceOf(process.pid, 'mnt')) mntNs = undefined;
  const ours = new Set(
    all
      // A group's leader is not taken by the group id alone: once the leader (our child)
      // has exited, its pid may be an unrelated process's that leads a group of its own.
      .filter((p) => roots.some((d) => names(p.cmdline, d)) || (pgids.includes(p.pgid) && p.pid !== p.pgid) || (mntNs && p.mntNs === mntNs))
      .map((p) => p.pid),
  );
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) if (!ours.has(p.pid) && ours.has(p.ppid)) (ours.add(p.pid), (grew = true));
  }
  return all.filter((p) => ours.has(p.pid) && !keep.has(p.pid));
}

/** Whether `cmdline` names `dir` itself or a path under it (not /tmp/a4c-x1 for /tmp/a4c-x). */
function names(cmdline, dir) {
  for (let i = cmdline.indexOf(dir); i >= 0; i = cmdline.indexOf(dir, i + 1)) {
    const next = cmdline[i + dir.length];
    if (next === undefined || next === '/' || next === ' ') return true;
  }
  return false;
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs` for whatever still lives. Resolves when all are gone. */
export async function terminate(processes, { signal = 'SIGTERM', graceMs = 5000 } = {}) {
  const pids = processes.map((p) => (typeof p === 'number' ? p : p.pid));
  for (const pid of pids) tryKill(pid, signal);
  const deadline = Date.now() + graceMs;
  while (pids.some(pidAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids.filter(pidAlive)) tryKill(pid, 'SIGKILL');
  for (let i = 0; i < 50 && pids.some(pidAlive); i++) await sleep(100);
}

function tryKill(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Signals a whole process group; false when the group is empty. */
export function killGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Mount points in this process's mount namespace at or under `dir`, deepest first. */
export function mountsUnder(dir) {
  const root = path.resolve(dir);
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    // Field 5 is the mount point, with spaces and the like octal-escaped.
    .map((l) => l.split(' ')[4].replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === root || m.startsWith(`${root}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or under `dir` (a directory this run made); returns what it unmounted. */
export function unmountUnder(dir) {
  const done = [];
  for (const m of mountsUnder(dir)) {
    try {
      execFileSync('umount', [m], { stdio: 'ignore' });
    } catch {
      // Busy: detach it now, the kernel frees it when its last user goes.
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    }
    done.push(m);
  }
  return done;
}

/**
 * Runs `cleanup` once on SIGINT, SIGTERM or SIGHUP, then exits with 128 + the signal's
 * number. A signal within a second of the first is the same Ctrl-C (the terminal sends
 * it to npm, which passes it on): ignored. A later one says to wait; a third gives up.
 * Returns `interrupted()`: whether cleanup has begun.
 */
export function onInterrupt(cleanup, log = console.error) {
  const numbers = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
  let seen = 0;
  let first = 0;
  for (const signal of Object.keys(numbers)) {
    process.on(signal, () => {
      if (first && Date.now() - first < 1000) return;
      seen += 1;
      if (seen === 2) log(`${signal}: still cleaning up, a moment (once more to give up and leave things running)`);
      if (seen >= 3) process.exit(128 + numbers[signal]);
      if (seen > 1) return;
      first = Date.now();
      log(`${signal}: stopping and cleaning up...`);
      Promise.resolve()
        .then(cleanup)
        .catch((e) => log(`cleanup failed: ${e?.stack ?? e}`))
        .finally(() => process.exit(128 + numbers[signal]));
    });
  }
  return { interrupted: () => seen > 0 };
}
