import { Duplex } from 'node:stream';
import type Docker from 'dockerode';
import { startExec } from './exec.js';

/** Exit code of the in-container helper when the image has no way to open a TCP connection. */
const NO_TOOL = 127;

/**
 * A byte stream to 127.0.0.1:port inside the container's own network namespace.
 *
 * The agent cannot enter the namespace itself (its systemd unit forbids setns, and a
 * network-"none" container has no address to dial), so a tiny process inside the
 * container does it: busybox or netcat `nc`, else `socat`, run through the Engine's
 * exec. The stream ends when either side closes; an error (nothing listening, no
 * tool in the image) arrives as the stream's error with what the helper printed.
 */
export async function dialInContainer(docker: Docker, containerId: string, port: number): Promise<Duplex> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port ${port} is not a TCP port (1-65535)`);
  const script = [
    `if command -v nc >/dev/null 2>&1; then exec nc 127.0.0.1 ${port}; fi`,
    `if command -v socat >/dev/null 2>&1; then exec socat - TCP:127.0.0.1:${port}; fi`,
    `echo "the workspace image has neither nc nor socat, which port forwarding runs inside the workspace; add busybox, netcat-openbsd or socat to the image" >&2`,
    `exit ${NO_TOOL}`,
  ].join('\n');
  const proc = await startExec(docker, containerId, { cmd: ['/bin/sh', '-c', script], tty: false, stdin: true });
  let errText = '';
  proc.stderr.on('data', (c: Buffer) => {
    if (errText.length < 4096) errText += c.toString();
  });
  const stream = new Duplex({
    allowHalfOpen: true,
    read() {
      proc.stdout.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      if (proc.stdin.write(chunk)) cb();
      else proc.stdin.once('drain', () => cb());
    },
    final(cb) {
      proc.stdin.end();
      cb();
    },
    destroy(err, cb) {
      proc.close();
      cb(err);
    },
  });
  proc.stdout.on('data', (c: Buffer) => {
    if (!stream.push(c)) proc.stdout.pause();
  });
  proc.stdout.on('end', () => {
    void proc.exit.then(
      (code) => {
        if (code !== 0 && code !== -1) {
          const why = errText.trim() || `the connection helper exited with code ${code}`;
          stream.destroy(new Error(code === NO_TOOL ? why : `127.0.0.1:${port} inside the workspace: ${why}`));
        } else stream.push(null);
      },
      () => stream.push(null),
    );
  });
  return stream;
}
