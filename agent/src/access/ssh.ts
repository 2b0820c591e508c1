import os from 'node:os';
import type { Socket } from 'node:net';
import { Duplex, type Readable, type Writable } from 'node:stream';
import type Docker from 'dockerode';
import type { Logger } from '@a4c/common';
import ssh2, { type Connection, type PseudoTtyInfo, type ServerChannel, type Session } from 'ssh2';
import { FileError, runCommand, userIds } from './container-files.js';
import { LOGIN_SHELL, startExec, type ExecProcess } from './exec.js';
import type { HostKey } from './host-key.js';
import { dialInContainer } from './port-forward.js';
import { serveSftp, type SftpStats } from './sftp.js';

const { Server } = ssh2;

/** The workspace one SSH connection reaches. */
export interface SshTarget {
  docker: Docker;
  containerId: string;
  workspaceId: string;
  /** The agent's host keys (loadOrCreateHostKey); the same on every connection. */
  hostKeys: HostKey[];
  log: Logger;
  /** Docker's --user for everything the connection runs; absent: the container's own user. */
  user?: string;
  /** The default directory of commands, shells and SFTP. Default /workspace (the user's volume). */
  home?: string;
  /** Where SFTP uploads are staged before they go into the container. Default: the OS temp dir. */
  tmpDir?: string;
  /** The largest file one SFTP upload may stage on the agent's disk. Default 4 GiB. */
  maxUploadBytes?: number;
}

/** One channel the client opened, for the audit row. */
export interface SshChannelSummary {
  kind: 'exec' | 'shell' | 'sftp' | 'direct-tcpip';
  /** exec: the command line as the client sent it. */
  command?: string;
  /** direct-tcpip: the port inside the workspace. */
  port?: number;
  pty?: boolean;
  /** exec and shell: the exit status sent to the client. */
  exitCode?: number;
  /** Why the channel was refused or failed. */
  error?: string;
}

export interface SshSummary {
  startedAt: Date;
  durationMs: number;
  /** The user name the client gave (ssh user@host); informational only, see serveSsh. */
  clientUser: string | undefined;
  /** Bytes of the SSH connection (encrypted), client to agent and back. */
  bytesIn: number;
  bytesOut: number;
  /** The first channels of the connection, in order. */
  channels: SshChannelSummary[];
  /** Channels past the first MAX_CHANNELS, counted only. */
  channelsNotListed: number;
  sftp: SftpStats;
  /** Why the connection ended abnormally, if it did. */
  error?: string;
}

const DEFAULT_HOME = '/workspace';
const DEFAULT_MAX_UPLOAD = 4 * 1024 ** 3;
/** A client that has not finished the handshake by then is dropped. */
const HANDSHAKE_TIMEOUT_MS = 60_000;


/** What `ssh -L` needs inside the workspace (port-forward.ts runs nc, else socat). */
export const NO_FORWARD_TOOL =
  'the workspace image has neither nc nor socat, which port forwarding runs inside the workspace; add busybox, netcat-openbsd or socat to the image';

const OPEN_FAILURE = { prohibited: 1, connectFailed: 2 } as const;

/** Channels listed in a connection's summary; more are only counted. */
export const MAX_CHANNELS = 100;

/** A lazily run async function whose result is kept, unless it failed (then the next call tries again). */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () =>
    (p ??= fn().catch((e: unknown) => {
      p = undefined;
      throw e;
    }));
}

/**
 * Serves ONE SSH connection, whose raw bytes arrive on `stream` (the tunnel from the
 * user's `ssh` through `a4c ws ssh-proxy`), on the workspace's container. Resolves when
 * the connection ends, with what happened on it; never rejects.
 *
 * Authentication: every method is accepted, including "none". The stream exists only
 * because the control plane already authenticated the user (bearer token or OIDC) and
 * authorized them for this workspace before asking the agent to open the tunnel, and
 * the SSH server listens on no port: the tunnel is its only way in. A second check here
 * would need keys the user does not have (Coder's agent does the same). The SSH user
 * name is ignored: everything runs as the workspace's user.
 *
 * Supported: exec (stdout and stderr apart, exit status, stdin with back-pressure),
 * shells with or without a PTY (pty-req, window-change, env), direct-tcpip to
 * 127.0.0.1 inside the container's network namespace (`ssh -L`), and the SFTP
 * subsystem (scp, sftp). Not supported, refused by the SSH layer: remote forwarding
 * (-R), agent and X11 forwarding, other subsystems.
 */
export function serveSsh(stream: Duplex, target: SshTarget): Promise<SshSummary> {
  const log = target.log.child({ workspaceId: target.workspaceId });
  const home = target.home ?? DEFAULT_HOME;
  const summary: SshSummary = {
    startedAt: new Date(),
    durationMs: 0,
    clientUser: undefined,
    bytesIn: 0,
    bytesOut: 0,
    channels: [],
    channelsNotListed: 0,
    sftp: { filesRead: 0, filesWritten: 0, bytesRead: 0, bytesWritten: 0 },
  };
  const socket = new CountingSocket(stream);
  const teardown = new Set<() => void>();

  let closed = false;
  /** Records a channel for the summary; past MAX_CHANNELS only counts it (a connection may live for days). */
  const record = (entry: SshChannelSummary) => {
    if (summary.channels.length < MAX_CHANNELS) summary.channels.push(entry);
    else summary.channelsNotListed++;
  };

  // Asked once per connection (a failure is asked again next time).
  const whoami = once(async () => {
    const c = await target.docker.getContainer(target.containerId).inspect();
    const user = target.user ?? (c.Config.User || undefined);
    return { user, isRoot: !user || /^(root|0)(:.*)?$/.test(user) };
  });
  const ids = once(async () => userIds(target.docker, target.containerId, (await whoami()).user));
  const forwardReady = once(() => forwardToolPresent(target, whoami));

  const onClient = (client: Connection) => {
    const handshake = setTimeout(() => {
      summary.error = 'the client did not finish the SSH handshake in time';
      socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    client.on('authentication', (ctx) => {
      summary.clientUser = ctx.username;
      ctx.accept();
    });
    client.on('ready', () => clearTimeout(handshake));
    client.on('error', (e: Error) => {
      log.debug({ err: e }, 'ssh connection error');
      summary.error ??= e.message;
    });
    client.on('close', () => clearTimeout(handshake));

    client.on('session', (acceptSession) => {
      const session = acceptSession();
      handleSession(session);
    });

    client.on('tcpip', (accept, reject, info) => {
      const entry: SshChannelSummary = { kind: 'direct-tcpip', port: info.destPort };
      record(entry);
      const refuse = (reason: number, message: string) => {
        entry.error = message;
        rejectWithMessage(client, reject, reason, message);
      };
      if (!['127.0.0.1', 'localhost'].includes(info.destIP.toLowerCase())) {
        refuse(OPEN_FAILURE.prohibited, `only 127.0.0.1 inside the workspace can be reached (its network is its own): use -L LOCAL:127.0.0.1:${info.destPort}, not ${info.destIP}`);
        return;
      }
      void (async () => {
        try {
          await forwardReady();
        } catch (e) {
          refuse(OPEN_FAILURE.prohibited, (e as Error).message);
          return;
        }
        let conn: Duplex;
        try {
          conn = await dialInContainer(target.docker, target.containerId, info.destPort);
        } catch (e) {
          refuse(OPEN_FAILURE.connectFailed, (e as Error).message);
          return;
        }
        if (closed) {
          conn.destroy();
          return;
        }
        const channel = accept();
        splice(channel, conn, (e) => {
          if (e) {
            entry.error = e.message;
            log.debug({ err: e, port: info.destPort }, 'port forward ended with an error');
          }
        });
        const stop = () => conn.destroy();
        teardown.add(stop);
        conn.on('close', () => teardown.delete(stop));
      })();
    });
  };

  const handleSession = (session: Session) => {
    let pty: PseudoTtyInfo | undefined;
    const env: string[] = [];
    let proc: ExecProcess | undefined;

    session.on('pty', (accept, _reject, info) => {
      pty = info;
      accept?.();
    });
    session.on('window-change', (accept, _reject, info) => {
      if (pty) pty = { ...pty, cols: info.cols, rows: info.rows };
      if (proc && info.cols > 0 && info.rows > 0) void proc.resize(info.cols, info.rows).catch((e: unknown) => log.debug({ err: e }, 'resize failed'));
      accept?.();
    });
    session.on('env', (accept, reject, info) => {
      // The user's own process in their own workspace: any well-formed name is theirs to set.
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(info.key)) {
        env.push(`${info.key}=${info.val}`);
        accept?.();
      } else reject?.();
    });

    const run = (channel: ServerChannel, cmd: string[], entry: SshChannelSummary) => {
      record(entry);
      let channelClosed = false;
      const gone = new Promise<void>((resolve) =>
        channel.once('close', () => {
          channelClosed = true;
          resolve();
        }),
      );
      void (async () => {
        const tty = pty !== undefined;
        const started = { cols: pty?.cols, rows: pty?.rows };
        try {
          const { user } = await whoami();
          proc = await startExec(target.docker, target.containerId, {
            cmd,
            tty,
            stdin: true,
            ...(user ? { user } : {}),
            workingDir: home,
            env: [...(pty ? [`TERM=${pty.term || 'xterm'}`] : []), ...env],
            ...(pty && pty.cols > 0 && pty.rows > 0 ? { cols: pty.cols, rows: pty.rows } : {}),
          });
        } catch (e) {
          entry.error = (e as Error).message;
          entry.exitCode = 255;
          channel.stderr.write(`a4c: cannot run in workspace ${target.workspaceId}: ${(e as Error).message}\r\n`);
          await flushed(channel.stderr, gone);
          channel.exit(255);
          channel.end();
          return;
        }
        const p = proc;
        if (closed || channelClosed) {
          p.close();
          return;
        }
        // A resize that came while the exec was starting.
        if (pty && (pty.cols !== started.cols || pty.rows !== started.rows) && pty.cols > 0 && pty.rows > 0) void p.resize(pty.cols, pty.rows).catch(() => undefined);
        const stop = () => p.close();
        teardown.add(stop);
        channel.on('close', stop);
        channel.pipe(p.stdin);
        p.stdout.pipe(channel, { end: false });
        p.stderr.pipe(channel.stderr, { end: false });
        const [code] = await Promise.all([p.exit.catch(() => -1), ended(p.stdout), ended(p.stderr)]);
        teardown.delete(stop);
        // Everything the process printed goes out before its exit status and EOF.
        await Promise.all([flushed(channel, gone), flushed(channel.stderr, gone)]);
        entry.exitCode = code < 0 ? 255 : code;
        channel.exit(entry.exitCode);
        channel.end();
      })();
    };

    session.on('shell', (accept) => {
      run(accept(), LOGIN_SHELL, { kind: 'shell', pty: pty !== undefined });
    });
    session.on('exec', (accept, _reject, info) => {
      run(accept(), ['/bin/sh', '-c', info.command], { kind: 'exec', command: info.command, pty: pty !== undefined });
    });
    session.on('sftp', (accept) => {
      record({ kind: 'sftp' });
      const sftp = accept();
      const served = serveSftp(sftp, {
        docker: target.docker,
        containerId: target.containerId,
        workspaceUser: whoami,
        ids,
        home,
        tmpDir: target.tmpDir ?? os.tmpdir(),
        maxUploadBytes: target.maxUploadBytes ?? DEFAULT_MAX_UPLOAD,
        log,
      });
      void served.done.then(() => {
        for (const k of Object.keys(summary.sftp) as (keyof SftpStats)[]) summary.sftp[k] += served.stats[k];
      });
    });
  };

  return new Promise<SshSummary>((resolve) => {
    const server = new Server({ hostKeys: target.hostKeys.map((k) => k.privateKey) }, onClient);
    server.on('error', (e: Error) => log.debug({ err: e }, 'ssh server error'));
    socket.once('close', () => {
      closed = true;
      for (const stop of teardown) stop();
      teardown.clear();
      summary.durationMs = Date.now() - summary.startedAt.getTime();
      summary.bytesIn = socket.bytesIn;
      summary.bytesOut = socket.bytesOut;
      resolve(summary);
    });
    server.injectSocket(socket as unknown as Socket);
  });
}

/** Checks once per connection that the image can run port forwarding, so `ssh -L` is refused with the fix rather than a silent close. */
async function forwardToolPresent(target: SshTarget, whoami: () => Promise<{ user: string | undefined }>): Promise<void> {
  const { user } = await whoami();
  const r = await runCommand(target.docker, target.containerId, ['/bin/sh', '-c', 'command -v nc >/dev/null 2>&1 || command -v socat >/dev/null 2>&1'], user);
  if (r.code === 0) return;
  throw new FileError('unsupported', r.code === 1 ? NO_FORWARD_TOOL : `${NO_FORWARD_TOOL} (and /bin/sh: ${r.stderr || `exit ${r.code}`})`);
}

/**
 * ssh2's reject() for a channel open sends an empty description, and OpenSSH prints
 * the description as the reason ("open failed: connect failed: <description>"). The
 * protocol object is ssh2's own (v1.x); reject() calls its channelOpenFail at once, so
 * the override lives only for that call. test/ssh.test.ts checks the message arrives.
 */
function rejectWithMessage(client: Connection, reject: () => void, reason: number, message: string): void {
  const proto = (client as unknown as { _protocol?: { channelOpenFail?: (recipient: number, reason: number, desc: string) => void } })._protocol;
  const original = proto?.channelOpenFail;
  if (proto && original) {
    proto.channelOpenFail = (recipient: number, _reason: number, desc: string) => {
      proto.channelOpenFail = original;
      original.call(proto, recipient, reason, desc || message);
    };
  }
  try {
    reject();
  } finally {
    if (proto && original) proto.channelOpenFail = original;
  }
}

/** Copies both ways with back-pressure (an EOF is passed on as an EOF); an error or a close on either side ends both. */
function splice(a: Duplex, b: Duplex, done: (e?: Error) => void): void {
  let finished = false;
  const finish = (e?: Error) => {
    if (finished) return;
    finished = true;
    a.destroy();
    b.destroy();
    done(e);
  };
  a.pipe(b);
  b.pipe(a);
  a.on('error', finish);
  b.on('error', finish);
  a.on('close', () => finish());
  b.on('close', () => finish());
}

/** Resolves once a readable has given out everything (here: piped all of it on). */
function ended(r: Readable): Promise<void> {
  if (r.readableEnded || r.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    r.once('end', resolve);
    r.once('close', resolve);
    r.once('error', () => resolve());
  });
}

/**
 * Resolves once everything written so far has left the stream's buffer (a zero-length
 * write's callback comes after the writes before it), or once `gone` resolves: an
 * ssh2 channel the client closed never calls back.
 */
function flushed(w: Writable, gone: Promise<void>): Promise<void> {
  if (w.destroyed || w.writableEnded) return Promise.resolve();
  return Promise.race([new Promise<void>((resolve) => w.write(Buffer.alloc(0), () => resolve())), gone]);
}

/** The tunnel's stream as ssh2 sees it, counting bytes each way. */
class CountingSocket extends Duplex {
  bytesIn = 0;
  bytesOut = 0;

  constructor(private readonly inner: Duplex) {
    super({ allowHalfOpen: false });
    inner.on('data', (c: Buffer) => {
      this.bytesIn += c.length;
      if (!this.push(c)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (e) => this.destroy(e));
    inner.on('close', () => this.destroy());
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.bytesOut += chunk.length;
    if (this.inner.write(chunk)) cb();
    else this.inner.once('drain', () => cb());
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.inner.end();
    // ssh2 ends the socket when it disconnects; a peer that never ends its side must not keep the connection (and serveSsh) alive.
    setTimeout(() => this.destroy(), 5_000).unref();
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}
