// stdio <-> a unix socket: the ProxyCommand of test/ssh.test.ts, standing where
// `a4c ws ssh-proxy ID` (stdio <-> the control plane's WebSocket) stands for users.
import net from 'node:net';

const socket = net.connect(process.argv[2]);
process.stdin.pipe(socket);
socket.pipe(process.stdout);
socket.on('close', () => process.exit(0));
socket.on('error', (e) => {
  process.stderr.write(`unix-bridge: ${e.message}\n`);
  process.exit(1);
});
