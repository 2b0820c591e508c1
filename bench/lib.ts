import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';

/** The machine a benchmark ran on, printed with its figures. */
export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export function median(values: number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(f[11]) + Number(f[12])) / TICKS; // utime + stime
  } catch {
    return 0;
  }
}

/**
 * CPU seconds of this run's PostgreSQL: the postgres processes descending from `root`
 * (the control plane that started the embedded server, or the postmaster itself), with
 * the postmaster's exited children (cutime, cstime). Not every process named postgres:
 * other servers on a shared machine would count.
 */
export function postgresCpuSeconds(root: number): number {
  const procs = new Map<number, { ppid: number; comm: string; f: string[] }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const raw = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = raw.slice(raw.lastIndexOf(') ') + 2).split(' ');
      procs.set(Number(d), { ppid: Number(f[1]), comm: raw.slice(raw.indexOf('(') + 1, raw.lastIndexOf(')')), f });
    } catch {
      // gone
    }
  }
  const mine = (pid: number): boolean => {
    if (pid === root) return true;
    for (let p = procs.get(pid)?.ppid, hops = 0; p && hops < 10; p = procs.get(p)?.ppid, hops++) if (p === root) return true;
    return false;
  };
  let total = 0;
  for (const [pid, p] of procs) {
    if (p.comm !== 'postgres' || !mine(pid)) continue;
    total += (Number(p.f[11]) + Number(p.f[12])) / TICKS; // utime, stime
    if (procs.get(p.ppid)?.comm !== 'postgres') total += (Number(p.f[13]) + Number(p.f[14])) / TICKS; // the postmaster: its reaped children
  }
  return total;
}
