import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One request a receiver got, and how it was answered. */
export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The status answered; 'reset' when the connection was destroyed instead; 'hold' while it waits for release(). */
  answer: number | 'reset' | 'hold';
}

/** How to answer the nth request (0-based) to a path: a status, a reset, or no answer until release(). */
export type Script = (n: number) => number | 'reset' | 'hold';

/**
 * A webhook receiver: a plain node http server on 127.0.0.1 that records every
 * request and answers each path as its script says (default 200).
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  private readonly scripts = new Map<string, Script>();
  private readonly counts = new Map<string, number>();
  private readonly sockets = new Set<Socket>();
  private readonly held: { path: string; res: http.ServerResponse }[] = [];
  private server: http.Server | undefined;
  port = 0;

  script(path: string, s: Script): this {
    this.scripts.set(path, s);
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  on(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  /** Answers the held requests to a path with this status; how many there were. */
  release(path: string, status = 200): number {
    const mine = this.held.filter((h) => h.path === path);
    for (const h of mine) {
      this.held.splice(this.held.indexOf(h), 1);
      h.res.writeHead(status, { 'content-type': 'text/plain' }).end('finally');
    }
    return mine.length;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '/';
        const n = this.counts.get(path) ?? 0;
        this.counts.set(path, n + 1);
        const answer = (this.scripts.get(path) ?? (() => 200))(n);
        this.received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answer });
        if (answer === 'reset') {
          req.socket.resetAndDestroy();
          return;
        }
        if (answer === 'hold') {
          this.held.push({ path, res });
          return;
        }
        res.writeHead(answer, { 'content-type': 'text/plain' }).end(answer < 300 ? 'ok' : `no thanks (${answer})`);
      });
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * The receiver's check, written from docs/api.md alone (not the control plane's code):
 * A4C-Signature is `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`;
 * refuse it unless some v1 matches and t is within the replay window of now.
 */
export function verifyA4cSignature(secret: string, body: string, header: string | undefined, nowSeconds = Math.floor(Date.now() / 1000), toleranceSeconds = 300): boolean {
  if (!header) return false;
  let t = NaN;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const [k, v] = part.trim().split('=', 2);
    if (k === 't') t = Number(v);
    if (k === 'v1' && v) signatures.push(v);
  }
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return signatures.some((s) => {
    const given = Buffer.from(s, 'hex');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
