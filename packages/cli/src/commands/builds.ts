import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { ARCHES, BUILD_STATUSES, type Build } from '@a4c/common';
import type { Context } from '../context.js';
import { commandGroup } from './group.js';
import { finishBuild, followBuild } from '../follow.js';
import { buildDetails, buildsTable } from '../format.js';

/** a4c build: project image builds, queued on the control plane and run by agents. */
export function registerBuilds(program: CommandUnknownOpts, ctx: Context): void {
  const build = commandGroup(program, 'build', 'Image builds:')
    .alias('builds')
    .description('image builds: schedule, get, list, logs, cancel');
  const path = (id: string) => `/v1/image-schedules/${encodeURIComponent(id)}`;

  build
    .command('schedule')
    .description('queue a build; follows its log until it completes or fails')
    .requiredOption('--image-name <name>', 'the image to build (tagged <name>:<change>-<arch>)')
    .requiredOption('--project <name>', 'the project it is for')
    .requiredOption('--arch <arch>', ARCHES.join(', '))
    .requiredOption('--change <number>', 'the change number to build')
    .option('--no-wait', 'return as soon as the build is queued')
    .action(
      ctx.action(async (opts) => {
        const body = { imageName: opts.imageName, project: opts.project, arch: opts.arch, changeNumber: opts.change };
        const b = await ctx.client.request<Build>('POST', `/v1/users/${ctx.userPath()}/image-schedules`, body);
        if (!opts.wait) {
          ctx.print(b, () => buildDetails(b));
          return 0;
        }
        return finishBuild(ctx, await followBuild(ctx, encodeURIComponent(b.id), !ctx.json));
      }),
    );

  build
    .command('get')
    .alias('show')
    .description('one build, with its last log lines')
    .argument('<id>', 'build id')
    .action(
      ctx.action(async (id) => {
        const b = await ctx.client.request<Build>('GET', path(id));
        ctx.print(b, () => buildDetails(b));
        return 0;
      }),
    );

  build
    .command('list')
    .alias('ls')
    .description('builds, newest first')
    .option('--status <status>', BUILD_STATUSES.join(', '))
    .option('--project <name>', 'of this project')
    .option('--arch <arch>', 'for this arch')
    .option('--mine', 'only the ones you scheduled')
    .action(
      ctx.action(async (opts) => {
        const q = new URLSearchParams();
        if (opts.status) q.set('status', opts.status);
        if (opts.project) q.set('project', opts.project);
        if (opts.arch) q.set('arch', opts.arch);
        if (opts.mine) q.set('userId', ctx.user);
        const r = await ctx.client.request<{ builds: Build[] }>('GET', `/v1/image-schedules${q.size ? `?${q}` : ''}`);
        ctx.print(r, () => buildsTable(r.builds));
        return 0;
      }),
    );

  build
    .command('cancel')
    .description('cancel a queued or running build (a running one is stopped on its host)')
    .argument('<id>', 'build id')
    .action(
      ctx.action(async (id) => {
        const b = await ctx.client.request<Build>('POST', `${path(id)}/cancel`);
        ctx.print(b, () => buildDetails(b));
        return 0;
      }),
    );

  build
    .command('logs')
    .description("a build's log")
    .argument('<id>', 'build id')
    .option('-f, --follow', 'keep printing new lines until the build completes or fails')
    .action(
      ctx.action(async (id, opts) => {
        if (opts.follow) return finishBuild(ctx, await followBuild(ctx, encodeURIComponent(id), true));
        const r = await ctx.client.request<{ lines: { line: string }[] }>('GET', `${path(id)}/logs`);
        ctx.print(r, () => r.lines.map((l) => l.line).join('\n'));
        return 0;
      }),
    );
}
