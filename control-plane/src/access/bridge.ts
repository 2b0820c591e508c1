import type { WebSocket } from 'ws';
import type { Logger } from '@a4c/common';
import type { TunnelDown, TunnelUp } from '@a4c/proto';
import type { LiveSession, TunnelBroker, TunnelCall } from './broker.js';

/**
 * The exec WebSocket's frames: binary, the first byte names the channel.
 *  0 stdin (user -> workspace), 1 stdout, 2 stderr (workspace -> user),
 *  3 server control (JSON: started | exit | error), 4 client control (JSON: resize | eof).
 * Port-forward and SSH sockets carry raw bytes instead.
 */
export const CH_STDIN = 0;
export const CH_STDOUT = 1;
export const CH_STDERR = 2;
export const CH_SERVER = 3;
export const CH_CLIENT = 4;

/** Bytes sent to the user and not yet written to their socket, past which the agent's stream is paused. */
const WS_HIGH_WATER = 1024 * 1024;

/** WebSocket close codes: 1000 normal, 1011 the session failed, 1012 the control plane restarts, 4008 idle. */
const CLOSE_NORMAL = 1000;
const CLOSE_ERROR = 1011;
const CLOSE_RESTART = 1012;
const CLOSE_IDLE = 4008;

export interface BridgeOptions {
  id: string;
  workspaceId: string;
  hostId: string;
  /** exec: channel frames; raw: the bytes themselves (port-forward, ssh). */
  framing: 'exec' | 'raw';
  idleTimeoutMs: number;
}

/**
 * Moves bytes between a user's WebSocket and an agent's Tunnel stream until either ends,
 * with back-pressure both ways (a full side pauses the other), an idle timeout, and a
 * clear last word to the user however it ends. Resolves once the session's audit row
 * is closed.
 */
export function bridge(ws: WebSocket, call: TunnelCall, broker: TunnelBroker, o: BridgeOptions, log: Logger): Promise<void> {
  return new Promise((resolveDone) => {
    let ended = false;
    let wsInflight = 0;
    let agentPaused = false;
    let idleTimer: NodeJS.Timeout | undefined;

    const session: LiveSession = {
      id: o.id,
      workspaceId: o.workspaceId,
      bytesIn: 0,
      bytesOut: 0,
      activeSinceRefresh: true,
      abort: (reason) => finish(null, reason, CLOSE_RESTART, { error: 'UNAVAILABLE', message: reason }),
    };
    broker.track(session);

    const control = (obj: Record<string, unknown>) => {
      if (o.framing !== 'exec' || ws.readyState !== ws.OPEN) return;
      ws.send(Buffer.concat([Buffer.from([CH_SERVER]), Buffer.from(JSON.stringify(obj))]));
    };

    const bump = () => {
      session.activeSinceRefresh = true;
      if (!o.idleTimeoutMs) return;
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => {
        const s = Math.round(o.idleTimeoutMs / 1000);
        finish(null, `idle for ${s} s`, CLOSE_IDLE, {
          error: 'UNAVAILABLE',
          message: `the session was closed after ${s} s without input or output`,
          suggestion: 'connect again; the idle limit is A4C_SESSION_IDLE_TIMEOUT_SECONDS on the control plane',
        });
      }, o.idleTimeoutMs);
      idleTimer.unref();
    };

    /** Ends the session once: a last control frame, the socket closed with a code, the stream ended, the audit row closed. */
    const finish = (exitCode: number | null, reason: string, code: number, error?: Record<string, unknown>) => {
      if (ended) return;
      ended = true;
      clearTimeout(idleTimer);
      if (error) control({ type: 'error', ...error });
      else if (exitCode !== null) control({ type: 'exit', code: exitCode });
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
        // A close reason is at most 123 bytes; raw sockets have no other way to say why.
        ws.close(code, Buffer.from(String(error?.message ?? reason)).subarray(0, 123).toString());
      }
      try {
        call.end();
      } catch {
        // already gone
      }
      log.info({ sessionId: o.id, workspaceId: o.workspaceId, exitCode, reason, bytesIn: session.bytesIn, bytesOut: session.bytesOut }, 'session ended');
      void broker.end(session, { exitCode, reason }).then(resolveDone);
    };

    const toUser = (channel: number, data: Buffer) => {
      if (ws.readyState !== ws.OPEN) return;
      const frame = o.framing === 'exec' ? Buffer.concat([Buffer.from([channel]), data]) : data;
      session.bytesOut += data.length;
      bump();
      wsInflight += frame.length;
      ws.send(frame, { binary: true }, () => {
        wsInflight -= frame.length;
        if (agentPaused && wsInflight < WS_HIGH_WATER / 2) {
          agentPaused = false;
          call.resume();
        }
      });
      if (!agentPaused && wsInflight >= WS_HIGH_WATER) {
        agentPaused = true;
        call.pause();
      }
    };

    let userPaused = false;
    const toAgent = (msg: TunnelDown) => {
      if (ended) return;
      if (!call.write(msg) && !userPaused) {
        // HTTP/2's window toward the agent is full: stop reading the user until it drains.
        userPaused = true;
        ws.pause();
        call.once('drain', () => {
          userPaused = false;
          ws.resume();
        });
      }
    };

    call.on('data', (m: TunnelUp) => {
      const p = m.payload;
      if (!p) return;
      if (p.$case === 'stdout') toUser(CH_STDOUT, Buffer.from(p.value));
      else if (p.$case === 'stderr') toUser(CH_STDERR, Buffer.from(p.value));
      else if (p.$case === 'exit') {
        const { exitCode, error } = p.value;
        if (error) finish(null, error, CLOSE_ERROR, { error: 'UNAVAILABLE', message: error });
        else finish(exitCode, 'exited', CLOSE_NORMAL);
      }
    });
    const agentGone = (why: string) =>
      finish(null, why, CLOSE_ERROR, {
        error: 'UNAVAILABLE',
        message: `the connection to host ${o.hostId} was lost (${why})`,
        suggestion: 'the host\'s agent restarted or lost its connection; check `a4c hosts get ' + o.hostId + '` and connect again',
      });
    call.on('end', () => (o.framing === 'raw' ? finish(0, 'closed by the workspace side', CLOSE_NORMAL) : agentGone('the tunnel ended without an exit status')));
    call.on('error', (e: Error) => agentGone(e.message));
    call.on('cancelled', () => agentGone('the tunnel was cancelled'));

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data as unknown as ArrayBuffer);
      bump();
      if (o.framing === 'raw') {
        session.bytesIn += buf.length;
        toAgent({ payload: { $case: 'stdin', value: buf } });
        return;
      }
      if (!isBinary || buf.length === 0) return;
      const channel = buf[0];
      const body = buf.subarray(1);
      if (channel === CH_STDIN) {
        session.bytesIn += body.length;
        if (body.length) toAgent({ payload: { $case: 'stdin', value: body } });
      } else if (channel === CH_CLIENT) {
        let msg: { type?: unknown; cols?: unknown; rows?: unknown };
        try {
          msg = JSON.parse(body.toString('utf8')) as typeof msg;
        } catch {
          return;
        }
        if (msg.type === 'eof') toAgent({ payload: { $case: 'closeStdin', value: true } });
        else if (msg.type === 'resize' && isSize(msg.cols) && isSize(msg.rows)) {
          toAgent({ payload: { $case: 'resize', value: { cols: msg.cols, rows: msg.rows } } });
        }
      }
    });
    ws.on('close', () => {
      if (ended) return;
      // The user went away: tell the agent (the process sees its stdin and terminal close).
      ended = true;
      clearTimeout(idleTimer);
      try {
        call.end();
      } catch {
        // already gone
      }
      void broker.end(session, { exitCode: null, reason: 'the user disconnected' }).then(resolveDone);
    });
    ws.on('error', () => undefined);

    control({ type: 'started', sessionId: o.id });
    bump();
    call.resume();
  });
}

const isSize = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 10_000;
