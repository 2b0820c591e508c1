import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { ARCHES, DEFAULT_TIERS, type Workspace } from '@a4c/common';
import type { Context } from '../context.js';
import { commandGroup } from './group.js';
import { finishWorkspace, followWorkspace } from '../follow.js';
import { workspaceDetails, workspacesTable } from '../format.js';

const TIERS = DEFAULT_TIERS.map((t) => (t.requiresApproval ? `${t.name} (needs an admin's approval)` : t.name)).join(', ');
const NO_WAIT = 'return as soon as the control plane accepts the request';

/** a4c ws: a user's workspaces, from create to rm. */
export function registerWorkspaces(program: CommandUnknownOpts, ctx: Context): void {
  const ws = commandGroup(program, 'ws', 'Workspaces:')
    .aliases(['workspace', 'workspaces'])
    .description('your workspaces: create, list, get, stop, start, rm, retry; approve and reject (admin)');
  const path = (id: string) => `/v1/workspaces/${encodeURIComponent(id)}`;

  ws.command('create')
    .description('ask for a workspace; waits, showing progress, until it runs or fails')
    .requiredOption('--project <name>', 'the project whose image it runs')
    .requiredOption('--arch <arch>', ARCHES.join(', '))
    .requiredOption('--tier <tier>', `${TIERS}, or a tier the control plane adds (A4C_TIERS)`)
    .option('--name <name>', 'its name')
    .option('--change <number>', "the change number of the project's image")
    .option('--image <image>', "run this image instead of the project's")
    .option('--no-wait', NO_WAIT)
    .action(
      ctx.action(async (opts) => {
        const body: Record<string, string> = { projectName: opts.project, arch: opts.arch, tier: opts.tier };
        if (opts.name) body.name = opts.name;
        if (opts.change) body.changeNumber = opts.change;
        if (opts.image) body.image = opts.image;
        const created = await ctx.client.request<Workspace>('POST', `/v1/users/${ctx.userPath()}/workspaces`, body);
        return finishWorkspace(ctx, await followWorkspace(ctx, created, opts.wait));
      }),
    );

  ws.command('list')
    .alias('ls')
    .description('your workspaces')
    .option('--all', 'deleted ones too')
    .action(
      ctx.action(async (opts) => {
        const r = await ctx.client.request<{ workspaces: Workspace[] }>('GET', `/v1/users/${ctx.userPath()}/workspaces${opts.all ? '?includeDeleted=true' : ''}`);
        ctx.print(r, () => workspacesTable(r.workspaces));
        return 0;
      }),
    );

  ws.command('get')
    .alias('show')
    .description('one workspace')
    .argument('<id>', 'workspace id')
    .action(
      ctx.action(async (id) => {
        const w = await ctx.client.request<Workspace>('GET', path(id));
        ctx.print(w, () => workspaceDetails(w));
        return 0;
      }),
    );

  // Each asks for a change and, unless --no-wait, waits for the workspace to settle.
  const changes = [
    { verb: 'stop', aliases: [], method: 'POST', description: 'stop it (the container and its data stay)' },
    { verb: 'start', aliases: [], method: 'POST', description: 'start it again (the same container)' },
    { verb: 'rm', aliases: ['delete'], method: 'DELETE', description: 'delete it (your volume stays)' },
    { verb: 'retry', aliases: [], method: 'POST', description: 'retry a FAILED workspace (what the failed attempt left is cleaned first)' },
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
