import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { service as healthService } from 'grpc-health-check';
import pg from 'pg';
import type { Workspace } from '@a4c/common';
import { containersOfHost, freshDatabase, removeHostContainers, spawnAgent, tmpDir, uniqueId, type AgentProcess } from './support/cluster.js';
import { waitFor } from './support/net.js';
import { spawnReplica, type ReplicaProcess } from './support/replicas.js';

type Health = grpc.Client & {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
};
const HealthClient = grpc.makeGenericClientConstructor(healthService, 'grpc.health.v1.Health');

interface AgentStatus {
  controlPlane: { connected: boolean; address?: string };
}

/**
 * Three control-plane processes on one external PostgreSQL, agents given all three
 * addresses. PostgreSQL is the only shared state: the CA, placements and sessions.
 */
describe('replicas that fail over: three control planes on one PostgreSQL, agents with all their addresses (real processes, real Docker)', function () {
  this.timeout(240_000);
  const adminToken = `test-admin-token-${uniqueId('r')}`;
  const user = uniqueId('rep-u');
  const hosts = [uniqueId('rep-a'), uniqueId('rep-b'), uniqueId('rep-c')];
  let databaseUrl: string;
  let db: pg.Pool;
  const replicas: ReplicaProcess[] = [];
  const agents: AgentProcess[] = [];
  const clients: grpc.Client[] = [];

  const health = (address: string, stateDir: string) => {
    const tls = path.join(stateDir, 'tls');
    const creds = grpc.credentials.createSsl(readFileSync(path.join(tls, 'ca.crt')), readFileSync(path.join(tls, 'agent.key')), readFileSync(path.join(tls, 'agent.crt')));
    const c = new HealthClient(address, creds) as unknown as Health;
    clients.push(c);
    return c;
  };
  const check = (c: Health) =>
    new Promise<string>((resolve, reject) => c.check({ service: '' }, (err, res) => (err ? reject(err) : resolve(res?.status ?? 'none'))));
  const agentStatus = async (a: AgentProcess) => (await (await fetch(`${a.statusUrl}/status`)).json()) as AgentStatus;
  const replicaOf = async (a: AgentProcess) => {
    const s = await agentStatus(a);
    return s.controlPlane.connected ? replicas.find((r) => r.grpcAddress === s.controlPlane.address) : undefined;
  };

  const otherCa = (name: string) => {
    const dir = tmpDir(name);
    const [key, cert] = [path.join(dir, 'ca.key'), path.join(dir, 'ca.crt')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE'], { stdio: 'ignore' });
    return { key, cert, dir };
  };
  const caRow = async (url: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<{ cert_pem: string; key_pem: string; key_encryption: string | null; origin: string }>('SELECT cert_pem, key_pem, key_encryption, origin FROM agent_plane_ca')).rows;
    } finally {
      await c.end();
    }
  };

  before(async () => {
    databaseUrl = await freshDatabase();
    db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    // A liveness window of 50 heartbeats (25 s): a dead replica's sessions keep looking
    // alive far longer than the kill test waits, so its agents can only be back in time by
    // taking over their previous sessions (Hello.previous_session_id), not by expiry.
    const env = { A4C_QUOTA_MAX_WORKSPACES: '50', A4C_SHUTDOWN_GRACE_MS: '8000', A4C_HEARTBEAT_MISS_LIMIT: '50' };
    // The first creates the CA in PostgreSQL; the others start together and read it.
    replicas.push(await spawnReplica({ name: 'a', databaseUrl, adminToken, env }));
    replicas.push(...(await Promise.all(['b', 'c'].map((name) => spawnReplica({ name, databaseUrl, adminToken, env })))));
    const list = replicas.map((r) => r.grpcAddress).join(',');
    for (const hostId of hosts) {
      // Join tokens from one replica, enrollment at another: any replica serves any request.
      const t = await replicas[1]!.api.call<{ token: string }>('POST', '/v1/join-tokens', { hostId, ttlSeconds: 600 });
      expect(t.status, JSON.stringify(t.body)).to.equal(201);
      agents.push(
        await spawnAgent({
          hostId,
          controlPlane: list,
          env: {
            A4C_GRPC_INSECURE: 'false',
            A4C_JOIN_TOKEN: t.body.token,
            A4C_CONTROL_PLANE_URL: replicas[2]!.api.baseUrl,
            A4C_CAPACITY_MEMORY_MB: '2000',
            A4C_CAPACITY_CPUS: '8',
            A4C_CAPACITY_DISK_GB: '100',
          },
        }),
      );
    }
    for (const hostId of hosts) await replicas[0]!.api.waitHostConnected(hostId, 60_000);
  });

  after(async () => {
    for (const c of clients) c.close();
    for (const a of agents) await a.kill();
    for (const r of replicas) await r.kill('SIGKILL');
    await db?.end();
    await removeHostContainers(...hosts);
  });

  it('keeps one CA in PostgreSQL: every replica accepts the agents enrolled at another, and serves grpc.health.v1 SERVING', async () => {
    const { rows } = await db.query<{ origin: string; key_encryption: string | null }>('SELECT origin, key_encryption FROM agent_plane_ca');
    expect(rows).to.deep.equal([{ origin: 'created', key_encryption: null }]);
    // One ca.stored event, in the same transaction as the row, though three replicas started.
    const { rows: events } = await db.query<{ data: { origin: string } }>("SELECT data FROM events WHERE kind = 'ca.stored'");
    expect(events.map((e) => e.data.origin)).to.deep.equal(['created']);
    // A health check over mutual TLS with an agent's certificate: the replica accepts a
    // client certificate its CA signed, and the agent verifies the replica's against the CA it enrolled with.
    for (const r of replicas) expect(await check(health(r.grpcAddress, agents[0]!.stateDir)), r.name).to.equal('SERVING');
  });

  it('refuses to start a replica supplied with a different CA, saying why and what to do', async () => {
    const { key, cert } = otherCa('another-ca');
    const r = await spawnReplica({ name: 'other-ca', databaseUrl, adminToken, env: { A4C_CA_CERT: cert, A4C_CA_KEY: key }, waitReady: false });
    expect(await r.exited).to.equal(1);
    expect(r.stderr()).to.include(`A4C_CA_CERT ${cert} is a different CA from the agent-plane CA already kept in PostgreSQL`);
    expect(r.stderr()).to.include('fix: give every replica the same A4C_CA_CERT/A4C_CA_KEY files');
  });

  it('kill -9 of a replica under a create load: its agents take their sessions over on the others at once; every 2xx create is RUNNING, none lost or duplicated, no over-commit', async () => {
    // The replica holding the most agents dies (the shuffled address lists spread them).
    const held = await Promise.all(agents.map(replicaOf));
    const victim = replicas.reduce((best, r) => (held.filter((h) => h === r).length > held.filter((h) => h === best).length ? r : best));
    const victimsAgents = agents.filter((_, i) => held[i] === victim);
    const victimsHosts = hosts.filter((_, i) => held[i] === victim);
    expect(victimsAgents.length).to.be.greaterThan(0);
    const lastEvent = Number((await db.query<{ id: string }>('SELECT COALESCE(max(id), 0) AS id FROM events')).rows[0]?.id);
    const survivors = replicas.filter((r) => r !== victim);

    const answered: Workspace[] = [];
    const unanswered: string[] = [];
    const refused: string[] = [];
    let killed = false;
    let next = 0;
    const names = Array.from({ length: 12 }, (_, i) => `rep${i}`);
    const worker = async (w: number) => {
      for (let n = next++; n < names.length; n = next++) {
        const name = names[n]!;
        // Like a load balancer: any replica until the kill, then only the live ones.
        const pool = killed ? survivors : replicas;
        const r = pool[(n + w) % pool.length]!;
        const res = await r.api
          .call<Workspace>('POST', `/v1/users/${user}/workspaces?wait=0`, { projectName: 'replicas', arch: 'linux-x64', tier: 'tiny', name })
          .catch(() => undefined);
        if (!res) unanswered.push(name);
        else if (res.status >= 200 && res.status < 300) answered.push(res.body);
        else refused.push(`${name}: ${res.status} ${JSON.stringify(res.body)}`);
        if (answered.length >= 4 && !killed) {
          killed = true;
          await victim.kill('SIGKILL');
        }
      }
    };
    await Promise.all([0, 1, 2].map(worker));
    expect(killed).to.equal(true);
    expect(refused).to.deep.equal([]);

    // Its agents are on the other replicas within seconds, and every host is connected:
    // each named its previous session in its Hello and replaced it though the dead
    // replica's session still looked alive (its window is 25 s).
    await waitFor('the dead replica\'s agents on the others', async () => {
      for (const a of agents) if (!survivors.includes((await replicaOf(a)) as ReplicaProcess)) return false;
      return true;
    }, 20_000, 200);
    for (const hostId of hosts) await survivors[0]!.api.waitHostConnected(hostId, 20_000);
    const { rows: back } = await db.query<{ host_id: string; data: { takeover?: boolean } }>(
      "SELECT host_id, data FROM events WHERE kind = 'host.connected' AND id > $1 AND host_id = ANY($2) ORDER BY id",
      [lastEvent, victimsHosts],
    );
    expect([...new Set(back.map((e) => e.host_id))].sort()).to.deep.equal([...victimsHosts].sort());
    for (const e of back) expect(e.data.takeover, e.host_id).to.equal(true);

    // Every create that got a 2xx comes up.
    for (const w of answered) {
      await waitFor(`workspace ${w.name} RUNNING`, async () => (await survivors[0]!.api.workspace(w.id)).status === 'RUNNING', 90_000, 250);
    }
    // None duplicated: one row per name, one container per workspace, no container without its row.
    const { rows } = await db.query<{ id: string; name: string; status: string; host_id: string }>('SELECT id, name, status, host_id FROM workspaces WHERE user_id = $1', [user]);
    expect(rows.length).to.equal(new Set(rows.map((r) => r.name)).size);
    expect(answered.every((w) => rows.some((r) => r.id === w.id && r.status === 'RUNNING'))).to.equal(true);
    // Only a create cut off by the kill may be missing (its request never answered).
    expect(rows.map((r) => r.name).filter((n) => !answered.some((w) => w.name === n) && !unanswered.includes(n))).to.deep.equal([]);
    const containers = (await Promise.all(hosts.map(containersOfHost))).flat();
    const byWorkspace = new Map<string, number>();
    for (const c of containers) byWorkspace.set(c.Labels['a4c.workspace.id'] ?? '', (byWorkspace.get(c.Labels['a4c.workspace.id'] ?? '') ?? 0) + 1);
    for (const w of answered) expect(byWorkspace.get(w.id), w.name).to.equal(1);
    for (const id of byWorkspace.keys()) expect(rows.some((r) => r.id === id), `container of ${id}`).to.equal(true);
    // Zero over-commit: each host's reservation is the sum of its workspaces'.
    const { rows: reserved } = await db.query<{ id: string; reserved: number; summed: number }>(
      `SELECT h.id, h.reserved_memory_mb::int AS reserved,
              (SELECT COALESCE(sum(memory_mb), 0)::int FROM workspaces w WHERE w.host_id = h.id AND a4c_reserves_compute(w.status, w.host_id)) AS summed
         FROM hosts h`,
    );
    for (const r of reserved) expect(r.reserved, r.id).to.equal(r.summed);
  });

  it('a replica stopped with SIGTERM drains: health NOT_SERVING and /readyz 503, its agents handed to the others, then it exits', async () => {
    const live = replicas.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null);
    expect(live.length).to.equal(2);
    const held = await Promise.all(agents.map(replicaOf));
    // Stop the one holding agents (if neither does, the first).
    const leaving = live.find((r) => held.includes(r)) ?? live[0]!;
    const staying = live.find((r) => r !== leaving)!;
    // A Watch held open keeps the gRPC server's shutdown waiting (up to the grace period), so the draining state can be seen.
    const watch = health(leaving.grpcAddress, agents[0]!.stateDir).watch({ service: '' });
    const seen: string[] = [];
    watch.on('data', (m: { status: string }) => seen.push(m.status));
    watch.on('error', () => undefined);
    await waitFor('health SERVING', () => seen.includes('SERVING'), 10_000);
    const leavingAgents = agents.filter((_, i) => held[i] === leaving);
    leaving.proc.kill('SIGTERM');
    await waitFor('health NOT_SERVING', () => seen.includes('NOT_SERVING'), 10_000);
    const ready = await fetch(`${leaving.api.baseUrl}/readyz`);
    expect(ready.status).to.equal(503);
    expect(((await ready.json()) as { message: string }).message).to.include('draining');
    await waitFor('every agent on the replica that stays', async () => {
      for (const a of agents) if ((await replicaOf(a)) !== staying) return false;
      return true;
    }, 20_000, 200);
    // Told to go elsewhere (the stream's trailer), not merely cut off.
    for (const a of leavingAgents) expect(a.output(), a.hostId).to.include('control plane replica is shutting down; moving to another');
    watch.cancel();
    expect(await leaving.exited).to.equal(0);
    for (const hostId of hosts) await staying.api.waitHostConnected(hostId, 20_000);
  });

  it('takes a DNS name: resolves it and dials its addresses, checking the certificate against the name', async () => {
    const staying = replicas.find((r) => r.proc.exitCode === null && r.proc.signalCode === null)!;
    const hostId = uniqueId('rep-dns');
    hosts.push(hostId);
    const t = await staying.api.call<{ token: string }>('POST', '/v1/join-tokens', { hostId, ttlSeconds: 600 });
    const port = staying.grpcAddress.split(':').pop();
    const a = await spawnAgent({ hostId, controlPlane: `localhost:${port}`, env: { A4C_GRPC_INSECURE: 'false', A4C_JOIN_TOKEN: t.body.token, A4C_CONTROL_PLANE_URL: staying.api.baseUrl } });
    agents.push(a);
    await staying.api.waitHostConnected(hostId, 30_000);
    // localhost resolved to an address (the replica listens on 127.0.0.1; ::1, if tried first, failed over).
    expect((await agentStatus(a)).controlPlane.address).to.equal(`127.0.0.1:${port}`);
  });

  it('encrypts the CA key at rest with A4C_CA_ENCRYPTION_KEY; a replica without that key, or with another, refuses to start', async () => {
    const url = await freshDatabase();
    const key = randomBytes(32).toString('hex');
    const first = await spawnReplica({ name: 'sealed', databaseUrl: url, adminToken, env: { A4C_CA_ENCRYPTION_KEY: key } });
    await first.kill();
    const [row] = await caRow(url);
    expect(row?.key_encryption).to.equal('aes-256-gcm');
    expect(row?.key_pem).to.match(/^v1:/).and.not.to.include('PRIVATE KEY');
    const without = await spawnReplica({ name: 'no-key', databaseUrl: url, adminToken, waitReady: false });
    expect(await without.exited).to.equal(1);
    expect(without.stderr()).to.include('the agent-plane CA key in PostgreSQL is encrypted and A4C_CA_ENCRYPTION_KEY is not set');
    const wrong = await spawnReplica({ name: 'wrong-key', databaseUrl: url, adminToken, env: { A4C_CA_ENCRYPTION_KEY: randomBytes(32).toString('base64') }, waitReady: false });
    expect(await wrong.exited).to.equal(1);
    expect(wrong.stderr()).to.include('does not decrypt with A4C_CA_ENCRYPTION_KEY');
    const malformed = await spawnReplica({ name: 'bad-key', databaseUrl: url, adminToken, env: { A4C_CA_ENCRYPTION_KEY: 'hunter2' }, waitReady: false });
    expect(await malformed.exited).to.equal(2);
    expect(malformed.stderr()).to.include('A4C_CA_ENCRYPTION_KEY must be 32 random bytes as 64 hex digits or 44 base64 characters');
    const again = await spawnReplica({ name: 'same-key', databaseUrl: url, adminToken, env: { A4C_CA_ENCRYPTION_KEY: key } });
    expect(await again.kill()).to.equal(0);
    expect((await caRow(url))[0]?.cert_pem).to.equal(row?.cert_pem);
    // A key stored in the clear is encrypted once a replica starts with the setting.
    const plainUrl = await freshDatabase();
    await (await spawnReplica({ name: 'plain', databaseUrl: plainUrl, adminToken })).kill();
    expect((await caRow(plainUrl))[0]?.key_encryption).to.equal(null);
    await (await spawnReplica({ name: 'sealing', databaseUrl: plainUrl, adminToken, env: { A4C_CA_ENCRYPTION_KEY: key } })).kill();
    const [sealed] = await caRow(plainUrl);
    expect(sealed?.key_encryption).to.equal('aes-256-gcm');
    expect(sealed?.key_pem).to.match(/^v1:/);
  });

  it("imports a single-replica install's <dataDir>/ca on first start (its agents keep their certificates); another data directory's CA is refused", async () => {
    const url = await freshDatabase();
    const old = otherCa('old-install');
    const dataDir = tmpDir('old-data');
    mkdirSync(path.join(dataDir, 'ca'));
    copyFileSync(old.cert, path.join(dataDir, 'ca', 'ca.crt'));
    copyFileSync(old.key, path.join(dataDir, 'ca', 'ca.key'));
    const upgraded = await spawnReplica({ name: 'upgraded', databaseUrl: url, adminToken, env: { A4C_DATA_DIR: dataDir } });
    await upgraded.kill();
    const [row] = await caRow(url);
    expect(row?.origin).to.equal('imported-data-dir');
    expect(row?.cert_pem.trim()).to.equal(readFileSync(old.cert, 'utf8').trim());
    const stranger = otherCa('stranger');
    const strangerDir = tmpDir('stranger-data');
    mkdirSync(path.join(strangerDir, 'ca'));
    copyFileSync(stranger.cert, path.join(strangerDir, 'ca', 'ca.crt'));
    copyFileSync(stranger.key, path.join(strangerDir, 'ca', 'ca.key'));
    const refused = await spawnReplica({ name: 'stranger', databaseUrl: url, adminToken, env: { A4C_DATA_DIR: strangerDir }, waitReady: false });
    expect(await refused.exited).to.equal(1);
    expect(refused.stderr()).to.include(`${path.join(strangerDir, 'ca')} holds a different CA from the agent-plane CA already kept in PostgreSQL`);
    expect(refused.stderr()).to.include(`fix: move ${path.join(strangerDir, 'ca')} away`);
  });
});
