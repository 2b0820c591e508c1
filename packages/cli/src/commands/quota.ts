import { InvalidArgumentError, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { CliError } from '../client.js';
import type { Context } from '../context.js';
import { ADMIN_HEADING, commandGroup } from './group.js';
import { quotaText } from '../format.js';

/** A limit's new value: a number, or "inherit" to clear the override (sent as null). */
function limit(value: string): number | 'inherit' {
  if (value === 'inherit') return value;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  throw new InvalidArgumentError('It must be a number or "inherit".');
}

/** a4c quota: limits per user and per team (a user's own override, else the team's, else the default). */
export function registerQuota(program: CommandUnknownOpts, ctx: Context): void {
  const quota = commandGroup(program, 'quota', ADMIN_HEADING).description("quotas: get (the default) and set (admin), for a user (--user) or a team");
  const path = (team: string | undefined) => {
    if (team && ctx.userFlagGiven()) throw new CliError('pass --user or --team, not both');
    return team ? `/v1/teams/${encodeURIComponent(team)}/quota` : `/v1/users/${ctx.userPath()}/quota`;
  };

  quota
    .command('get', { isDefault: true })
    .description("a user's limits and usage (the global --user, else yourself), or a team's")
    .option('--team <team>', "the team's instead")
    .action(
      ctx.action(async (opts) => {
        const q = await ctx.client.request<Record<string, unknown>>('GET', path(opts.team));
        ctx.print(q, () => quotaText(q));
        return 0;
      }),
    );

  quota
    .command('set')
    .description('(admin) set limits for a user (the global --user) or a team; "inherit" clears an override')
    .option('--team <team>', "set the team's limits instead")
    .option('--max-workspaces <n>', 'workspaces at once', limit)
    .option('--max-disk-gb <n>', 'GB of disk over all workspaces', limit)
    .option('--max-builds <n>', 'concurrent image builds', limit)
    .action(
      ctx.action(async (opts) => {
        // commander would turn a parser's null into "", so "inherit" becomes null only here.
        const body: Record<string, number | null> = {};
        for (const [field, v] of [['maxWorkspaces', opts.maxWorkspaces], ['maxDiskGb', opts.maxDiskGb], ['maxConcurrentBuilds', opts.maxBuilds]] as const) {
          if (v !== undefined) body[field] = v === 'inherit' ? null : v;
        }
        if (!Object.keys(body).length) throw new CliError('a4c quota set needs --max-workspaces, --max-disk-gb or --max-builds', 'see a4c quota set --help');
        const q = await ctx.client.request<Record<string, unknown>>('PUT', path(opts.team), body);
        ctx.print(q, () => quotaText(q));
        return 0;
      }),
    );
}
