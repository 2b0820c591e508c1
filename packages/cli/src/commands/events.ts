import { InvalidArgumentError, type CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Context } from '../context.js';
import { eventLine, eventsTable } from '../format.js';
import { followEvents, type StreamedEvent } from '../stream.js';

/** "1h", "30m", "2d" or an RFC 3339 time, as an ISO time. */
function since(value: string): string {
  const m = /^(\d+)([smhd])$/.exec(value);
  if (m) return new Date(Date.now() - Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'] * 1000).toISOString();
  const t = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\d/.test(value) || Number.isNaN(t)) throw new InvalidArgumentError('It must be a duration such as 30m, 2h, 7d, or a time such as 2026-01-31T12:00:00Z.');
  return new Date(t).toISOString();
}

function positive(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 100_000) throw new InvalidArgumentError('It must be a whole number from 1 to 100000.');
  return n;
}

/** a4c events: the activity log, read or followed live. */
export function registerEvents(program: CommandUnknownOpts, ctx: Context): void {
  program
    .command('events')
    .description('the activity log, oldest first: what changed, who did it and why; --follow to watch it live')
    .helpGroup('Activity:')
    .option('--workspace <id>', 'only this workspace')
    .option('--host <id>', 'only this host')
    .option('--owner <user>', "only this user's workspaces, builds and account")
    .option('--build <id>', 'only this image build')
    .option('--kind <kinds>', 'only these kinds, comma-separated (docs/api.md lists them), e.g. workspace.failed')
    .option('--since <when>', 'from this long ago (30m, 2h, 7d) or this time (default 1h; with --follow: from now)', since)
    .option('--limit <n>', 'at most this many (without --follow; default 1000)', positive)
    .option('-f, --follow', 'keep watching and print each event as it happens (Ctrl-C ends); -o json prints one JSON object per line')
    .action(
      ctx.action(async (opts) => {
        const params = new URLSearchParams();
        if (opts.workspace) params.set('workspaceId', opts.workspace);
        if (opts.host) params.set('hostId', opts.host);
        if (opts.owner) params.set('userId', opts.owner);
        if (opts.build) params.set('buildId', opts.build);
        if (opts.kind) params.set('kind', opts.kind);
        if (opts.follow) {
          if (opts.since) params.set('since', opts.since);
          const query = params.size ? `?${params}` : '';
          const stop = new AbortController();
          const end = () => stop.abort();
          process.once('SIGINT', end);
          process.once('SIGTERM', end);
          try {
            const client = ctx.client;
            await followEvents(
              client.baseUrl,
              client.token,
              query,
              (e) => ctx.io.out(ctx.json ? `${JSON.stringify(e)}\n` : `${eventLine(e)}\n`),
              stop.signal,
              (why) => ctx.note(`${why}; reconnecting, from the last event seen`),
            );
          } finally {
            process.off('SIGINT', end);
            process.off('SIGTERM', end);
          }
          return 0;
        }
        params.set('since', opts.since ?? since('1h'));
        const limit = opts.limit ?? 1000;
        const events: StreamedEvent[] = [];
        let nextCursor = '';
        for (;;) {
          params.set('limit', String(Math.min(1000, limit - events.length)));
          if (nextCursor) params.set('after', nextCursor);
          const page = await ctx.client.request<{ events: StreamedEvent[]; nextCursor: string }>('GET', `/v1/events?${params}`);
          events.push(...page.events);
          nextCursor = page.nextCursor;
          if (page.events.length < Number(params.get('limit')) || events.length >= limit) break;
        }
        ctx.print({ events, nextCursor }, () => eventsTable(events));
        return 0;
      }),
    );
}
