import { InvalidArgumentError, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { ARCHES, DEFAULT_TIERS, WORKSPACE_STATUSES, type Workspace } from '@a4c/common';
import type { Context } from '../context.js';
import { commandGroup } from './group.js';
import { finishWorkspace, followWorkspace } from '../follow.js';
import { autostopSeconds } from '../autostop.js';
import { historyText, workspaceDetails, workspacesTable } from '../format.js';
import type { StreamedEvent } from '../stream.js';
import { createBatch, readItems } from './workspace-batches.js';

const HISTORY = 10;

const TIERS = DEFAULT_TIERS.map((t) => (t.requiresApproval ? `${t.name} (needs an admin's approval)` : t.name)).join(', ');
const NO_WAIT = 'return as soon as the control plane accepts the request';

/** --count: 1 to 10000 (the control plane's A4C_WORKSPACE_BATCH_MAX says how many it takes). */
function count(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 10_000) throw new InvalidArgumentError('It must be a whole number from 1 to 10000.');
  return n;
}

/** a4c ws: a user's workspaces, from create to rm. */
export function registerWorkspaces(program: CommandUnknownOpts, ctx: Context): void {
  const ws = commandGroup(program, 'ws', 'Workspaces:')
    .aliases(['workspace', 'workspaces'])
    .description('your workspaces: create, list, get, stop, start, rm, retry, autostop; approve and reject (admin)');
  const path = (id: string) => `/v1/workspaces/${encodeURIComponent(id)}`;

  ws.command('create')
    .description('ask for a workspace; waits, showing progress, until it runs or fails')
    .requiredOption('--project <name>', 'the project whose image it runs')
    .requiredOption('--arch <arch>', ARCHES.join(', '))
    .requiredOption('--tier <tier>', `${TIERS}, or a tier the control plane adds (A4C_TIERS)`)
    .option('--name <name>', 'its name')
    .option('--change <number>', "the change number of the project's image")
    .option('--image <image>', "run this image instead of the project's")
    .option('--autostop <duration>', "stop it after this long idle (30m, 2h, 1d) or never; default: the tier's", autostopSeconds)
    .option('--count <n>', 'create this many in one request (POST /v1/workspace-batches), named <name>-1 ... <name>-N', count)
    .option('--no-wait', NO_WAIT)
    .action(
      ctx.action(async (opts) => {
        const body: Record<string, string | number> = { projectName: opts.project, arch: opts.arch, tier: opts.tier };
        if (opts.autostop !== undefined) body.autostopAfterSeconds = opts.autostop;
        if (opts.name) body.name = opts.name;
        if (opts.change) body.changeNumber = opts.change;
        if (opts.image) body.image = opts.image;
        if (opts.count !== undefined) {
          const user = decodeURIComponent(ctx.userPath());
          const items = Array.from({ length: opts.count }, (_, i) => ({ ...body, userId: user, ...(opts.name ? { name: `${opts.name}-${i + 1}` } : {}) }));
          return createBatch(ctx, items, opts.wait);
        }
        const created = await ctx.client.request<Workspace>('POST', `/v1/users/${ctx.userPath()}/workspaces`, body);
        return finishWorkspace(ctx, await followWorkspace(ctx, created, opts.wait));
      }),
    );

  ws.command('create-many')
    .description('create many workspaces in one request, e.g. one per workshop participant; waits until each runs or fails')
    .argument('<file>', 'a JSON list of create bodies, each with its userId (default: --user); - reads standard input')
    .option('--no-wait', NO_WAIT)
    .action(
      ctx.action(async (file, opts) => createBatch(ctx, readItems(file, ctx.user), opts.wait)),
    );

  ws.command('list')
    .alias('ls')
    .description('your workspaces; with --all-users, every workspace you may see (admins: the fleet, leads: their team)')
    .option('--all', 'deleted ones too')
    .option('--all-users', "not only yours: everyone's you may see")
    .option('--status <statuses>', `only these, comma-separated: ${WORKSPACE_STATUSES.join(', ')}`)
    .option('--host <id>', 'only those on this host')
    .option('--project <name>', 'only this project')
    .option('--tier <tier>', 'only this tier')
    .option('--team <id>', "only this team's (leads: their own team)")
    .option('--search <text>', 'text in the name, project, hostname, host or error (typos tolerated)')
    .action(
      ctx.action(async (opts) => {
        const filtered = opts.allUsers || opts.status || opts.host || opts.project || opts.tier || opts.team || opts.search;
        if (!filtered) {
          const r = await ctx.client.request<{ workspaces: Workspace[] }>('GET', `/v1/users/${ctx.userPath()}/workspaces${opts.all ? '?includeDeleted=true' : ''}`);
          ctx.print(r, () => workspacesTable(r.workspaces));
          return 0;
        }
        // The fleet search (GET /v1/workspaces), every page.
        const params = new URLSearchParams({ limit: '500' });
        if (!opts.allUsers) {
          ctx.userPath(); // an error if there is no user
          params.set('userId', ctx.user);
        }
        const status = opts.status ?? (opts.all ? WORKSPACE_STATUSES.join(',') : undefined);
        if (status) params.set('status', status);
        if (opts.host) params.set('hostId', opts.host);
        if (opts.project) params.set('project', opts.project);
        if (opts.tier) params.set('tier', opts.tier);
        if (opts.team) params.set('teamId', opts.team);
        if (opts.search) params.set('q', opts.search);
        const workspaces: Workspace[] = [];
        for (;;) {
          const page = await ctx.client.request<{ workspaces: Workspace[]; nextCursor: string | null }>('GET', `/v1/workspaces?${params}`);
          workspaces.push(...page.workspaces);
          if (!page.nextCursor) break;
          params.set('cursor', page.nextCursor);
        }
        ctx.print({ workspaces }, () => workspacesTable(workspaces));
        return 0;
      }),
    );

  ws.command('get')
    .alias('show')
    .description(`one workspace, with its last ${HISTORY} events (a4c events --workspace ID for all of them)`)
    .argument('<id>', 'workspace id')
    .action(
      ctx.action(async (id) => {
        const w = await ctx.client.request<Workspace>('GET', path(id));
        if (ctx.json) {
          ctx.print(w, () => '');
          return 0;
        }
        // The log is oldest first: read to its end, keep the last few.
        const history: StreamedEvent[] = [];
        let after = '';
        for (;;) {
          const page = await ctx.client.request<{ events: StreamedEvent[]; nextCursor: string }>(
            'GET',
            `/v1/events?workspaceId=${encodeURIComponent(w.id)}&limit=1000${after ? `&after=${after}` : ''}`,
          );
          history.push(...page.events);
          history.splice(0, Math.max(0, history.length - HISTORY));
          if (page.events.length < 1000) break;
          after = page.nextCursor;
        }
        ctx.print(w, () => `${workspaceDetails(w)}\n${historyText(history)}`);
        return 0;
      }),
    );

  // Each asks for a change and, unless --no-wait, waits for the workspace to settle.
  const changes = [
    { verb: 'stop', aliases: [], method: 'POST', description: 'stop it (the container and its data stay)' },
    { verb: 'start', aliases: [], method: 'POST', description: 'start it again (the same container)' },
    { verb: 'rm', aliases: ['delete'], method: 'DELETE', description: 'delete it (your volume stays)' },
    { verb: 'retry', aliases: [], method: 'POST', description: 'retry a FAILED or LOST workspace: placed again like a new one, same id (what an older attempt left is cleaned first)' },
    { verb: 'approve', aliases: [], method: 'POST', description: '(admin) approve a workspace whose tier needs it' },
  ] as const;
  for (const c of changes) {
    ws.command(c.verb)
      .aliases(c.aliases)
      .description(c.description)
      .argument('<id>', 'workspace id')
      .option('--no-wait', NO_WAIT)
      .action(
        ctx.action(async (id, opts) => {
          const w = await ctx.client.request<Workspace>(c.method, c.method === 'DELETE' ? path(id) : `${path(id)}/${c.verb}`);
          return finishWorkspace(ctx, await followWorkspace(ctx, w, opts.wait));
        }),
      );
  }

  ws.command('autostop')
    .description("stop it after this long idle (30m, 2h, 1d) or never; you may only shorten your tier's period")
    .argument('<id>', 'workspace id')
    .argument('<duration>', 'a duration of at least 60 s, or never', autostopSeconds)
    .action(
      ctx.action(async (id, seconds) => {
        const w = await ctx.client.request<Workspace>('PATCH', path(id), { autostopAfterSeconds: seconds });
        ctx.print(w, () => workspaceDetails(w));
        return 0;
      }),
    );

  ws.command('reject')
    .description('(admin) reject a workspace waiting for approval')
    .argument('<id>', 'workspace id')
    .option('--reason <text>', 'why, shown to its owner')
    .action(
      ctx.action(async (id, opts) => {
        const w = await ctx.client.request<Workspace>('POST', `${path(id)}/reject`, opts.reason ? { reason: opts.reason } : {});
        ctx.print(w, () => workspaceDetails(w));
        return 0;
      }),
    );
}
