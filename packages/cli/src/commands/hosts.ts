import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { HostView } from '@a4c/common';
import type { Context } from '../context.js';
import { commandGroup } from './group.js';
import { hostsTable } from '../format.js';
import { CliError } from '../client.js';

/** a4c hosts: the Docker hosts whose agents place workspaces. */
export function registerHosts(program: CommandUnknownOpts, ctx: Context): void {
  const hosts = commandGroup(program, 'hosts', 'Hosts:').alias('host').description('hosts: list (the default), get; drain (with --deadline, --migrate) and activate (admin)');
  const path = (id: string) => `/v1/hosts/${encodeURIComponent(id)}`;

  hosts
    .command('list', { isDefault: true })
    .alias('ls')
    .description('every host with status, capacity, reservations and usage (a4c hosts alone does this)')
    .action(
      ctx.action(async () => {
        const r = await ctx.client.request<{ hosts: HostView[] }>('GET', '/v1/hosts');
        ctx.print(r, () => hostsTable(r.hosts));
        return 0;
      }),
    );

  hosts
    .command('get')
    .alias('show')
    .description('one host')
    .argument('<id>', 'host id')
    .action(
      ctx.action(async (id) => {
        const h = await ctx.client.request<HostDetail>('GET', path(id));
        ctx.print(h, () => hostDetailText(h));
        return 0;
      }),
    );

  hosts
    .command('drain')
    .description(
      '(admin) place nothing new on the host; with --migrate move its workspaces off (with their files), with --deadline stop what is left then. Owners are notified (workspace.drain_notice); progress shows in `a4c hosts get`',
    )
    .argument('<id>', 'host id')
    .option('--deadline <duration>', 'stop whatever still runs there after this long: 90s, 30m, 1h, 2d')
    .option('--migrate', 'move the workspaces to other hosts')
    .option('--parallelism <n>', 'moves at once (default: the control plane\'s A4C_DRAIN_PARALLELISM, 1)')
    .action(
      ctx.action(async (id, opts) => {
        const body: Record<string, unknown> = {};
        if (opts.deadline !== undefined) body.deadlineSeconds = seconds(opts.deadline);
        if (opts.migrate) body.migrate = true;
        if (opts.parallelism !== undefined) {
          const n = Number(opts.parallelism);
          if (!Number.isInteger(n) || n < 1) throw new CliError(`--parallelism must be a whole number of 1 or more, got ${JSON.stringify(opts.parallelism)}`);
          body.parallelism = n;
        }
        const h = await ctx.client.request<HostDetail>('POST', `${path(id)}/drain`, body);
        ctx.print(h, () => hostDetailText(h));
        return 0;
      }),
    );

  hosts
    .command('activate')
    .description('(admin) end the drain: the host takes new workspaces again (moves under way finish)')
    .argument('<id>', 'host id')
    .action(
      ctx.action(async (id) => {
        const h = await ctx.client.request<HostDetail>('POST', `${path(id)}/activate`);
        ctx.print(h, () => hostDetailText(h));
        return 0;
      }),
    );
}

/** A host with its latest drain (GET /v1/hosts/{id}). */
type HostDetail = HostView & {
  drain?: {
    status: string;
    migrate: boolean;
    parallelism: number;
    deadlineAt: string | null;
    remaining: number;
    moving: number;
    moved: number;
    moveFailures: number;
    forceStopped: number;
  } | null;
};

function hostDetailText(h: HostDetail): string {
  const d = h.drain;
  if (!d) return hostsTable([h]);
  return `${hostsTable([h])}\ndrain: ${d.status}${d.migrate ? `, migrating ${d.parallelism} at a time` : ''}${d.deadlineAt ? `, deadline ${d.deadlineAt}` : ''}; ${d.remaining} left, ${d.moving} moving, ${d.moved} moved, ${d.moveFailures} move(s) failed, ${d.forceStopped} stopped at the deadline`;
}

/** "90", "90s", "30m", "1h", "2d" as seconds. */
export function seconds(text: string): number {
  const m = /^(\d+)(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new CliError(`--deadline must be a duration such as 90s, 30m, 1h or 2d, got ${JSON.stringify(text)}`);
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
