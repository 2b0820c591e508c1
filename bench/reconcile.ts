/**
 * bench/reconcile: how long the agent takes to notice and repair what happens behind
 * its back, median of 10 each, with the agent's default settings (Docker events plus
 * a 10 s sweep):
 *  - vanished: `docker rm -f` of a running workspace until the API shows it RUNNING in
 *    a new container;
 *  - orphan: a container labelled as this host's workspace that is in no desired state,
 *    from its start until it is gone.
 * The old system's cleanup daemon ran every 5 minutes; the spec asks for seconds.
 *
 * Run: npm run bench -- reconcile
 */
import { randomUUID } from 'node:crypto';
import Docker from 'dockerode';
import { BENCH_TINY_TIER, spawnBenchAgent, startBenchControlPlane, waitUntil } from './agent.js';
import { machine, percentile } from './lib.js';

const N = Number(process.env.BENCH_N ?? 10);
const dockerHost = process.env.A4C_BENCH_DOCKER_HOST ?? process.env.DOCKER_HOST;
if (!dockerHost) throw new Error('set A4C_BENCH_DOCKER_HOST (npm run bench does)');
const docker = new Docker({ socketPath: dockerHost.replace(/^unix:\/\//, '') });

async function main(): Promise<void> {
  const cp = await startBenchControlPlane({ A4C_TIERS: BENCH_TINY_TIER });
  const hostId = `bench-reconcile-${process.pid}`;
  const agent = await spawnBenchAgent({ hostId, controlPlane: `127.0.0.1:${cp.grpcPort}`, dockerHost: dockerHost as string });
  const api = `http://127.0.0.1:${cp.httpPort}`;
  const headers = { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' };
  const get = async (id: string) => (await (await fetch(`${api}/v1/workspaces/${id}`, { headers })).json()) as { status: string; containerId: string };
  await waitUntil('agent connected', async () => ((await (await fetch(`${api}/v1/hosts/${hostId}`, { headers })).json()) as { connected: boolean }).connected);

  const vanished: number[] = [];
  for (let i = 0; i < N; i++) {
    const r = await fetch(`${api}/v1/users/bench/workspaces?wait=60`, { method: 'POST', headers, body: JSON.stringify({ projectName: 'r', arch: 'linux-x64', tier: 'tiny', name: `v${i}` }) });
    const ws = (await r.json()) as { id: string; containerId: string; status: string };
    if (ws.status !== 'RUNNING') throw new Error(`workspace ended ${ws.status}`);
    await new Promise((res) => setTimeout(res, 300));
    const t0 = performance.now();
    await docker.getContainer(ws.containerId).remove({ force: true });
    for (;;) {
      const w = await get(ws.id);
      if (w.status === 'RUNNING' && w.containerId && w.containerId !== ws.containerId) break;
      await new Promise((res) => setTimeout(res, 10));
    }
    vanished.push(performance.now() - t0);
    await fetch(`${api}/v1/workspaces/${ws.id}?wait=60`, { method: 'DELETE', headers });
  }

  const orphans: number[] = [];
  for (let i = 0; i < N; i++) {
    const id = randomUUID();
    const c = await docker.createContainer({
      Image: 'a4c-base:latest',
      name: `ws-${id}`,
      Labels: { 'a4c.managed': 'true', 'a4c.workspace.id': id, 'a4c.host.id': hostId },
      HostConfig: { NetworkMode: 'none' },
    });
    const t0 = performance.now();
    await c.start();
    for (;;) {
      const gone = await c.inspect().then(() => false, () => true);
      if (gone) break;
      await new Promise((res) => setTimeout(res, 10));
    }
    orphans.push(performance.now() - t0);
  }

  await agent.stop();
  await cp.stop();
  const fmt = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `median ${percentile(s, 50).toFixed(0)} ms, max ${(s[s.length - 1] ?? 0).toFixed(0)} ms`;
  };
  console.log(`reconcile: ${N} of each, agent defaults (Docker events + 10 s sweep)`);
  console.log(`machine: ${machine()}`);
  console.log(`vanished workspace container (docker rm -f) → RUNNING again in a new container: ${fmt(vanished)}`);
  console.log(`orphan container (our labels, this host, not desired) → removed: ${fmt(orphans)}`);
  console.log('the old system: a cleanup daemon every 5 minutes (up to 300,000 ms)');
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
