import { createCipheriv, createDecipheriv, randomBytes, X509Certificate } from 'node:crypto';
import type { Logger } from '@a4c/common';
import type { Db } from '../store/db.js';
import { readStoredCa, sealStoredKey, storeCaIfAbsent, type StoredCa } from '../store/ca.js';
import { StartupError } from '../startup.js';
import { build, generateCa, readLocalCa, type CertificateAuthority, type LocalCa } from './ca.js';

/**
 * The agent plane's CA, shared by every replica through PostgreSQL (SwarmKit keeps its
 * root CA in its Raft store the same way). The first replica to start stores the CA it
 * brings (A4C_CA_CERT/A4C_CA_KEY, or the <dataDir>/ca of a single-replica install, so
 * upgrades keep their agents) or a new one; INSERT … ON CONFLICT DO NOTHING and then a
 * read make racing first starts agree on one. A replica that brings a different CA
 * refuses to start: two CAs would mean replicas disagreeing about who an agent is.
 */
export async function sharedCa(
  db: Db,
  opts: { dataDir: string; supplied: { certFile: string; keyFile: string } | undefined; encryptionKey: Buffer | undefined },
  log: Logger,
): Promise<CertificateAuthority> {
  const local = await readLocalCa(opts.dataDir, opts.supplied);
  let stored = await readStoredCa(db);
  if (!stored) {
    const mine = local?.ca ?? generateCa();
    const origin = !local ? 'created' : local.source === 'supplied' ? 'supplied' : 'imported-data-dir';
    const sealed = opts.encryptionKey ? seal(mine.keyPem, mine.certPem, opts.encryptionKey) : mine.keyPem;
    const subject = new X509Certificate(mine.certPem).subject.replace(/\n/g, ', ');
    const won = await storeCaIfAbsent(db, { certPem: mine.certPem, keyPem: sealed, keyEncryption: opts.encryptionKey ? 'aes-256-gcm' : null, origin }, subject);
    if (won) log.info({ origin, encrypted: Boolean(opts.encryptionKey) }, 'stored the agent-plane CA in PostgreSQL');
    stored = await readStoredCa(db);
    if (!stored) throw new Error('the agent-plane CA was stored but cannot be read back');
  }
  if (local && fingerprint(local.ca.certPem) !== fingerprint(stored.certPem)) throw differentCa(local, stored);
  const keyPem = unseal(stored, opts.encryptionKey);
  let ca: CertificateAuthority;
  try {
    ca = build(keyPem, stored.certPem);
  } catch (e) {
    throw new StartupError(`the agent-plane CA in PostgreSQL (table agent_plane_ca) cannot be used: ${(e as Error).message}`, 'restore that table from a backup; deleting its row makes the next replica create a new CA, and every agent must then enroll again');
  }
  if (opts.encryptionKey && !stored.keyEncryption && (await sealStoredKey(db, stored.certPem, seal(keyPem, stored.certPem, opts.encryptionKey)))) {
    log.info('encrypted the agent-plane CA key kept in PostgreSQL with A4C_CA_ENCRYPTION_KEY');
  }
  return ca;
}

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;

function differentCa(local: LocalCa, stored: StoredCa): StartupError {
  const theirs = `the agent-plane CA already kept in PostgreSQL (${new X509Certificate(stored.certPem).subject.replace(/\n/g, ', ')}, ${stored.origin} ${stored.createdAt.toISOString()})`;
  if (local.source === 'supplied') {
    return new StartupError(
      `${local.where} is a different CA from ${theirs}: replicas with different CAs would disagree about who an agent is`,
      'give every replica the same A4C_CA_CERT/A4C_CA_KEY files (the ones the database holds), or unset both to use the CA kept in PostgreSQL',
    );
  }
  return new StartupError(
    `${local.where} holds a different CA from ${theirs}: this data directory belongs to another installation, and replicas with different CAs would disagree about who an agent is`,
    `move ${local.where} away to use the database's CA (agents enrolled under the old CA then enroll again), or point DATABASE_URL at the database this data directory belongs with`,
  );
}

/** AES-256-GCM, the certificate as additional data (a key sealed for one CA cannot be swapped in for another). */
function seal(keyPem: string, certPem: string, key: Buffer): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(certPem));
  const body = Buffer.concat([c.update(keyPem, 'utf8'), c.final()]);
  return `v1:${Buffer.concat([iv, c.getAuthTag(), body]).toString('base64')}`;
}

function unseal(stored: StoredCa, key: Buffer | undefined): string {
  if (!stored.keyEncryption) return stored.keyPem;
  if (!key) {
    throw new StartupError('the agent-plane CA key in PostgreSQL is encrypted and A4C_CA_ENCRYPTION_KEY is not set', 'set A4C_CA_ENCRYPTION_KEY to the same value the other replicas use');
  }
  try {
    if (!stored.keyPem.startsWith('v1:')) throw new Error('unknown format');
    const raw = Buffer.from(stored.keyPem.slice(3), 'base64');
    const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
    d.setAAD(Buffer.from(stored.certPem));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  } catch {
    throw new StartupError('the agent-plane CA key in PostgreSQL does not decrypt with A4C_CA_ENCRYPTION_KEY', 'set A4C_CA_ENCRYPTION_KEY to the value the other replicas use (the one the key was encrypted with)');
  }
}
