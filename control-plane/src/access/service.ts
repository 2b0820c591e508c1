import { WebSocketServer, type WebSocket } from 'ws';
import { A4cError, type Logger, type Workspace } from '@a4c/common';
import type { Ctx } from '../api/operation.js';
import type { AccessKind } from '../store/access.js';
import { bridge } from './bridge.js';
import type { AccessRequest, TunnelBroker } from './broker.js';

import { SUBPROTOCOL } from './subprotocol.js';

/** WebSocket messages from users are at most this big (the CLI sends 32 KiB chunks). */
const MAX_MESSAGE_BYTES = 1024 * 1024;

export interface SessionParams {
  kind: AccessKind;
  command?: string[];
  tty?: boolean;
  cols?: number;
  rows?: number;
  term?: string;
  port?: number;
}

/**
 * The user's end of a session: the checks before anything is opened (the workspace
 * runs, its host is connected, limits), the tunnel request, then the WebSocket upgrade
 * and the bridge. Errors before the upgrade are ordinary JSON error responses, so every
 * client (CLI, browser, curl) sees the same envelope as on any other route.
 */
export class AccessService {
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MESSAGE_BYTES,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });
  private readonly sockets = new Set<WebSocket>();

  constructor(
    private readonly broker: TunnelBroker,
    private readonly log: Logger,
  ) {}

  async open(ctx: Ctx, w: Workspace, p: SessionParams): Promise<void> {
    if (!isWebSocketUpgrade(ctx)) {
      throw new A4cError('UPGRADE_REQUIRED', 'this route speaks WebSocket', {
        suggestion: 'use `a4c ws exec|shell|port-forward|ssh-proxy`, or a WebSocket client with the a4c.v1 subprotocol (docs/api.md, "Getting into a workspace")',
      });
    }
    if (w.status !== 'RUNNING' || !w.hostId) {
      throw new A4cError('CONFLICT', `workspace ${w.id} is ${w.status}, not RUNNING`, {
        suggestion: w.status === 'STOPPED' ? `start it first: a4c ws start ${w.id}` : `wait until it runs: a4c ws get ${w.id}`,
        status: w.status,
      });
    }
    if (w.hostLost) {
      throw new A4cError('UNAVAILABLE', `the agent of host ${w.hostId} is not connected`, {
        suggestion: `the workspace may still run, but nothing can reach it until its agent reconnects; see a4c hosts get ${w.hostId}`,
      });
    }
    const tty = p.tty ?? p.kind === 'shell';
    const req: AccessRequest = {
      workspaceId: w.id,
      hostId: w.hostId,
      actor: ctx.state.actor,
      kind: p.kind,
      command: p.command ?? [],
      tty,
      cols: p.cols ?? 80,
      rows: p.rows ?? 24,
      port: p.port ?? 0,
      env: tty ? [`TERM=${p.term ?? 'xterm-256color'}`] : [],
    };
    const { id, call } = await this.broker.request(req);
    ctx.respond = false;
    ctx.state.unaudited = true;
    let ws: WebSocket;
    try {
      ws = await new Promise<WebSocket>((resolve, reject) => {
        if (ctx.req.socket.destroyed) return reject(new Error('the client went away before the upgrade'));
        ctx.req.socket.once('close', () => reject(new Error('the client went away before the upgrade')));
        this.wss.handleUpgrade(ctx.req, ctx.req.socket, Buffer.alloc(0), resolve);
      });
    } catch (e) {
      call.end();
      this.log.info({ sessionId: id, err: (e as Error).message }, 'session abandoned before the upgrade');
      return;
    }
    this.sockets.add(ws);
    ws.once('close', () => this.sockets.delete(ws));
    void bridge(
      ws,
      call,
      this.broker,
      { id, workspaceId: w.id, hostId: w.hostId, framing: p.kind === 'exec' || p.kind === 'shell' ? 'exec' : 'raw', idleTimeoutMs: this.broker.opts.idleTimeoutMs },
      this.log.child({ sessionId: id, workspaceId: w.id }),
    );
  }

  /** Shutdown: the broker tells every live session why; then any socket left is closed. */
  async stop(): Promise<void> {
    await this.broker.stop();
    for (const ws of this.sockets) ws.terminate();
  }
}

function isWebSocketUpgrade(ctx: Ctx): boolean {
  return (
    ctx.method === 'GET' &&
    ctx.get('upgrade').toLowerCase() === 'websocket' &&
    ctx.get('connection').toLowerCase().split(/\s*,\s*/).includes('upgrade')
  );
}
