import { InvalidArgumentError, type CommandUnknownOpts } from '@commander-js/extra-typings';
import type { CreatedWebhook, Webhook, WebhookDelivery } from '@a4c/common';
import { CliError } from '../client.js';
import type { Context } from '../context.js';
import { table } from '../format.js';
import { commandGroup } from './group.js';

const HEADING = 'Webhooks:';

function kinds(value: string): string[] {
  const list = value.split(',').map((k) => k.trim()).filter(Boolean);
  if (!list.length) throw new InvalidArgumentError('Name at least one event kind, e.g. build.completed,workspace.failed (or * for all).');
  return list;
}

function positive(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 500) throw new InvalidArgumentError('It must be a whole number from 1 to 500.');
  return n;
}

const describe = (w: Webhook) =>
  [
    `id:          ${w.id}`,
    `url:         ${w.url}`,
    `events:      ${w.events.join(', ')}`,
    `owner:       ${w.userId ?? '(fleet-wide)'}`,
    `enabled:     ${w.enabled ? 'yes' : `no${w.disabledReason ? ` (${w.disabledReason})` : ''}`}`,
    `secret:      ${w.secretPrefix}…`,
    `failures:    ${w.consecutiveFailures} in a row`,
    ...(w.description ? [`description: ${w.description}`] : []),
  ].join('\n');

/** a4c webhooks: who is told what happened, and how each delivery went. */
export function registerWebhooks(program: CommandUnknownOpts, ctx: Context): void {
  const hooks = commandGroup(program, 'webhooks', HEADING)
    .alias('webhook')
    .description('signed HTTP callbacks for events (build.completed, workspace.failed, ...): list (the default), create, get, update, delete, deliveries, test');
  const one = (id: string) => `/v1/webhooks/${encodeURIComponent(id)}`;

  hooks
    .command('create')
    .description('a new webhook; prints its signing secret, shown only now')
    .requiredOption('--endpoint <url>', 'where deliveries are POSTed (http or https); --url is the control plane\'s')
    .requiredOption('--events <kinds>', 'event kinds, comma-separated (docs/api.md lists them); a prefix ending in * matches several: workspace.*, host.drain_*, *', kinds)
    .option('--secret <secret>', 'your own signing secret (16-256 printable characters); default: a new random one')
    .option('--description <text>', 'what it is for')
    .option('--for <user>', "admins: another user's events (default: your own; the admin token: fleet-wide)")
    .option('--disabled', 'create it disabled')
    .action(
      ctx.action(async (opts) => {
        const w = await ctx.client.request<CreatedWebhook>('POST', '/v1/webhooks', {
          url: opts.endpoint,
          events: opts.events,
          ...(opts.secret ? { secret: opts.secret } : {}),
          ...(opts.description ? { description: opts.description } : {}),
          ...(opts.for ? { userId: opts.for } : {}),
          ...(opts.disabled ? { enabled: false } : {}),
        });
        ctx.print(w, () => `${describe(w)}\n\nsigning secret (shown only now; store it with the receiver):\n${w.secret}`);
        return 0;
      }),
    );

  hooks
    .command('list', { isDefault: true })
    .alias('ls')
    .description("your webhooks; --owner: that user's (their lead, admins); the admin token alone: all")
    .option('--owner <user>', "this user's webhooks (their lead and admins may read them)")
    .action(
      ctx.action(async (opts) => {
        const r = await ctx.client.request<{ webhooks: Webhook[] }>('GET', `/v1/webhooks${opts.owner ? `?userId=${encodeURIComponent(opts.owner)}` : ''}`);
        ctx.print(r, () =>
          table(
            ['ID', 'URL', 'EVENTS', 'OWNER', 'ENABLED', 'FAILURES'],
            r.webhooks.map((w) => [w.id, w.url, w.events.join(','), w.userId ?? '(fleet)', w.enabled ? 'yes' : 'no', String(w.consecutiveFailures)]),
          ),
        );
        return 0;
      }),
    );

  hooks
    .command('get')
    .description('one webhook (never its secret)')
    .argument('<id>', 'webhook id (a4c webhooks list shows them)')
    .action(
      ctx.action(async (id) => {
        const w = await ctx.client.request<Webhook>('GET', one(id));
        ctx.print(w, () => describe(w));
        return 0;
      }),
    );

  hooks
    .command('update')
    .description('change a webhook; --enable also clears its failure count')
    .argument('<id>', 'webhook id')
    .option('--endpoint <url>', 'a new URL for the deliveries')
    .option('--events <kinds>', 'new event kinds, comma-separated', kinds)
    .option('--secret <secret>', 'a new signing secret (the old one stops at once)')
    .option('--description <text>', 'what it is for')
    .option('--enable', 'enable it')
    .option('--disable', 'disable it')
    .action(
      ctx.action(async (id, opts) => {
        if (opts.enable && opts.disable) throw new CliError('--enable and --disable contradict each other', 'pass one of them');
        const w = await ctx.client.request<Webhook>('PATCH', one(id), {
          ...(opts.endpoint ? { url: opts.endpoint } : {}),
          ...(opts.events ? { events: opts.events } : {}),
          ...(opts.secret ? { secret: opts.secret } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
          ...(opts.enable ? { enabled: true } : opts.disable ? { enabled: false } : {}),
        });
        ctx.print(w, () => describe(w));
        return 0;
      }),
    );

  hooks
    .command('delete')
    .alias('rm')
    .description('delete a webhook and its deliveries')
    .argument('<id>', 'webhook id')
    .action(
      ctx.action(async (id) => {
        const w = await ctx.client.request<Webhook>('DELETE', one(id));
        ctx.print(w, () => `deleted ${w.id} (${w.url})`);
        return 0;
      }),
    );

  hooks
    .command('deliveries')
    .description('deliveries of a webhook, newest first: status, attempts, last answer, next attempt')
    .argument('<id>', 'webhook id')
    .option('--status <status>', 'only PENDING, SUCCEEDED or FAILED')
    .option('--limit <n>', 'at most this many (default 50)', positive)
    .action(
      ctx.action(async (id, opts) => {
        const q = new URLSearchParams();
        if (opts.status) q.set('status', opts.status);
        if (opts.limit) q.set('limit', String(opts.limit));
        const r = await ctx.client.request<{ deliveries: WebhookDelivery[] }>('GET', `${one(id)}/deliveries${q.size ? `?${q}` : ''}`);
        ctx.print(r, () =>
          table(
            ['ID', 'KIND', 'STATUS', 'ATTEMPTS', 'LAST', 'NEXT ATTEMPT', 'CREATED'],
            r.deliveries.map((d) => [
              d.id,
              d.kind,
              d.status,
              String(d.attempts),
              d.lastError ?? (d.lastStatus !== null ? `HTTP ${d.lastStatus}` : '-'),
              d.nextAttemptAt ?? '-',
              d.createdAt,
            ]),
          ),
        );
        return 0;
      }),
    );

  hooks
    .command('test')
    .description('send a test ping (a webhook.ping event) to the webhook; follow it with a4c webhooks deliveries')
    .argument('<id>', 'webhook id')
    .action(
      ctx.action(async (id) => {
        const r = await ctx.client.request<{ deliveryId: string; eventId: number }>('POST', `${one(id)}/test`);
        ctx.print(r, () => `ping queued: delivery ${r.deliveryId} (a4c webhooks deliveries ${id})`);
        return 0;
      }),
    );
}
