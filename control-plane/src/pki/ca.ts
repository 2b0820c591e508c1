import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import type { PeerCertificate } from 'node:tls';
import forge from 'node-forge';
import { normalizeSerial } from '@a4c/common';
import { StartupError } from '../startup.js';

/**
 * The control plane's certificate authority for the agent plane: it signs the gRPC
 * server's certificate and every agent's client certificate (issued at enrollment).
 * node:crypto makes keys and parses certificates; node-forge builds and signs the
 * X.509 structures, which node:crypto cannot.
 */
export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
}

export interface IssuedCertificate {
  certPem: string;
  /** Lowercase hex, no leading zeros: the form agentIdentity() returns too. */
  serial: string;
  notAfter: Date;
}

/** The URI SAN that binds an agent certificate to its host id. */
export const hostUri = (hostId: string) => `a4c://host/${hostId}`;

const DAY_MS = 86_400_000;

function newKeyPem(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** A positive 128-bit serial (first byte 0x01-0x7f: no sign bit, no leading zero). */
function newSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) % 0x7f) + 1;
  return b.toString('hex');
}

export { normalizeSerial };

/** A CA from its PEM key and certificate, checked: a CA certificate, and the key is its own. */
export function build(pemKey: string, pemCert: string): CertificateAuthority {
  const key = forge.pki.privateKeyFromPem(pemKey) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.certificateFromPem(pemCert);
  if (!cert.getExtension('basicConstraints') || !(cert.getExtension('basicConstraints') as { cA?: boolean }).cA) {
    throw new Error('the CA certificate is not a CA (basicConstraints cA is not set)');
  }
  const pub = cert.publicKey as forge.pki.rsa.PublicKey;
  if (pub.n.compareTo(key.n) !== 0) throw new Error('the CA key does not belong to the CA certificate');
  return { certPem: pemCert, keyPem: pemKey, cert, key };
}

/** A CA this replica was started with, and where it came from (for start-up messages). */
export interface LocalCa {
  ca: CertificateAuthority;
  /** 'supplied': A4C_CA_CERT/A4C_CA_KEY; 'dataDir': <dataDir>/ca from a single-replica install. */
  source: 'supplied' | 'dataDir';
  where: string;
}

/**
 * The CA this replica brings, if any: the supplied files (certFile and keyFile, PEM;
 * RSA), or the <dataDir>/ca/ (ca.key, ca.crt) that single-replica versions created.
 * undefined: none; the database's is used (pki/shared-ca.ts).
 */
export async function readLocalCa(dataDir: string, supplied?: { certFile: string; keyFile: string }): Promise<LocalCa | undefined> {
  if (supplied) {
    try {
      return { ca: build(await readFile(supplied.keyFile, 'utf8'), await readFile(supplied.certFile, 'utf8')), source: 'supplied', where: `A4C_CA_CERT ${supplied.certFile}` };
    } catch (e) {
      throw new StartupError(
        `A4C_CA_CERT/A4C_CA_KEY (${supplied.certFile}, ${supplied.keyFile}) cannot be used: ${(e as Error).message}`,
        'point both settings at readable PEM files of one RSA CA certificate and its key, or unset both to use the CA kept in PostgreSQL',
      );
    }
  }
  const dir = path.join(dataDir, 'ca');
  const keyFile = path.join(dir, 'ca.key');
  const certFile = path.join(dir, 'ca.crt');
  if (!existsSync(keyFile) || !existsSync(certFile)) return undefined;
  try {
    return { ca: build(await readFile(keyFile, 'utf8'), await readFile(certFile, 'utf8')), source: 'dataDir', where: dir };
  } catch (e) {
    throw new StartupError(`the CA in ${dir} cannot be used: ${(e as Error).message}`, `restore ca.crt and ca.key there from a backup, or move ${dir} away to use the CA kept in PostgreSQL (agents enrolled under the old CA then enroll again)`);
  }
}

/** A new self-signed CA (RSA 2048, ten years), in memory only. */
export function generateCa(): CertificateAuthority {
  const keyPem = newKeyPem();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = newSerial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 3650 * DAY_MS);
  const name = [{ name: 'commonName', value: `A4C agent-plane CA ${randomBytes(4).toString('hex')}` }, { name: 'organizationName', value: 'A4C' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem, cert, key };
}

function issue(
  ca: CertificateAuthority,
  publicKey: forge.pki.PublicKey,
  commonName: string,
  altNames: { type: number; value?: string; ip?: string }[],
  usage: 'serverAuth' | 'clientAuth',
  days: number,
): IssuedCertificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  const serial = newSerial();
  cert.serialNumber = serial;
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Math.min(Date.now() + days * DAY_MS, ca.cert.validity.notAfter.getTime()));
  cert.validity.notAfter = notAfter;
  cert.setSubject([{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'A4C' }]);
  cert.setIssuer(ca.cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: usage === 'serverAuth', clientAuth: usage === 'clientAuth' },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), serial: normalizeSerial(serial), notAfter };
}

/** The gRPC server's certificate and key, made fresh at every start. */
export function issueServerCertificate(ca: CertificateAuthority, sans: string[]): { certPem: string; keyPem: string } {
  const keyPem = newKeyPem();
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const names = [...new Set(['127.0.0.1', 'localhost', ...sans])];
  const altNames = names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n }));
  const { certPem } = issue(ca, forge.pki.setRsaPublicKey(key.n, key.e), 'a4c-control-plane', altNames, 'serverAuth', 825);
  return { certPem, keyPem };
}

/**
 * Signs an agent's CSR: checks its self-signature, then issues a client certificate
 * whose subject CN and URI SAN are the host id (whatever the CSR asked for).
 */
export function signAgentCsr(ca: CertificateAuthority, csrPem: string, hostId: string, days = 365): IssuedCertificate {
  let csr: forge.pki.CertificateSigningRequest;
  try {
    csr = forge.pki.certificationRequestFromPem(csrPem);
  } catch (e) {
    throw new CsrError(`csr is not a PEM certificate signing request: ${(e as Error).message}`);
  }
  if (!csr.verify()) throw new CsrError('csr signature does not verify');
  const pub = csr.publicKey as forge.pki.rsa.PublicKey | null;
  if (!pub || !pub.n || pub.n.bitLength() < 2048) throw new CsrError('csr must hold an RSA public key of at least 2048 bits');
  return issue(ca, pub, hostId, [{ type: 6, value: hostUri(hostId) }], 'clientAuth', days);
}

export class CsrError extends Error {}

/**
 * Who a verified peer certificate says the agent is: the host id from the URI SAN
 * a4c://host/<id> (which must agree with the subject CN), and its serial.
 */
export function agentIdentity(peer: PeerCertificate): { hostId: string; serial: string } | { error: string } {
  if (!peer.raw) return { error: 'no client certificate' };
  const x = new X509Certificate(peer.raw);
  const uris = (x.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:a4c://host/'))
    .map((s) => s.slice('URI:a4c://host/'.length));
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1];
  if (uris.length !== 1 || uris[0] !== cn) return { error: 'the client certificate does not name one A4C host (subject CN and URI SAN a4c://host/<id>)' };
  return { hostId: uris[0] as string, serial: normalizeSerial(x.serialNumber) };
}
