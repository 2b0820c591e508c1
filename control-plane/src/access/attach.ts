import * as grpc from '@grpc/grpc-js';

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
