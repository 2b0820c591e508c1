import { Duplex } from 'node:stream';
import { DialBackClients } from './dial-back.js';
import * as grpc from '@grpc/grpc-js';
import type Docker from 'dockerode';
import type { Logger } from '@a4c/common';
import { RunState, TunnelKind, type OpenTunnel, type TunnelDown, type TunnelUp, type WorkspaceSpec } from '@a4c/proto';
import { LOGIN_SHELL, startExec, type ExecProcess } from './exec.js';
import { dialInContainer } from './port-forward.js';

export type TunnelCall = grpc.ClientDuplexStream<TunnelUp, TunnelDown>;

/** Serves one SSH connection for a workspace (access/ssh.ts); absent until wired. */
export type SshServer = (stream: Duplex, target: { containerId: string; workspaceId: string }) => Promise<unknown>;

export interface TunnelOptions {
  hostId: string;
  /** The control plane address the agent's own stream uses: where an OpenTunnel without an address goes. */
  defaultAddress: string;
  credentials: () => Promise<grpc.ChannelCredentials>;
  /** The workspace's running container on this host, if any. */
  findContainer: (workspaceId: string) => Promise<string | undefined>;
  ssh?: SshServer;
}


interface Live {
  workspaceId: string;
  /** Ends the session with a sentence for the user. */
  fail(reason: string): void;
}

/**
 * The agent's end of sessions into workspaces. On OpenTunnel it dials the named
 * replica's AgentService.Tunnel (the host never listens), attaches, and runs the
 * session against the Docker Engine: an exec, a TCP connection inside the workspace's
 * network namespace, or an SSH connection. Tunnels use their own HTTP/2 connection per
 * replica, so bulk bytes never queue behind (or ahead of) heartbeats.
 */
export class Tunnels {
  private readonly clients: DialBackClients;
  private readonly live = new Set<Live>();

  constructor(
    private readonly docker: Docker,
    private readonly opts: TunnelOptions,
    private readonly log: Logger,
  ) {
    this.clients = new DialBackClients(() => opts.defaultAddress, opts.credentials);
  }

  get count(): number {
    return this.live.size;
  }

  /** Handles an OpenTunnel from the control plane; never throws (failures reach the user through the tunnel or its timeout). */
  open(msg: OpenTunnel): void {
    void this.run(msg).catch((e: unknown) => this.log.warn({ tunnelId: msg.tunnelId, err: (e as Error).message }, 'tunnel failed'));
  }

  private async run(msg: OpenTunnel): Promise<void> {
    const log = this.log.child({ tunnelId: msg.tunnelId, workspaceId: msg.workspaceId });
    const call = (await this.clients.get(msg.address)).tunnel();
    call.on('error', (e: grpc.ServiceError) => log.debug({ err: e.message }, 'tunnel stream error'));
    call.write({ payload: { $case: 'attach', value: { tunnelId: msg.tunnelId, hostId: this.opts.hostId } } });
    let done = false;
    const finish = (exit: { exitCode: number; error: string } | undefined) => {
      if (done) return;
      done = true;
      this.live.delete(live);
      if (exit) call.write({ payload: { $case: 'exit', value: exit } });
      call.end();
    };
    let cleanup: () => void = () => undefined;
    const live: Live = {
      workspaceId: msg.workspaceId,
      fail: (reason) => {
        finish({ exitCode: 0, error: reason });
        cleanup();
      },
    };
    this.live.add(live);
    // The user went away, or the control plane ended the session.
    const gone = () => {
      if (done) return;
      done = true;
      this.live.delete(live);
      cleanup();
    };
    call.on('end', gone);
    call.on('error', gone);
    try {
      const containerId = await this.opts.findContainer(msg.workspaceId);
      if (!containerId) {
        return live.fail(`workspace ${msg.workspaceId} has no running container on host ${this.opts.hostId}; start it with \`a4c ws start ${msg.workspaceId}\``);
      }
      switch (msg.kind) {
        case TunnelKind.TUNNEL_KIND_EXEC: {
          const proc = await startExec(this.docker, containerId, {
            cmd: msg.command.length ? msg.command : LOGIN_SHELL,
            tty: msg.tty,
            stdin: true,
            workingDir: '/workspace',
            env: msg.env,
            cols: msg.size?.cols,
            rows: msg.size?.rows,
          });
          cleanup = () => proc.close();
          if (done) return cleanup();
          this.pumpExec(call, proc, finish);
          return;
        }
        case TunnelKind.TUNNEL_KIND_PORT_FORWARD: {
          const conn = await dialInContainer(this.docker, containerId, msg.port);
          cleanup = () => conn.destroy();
          if (done) return cleanup();
          const bytes = tunnelDuplex(call);
          conn.on('error', (e) => live.fail(e.message));
          conn.pipe(bytes);
          bytes.pipe(conn);
          conn.on('end', () => finish(undefined));
          return;
        }
        case TunnelKind.TUNNEL_KIND_SSH: {
          if (!this.opts.ssh) return live.fail('this agent does not serve SSH yet; upgrade it');
          const bytes = tunnelDuplex(call);
          cleanup = () => bytes.destroy();
          await this.opts.ssh(bytes, { containerId, workspaceId: msg.workspaceId });
          finish(undefined);
          return;
        }
        default:
          return live.fail(`this agent does not know tunnel kind ${msg.kind}; upgrade it`);
      }
    } catch (e) {
      live.fail(describe(e, msg));
    }
  }

  /** stdout/stderr up, stdin/resize/EOF down, each honouring the other side's back-pressure; then the exit code. */
  private pumpExec(call: TunnelCall, proc: ExecProcess, finish: (exit: { exitCode: number; error: string }) => void): void {
    const up = (stream: 'stdout' | 'stderr') => {
      const src = proc[stream];
      let waiting = false;
      src.on('data', (chunk: Buffer) => {
        const ok = call.write({ payload: stream === 'stdout' ? { $case: 'stdout', value: chunk } : { $case: 'stderr', value: chunk } });
        if (!ok && !waiting) {
          waiting = true;
          src.pause();
          call.once('drain', () => {
            waiting = false;
            src.resume();
          });
        }
      });
      return new Promise<void>((resolve) => {
        src.once('end', resolve);
        src.once('close', resolve);
      });
    };
    const outputs = Promise.all([up('stdout'), up('stderr')]);
    let inputWaiting = false;
    call.on('data', (m: TunnelDown) => {
      const p = m.payload;
      if (!p) return;
      if (p.$case === 'stdin') {
        if (!proc.stdin.write(Buffer.from(p.value)) && !inputWaiting) {
          inputWaiting = true;
          call.pause();
          proc.stdin.once('drain', () => {
            inputWaiting = false;
            call.resume();
          });
        }
      } else if (p.$case === 'resize') void proc.resize(p.value.cols, p.value.rows).catch(() => undefined);
      else if (p.$case === 'closeStdin') proc.stdin.end();
    });
    void Promise.all([outputs, proc.exit]).then(
      ([, code]) => finish({ exitCode: code, error: '' }),
      (e: unknown) => finish({ exitCode: 0, error: `could not read the exit code: ${(e as Error).message}` }),
    );
  }

  /** A new desired state: sessions into workspaces that must no longer run end now, saying why. */
  onDesiredState(specs: WorkspaceSpec[]): void {
    const running = new Set(specs.filter((s) => s.runState === RunState.RUN_STATE_RUNNING).map((s) => s.workspaceId));
    for (const t of [...this.live]) {
      if (!running.has(t.workspaceId)) t.fail(`workspace ${t.workspaceId} is being stopped or deleted; start it again with \`a4c ws start ${t.workspaceId}\` if it still exists`);
    }
  }

  /** Agent shutdown: every session ends with a message; the workspaces keep running. */
  stop(): void {
    for (const t of [...this.live]) t.fail(`the agent on host ${this.opts.hostId} is restarting; connect again in a few seconds`);
    this.clients.close();
  }
}

/** The bytes of a tunnel as a Duplex: reads are the user's bytes (stdin), writes go to the user (stdout). */
export function tunnelDuplex(call: TunnelCall): Duplex {
  const d = new Duplex({
    allowHalfOpen: true,
    read() {
      call.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      if (call.write({ payload: { $case: 'stdout', value: chunk } })) cb();
      else call.once('drain', () => cb());
    },
    final(cb) {
      cb();
    },
    destroy(err, cb) {
      cb(err);
    },
  });
  call.on('data', (m: TunnelDown) => {
    const p = m.payload;
    if (p?.$case === 'stdin') {
      if (!d.push(Buffer.from(p.value))) call.pause();
    } else if (p?.$case === 'closeStdin') d.push(null);
  });
  call.on('end', () => d.push(null));
  call.on('error', () => d.push(null));
  return d;
}

function describe(e: unknown, msg: OpenTunnel): string {
  const err = e as { statusCode?: number; message: string };
  if (err.statusCode === 409) return `workspace ${msg.workspaceId}'s container is not running; start it with \`a4c ws start ${msg.workspaceId}\``;
  if (err.statusCode === 404) return `workspace ${msg.workspaceId}'s container is gone; the agent is recreating it, try again in a moment`;
  if (err.statusCode === 500 && /executable file not found|no such file/i.test(err.message)) {
    return `the command was not found in the workspace: ${err.message.replace(/^.*?: /, '')}`;
  }
  return err.message;
}
