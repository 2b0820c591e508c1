import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Context } from '../context.js';
import { ADMIN_HEADING, commandGroup } from './group.js';
import { table } from '../format.js';

interface User {
  id: string;
  teamId: string | null;
  role: string;
}

/** a4c users: who may use A4C, their role and team (admin). */
export function registerUsers(program: CommandUnknownOpts, ctx: Context): void {
  const users = commandGroup(program, 'users', ADMIN_HEADING).alias('user').description('(admin) users: create, list, set-team');

  users
    .command('create')
    .description('(admin) create the user named by the global --user')
    .option('--team <team>', 'their team')
    .option('--role <role>', 'user (the default), lead or admin')
    .action(
      ctx.action(async (opts) => {
        const body: Record<string, string> = { id: ctx.user };
        if (opts.team) body.teamId = opts.team;
        if (opts.role) body.role = opts.role;
        const u = await ctx.client.request<User>('POST', '/v1/users', body);
        ctx.print(u, () => `${u.id}: role ${u.role}, team ${u.teamId ?? '(none)'}`);
        return 0;
      }),
    );

  users
    .command('list')
    .alias('ls')
    .description('(admin) every user')
    .action(
      ctx.action(async () => {
        const r = await ctx.client.request<{ users: User[] }>('GET', '/v1/users');
        ctx.print(r, () => table(['USER', 'ROLE', 'TEAM'], r.users.map((u) => [u.id, u.role, u.teamId ?? '-'])));
        return 0;
      }),
    );

  users
    .command('set-team')
    .description('(admin) move the user named by the global --user to a team')
    .requiredOption('--team <team>', 'the team, or "none" to take them out of theirs')
    .action(
      ctx.action(async (opts) => {
        const teamId = opts.team === 'none' ? null : opts.team;
        const u = await ctx.client.request<User>('PUT', `/v1/users/${ctx.userPath()}`, { teamId });
        ctx.print(u, () => `${u.id}: team ${u.teamId ?? '(none)'}`);
        return 0;
      }),
    );
}
