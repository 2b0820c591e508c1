import { WebSocket } from 'ws';
import type { ErrorBody } from '@a4c/common';
import { CliError, type ApiClient } from '../client.js';

export const SUBPROTOCOL = 'a4c.v1';

/** Exec frames: the first byte names the channel (docs/api.md, "Getting into a workspace"). */
export const CH = { stdin: 0, stdout: 1, stderr: 2, server: 3, client: 4 } as const;

/**
 * Opens one of the access WebSockets. A refusal before the upgrade is the API's JSON
 * error (not running, not yours, too many sessions), turned into a CliError with its
 * hint. onMessage (or whatever prepare attaches) is in place before the handshake
 * completes: the first frames can arrive in the same read as the handshake (an SSH
 * server's banner does), and would be lost to a listener attached after 'open'.
 */
export function openAccessSocket(api: ApiClient, path: string, onMessage?: (data: Buffer) => void, prepare?: (ws: WebSocket) => void): Promise<WebSocket> {
  const url = api.baseUrl.replace(/\/$/, '').replace(/^http/, 'ws') + path;
  const ws = new WebSocket(url, [SUBPROTOCOL], { headers: { authorization: `Bearer ${api.token}` }, perMessageDeflate: false });
  if (onMessage) ws.on('message', (d: Buffer) => onMessage(d));
  prepare?.(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => {
        let body: Partial<ErrorBody> = {};
        try {
          body = JSON.parse(text) as Partial<ErrorBody>;
        } catch {
          // not the API's JSON: say what came back
        }
        reject(new CliError(`${body.error ?? res.statusCode}: ${body.message ?? (text.slice(0, 200) || 'the upgrade was refused')}`, body.suggestion, 1));
      });
    });
    ws.once('error', (e: Error & { code?: string }) =>
      reject(new CliError(`cannot reach the control plane at ${api.baseUrl} (${e.code ?? e.message})`, 'is it running? start one with `npm start`, or set A4C_URL', 1)),
    );
  });
}

/** Sends while the socket's own buffer stays under a bound; resolves when there is room again. */
export async function sendWithBackpressure(ws: WebSocket, frame: Buffer, highWater = 1024 * 1024): Promise<void> {
  ws.send(frame);
  while (ws.bufferedAmount > highWater && ws.readyState === ws.OPEN) await new Promise((r) => setTimeout(r, 2));
}
