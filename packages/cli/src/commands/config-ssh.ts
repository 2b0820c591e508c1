import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Workspace } from '@a4c/common';
import { CliError } from '../client.js';
import type { Context } from '../context.js';

export const BLOCK_START = '# ------------ START A4C (a4c config-ssh manages this block; edits inside are replaced) ------------';
export const BLOCK_END = '# ------------ END A4C ------------';

const home = () => process.env.HOME || os.homedir();
const defaultConfig = () => path.join(home(), '.ssh', 'config');
const defaultTokenFile = () => path.join(process.env.XDG_CONFIG_HOME || path.join(home(), '.config'), 'a4c', 'token');

export function readTokenFile(file: string): string {
  try {
    const t = readFileSync(file, 'utf8').trim();
    if (!t) throw new Error('empty');
    return t;
  } catch (e) {
    throw new CliError(`cannot read the token from ${file} (${(e as Error).message})`, 'run `a4c config-ssh` again, or set A4C_TOKEN', 1);
  }
}

/** Double-quoted for OpenSSH's ProxyCommand (run by /bin/sh): safe for any path. */
const q = (s: string) => `"${s.replace(/(["\\$`])/g, '\\$1')}"`;

/** The block: one Host entry per workspace, reached through `a4c ws ssh-proxy`. */
export function sshBlock(workspaces: Workspace[], o: { url: string; tokenFile: string; a4c: string[] }): string {
  const lines = [BLOCK_START];
  for (const w of workspaces) {
    lines.push(
      `Host ${w.name}.a4c`,
      `  # workspace ${w.id} (${w.projectName}, ${w.tier})`,
      `  ProxyCommand ${o.a4c.map(q).join(' ')} --url ${q(o.url)} ws ssh-proxy ${w.id} --token-file ${q(o.tokenFile)}`,
      // The tunnel already proved both ends (the API token; the control plane's TLS
      // and the agent's client certificate), and a workspace may move between hosts:
      // an SSH host key check would add nothing but prompts.
      '  StrictHostKeyChecking no',
      '  UserKnownHostsFile /dev/null',
      '  LogLevel ERROR',
      '  ServerAliveInterval 30',
    );
  }
  lines.push(BLOCK_END);
  return lines.join('\n');
}

/** The file with the block replaced (or appended); everything outside it is kept as it was. */
export function withBlock(current: string, block: string): string {
  const start = current.indexOf(BLOCK_START);
  const end = current.indexOf(BLOCK_END);
  if (start >= 0 && end > start) return current.slice(0, start) + block + current.slice(end + BLOCK_END.length);
  const sep = current === '' || current.endsWith('\n\n') ? '' : current.endsWith('\n') ? '\n' : '\n\n';
  return `${current}${sep}${block}\n`;
}

/** a4c config-ssh: `ssh <name>.a4c` for every workspace of the user (VS Code Remote-SSH and JetBrains Gateway read the same file). */
export function registerConfigSsh(program: CommandUnknownOpts, ctx: Context): void {
  program
    .command('config-ssh')
    .helpGroup('Workspaces:')
    .description('write ~/.ssh/config entries so that `ssh <name>.a4c` (and VS Code Remote-SSH) reach your workspaces')
    .option('--ssh-config <path>', 'the OpenSSH config file to edit', defaultConfig())
    .option('--token-file <path>', 'where the token for ProxyCommand is kept (0600)', defaultTokenFile())
    .option('--dry-run', 'print the block instead of writing it')
    .action(
      ctx.action(async (opts) => {
        const r = await ctx.client.request<{ workspaces: Workspace[] }>('GET', `/v1/users/${ctx.userPath()}/workspaces`);
        const main = fileURLToPath(new URL('../main.js', import.meta.url));
        const block = sshBlock(r.workspaces, { url: ctx.client.baseUrl, tokenFile: path.resolve(opts.tokenFile), a4c: [process.execPath, main] });
        if (opts.dryRun) {
          ctx.io.out(`${block}\n`);
          return 0;
        }
        mkdirSync(path.dirname(opts.tokenFile), { recursive: true, mode: 0o700 });
        writeFileSync(opts.tokenFile, `${ctx.client.token}\n`, { mode: 0o600 });
        chmodSync(opts.tokenFile, 0o600);
        const file = path.resolve(opts.sshConfig);
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
        const tmp = `${file}.a4c-${process.pid}`;
        writeFileSync(tmp, withBlock(current, block), { mode: 0o600 });
        renameSync(tmp, file);
        ctx.print(
          { sshConfig: file, tokenFile: opts.tokenFile, hosts: r.workspaces.map((w) => `${w.name}.a4c`) },
          () =>
            r.workspaces.length
              ? `wrote ${r.workspaces.length} host${r.workspaces.length === 1 ? '' : 's'} to ${file}: ${r.workspaces.map((w) => `${w.name}.a4c`).join(', ')}\ntry: ssh ${file === defaultConfig() ? '' : `-F ${file} `}${r.workspaces[0]?.name}.a4c`
              : `no workspaces yet; ${file} has an empty A4C block (run a4c config-ssh again after a4c ws create)`,
        );
        return 0;
      }),
    );
}
