import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import type { Context } from '../context.js';
import { CliError } from '../client.js';
import { table } from '../format.js';

/** A move as GET /v1/workspaces/{id}/move answers it. */
interface MoveView {
  id: string;
  workspaceId: string;
  fromHostId: string;
  toHostId: string;
  status: 'STOPPING' | 'COPYING' | 'VERIFYING' | 'STARTING' | 'SUCCEEDED' | 'FAILED';
  error: string | null;
  bytesDone: number;
  image: { bytes: number | null; sha256: string | null };
  volume: { bytes: number | null; sha256: string | null };
}

interface VolumeView {
  name: string;
  hostId: string;
  project: string;
  sizeBytes: number | null;
  lastUsedAt: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** a4c ws move and a4c ws volumes: files that follow the user (added to the ws group). */
export function registerMoves(program: CommandUnknownOpts, ctx: Context): void {
  const ws = program.commands.find((c) => c.name() === 'ws');
  if (!ws) throw new Error('the ws command group must be registered first');
  const path = (id: string) => `/v1/workspaces/${encodeURIComponent(id)}`;

  ws.command('move')
    .description(
      'move a workspace to another host with its files: stop, copy its writable layer and volume through the control plane, verify both ends\' SHA-256, start it there (same id and hostname); shows progress. On failure it stays where it was and runs again',
    )
    .argument('<id>', 'workspace id')
    .option('--to <host>', 'the destination host (default: the best host with room)')
    .option('--no-wait', 'return as soon as the move is under way')
    .action(
      ctx.action(async (id, opts) => {
        let m = await ctx.client.request<MoveView>('POST', `${path(id)}/move`, opts.to ? { toHostId: opts.to } : {});
        if (!ctx.json) ctx.note(`moving workspace ${id} from host ${m.fromHostId} to host ${m.toHostId} (move ${m.id})`);
        if (!opts.wait) {
          ctx.print(m, () => `move ${m.id}: ${m.status}`);
          return 0;
        }
        const deadline = Date.now() + ctx.timeout * 1000;
        let last = '';
        for (;;) {
          const line = m.status === 'COPYING' ? `COPYING ${mib(m.bytesDone)}` : m.status;
          if (line !== last && !ctx.json) ctx.note(`  ${line}`);
          last = line;
          if (m.status === 'SUCCEEDED' || m.status === 'FAILED') break;
          if (Date.now() > deadline) throw new CliError(`the move is still ${m.status} after ${ctx.timeout} s`, `follow it with \`a4c ws get ${id}\` or \`a4c events --workspace ${id}\``, 1);
          await sleep(500);
          m = await ctx.client.request<MoveView>('GET', `${path(id)}/move`);
        }
        ctx.print(m, () =>
          m.status === 'SUCCEEDED'
            ? `moved to host ${m.toHostId}: writable layer ${mib(m.image.bytes ?? 0)} (sha256 ${m.image.sha256?.slice(0, 12)}), volume ${mib(m.volume.bytes ?? 0)} (sha256 ${m.volume.sha256?.slice(0, 12)}), verified at both ends`
            : `move failed: ${m.error ?? 'no reason given'}`,
        );
        return m.status === 'SUCCEEDED' ? 0 : 1;
      }),
    );

  ws.command('volumes')
    .description("where your files are: your volume on each host, per project, with its size (once measured) and when it was last used")
    .action(
      ctx.action(async () => {
        const r = await ctx.client.request<{ volumes: VolumeView[] }>('GET', `/v1/users/${ctx.userPath()}/volumes`);
        ctx.print(r, () =>
          r.volumes.length
            ? table(
                ['VOLUME', 'HOST', 'PROJECT', 'SIZE', 'LAST USED'],
                r.volumes.map((v) => [v.name, v.hostId, v.project, v.sizeBytes === null ? 'not measured' : mib(v.sizeBytes), v.lastUsedAt]),
              )
            : 'no volumes yet: your first workspace makes one',
        );
        return 0;
      }),
    );
}
