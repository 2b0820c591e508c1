import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StatusSource {
  /** Docker answers: the host can take work. */
  ready(): Promise<{ ok: boolean; reason?: string }>;
  status(): Promise<Record<string, unknown>>;
  /** Prometheus text exposition. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

/**
 * On-call's view of one host: /healthz (the process lives), /readyz (Docker answers),
 * /status (everything needed to answer "why won't my workspace start?"), /metrics
 * (Prometheus).
 */
export async function startStatusServer(bind: string, port: number, src: StatusSource): Promise<http.Server & { port: number }> {
  const server = http.createServer((req, res) => {
    const send = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body, null, 2)}\n`);
    };
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return send(405, { error: 'METHOD_NOT_ALLOWED', message: 'only GET is served here' });
    const handle = async () => {
      switch (path) {
        case '/healthz':
          return send(200, { status: 'ok' });
        case '/readyz': {
          const r = await src.ready();
          return send(r.ok ? 200 : 503, r.ok ? { status: 'ready' } : { status: 'not ready', reason: r.reason });
        }
        case '/status':
          return send(200, await src.status());
        case '/metrics': {
          const m = await src.metrics();
          res.writeHead(200, { 'content-type': m.contentType });
          res.end(m.body);
          return;
        }
        default:
          return send(404, { error: 'NOT_FOUND', message: `no endpoint ${path}; try /healthz, /readyz, /status or /metrics` });
      }
    };
    handle().catch((e: unknown) => send(500, { error: 'INTERNAL', message: (e as Error).message }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bind, () => resolve());
  });
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}
