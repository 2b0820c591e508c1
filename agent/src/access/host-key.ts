import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';

const { utils } = ssh2;

/** The agent's SSH host key: one per host, kept across restarts so known_hosts entries stay valid. */
export interface HostKey {
  /** OpenSSH private key (PEM-armoured), what ssh2's Server takes in hostKeys. */
  privateKey: string;
  /** "ssh-ed25519 AAAA…", for a known_hosts line. */
  publicKey: string;
  /** "SHA256:…", as `ssh-keygen -lf` and OpenSSH's prompts show it. */
  fingerprint: string;
}

export const HOST_KEY_FILE = 'ssh_host_ed25519_key';

/**
 * Loads the host key from `<stateDir>/ssh_host_ed25519_key`, or makes a new ed25519
 * key there (mode 0600, written to a temporary file and renamed, so a crash never
 * leaves half a key). A file that is there but cannot be parsed is an error, not a
 * reason to make a new key: replacing it silently would make every client's
 * known_hosts entry look like a man-in-the-middle.
 */
export function loadOrCreateHostKey(stateDir: string): HostKey {
  const file = path.join(stateDir, HOST_KEY_FILE);
  let pem: string | undefined;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (pem === undefined) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    // ssh2's generator now and then (about 1 key in 200) writes an ed25519 key that its
    // own parser refuses as malformed: only a key that parses is kept.
    let pair = utils.generateKeyPairSync('ed25519', { comment: 'a4c-agent' });
    for (let i = 0; i < 20 && utils.parseKey(pair.private) instanceof Error; i++) pair = utils.generateKeyPairSync('ed25519', { comment: 'a4c-agent' });
    const tmp = `${file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, pair.private);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    pem = pair.private;
  }
  return hostKeyFromPem(pem, file);
}

function hostKeyFromPem(pem: string, where: string): HostKey {
  const parsed = utils.parseKey(pem);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) {
    throw new Error(`${where} is not an OpenSSH private key (${key instanceof Error ? key.message : 'empty'}): move it away to have the agent make a new one (clients will then see a new host key)`);
  }
  const blob = key.getPublicSSH();
  return {
    privateKey: pem,
    publicKey: `${key.type} ${blob.toString('base64')}`,
    fingerprint: `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`,
  };
}
