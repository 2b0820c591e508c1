/**
 * The exec WebSocket (GET /v1/workspaces/{id}/exec) from a browser. A browser cannot
 * set headers on a WebSocket, so the token travels as a subprotocol,
 * `a4c.bearer.<base64url(token)>`, beside `a4c.v1` (which the server selects); never
 * in the URL. Frames are binary, the first byte a channel: 0 stdin, 1 stdout,
 * 2 stderr, 3 server control (JSON), 4 client control (JSON).
 */

export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, server: 3, client: 4 } as const;

export type ServerControl =
  | { type: 'started'; sessionId: string }
  | { type: 'exit'; code: number }
  | { type: 'error'; error: string; message: string; suggestion?: string };

export function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function frame(channel: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 1);
  out[0] = channel;
  out.set(payload, 1);
  return out;
}

export interface ExecHandlers {
  onOutput(data: Uint8Array): void;
  onControl(msg: ServerControl): void;
  onClose(code: number, reason: string): void;
}

export interface ExecOptions {
  cols: number;
  rows: number;
  /** argv; absent: an interactive login shell. */
  command?: string[];
}

export class ExecSession {
  private readonly ws: WebSocket;
  private readonly encoder = new TextEncoder();

  constructor(workspaceId: string, token: string, opts: ExecOptions, private readonly h: ExecHandlers) {
    const u = new URL(`/v1/workspaces/${encodeURIComponent(workspaceId)}/exec`, location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    for (const c of opts.command ?? []) u.searchParams.append('command', c);
    u.searchParams.set('tty', 'true');
    u.searchParams.set('cols', String(opts.cols));
    u.searchParams.set('rows', String(opts.rows));
    u.searchParams.set('term', 'xterm-256color');
    this.ws = new WebSocket(u.toString(), ['a4c.v1', `a4c.bearer.${base64url(token)}`]);
    this.ws.binaryType = 'arraybuffer';
    this.ws.onmessage = (m) => this.receive(m.data);
    this.ws.onclose = (e) => this.h.onClose(e.code, e.reason);
  }

  private receive(data: unknown): void {
    if (!(data instanceof ArrayBuffer) || data.byteLength === 0) return;
    const bytes = new Uint8Array(data);
    const channel = bytes[0];
    const payload = bytes.subarray(1);
    if (channel === CHANNEL.stdout || channel === CHANNEL.stderr) this.h.onOutput(payload);
    else if (channel === CHANNEL.server) {
      try {
        this.h.onControl(JSON.parse(new TextDecoder().decode(payload)) as ServerControl);
      } catch {
        // a control message we cannot read: ignored, the socket's close says the rest
      }
    }
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(input: string | Uint8Array): void {
    if (!this.open) return;
    this.ws.send(frame(CHANNEL.stdin, typeof input === 'string' ? this.encoder.encode(input) : input));
  }

  resize(cols: number, rows: number): void {
    if (this.open) this.ws.send(frame(CHANNEL.client, this.encoder.encode(JSON.stringify({ type: 'resize', cols, rows }))));
  }

  eof(): void {
    if (this.open) this.ws.send(frame(CHANNEL.client, this.encoder.encode(JSON.stringify({ type: 'eof' }))));
  }

  close(): void {
    this.ws.close(1000);
  }
}
