import net from 'node:net';
import { Duplex } from 'node:stream';
import { createWebSocketStream } from 'ws';
import { InvalidArgumentError, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { CliError } from '../client.js';
import type { Context } from '../context.js';
import { table } from '../format.js';
import { CH, openAccessSocket, sendWithBackpressure } from '../access/socket.js';
import { readTokenFile } from './config-ssh.js';

interface ExecOptions {
  command: string[];
  tty: boolean;
}

interface Mapping {
  local: number;
  remote: number;
}

function parseMapping(value: string, previous: Mapping[] = []): Mapping[] {
  const m = /^(\d{1,5})(?::(\d{1,5}))?$/.exec(value);
  const local = Number(m?.[1]);
  const remote = Number(m?.[2] ?? m?.[1]);
  if (!m || local > 65535 || remote < 1 || remote > 65535) throw new InvalidArgumentError('Use LOCAL:REMOTE (or PORT for both), e.g. 8080:3000.');
  return [...previous, { local, remote }];
}

/**
 * Runs one exec session: stdin forwarded (EOF included), stdout and stderr apart,
 * resolves to the command's exit code. With a TTY the local terminal goes raw (so
 * Ctrl-C reaches the workspace's shell, not this process) and window resizes follow.
 */
async function execSession(ctx: Context, id: string, o: ExecOptions): Promise<number> {
  const q = new URLSearchParams();
  for (const a of o.command) q.append('command', a);
  q.set('tty', String(o.tty));
  const out = process.stdout;
  if (o.tty && out.isTTY) {
    q.set('cols', String(out.columns || 80));
    q.set('rows', String(out.rows || 24));
  }
  if (o.tty) q.set('term', process.env.TERM && /^[A-Za-z0-9._+-]{1,64}$/.test(process.env.TERM) ? process.env.TERM : 'xterm-256color');
  let exitCode: number | undefined;
  let failure: { message?: string; suggestion?: string } | undefined;
  let paused = false;
  let wsRef: import('ws').WebSocket | undefined;
  const write = (stream: NodeJS.WriteStream, data: Buffer) => {
    if (!stream.write(data) && !paused && wsRef) {
      // The local terminal or pipe is slow: stop reading the socket, so the
      // workspace's process is paused rather than anything buffering.
      paused = true;
      const ws = wsRef;
      ws.pause();
      stream.once('drain', () => {
        paused = false;
        ws.resume();
      });
    }
  };
  const ws = await openAccessSocket(ctx.client, `/v1/workspaces/${encodeURIComponent(id)}/exec?${q}`, (d) => {
    const body = d.subarray(1);
    if (d[0] === CH.stdout) write(process.stdout, body);
    else if (d[0] === CH.stderr) write(process.stderr, body);
    else if (d[0] === CH.server) {
      const m = JSON.parse(body.toString()) as { type: string; code?: number; message?: string; suggestion?: string };
      if (m.type === 'exit') exitCode = m.code;
      if (m.type === 'error') failure = m;
    }
  });
  wsRef = ws;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const stdin = process.stdin;
  const raw = o.tty && stdin.isTTY;
  if (raw) stdin.setRawMode(true);
  const onResize = () => {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([CH.client]), Buffer.from(JSON.stringify({ type: 'resize', cols: out.columns, rows: out.rows }))]));
  };
  if (o.tty && out.isTTY) out.on('resize', onResize);
  const pump = (async () => {
    for await (const chunk of stdin) {
      if (ws.readyState !== ws.OPEN) return;
      await sendWithBackpressure(ws, Buffer.concat([Buffer.from([CH.stdin]), chunk as Buffer]));
    }
    if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([CH.client]), Buffer.from(JSON.stringify({ type: 'eof' }))]));
  })().catch(() => undefined);
  const { code, reason } = await closed;
  if (raw) stdin.setRawMode(false);
  out.off('resize', onResize);
  stdin.destroy();
  void pump;
  if (exitCode !== undefined) return exitCode;
  if (failure) throw new CliError(failure.message ?? 'the session ended', failure.suggestion, 255);
  throw new CliError(`the session ended without an exit status (WebSocket ${code}${reason ? `: ${reason}` : ''})`, 'run it again; if it keeps happening, check `a4c hosts`', 255);
}

/**
 * Bytes between a local stream and an access socket (port-forward, ssh-proxy), each
 * honouring the other's back-pressure. The socket's stream is made before the handshake
 * completes, so bytes the far side sends first (an SSH banner) are never lost.
 */
async function splice(ctx: Context, path: string, local: NodeJS.ReadableStream & NodeJS.WritableStream | net.Socket): Promise<{ code: number; reason: string }> {
  let closed: Promise<{ code: number; reason: string }> | undefined;
  await openAccessSocket(ctx.client, path, undefined, (ws) => {
    closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    const remote = createWebSocketStream(ws);
    remote.on('error', () => undefined);
    (local as NodeJS.ReadableStream).pipe(remote);
    remote.pipe(local as NodeJS.WritableStream);
  });
  return closed as Promise<{ code: number; reason: string }>;
}

/** a4c ws exec | shell | port-forward | ssh-proxy | sessions: getting into a workspace. */
export function registerAccess(program: CommandUnknownOpts, ctx: Context): void {
  const ws = program.commands.find((c) => c.name() === 'ws');
  if (!ws) throw new Error('registerAccess runs after registerWorkspaces');

  ws.command('exec')
    .description('run a command in a workspace: stdin forwarded, stdout and stderr apart, exits with its exit code')
    .argument('<id>', 'workspace id')
    .argument('<command...>', 'the command and its arguments, after "--"')
    .option('-t, --tty', 'give it a terminal (for interactive programs)')
    .addHelpText('after', '\nExample: a4c ws exec 5f0c... -- sh -c "make test"')
    .action(ctx.action(async (id, command, opts) => execSession(ctx, id, { command, tty: Boolean(opts.tty) })));

  ws.command('shell')
    .description('an interactive login shell in a workspace (a real terminal; Ctrl-C goes to the shell)')
    .argument('<id>', 'workspace id')
    .action(ctx.action(async (id) => execSession(ctx, id, { command: [], tty: true })));

  ws.command('port-forward')
    .description('listen on 127.0.0.1:LOCAL; each connection reaches 127.0.0.1:REMOTE inside the workspace')
    .argument('<id>', 'workspace id')
    .argument('<mappings...>', 'LOCAL:REMOTE (or PORT for both), one or more', (v: string, prev: Mapping[] | undefined) => parseMapping(v, prev))
    .action(
      ctx.action(async (id, mappings) => {
        await ctx.client.request('GET', `/v1/workspaces/${encodeURIComponent(id)}`); // a clear error now rather than on the first connection
        const servers = await Promise.all(
          (mappings as Mapping[]).map(
            (m) =>
              new Promise<net.Server>((resolve, reject) => {
                const server = net.createServer((sock) => {
                  sock.pause();
                  splice(ctx, `/v1/workspaces/${encodeURIComponent(id)}/port-forward?port=${m.remote}`, sock).then(
                    ({ code, reason }) => {
                      if (code !== 1000) ctx.note(`127.0.0.1:${m.local} -> ${m.remote}: ${reason || `closed (${code})`}`);
                      sock.destroy();
                    },
                    (e: unknown) => {
                      ctx.note(`127.0.0.1:${m.local} -> ${m.remote}: ${(e as Error).message}`);
                      sock.destroy();
                    },
                  );
                });
                server.once('error', (e: Error & { code?: string }) =>
                  reject(new CliError(`cannot listen on 127.0.0.1:${m.local} (${e.code ?? e.message})`, 'choose another local port', 1)),
                );
                server.listen(m.local, '127.0.0.1', () => {
                  const port = (server.address() as net.AddressInfo).port;
                  ctx.note(`Forwarding 127.0.0.1:${port} -> ${m.remote} in workspace ${id} (Ctrl-C to stop)`);
                  resolve(server);
                });
              }),
          ),
        );
        await new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        for (const s of servers) s.close();
        return 0;
      }),
    );

  ws.command('ssh-proxy')
    .description('an SSH connection to a workspace on stdin/stdout: OpenSSH\'s ProxyCommand (a4c config-ssh writes it)')
    .argument('<id>', 'workspace id')
    .option('--token-file <path>', 'read the token from this file when neither --token nor A4C_TOKEN is set')
    .action(
      ctx.action(async (id, opts) => {
        if (opts.tokenFile && !ctx.hasToken()) ctx.useToken(readTokenFile(opts.tokenFile));
        const stdio = Duplex.from({ readable: process.stdin, writable: process.stdout });
        const { code, reason } = await splice(ctx, `/v1/workspaces/${encodeURIComponent(id)}/ssh`, stdio as unknown as net.Socket);
        if (code !== 1000) throw new CliError(`the SSH connection to workspace ${id} ended: ${reason || code}`, undefined, 255);
        return 0;
      }),
    );

  ws.command('sessions')
    .description("a workspace's exec, shell, port-forward and ssh sessions, newest first")
    .argument('<id>', 'workspace id')
    .action(
      ctx.action(async (id) => {
        const r = await ctx.client.request<{ sessions: { id: string; kind: string; actor: string; command: string[] | null; port: number | null; openedAt: string; durationSeconds: number | null; exitCode: number | null; endReason: string | null; bytesIn: number; bytesOut: number }[] }>(
          'GET',
          `/v1/workspaces/${encodeURIComponent(id)}/sessions`,
        );
        ctx.print(r, () =>
          table(
            ['OPENED', 'WHO', 'KIND', 'WHAT', 'SECONDS', 'EXIT', 'IN', 'OUT', 'ENDED'],
            r.sessions.map((s) => [
              s.openedAt,
              s.actor,
              s.kind,
              s.command ? s.command.join(' ').slice(0, 40) : s.port ? `port ${s.port}` : '-',
              s.durationSeconds === null ? 'open' : String(s.durationSeconds),
              s.exitCode === null ? '-' : String(s.exitCode),
              String(s.bytesIn),
              String(s.bytesOut),
              s.endReason?.slice(0, 40) ?? '-',
            ]),
          ),
        );
        return 0;
      }),
    );
}
