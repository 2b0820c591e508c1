import { SETTLED_STATUSES, type Build, type Workspace } from '@a4c/common';
import type { Context } from './context.js';
import { buildDetails, workspaceDetails } from './format.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until the workspace settles (unless wait is false), printing each status it passes through to stderr. */
export async function followWorkspace(ctx: Context, first: Workspace, wait: boolean): Promise<Workspace> {
  let ws = first;
  if (!wait || SETTLED_STATUSES.includes(ws.status)) return ws;
  const started = Date.now();
  const deadline = started + ctx.timeout * 1000;
  let shown = '';
  const show = (w: Workspace) => {
    const line = `${w.status}${w.hostId ? ` on ${w.hostId}` : ''}`;
    if (line !== shown) {
      ctx.note(`${w.name}: ${line} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      shown = line;
    }
  };
  show(ws);
  while (!SETTLED_STATUSES.includes(ws.status)) {
    if (Date.now() > deadline) {
      ctx.note(`still ${ws.status} after ${ctx.timeout} s; follow it with: a4c ws get ${ws.id}`);
      return ws;
    }
    const left = Math.max(1, Math.min(20, Math.ceil((deadline - Date.now()) / 1000)));
    ws = await ctx.client.request<Workspace>('GET', `/v1/workspaces/${ws.id}`);
    show(ws);
    if (!SETTLED_STATUSES.includes(ws.status)) await sleep(Math.min(250, left * 1000));
  }
  return ws;
}

/** Prints the workspace; exit code 1 if it failed, with what to do next. */
export function finishWorkspace(ctx: Context, ws: Workspace): number {
  ctx.print(ws, () => workspaceDetails(ws));
  if (ws.status === 'FAILED') {
    if (!ctx.json) ctx.note(`failed at step "${ws.failedStep}": ${ws.error}\nretry it with: a4c ws retry ${ws.id}`);
    return 1;
  }
  if (ws.status === 'LOST') {
    if (!ctx.json) ctx.note(`its host ${ws.hostId ?? ''} is gone: ${ws.error ?? ''}\nrecreate it on another host with: a4c ws retry ${ws.id}   (or delete it: a4c ws rm ${ws.id})`);
    return 1;
  }
  if (ws.status === 'PENDING_APPROVAL' && !ctx.json) ctx.note(`tier ${ws.tier} needs an admin's approval: a4c ws approve ${ws.id}`);
  return 0;
}

/** Prints a build's new log lines (to stderr, with its progress) until it completes or fails. */
export async function followBuild(ctx: Context, id: string, showLines: boolean): Promise<Build> {
  const deadline = Date.now() + ctx.timeout * 1000;
  let after = 0;
  let lastStatus = '';
  for (;;) {
    const r = await ctx.client.request<{ status: string; lines: { seq: number; line: string }[] }>('GET', `/v1/image-schedules/${id}/logs?after=${after}`);
    for (const l of r.lines) {
      if (showLines) ctx.note(`  | ${l.line}`);
      after = l.seq;
    }
    if (r.status !== lastStatus) {
      const b = await ctx.client.request<Build>('GET', `/v1/image-schedules/${id}`);
      ctx.note(`build ${b.imageTag}: ${b.status}${b.worker ? ` on ${b.worker}` : ''} (${b.progress}%)`);
      lastStatus = r.status;
    }
    if (r.status === 'COMPLETED' || r.status === 'FAILED' || r.status === 'CANCELLED') return ctx.client.request<Build>('GET', `/v1/image-schedules/${id}`);
    if (Date.now() > deadline) {
      ctx.note(`still ${r.status} after ${ctx.timeout} s; follow it with: a4c build logs ${id} --follow`);
      return ctx.client.request<Build>('GET', `/v1/image-schedules/${id}`);
    }
    await sleep(500);
  }
}

/** Prints the build; exit code 1 if it failed, with where to read why. */
export function finishBuild(ctx: Context, b: Build): number {
  ctx.print(b, () => buildDetails(b));
  if (b.status === 'FAILED' || b.status === 'CANCELLED') {
    if (!ctx.json) ctx.note(`build ${b.status === 'FAILED' ? 'failed' : 'cancelled'}: ${b.error}\nsee its log: a4c build logs ${b.id}`);
    return 1;
  }
  return 0;
}
