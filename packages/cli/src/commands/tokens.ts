import { InvalidArgumentError, type CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Context } from '../context.js';
import { ADMIN_HEADING, commandGroup } from './group.js';
import { table } from '../format.js';

interface Token {
  id: string;
  name: string;
  prefix: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

function seconds(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('It must be a whole number of seconds.');
  return Number(value);
}

/** a4c tokens: API tokens of a user (the global --user, else yourself). */
export function registerTokens(program: CommandUnknownOpts, ctx: Context): void {
  const tokens = commandGroup(program, 'tokens', ADMIN_HEADING)
    .alias('token')
    .description('API tokens of a user (the global --user, else yourself): list (the default), issue, revoke');
  const base = () => `/v1/users/${ctx.userPath()}/tokens`;

  tokens
    .command('issue')
    .description('a new API token, shown once')
    .option('--name <name>', 'what it is for', 'cli')
    .option('--ttl <seconds>', 'it expires after this long (default: never)', seconds)
    .action(
      ctx.action(async (opts) => {
        const t = await ctx.client.request<{ id: string; token: string; expiresAt: string | null }>('POST', base(), { name: opts.name, ...(opts.ttl ? { ttlSeconds: opts.ttl } : {}) });
        ctx.print(t, () => `${t.token}\n(id ${t.id}; expires ${t.expiresAt ?? 'never'}; shown only now: store it, e.g. export A4C_TOKEN=...)`);
        return 0;
      }),
    );

  tokens
    .command('list', { isDefault: true })
    .alias('ls')
    .description('the tokens, revoked ones too (a4c tokens alone does this)')
    .action(
      ctx.action(async () => {
        const r = await ctx.client.request<{ tokens: Token[] }>('GET', base());
        ctx.print(r, () => table(['ID', 'NAME', 'PREFIX', 'EXPIRES', 'REVOKED', 'LAST USED'], r.tokens.map((t) => [t.id, t.name, t.prefix, t.expiresAt ?? '-', t.revokedAt ?? '-', t.lastUsedAt ?? '-'])));
        return 0;
      }),
    );

  tokens
    .command('revoke')
    .description('revoke a token: it stops working at once')
    .argument('<id>', 'token id (a4c tokens list shows them)')
    .action(
      ctx.action(async (id) => {
        const t = await ctx.client.request<Record<string, unknown>>('DELETE', `${base()}/${encodeURIComponent(id)}`);
        ctx.print(t, () => `revoked ${String(t.id)}`);
        return 0;
      }),
    );
}
