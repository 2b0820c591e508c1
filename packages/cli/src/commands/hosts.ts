import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { HostView } from '@a4c/common';
import type { Context } from '../context.js';
import { commandGroup } from './group.js';
import { hostsTable } from '../format.js';

/** a4c hosts: the Docker hosts whose agents place workspaces. */
export function registerHosts(program: CommandUnknownOpts, ctx: Context): void {
  const hosts = commandGroup(program, 'hosts', 'Hosts:').alias('host').description('hosts: list (the default), get; drain and activate (admin)');
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
        const h = await ctx.client.request<HostView>('GET', path(id));
        ctx.print(h, () => hostsTable([h]));
        return 0;
      }),
    );

  for (const [verb, description] of [
    ['drain', '(admin) place nothing new on the host'],
    ['activate', '(admin) end the drain'],
  ] as const) {
    hosts
      .command(verb)
      .description(description)
      .argument('<id>', 'host id')
      .action(
        ctx.action(async (id) => {
          const h = await ctx.client.request<HostView>('POST', `${path(id)}/${verb}`);
          ctx.print(h, () => hostsTable([h]));
          return 0;
        }),
      );
  }
}
