import { WebSocket } from 'ws';

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number | null;
  /** The last control frame of type "error", if the session ended with one. */
  error: { error: string; message: string; suggestion?: string } | undefined;
  closeCode: number;
  closeReason: string;
}

export interface ExecOpts {
  command?: string[];
  tty?: boolean;
  cols?: number;
  rows?: number;
  token?: string;
  /** Sends these chunks as stdin, then EOF. */
  stdin?: Buffer[] | AsyncIterable<Buffer>;
  /** Called once the session started, with the socket (for resize or stop-while-running tests). */
  onStarted?: (ws: WebSocket) => void;
  /** Use the browser way: the token as a subprotocol instead of the Authorization header. */
  tokenAsSubprotocol?: boolean;
}

/** The HTTP answer when the upgrade was refused (JSON error envelope). */
export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(`upgrade refused: ${status} ${JSON.stringify(body)}`);
  }
}

export function wsUrl(baseUrl: string, path: string): string {
  return baseUrl.replace(/^http/, 'ws') + path;
}

/** Every access socket a test opened and that is not closed yet (see closeLiveSockets). */
const live = new Set<WebSocket>();

/** Closes what a test left open (a failed assertion skips its own close), so one failure cannot use up the next test's session limit. */
export function closeLiveSockets(): number {
  const n = live.size;
  for (const s of live) s.terminate();
  live.clear();
  return n;
}

/** Opens an access WebSocket; rejects with UpgradeRefused carrying the JSON error if the server answers without upgrading. */
export function openSocket(
  baseUrl: string,
  path: string,
  token: string,
  asSubprotocol = false,
  onMessage?: (data: Buffer) => void,
  onClose?: (code: number, reason: string) => void,
): Promise<WebSocket> {
  const protocols = asSubprotocol ? ['a4c.v1', `a4c.bearer.${Buffer.from(token).toString('base64url')}`] : ['a4c.v1'];
  const ws = new WebSocket(wsUrl(baseUrl, path), protocols, asSubprotocol ? {} : { headers: { authorization: `Bearer ${token}` } });
  // Attached before 'open': the first frames can arrive in the same read as the handshake.
  if (onMessage) ws.on('message', onMessage);
  live.add(ws);
  ws.on('close', () => live.delete(ws));
  if (onClose) ws.on('close', (code, reason) => onClose(code, reason.toString()));
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let body: Record<string, unknown> = { raw: text };
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // left raw
        }
        reject(new UpgradeRefused(res.statusCode ?? 0, body));
      });
    });
    ws.once('error', reject);
  });
}

/** Runs one exec session to its end and collects everything it said. */
export async function execSession(baseUrl: string, workspaceId: string, token: string, o: ExecOpts = {}): Promise<ExecResult> {
  const q = new URLSearchParams();
  for (const a of o.command ?? []) q.append('command', a);
  if (o.tty !== undefined) q.set('tty', String(o.tty));
  if (o.cols) q.set('cols', String(o.cols));
  if (o.rows) q.set('rows', String(o.rows));
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let exitCode: number | null = null;
  let error: ExecResult['error'];
  let started: WebSocket | undefined;
  let startedEarly = false;
  const onMessage = (data: Buffer) => {
    const ch = data[0];
    const body = data.subarray(1);
    if (ch === 1) stdout.push(Buffer.from(body));
    else if (ch === 2) stderr.push(Buffer.from(body));
    else if (ch === 3) {
      const m = JSON.parse(body.toString()) as { type: string; code?: number; error?: string; message?: string; suggestion?: string };
      if (m.type === 'started') {
        if (started) o.onStarted?.(started);
        else startedEarly = true;
      }
      if (m.type === 'exit') exitCode = m.code ?? null;
      if (m.type === 'error') error = { error: m.error ?? '', message: m.message ?? '', suggestion: m.suggestion };
    }
  };
  let onClose: (code: number, reason: string) => void = () => undefined;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (onClose = (code, reason) => resolve({ code, reason })));
  const ws = await openSocket(baseUrl, `/v1/workspaces/${workspaceId}/exec?${q}`, o.token ?? token, o.tokenAsSubprotocol, onMessage, onClose);
  started = ws;
  if (startedEarly) o.onStarted?.(ws);
  if (o.stdin) {
    for await (const chunk of o.stdin) {
      await new Promise<void>((resolve, reject) => ws.send(Buffer.concat([Buffer.from([0]), chunk]), (e) => (e ? reject(e) : resolve())));
      while (ws.bufferedAmount > 1 << 20) await new Promise((r) => setTimeout(r, 5));
    }
    ws.send(Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify({ type: 'eof' }))]));
  }
  const { code, reason } = await closed;
  return { stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), exitCode, error, closeCode: code, closeReason: reason };
}

export function sendControl(ws: WebSocket, msg: Record<string, unknown>): void {
  ws.send(Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify(msg))]));
}

export function sendStdin(ws: WebSocket, data: string | Buffer): void {
  ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(data)]));
}
