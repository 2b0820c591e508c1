import { readFileSync } from 'node:fs';
import { SETTLED_STATUSES, type ErrorBody, type Workspace } from '@a4c/common';
import { CliError } from '../client.js';
import type { Context } from '../context.js';
import { table } from '../format.js';

/** One item of POST /v1/workspace-batches: a create body and whose workspace it is. */
export type BatchItem = Record<string, unknown> & { userId: string };

interface BatchResult {
  index: number;
  userId: string;
  name: string | null;
  status: number;
  workspace?: Workspace;
  error?: ErrorBody;
}
interface BatchAnswer {
  created: number;
  failed: number;
  results: BatchResult[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Creates the items in one request, then (with wait) follows the created ones until
 * each is settled or --timeout passes, and prints one line per item. Exit code 1 if
 * any item was refused or its workspace failed.
 */
export async function createBatch(ctx: Context, items: BatchItem[], wait: boolean): Promise<number> {
  const answer = await ctx.client.request<BatchAnswer>('POST', '/v1/workspace-batches', { workspaces: items });
  ctx.note(`${answer.created} created, ${answer.failed} refused`);
  const pending = () => answer.results.filter((r) => r.workspace && !SETTLED_STATUSES.includes(r.workspace.status));
  const deadline = Date.now() + ctx.timeout * 1000;
  while (wait && pending().length) {
    if (Date.now() > deadline) {
      ctx.note(`${pending().length} not settled after ${ctx.timeout} s; follow them with: a4c ws list`);
      break;
    }
    await sleep(500);
    const now = pending();
    // A few at a time: a workshop's worth of polls must not trip the request rate limit.
    for (let i = 0; i < now.length; i += 8) {
      await Promise.all(
        now.slice(i, i + 8).map(async (r) => {
          r.workspace = await ctx.client.request<Workspace>('GET', `/v1/workspaces/${(r.workspace as Workspace).id}`);
        }),
      );
    }
  }
  ctx.print(answer, () =>
    table(
      ['#', 'USER', 'NAME', 'STATUS', 'ID', 'HOST / WHY'],
      answer.results.map((r) =>
        r.workspace
          ? [String(r.index), r.userId, r.workspace.name, r.workspace.status, r.workspace.id, r.workspace.hostId ?? '-']
          : [String(r.index), r.userId, r.name ?? '-', `${r.status} ${r.error?.error ?? ''}`, '-', `${r.error?.message ?? ''}${r.error?.suggestion ? ` (${r.error.suggestion})` : ''}`],
      ),
    ),
  );
  return answer.results.some((r) => !r.workspace || r.workspace.status === 'FAILED' || r.workspace.status === 'LOST') ? 1 : 0;
}

/** The items of a4c ws create-many FILE: a JSON list (or {"workspaces": [...]}); userId defaults to --user. */
export function readItems(file: string, user: string): BatchItem[] {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CliError(`${file} is not JSON: ${(e as Error).message}`);
  }
  const list = Array.isArray(value) ? value : (value as { workspaces?: unknown } | null)?.workspaces;
  if (!Array.isArray(list)) throw new CliError(`${file}: expected a JSON list of workspaces, e.g. [{"userId": "alice", "projectName": "p", "arch": "linux-x64", "tier": "standard"}]`);
  return list.map((x: unknown, i) => {
    if (!x || typeof x !== 'object' || Array.isArray(x)) throw new CliError(`${file}: item ${i} is not a JSON object`);
    const item = x as Record<string, unknown>;
    const userId = typeof item.userId === 'string' ? item.userId : user;
    if (!userId) throw new CliError(`${file}: item ${i} has no userId, and there is no --user`);
    return { ...item, userId };
  });
}
