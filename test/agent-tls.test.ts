import { normalizeSerial } from '@a4c/common';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import forge from 'node-forge';
import pg from 'pg';
import { AgentServiceClient, type ControlMessage } from '@a4c/proto';
import { removeHostContainers, spawnAgent, startTestControlPlane, tmpDir, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

interface AgentStatus {
  controlPlane: {
    connected: boolean;
    lastError?: string;
    reconnects: number;
    tls: { mode: string; enrolled: boolean; certificateHostId?: string; serial?: string };
  };
}

const status = async (a: AgentProcess) => (await (await fetch(`${a.statusUrl}/status`)).json()) as AgentStatus;

/** Waits until the agent's /status satisfies the predicate; the failure shows the last status. */
async function waitStatus(a: AgentProcess, what: string, ok: (s: AgentStatus) => boolean, timeoutMs = 20_000): Promise<AgentStatus> {
  let last: AgentStatus | undefined;
  try {
    return await waitFor(what, async () => {
      last = await status(a);
      return ok(last) ? last : undefined;
    }, timeoutMs);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nlast /status: ${JSON.stringify(last?.controlPlane)}\nagent output:\n${a.output().slice(-3000)}`);
  }
}

function csrFor(hostId: string): string {
  const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: hostId }]);
  csr.sign(key, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/** Opens a raw stream with the given credentials and says Hello; resolves with the stream's error. */
function rawConnect(address: string, creds: grpc.ChannelCredentials, hostId: string): Promise<grpc.ServiceError | 'welcomed'> {
  const client = new AgentServiceClient(address, creds);
  return new Promise((resolve) => {
    const call = client.connect();
    const done = (r: grpc.ServiceError | 'welcomed') => {
      call.cancel();
      client.close();
      resolve(r);
    };
    call.on('data', (m: ControlMessage) => m.payload?.$case === 'welcome' && done('welcomed'));
    call.on('error', (e: grpc.ServiceError) => done(e));
    call.write({ payload: { $case: 'hello', value: { hostId, arch: 'linux-x64', agentVersion: 't', images: [], workspaces: [], lastAppliedRevision: 0, capacity: undefined, stats: undefined, previousSessionId: '' } } });
  });
}

describe('agents prove who they are: TLS with client certificates, join-token enrollment, revocation', () => {
  let t: TestControlPlane;
  let db: pg.Client;
  const dataDir = tmpDir('cp-tls');
  const hostA = uniqueId('tls-a');
  const hostB = uniqueId('tls-b');
  const agents: AgentProcess[] = [];
  let agentA: AgentProcess;
  let tokenA: string;

  const tlsAgent = async (hostId: string, env: Record<string, string> = {}, stateDir?: string) => {
    const a = await spawnAgent({
      hostId,
      controlPlane: t.grpcAddress,
      ...(stateDir ? { stateDir } : {}),
      env: { A4C_GRPC_INSECURE: 'false', A4C_CONTROL_PLANE_URL: t.api.baseUrl, ...env },
    });
    agents.push(a);
    return a;
  };

  const storedCa = async () => (await db.query<{ cert_pem: string }>('SELECT cert_pem FROM agent_plane_ca')).rows[0]?.cert_pem ?? '';

  before(async () => {
    t = await startTestControlPlane({ A4C_GRPC_INSECURE: 'false', A4C_DATA_DIR: dataDir });
    db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
  });

  after(async () => {
    for (const a of agents) await a.kill();
    await db?.end();
    await t?.stop();
    await removeHostContainers(hostA, hostB);
  });

  it('keeps its CA in PostgreSQL, shared by every replica (none in the data directory), and accepts no stream without a client certificate signed by it', async () => {
    expect(existsSync(path.join(dataDir, 'ca'))).to.equal(false);
    const caPem = Buffer.from(await storedCa());
    expect(new X509Certificate(caPem).ca).to.equal(true);

    const plaintext = await rawConnect(t.grpcAddress, grpc.credentials.createInsecure(), 'intruder');
    expect(plaintext).to.not.equal('welcomed');
    expect((plaintext as grpc.ServiceError).code).to.equal(grpc.status.UNAVAILABLE);
    // TLS that trusts the right CA, but no client certificate: the handshake fails.
    const noCert = await rawConnect(t.grpcAddress, grpc.credentials.createSsl(caPem), 'intruder');
    expect(noCert).to.not.equal('welcomed');
    expect((noCert as grpc.ServiceError).code).to.equal(grpc.status.UNAVAILABLE);
    expect((await t.api.call('GET', '/v1/hosts/intruder')).status).to.equal(404);
  });

  it('an agent with neither a certificate nor a join token cannot connect, and its /status says why', async () => {
    const a = await tlsAgent(uniqueId('tls-none'));
    const s = await waitStatus(a, 'the missing-certificate error', (x) => Boolean(x.controlPlane.lastError));
    expect(s.controlPlane.connected).to.equal(false);
    expect(s.controlPlane.lastError).to.include('no client certificate').and.to.include('A4C_JOIN_TOKEN');
    expect(s.controlPlane.tls).to.include({ mode: 'tls', enrolled: false });
    expect((await t.api.call('GET', `/v1/hosts/${a.hostId}`)).status).to.equal(404);
    await a.kill();
  });

  it('only an admin creates join tokens; one is shown once and stored as its sha256', async () => {
    expect((await t.api.call('POST', '/v1/join-tokens', {}, { token: null })).status).to.equal(401);
    const r = await t.api.call<{ token: string; expiresAt: string; hostId: string }>('POST', '/v1/join-tokens', { hostId: hostA, ttlSeconds: 600 });
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    expect(r.headers.get('cache-control')).to.equal('no-store');
    tokenA = r.body.token;
    expect(tokenA).to.match(/^a4cj_[A-Za-z0-9_-]{40,}$/);
    expect(new Date(r.body.expiresAt).getTime() - Date.now()).to.be.within(590_000, 610_000);
    const { rows } = await db.query('SELECT * FROM join_tokens');
    expect(rows).to.have.length(1);
    expect(rows[0].token_sha256).to.equal(createHash('sha256').update(tokenA).digest('hex'));
    expect(JSON.stringify(rows)).to.not.include(tokenA);
  });

  it('with a join token an agent enrolls, connects over TLS, and runs workspaces', async () => {
    agentA = await tlsAgent(hostA, { A4C_JOIN_TOKEN: tokenA });
    const host = await t.api.waitHostConnected(hostA);
    expect(host.status).to.equal('healthy');
    const tls = path.join(agentA.stateDir, 'tls');
    expect(statSync(path.join(tls, 'agent.key')).mode & 0o777).to.equal(0o600);
    const cert = new X509Certificate(readFileSync(path.join(tls, 'agent.crt')));
    expect(cert.subject).to.include(`CN=${hostA}`);
    expect(cert.subjectAltName).to.equal(`URI:a4c://host/${hostA}`);
    expect(cert.verify(new X509Certificate(await storedCa()).publicKey)).to.equal(true);
    const s = await status(agentA);
    expect(s.controlPlane.tls).to.include({ mode: 'tls', enrolled: true, certificateHostId: hostA, serial: normalizeSerial(cert.serialNumber) });

    const ws = await t.api.createWorkspace(uniqueId('tls-user'), { projectName: 'tls', arch: 'linux-x64', tier: 'tiny' });
    expect(ws.status).to.equal('RUNNING');
    expect(ws.hostId).to.equal(hostA);
  });

  it('a join token works once; an expired one and one for another host are refused', async () => {
    const enroll = (joinToken: string, hostId: string) => t.api.call<{ message: string }>('POST', '/v1/agents/enroll', { joinToken, hostId, csr: csrFor(hostId) }, { token: null });
    const again = await enroll(tokenA, hostA);
    expect(again.status).to.equal(401);
    expect(again.body.message).to.include('already used');

    const short = await t.api.call<{ token: string }>('POST', '/v1/join-tokens', { ttlSeconds: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    const expired = await enroll(short.body.token, uniqueId('tls-late'));
    expect(expired.status).to.equal(401);
    expect(expired.body.message).to.include('expired');

    const bound = await t.api.call<{ token: string }>('POST', '/v1/join-tokens', { hostId: 'some-other-host' });
    const wrongHost = await enroll(bound.body.token, uniqueId('tls-wrong'));
    expect(wrongHost.status).to.equal(403);
    expect((await enroll('a4cj_not-a-token', uniqueId('tls-x'))).status).to.equal(401);

    // An agent given the used token says so on /status and never connects.
    const late = await tlsAgent(uniqueId('tls-reuse'), { A4C_JOIN_TOKEN: tokenA });
    const s = await waitStatus(late, 'the refused enrollment', (x) => Boolean(x.controlPlane.lastError));
    expect(s.controlPlane.lastError).to.include('enrollment refused').and.to.include('already used');
    expect(s.controlPlane.connected).to.equal(false);
    await late.kill();
  });

  it("an agent presenting another host's certificate is refused with PERMISSION_DENIED", async () => {
    const stolen = tmpDir('agent-stolen');
    cpSync(path.join(agentA.stateDir, 'tls'), path.join(stolen, 'tls'), { recursive: true });
    const b = await tlsAgent(hostB, {}, stolen);
    const s = await waitStatus(b, 'the PERMISSION_DENIED refusal', (x) => Boolean(x.controlPlane.lastError?.startsWith('PERMISSION_DENIED')));
    expect(s.controlPlane.lastError).to.include(`certificate is for host ${hostA}`).and.to.include(`says host ${hostB}`);
    expect(s.controlPlane.connected).to.equal(false);
    expect((await t.api.call('GET', `/v1/hosts/${hostB}`)).status).to.equal(404);
    // The rightful owner is untouched.
    expect((await status(agentA)).controlPlane.connected).to.equal(true);
    await b.kill();
  });

  it('removing a host revokes its certificate: its agent is disconnected and refused on reconnect', async () => {
    expect((await t.api.call('DELETE', `/v1/hosts/${hostA}`, undefined, { token: null })).status).to.equal(401);
    const serial = (await status(agentA)).controlPlane.tls.serial as string;
    const r = await t.api.call<{ removed: boolean; revokedSerials: string[] }>('DELETE', `/v1/hosts/${hostA}`);
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body.revokedSerials).to.deep.equal([serial]);

    await waitStatus(agentA, 'the revoked agent to be disconnected', (x) => !x.controlPlane.connected && Boolean(x.controlPlane.lastError?.includes('removed')));
    const before = (await status(agentA)).controlPlane.reconnects;
    const s = await waitStatus(agentA, 'a reconnect refused as revoked', (x) => x.controlPlane.reconnects > before && Boolean(x.controlPlane.lastError?.includes('was revoked')));
    expect(s.controlPlane.lastError).to.match(/^PERMISSION_DENIED: client certificate [0-9a-f]+ of host .* was revoked/);
    expect(s.controlPlane.connected).to.equal(false);
    const host = await t.api.host(hostA);
    expect(host?.connected).to.equal(false);
    const { rows } = await db.query('SELECT serial, reason FROM revoked_certificates WHERE host_id = $1', [hostA]);
    expect(rows).to.deep.equal([{ serial, reason: 'host removed' }]);
    expect((await t.api.call('DELETE', '/v1/hosts/never-seen')).status).to.equal(404);
    expect(existsSync(path.join(agentA.stateDir, 'tls/agent.crt'))).to.equal(true);
  });
});
