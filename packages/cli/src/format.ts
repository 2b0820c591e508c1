import { formatBytes, type Build, type HostView, type Workspace } from '@a4c/common';
import { autostopRows } from './autostop.js';
import type { StreamedEvent } from './stream.js';

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function workspacesTable(list: Workspace[]): string {
  if (!list.length) return 'no workspaces; create one with: a4c ws create --project P --arch linux-x64 --tier standard';
  return table(
    ['ID', 'NAME', 'PROJECT', 'TIER', 'STATUS', 'HOST', 'HOSTNAME'],
    list.map((w) => [w.id, w.name, w.projectName, w.tier, w.hostLost ? `${w.status} (host lost)` : w.status, w.hostId ?? '-', w.hostname ?? '-']),
  );
}

/** "1.2 GiB of 50.0 GiB (2 %; layer 200.0 MiB, volume 1.0 GiB)". */
function diskText(d: NonNullable<Workspace['disk']>): string {
  const b = formatBytes;
  const pct = d.limitBytes > 0 ? Math.round((d.usedBytes / d.limitBytes) * 100) : 0;
  return `${b(d.usedBytes)} of ${b(d.limitBytes)} (${pct} %; layer ${b(d.writableBytes)}, volume ${b(d.volumeBytes)})`;
}

export function workspaceDetails(w: Workspace): string {
  const rows: [string, string | null][] = [
    ['id', w.id],
    ['name', w.name],
    ['user', w.userId],
    ['project', w.projectName],
    ['arch', w.arch],
    ['tier', w.tier],
    ['image', w.image],
    ['status', w.status],
    ['host', w.hostId],
    ['host lost', w.hostLost ? "yes: the host stopped heartbeating (or its Docker Engine answers no more); the status is the last one known" : null],
    ['container', w.containerId?.slice(0, 12) ?? null],
    ['hostname', w.hostname],
    ['ssh', w.sshCommand],
    ['failed step', w.failedStep],
    ['error', w.error],
    ['disk', w.disk ? diskText(w.disk) : null],
    ['created', w.createdAt],
    ['updated', w.updatedAt],
    ...autostopRows(w),
  ];
  return rows
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${(k ? `${k}:` : '').padEnd(13)}${v}`)
    .join('\n');
}

/** What changed, short: "status CREATING→RUNNING, hostId -→h1". */
function changesText(e: StreamedEvent): string {
  const show = (v: unknown) => (v === null || v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v));
  return Object.entries(e.changes)
    .map(([k, c]) => `${k} ${show(c.from)}→${show(c.to)}`)
    .join(', ');
}

function subject(e: StreamedEvent): string {
  return e.workspaceId ?? e.buildId ?? (e.hostId ? `host ${e.hostId}` : e.userId ? `user ${e.userId}` : '-');
}

export function eventsTable(list: StreamedEvent[]): string {
  if (!list.length) return 'no events in that window; widen it with --since 7d, or watch with --follow';
  return table(
    ['AT', 'KIND', 'ACTOR', 'ABOUT', 'CHANGES', 'REASON'],
    list.map((e) => [e.at, e.kind, e.actor, subject(e), changesText(e) || '-', e.reason]),
  );
}

/** One event as a line, for --follow. */
export function eventLine(e: StreamedEvent): string {
  const changes = changesText(e);
  return `${e.at}  ${e.kind}  ${subject(e)}  by ${e.actor}${changes ? `  ${changes}` : ''}  (${e.reason})`;
}

/** A workspace's latest events, under its details (a4c ws get). */
export function historyText(list: StreamedEvent[]): string {
  if (!list.length) return 'history:     none';
  return ['history:', ...list.map((e) => `  ${e.at}  ${e.kind.padEnd(26)} by ${e.actor}${changesText(e) ? `  ${changesText(e)}` : ''}`)].join('\n');
}

const pct = (n: number | undefined) => (n === undefined ? '-' : `${n.toFixed(1)}%`);
const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)}G`;

export function hostsTable(list: HostView[]): string {
  if (!list.length) return 'no hosts yet; start a4c-agent on a Docker host';
  return table(
    ['HOST', 'ARCH', 'STATUS', 'WORKSPACES', 'DISK', 'MEMORY', 'CPU', 'RESERVED / ALLOCATABLE', 'LAST HEARTBEAT'],
    list.map((h) => [
      h.id,
      h.arch,
      h.status,
      String(h.workspaceCount),
      pct(h.stats?.diskPercent),
      pct(h.stats?.memoryPercent),
      pct(h.stats?.cpuPercent),
      `${gib(h.reserved.memoryBytes)}/${gib(h.allocatable.memoryBytes)} mem, ${h.reserved.cpus}/${h.allocatable.cpus} cpu, ${gib(h.reserved.diskBytes)}/${gib(h.allocatable.diskBytes)} disk`,
      h.lastHeartbeatAt ?? 'never',
    ]),
  );
}

export function quotaText(q: Record<string, unknown>): string {
  const limits = (q.limits ?? {}) as Record<string, number>;
  const source = (q.source ?? {}) as Record<string, string>;
  const usage = (q.usage ?? {}) as Record<string, number>;
  const rows: [string, string, string][] = [
    ['maxWorkspaces', 'workspaces', 'workspaces'],
    ['maxDiskGb', 'diskGb', 'GB disk'],
    ['maxConcurrentBuilds', 'concurrentBuilds', 'concurrent builds'],
  ];
  const head = q.userId ? `user ${String(q.userId)}${q.teamId ? ` (team ${String(q.teamId)})` : ''}` : `team ${String(q.teamId)} (${String(q.members)} members)`;
  return [
    head,
    ...rows.map(([k, u, label]) => {
      const used = usage[u] === undefined ? '' : `${usage[u]} of `;
      return `  ${label.padEnd(18)} ${used}${limits[k]}${source[k] ? `  (${source[k]})` : ''}`;
    }),
  ].join('\n');
}

export function buildsTable(list: Build[]): string {
  if (!list.length) return 'no builds; queue one with: a4c build schedule --image-name N --project P --arch linux-x64 --change C';
  return table(
    ['ID', 'IMAGE', 'STATUS', 'WORKER', 'ATTEMPTS', 'PROGRESS', 'CREATED'],
    list.map((b) => [b.id, b.imageTag, b.status, b.worker ?? '-', String(b.attempts), `${b.progress}%`, b.createdAt]),
  );
}

export function buildDetails(b: Build): string {
  const rows: [string, string | number | null][] = [
    ['id', b.id],
    ['image', b.imageTag],
    ['project', b.project],
    ['arch', b.arch],
    ['change', b.changeNumber],
    ['status', b.status],
    ['worker', b.worker],
    ['attempts', b.attempts],
    ['retries', b.retryCount],
    ['progress', `${b.progress}%`],
    ['image id', b.imageId],
    ['error', b.error],
    ['created', b.createdAt],
    ['finished', b.finishedAt],
  ];
  const head = rows
    .filter(([, v]) => v !== null && v !== '')
    .map(([k, v]) => `${`${k}:`.padEnd(13)}${v}`)
    .join('\n');
  return b.logTail.length ? `${head}\nlog (last lines):\n${b.logTail.map((l) => `  | ${l}`).join('\n')}` : head;
}
