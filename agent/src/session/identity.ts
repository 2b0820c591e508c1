import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import forge from 'node-forge';
import { normalizeSerial, type Logger } from '@a4c/common';

export interface IdentityOptions {
  stateDir: string;
  hostId: string;
  /** Used only when no certificate is present yet. */
  joinToken: string | undefined;
  /** REST base URL of the control plane, for enrollment. */
  controlPlaneUrl: string;
  insecure: boolean;
}

interface Material {
  keyPem: string;
  certPem: string;
  caPem: string;
}

export interface IdentityStatus {
  mode: 'tls' | 'insecure';
  enrolled: boolean;
  certificateHostId?: string;
  serial?: string;
  notAfter?: string;
  directory: string;
}

/**
 * The agent's client certificate: $A4C_STATE_DIR/tls/{agent.key (0600), agent.crt, ca.crt}.
 * Without one, the agent enrolls once with A4C_JOIN_TOKEN (POST /v1/agents/enroll on
 * the control plane's REST API, with a CSR for a key that never leaves this host),
 * and from then on connects with the certificate only.
 */
export class AgentIdentity {
  readonly dir: string;
  private material: Material | undefined;

  constructor(
    private readonly o: IdentityOptions,
    private readonly log: Logger,
  ) {
    this.dir = path.join(o.stateDir, 'tls');
  }

  private files() {
    return { key: path.join(this.dir, 'agent.key'), cert: path.join(this.dir, 'agent.crt'), ca: path.join(this.dir, 'ca.crt') };
  }

  private load(): Material | undefined {
    const f = this.files();
    if (!existsSync(f.key) || !existsSync(f.cert) || !existsSync(f.ca)) return undefined;
    return { keyPem: readFileSync(f.key, 'utf8'), certPem: readFileSync(f.cert, 'utf8'), caPem: readFileSync(f.ca, 'utf8') };
  }

  /** The channel credentials to connect with; enrolls first if there is no certificate yet. */
  async credentials(): Promise<grpc.ChannelCredentials> {
    if (this.o.insecure) return grpc.credentials.createInsecure();
    this.material ??= this.load();
    if (!this.material) {
      if (!this.o.joinToken) {
        throw new Error(
          `no client certificate in ${this.dir} and no A4C_JOIN_TOKEN to enroll with: create a join token (POST /v1/join-tokens as admin) and start the agent with A4C_JOIN_TOKEN set to it`,
        );
      }
      this.material = await this.enroll(this.o.joinToken);
    }
    const m = this.material;
    return grpc.credentials.createSsl(Buffer.from(m.caPem), Buffer.from(m.keyPem), Buffer.from(m.certPem));
  }

  private async enroll(joinToken: string): Promise<Material> {
    const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    csr.setSubject([{ name: 'commonName', value: this.o.hostId }]);
    csr.sign(key, forge.md.sha256.create());
    const url = `${this.o.controlPlaneUrl.replace(/\/+$/, '')}/v1/agents/enroll`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ joinToken, hostId: this.o.hostId, csr: forge.pki.certificationRequestToPem(csr) }),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      throw new Error(`enrollment failed: cannot reach ${url} (A4C_CONTROL_PLANE_URL): ${(e as Error).message}`);
    }
    const body = (await res.json().catch(() => ({}))) as { certificate?: string; ca?: string; message?: string; error?: string };
    if (!res.ok || !body.certificate || !body.ca) {
      throw new Error(`enrollment refused by ${url}: ${res.status} ${body.error ?? ''} ${body.message ?? ''}`.trim());
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    const f = this.files();
    // The certificate last: a directory with all three files is complete.
    await writeAtomic(f.key, keyPem, 0o600);
    await writeAtomic(f.ca, body.ca, 0o644);
    await writeAtomic(f.cert, body.certificate, 0o644);
    this.log.info({ dir: this.dir, serial: normalizeSerial(new X509Certificate(body.certificate).serialNumber) }, 'enrolled: client certificate stored');
    return { keyPem, certPem: body.certificate, caPem: body.ca };
  }

  status(): IdentityStatus {
    if (this.o.insecure) return { mode: 'insecure', enrolled: false, directory: this.dir };
    const m = this.material ?? this.load();
    if (!m) return { mode: 'tls', enrolled: false, directory: this.dir };
    try {
      const x = new X509Certificate(m.certPem);
      return {
        mode: 'tls',
        enrolled: true,
        certificateHostId: /(?:^|\n)CN=([^\n]*)/.exec(x.subject)?.[1],
        serial: normalizeSerial(x.serialNumber),
        notAfter: new Date(x.validTo).toISOString(),
        directory: this.dir,
      };
    } catch {
      return { mode: 'tls', enrolled: true, directory: this.dir };
    }
  }
}

async function writeAtomic(file: string, content: string, mode: number): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}
