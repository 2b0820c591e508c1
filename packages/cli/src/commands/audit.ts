import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Context } from '../context.js';
import { ADMIN_HEADING } from './group.js';
import { table } from '../format.js';

/** a4c audit: who did what through the API. */
export function registerAudit(program: CommandUnknownOpts, ctx: Context): void {
  program
    .command('audit')
    .description('the audit log, newest first')
    .helpGroup(ADMIN_HEADING)
    .option('--actor <user>', 'only what this user did')
    .action(
      ctx.action(async (opts) => {
        const r = await ctx.client.request<{ entries: { at: string; actor: string; action: string; target: string; outcome: number }[] }>(
          'GET',
          `/v1/audit${opts.actor ? `?actor=${encodeURIComponent(opts.actor)}` : ''}`,
        );
        ctx.print(r, () => table(['AT', 'ACTOR', 'ACTION', 'TARGET', 'STATUS'], r.entries.map((e) => [e.at, e.actor, e.action, e.target, String(e.outcome)])));
        return 0;
      }),
    );
}
