import * as grpc from '@grpc/grpc-js';
import { agentIdentity } from '../pki/ca.js';
import { checkCertificate } from '../pki/enrollment.js';
import type { Db } from '../store/db.js';

/** How long an agent has to say which session or transfer a stream it dialed back is for. */
const ATTACH_DEADLINE_MS = 10_000;

/**
 * The start of every stream an agent dials back (Tunnel, Transfer): the first message
 * must come within the deadline and name what the stream is for; nothing more is read
 * until attach() has handed the stream to its owner. A refusal ends the stream with its
 * gRPC status and message.
 */
export function acceptAttach<Up>(
  call: grpc.ServerDuplexStream<Up, unknown>,
  what: string,
  attach: (first: Up) => Promise<void>,
): void {
  const refuse = (code: grpc.status, message: string) => {
    call.emit('error', Object.assign(new Error(message), { code, details: message }));
  };
  const timer = setTimeout(() => refuse(grpc.status.DEADLINE_EXCEEDED, `no ${what} within ${ATTACH_DEADLINE_MS / 1000} s`), ATTACH_DEADLINE_MS);
  call.once('data', (first: Up) => {
    clearTimeout(timer);
    call.pause();
    void attach(first).catch((e: unknown) => {
      const err = e as { code?: grpc.status; message: string };
      refuse(err.code ?? grpc.status.INTERNAL, err.message);
    });
  });
  call.on('error', () => clearTimeout(timer));
}

/**
 * The host an agent that dialed back really is: with client certificates, the one its
 * certificate names (and the certificate must not be revoked); without, what it says.
 */
export async function dialingHost(call: grpc.ServerDuplexStream<unknown, unknown>, claimedHostId: string, db: Db, requireClientCertificates: boolean): Promise<string> {
  if (!requireClientCertificates) return claimedHostId;
  const peer = call.getAuthContext().sslPeerCertificate;
  const id = peer ? agentIdentity(peer) : { error: 'no client certificate was presented' };
  if ('error' in id) throw Object.assign(new Error(id.error), { code: grpc.status.UNAUTHENTICATED });
  const check = await checkCertificate(db, id.serial, id.hostId);
  if (!check.ok) throw Object.assign(new Error(check.reason), { code: grpc.status.PERMISSION_DENIED });
  return id.hostId;
}
