import { InvalidArgumentError } from '@commander-js/extra-typings';
import type { Workspace } from '@a4c/common';

/** "never", "0", "90m", "2h", "1d" or seconds, as autostopAfterSeconds (0: never). */
export function autostopSeconds(value: string): number {
  if (value === 'never' || value === '0') return 0;
  const m = /^(\d+)([smhd]?)$/.exec(value);
  const n = m ? Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'] : NaN;
  if (!(n >= 60)) throw new InvalidArgumentError('It must be "never" or a duration of at least 60 s, such as 30m, 2h, 1d or 3600.');
  return n;
}

function duration(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** The lines of `a4c ws get` that answer "why is my workspace still running?". */
export function autostopRows(w: Workspace, now = Date.now()): [string, string | null][] {
  if (w.autostopAfterSeconds === undefined) return [];
  const at = w.autostopAt ? Date.parse(w.autostopAt) : undefined;
  const autostop =
    w.autostopAfterSeconds === null
      ? 'never'
      : at !== undefined
        ? `at ${w.autostopAt} (in ${duration(Math.max(0, Math.round((at - now) / 60_000)) * 60 || 60)}), after ${duration(w.autostopAfterSeconds)} idle`
        : `after ${duration(w.autostopAfterSeconds)} idle`;
  const rows: [string, string | null][] = [['autostop', autostop]];
  // What keeps it alive matters only where something would stop it.
  if (w.autostopAfterSeconds !== null) for (const [i, k] of (w.keptAliveBecause ?? []).entries()) rows.push([i === 0 ? 'kept alive' : '', k.message]);
  rows.push(['dormant', w.dormantAt ? `since ${w.dormantAt}; a4c ws start clears it` : null]);
  rows.push(['deleted at', w.deleteAt ?? null]);
  return rows;
}
