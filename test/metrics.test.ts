import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import pg from 'pg';
import type { Build, Workspace } from '@a4c/common';
import { removeHostContainers, ROOT, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type TestControlPlane } from './support/cluster.js';
import { waitFor } from './support/net.js';

/** Fails the build of project "broken" the way a failed source sync would. */
const SYNC = 'if [ "$A4C_PROJECT" = broken ]; then echo "cannot sync $A4C_PROJECT: no such depot path" >&2; exit 3; fi; mkdir -p /opt/a4c';
const FAST_BUILDS = { A4C_BUILD_POLL_MS: '200', A4C_BUILD_HEARTBEAT_MS: '400', A4C_BUILD_SYNC_COMMAND: SYNC };

/** Every series docs/operations.md promises, by family name. */
const FAMILIES = [
  'a4c_workspace_creation_duration_seconds',
  'a4c_api_request_duration_seconds',
  'a4c_api_errors_total',
  'a4c_host_disk_usage_percent',
  'a4c_host_memory_usage_percent',
  'a4c_build_queue_depth',
  'a4c_workspaces_active',
  'a4c_workspaces',
  'a4c_workspaces_created_total',
  'a4c_images_built_total',
  'a4c_builds',
  'a4c_agents_connected',
  'a4c_agent_sessions',
  'a4c_host_connected',
  'a4c_host_docker_ready',
  'a4c_host_draining',
  'a4c_host_workspaces',
  'a4c_host_desired_state_lag',
  'a4c_host_applied_revision',
  'a4c_placement_conflicts_total',
  'a4c_placement_retries_total',
  'a4c_placements_total',
  'a4c_db_pool_connections',
  'a4c_db_pool_waiting_requests',
  'a4c_db_pool_max_connections',
  'a4c_api_requests_shed_total',
  'a4c_event_loop_delay_seconds',
  'a4c_database_up',
];

/** Read from PostgreSQL: every replica must show the same. */
const FLEET_FAMILIES = FAMILIES.filter((f) => /^a4c_(workspaces$|workspaces_active|build_queue_depth|builds$|agents_connected|host_)/.test(f));

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed Prometheus text exposition. */
class Scrape {
  readonly samples: Sample[] = [];
  readonly types = new Map<string, string>();

  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (type) this.types.set(type[1] as string, type[2] as string);
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
      if (!m) throw new Error(`unparsable exposition line: ${line}`);
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1');
      this.samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
    }
  }

  /** Sum of the samples of a name whose labels include `match`; undefined when there is none. */
  get(name: string, match: Record<string, string> = {}): number | undefined {
    const found = this.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
    return found.length ? found.reduce((a, s) => a + s.value, 0) : undefined;
  }

  /** The samples of some families, as comparable text lines. */
  lines(families: string[]): string[] {
    return this.samples
      .filter((s) => families.includes(s.name))
      .map((s) => `${s.name}{${Object.entries(s.labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}} ${s.value}`)
      .sort();
  }

  names(): Set<string> {
    return new Set([...this.samples.map((s) => s.name), ...this.types.keys()]);
  }
}

function promtool(args: string[], input?: string): { status: number | null; output: string } {
  const bin = process.env.A4C_PROMTOOL;
  if (!bin) throw new Error('A4C_PROMTOOL is not set: run the suite with `npm test`, which provides promtool from Debian\'s prometheus package');
  const r = spawnSync(bin, args, { input, encoding: 'utf8', cwd: path.join(ROOT, 'deploy/prometheus') });
  if (r.error) throw new Error(`promtool (${bin}) did not run: ${r.error.message}`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('control-plane metrics', function () {
  this.timeout(180_000);
  let a: TestControlPlane;
  let b: TestControlPlane;
  let agent: AgentProcess;
  let db: pg.Client;
  const hostId = uniqueId('metrics');
  const user = uniqueId('mia');
  const scrapeToken = `scrape-${randomBytes(12).toString('hex')}`;

  const scrape = async (t: TestControlPlane, token: string | null = t === b ? scrapeToken : null): Promise<Scrape> => {
    const r = await t.api.call<string>('GET', '/metrics', undefined, { token });
    if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${JSON.stringify(r.body)}`);
    return new Scrape(r.body);
  };
  /** Waits until a replica's scrape satisfies `ok` (the fleet gauges are cached for up to 2 s). */
  const until = (what: string, t: TestControlPlane, ok: (s: Scrape) => boolean, timeoutMs = 15_000) =>
    waitFor(what, async () => {
      const s = await scrape(t);
      return ok(s) ? s : undefined;
    }, timeoutMs, 200);
  const dbCount = async (sql: string, params: unknown[] = []) => (await db.query<{ n: number }>(sql, params)).rows[0]?.n;

  before(async () => {
    a = await startTestControlPlane();
    // A second replica on the same database, holding no agent stream and serving no
    // API call but the shedding test's: whatever it shows of the fleet comes from
    // PostgreSQL. It has a scrape token, and sheds past 50 ms of event-loop lag.
    b = await startTestControlPlane({ DATABASE_URL: a.databaseUrl, A4C_METRICS_TOKEN: scrapeToken, A4C_SHED_EVENT_LOOP_LAG_MS: '50', A4C_SHED_INTERVAL_MS: '600' });
    agent = await spawnAgent({ hostId, controlPlane: a.grpcAddress, env: FAST_BUILDS });
    await a.api.waitHostConnected(hostId);
    db = new pg.Client({ connectionString: a.databaseUrl });
    await db.connect();
  });

  after(async () => {
    agent?.proc.kill('SIGCONT');
    await agent?.kill();
    await db?.end();
    await b?.stop();
    await a?.stop();
    await removeHostContainers(hostId);
  });

  it('serves every named series, open on a replica without a scrape token', async () => {
    const r = await a.api.call<string>('GET', '/metrics', undefined, { token: null });
    expect(r.status).to.equal(200);
    expect(r.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const s = new Scrape(r.body);
    for (const f of FAMILIES.filter((n) => n !== 'a4c_api_errors_total')) expect(s.types.has(f), `${f} in the scrape`).to.equal(true);
    expect(s.types.get('a4c_workspace_creation_duration_seconds')).to.equal('histogram');
    expect(s.types.get('a4c_api_request_duration_seconds')).to.equal('histogram');
    expect(s.types.get('a4c_event_loop_delay_seconds')).to.equal('histogram');
    expect(s.types.get('a4c_workspaces_created_total')).to.equal('counter');
    expect(s.get('a4c_database_up')).to.equal(1);
    // Both results exist from the start, so rate() and the alert see them before the first event.
    for (const result of ['success', 'failed']) {
      expect(s.get('a4c_workspaces_created_total', { result }), result).to.equal(0);
      expect(s.get('a4c_images_built_total', { result }), result).to.equal(0);
    }
    expect(s.get('a4c_host_connected', { host: hostId })).to.equal(1);
    expect(s.get('a4c_agents_connected')).to.equal(1);
    expect(s.get('a4c_agent_sessions'), 'the agent\'s stream is on this replica').to.equal(1);
    expect((await scrape(b)).get('a4c_agent_sessions'), 'and not on the other').to.equal(0);
  });

  it('a create moves the creation histogram, created_total{success} and the request histogram under the route template; both replicas count it RUNNING', async () => {
    const before = await scrape(a);
    const ws = await a.api.createWorkspace(user, { projectName: 'web', arch: 'linux-x64', tier: 'tiny' });
    expect(ws.status).to.equal('RUNNING');
    const after = await scrape(a);
    const count = (s: Scrape) => s.get('a4c_workspace_creation_duration_seconds_count') ?? 0;
    expect(count(after) - count(before), 'one creation observed').to.equal(1);
    const seconds = (after.get('a4c_workspace_creation_duration_seconds_sum') ?? 0) - (before.get('a4c_workspace_creation_duration_seconds_sum') ?? 0);
    expect(seconds).to.be.greaterThan(0).and.lessThan(30);
    expect((after.get('a4c_workspaces_created_total', { result: 'success' }) ?? 0) - (before.get('a4c_workspaces_created_total', { result: 'success' }) ?? 0)).to.equal(1);
    const route = { route: '/v1/users/{userId}/workspaces', method: 'POST', code: '201' };
    expect((after.get('a4c_api_request_duration_seconds_count', route) ?? 0) - (before.get('a4c_api_request_duration_seconds_count', route) ?? 0)).to.equal(1);
    expect(after.text, 'the raw path never becomes a label').not.to.include(user);

    // Fleet-wide, from PostgreSQL: the replica that neither served the create nor holds the agent counts it too.
    const running = await dbCount("SELECT count(*)::int AS n FROM workspaces WHERE status = 'RUNNING'");
    expect(running).to.equal(1);
    for (const t of [a, b]) {
      await until(`${t === a ? 'A' : 'B'} to count the workspace RUNNING`, t, (s) =>
        s.get('a4c_workspaces_active') === running && s.get('a4c_workspaces', { status: 'RUNNING' }) === running && s.get('a4c_host_workspaces', { host: hostId }) === 1,
      );
    }
  });

  it('a 4xx moves a4c_api_errors_total under the route template, also when refused before routing; unknown paths are "unmatched"', async () => {
    const before = await scrape(a);
    const missing = randomUUID();
    expect((await a.api.call('GET', `/v1/workspaces/${missing}`)).status).to.equal(404);
    expect((await a.api.call('GET', `/v1/workspaces/${missing}`, undefined, { token: null })).status, 'no token').to.equal(401);
    expect((await a.api.call('POST', `/v1/users/${user}/workspaces`, { projectName: 'web', arch: 'sparc', tier: 'tiny' })).status, 'bad arch').to.equal(400);
    expect((await a.api.call('GET', `/no/such/${missing}`)).status).to.equal(404);
    const after = await scrape(a);
    const moved = (labels: Record<string, string>) => (after.get('a4c_api_errors_total', labels) ?? 0) - (before.get('a4c_api_errors_total', labels) ?? 0);
    expect(moved({ route: '/v1/workspaces/{id}', code: '404' })).to.equal(1);
    expect(moved({ route: '/v1/workspaces/{id}', code: '401' })).to.equal(1);
    expect(moved({ route: '/v1/users/{userId}/workspaces', code: '400' })).to.equal(1);
    expect(moved({ route: 'unmatched', code: '404' })).to.equal(1);
    expect(after.text).not.to.include(missing);
    const routes = new Set(after.samples.map((s) => s.labels.route).filter((r): r is string => r !== undefined));
    for (const r of routes) expect(r, 'a template or "unmatched"').to.match(/^(unmatched|\/[a-z0-9/{}A-Z.]*)$/);
  });

  it('a failed build moves images_built_total{result="failed"} where the agent reported it; the queue depth is the same on every replica', async () => {
    // No arm64 agent: this one waits.
    const queued = await a.api.call<Build>('POST', `/v1/users/${user}/image-schedules`, { imageName: uniqueId('arm'), project: 'web', arch: 'linux-arm64', changeNumber: 'CL-1' });
    expect(queued.status, JSON.stringify(queued.body)).to.equal(202);
    for (const t of [a, b]) {
      await until('the queued build in the depth', t, (s) => s.get('a4c_build_queue_depth') === 1 && s.get('a4c_builds', { status: 'SCHEDULED' }) === 1);
    }

    const before = await scrape(a);
    const broken = await a.api.call<Build>('POST', `/v1/users/${user}/image-schedules`, { imageName: uniqueId('broken'), project: 'broken', arch: 'linux-x64', changeNumber: 'CL-2' });
    expect(broken.status, JSON.stringify(broken.body)).to.equal(202);
    const done = await waitFor('the broken build to fail', async () => {
      const r = await a.api.call<Build>('GET', `/v1/image-schedules/${broken.body.id}`);
      return r.body.status === 'FAILED' || r.body.status === 'COMPLETED' ? r.body : undefined;
    }, 60_000, 200);
    expect(done.status, done.error ?? '').to.equal('FAILED');
    const after = await scrape(a);
    expect((after.get('a4c_images_built_total', { result: 'failed' }) ?? 0) - (before.get('a4c_images_built_total', { result: 'failed' }) ?? 0)).to.equal(1);
    expect(after.get('a4c_images_built_total', { result: 'success' })).to.equal(before.get('a4c_images_built_total', { result: 'success' }));
    // A per-replica counter: the replica that handled nothing counted nothing.
    expect((await scrape(b)).get('a4c_images_built_total', { result: 'failed' })).to.equal(0);
    expect(after.get('a4c_build_queue_depth'), 'the arm64 build still waits').to.equal(1);
  });

  it('placement conflicts and retries move while another placement holds the only host; no capacity is counted apart', async () => {
    const before = await scrape(a);
    const holder = new pg.Client({ connectionString: a.databaseUrl });
    await holder.connect();
    let created: Promise<unknown> | undefined;
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM hosts WHERE id = $1 FOR UPDATE', [hostId]);
      created = a.api.call<Workspace>('POST', `/v1/users/${user}/workspaces`, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', name: 'contended' });
      await until('a placement conflict', a, (s) => (s.get('a4c_placement_conflicts_total') ?? 0) > (before.get('a4c_placement_conflicts_total') ?? 0));
    } finally {
      await holder.query('COMMIT').catch(() => undefined);
      await holder.end();
    }
    const r = (await created) as { status: number; body: unknown };
    expect(r.status, JSON.stringify(r.body)).to.equal(201);
    const nowhere = await a.api.call('POST', `/v1/users/${user}/workspaces`, { projectName: 'web', arch: 'linux-arm64', tier: 'tiny' });
    expect(nowhere.status).to.equal(503);
    const after = await scrape(a);
    const moved = (name: string, labels: Record<string, string> = {}) => (after.get(name, labels) ?? 0) - (before.get(name, labels) ?? 0);
    expect(moved('a4c_placement_retries_total')).to.be.greaterThan(0);
    expect(moved('a4c_placement_conflicts_total')).to.be.at.least(moved('a4c_placement_retries_total'));
    expect(moved('a4c_placements_total', { result: 'placed' })).to.equal(1);
    expect(moved('a4c_placements_total', { result: 'no_capacity' })).to.equal(1);
    expect(moved('a4c_placements_total', { result: 'busy' })).to.equal(0);
    expect(moved('a4c_api_errors_total', { route: '/v1/users/{userId}/workspaces', code: '503' })).to.equal(1);
  });

  it('desired-state lag of a host rises on every replica while its agent does not converge, and falls back to 0 when it does', async () => {
    const lag = (s: Scrape) => s.get('a4c_host_desired_state_lag', { host: hostId });
    expect(lag(await until('converged', a, (s) => lag(s) === 0))).to.equal(0);
    agent.proc.kill('SIGSTOP');
    let ws: Workspace;
    try {
      // Within the liveness window: placed on the frozen host, which cannot acknowledge.
      const r = await a.api.call<Workspace>('POST', `/v1/users/${user}/workspaces`, { projectName: 'web', arch: 'linux-x64', tier: 'tiny', name: 'frozen' });
      expect(r.status, JSON.stringify(r.body)).to.equal(201);
      ws = r.body;
      for (const t of [a, b]) await until('a lag of 1 or more', t, (s) => (lag(s) ?? 0) >= 1);
    } finally {
      agent.proc.kill('SIGCONT');
    }
    for (const t of [a, b]) await until('the lag back to 0', t, (s) => lag(s) === 0, 30_000);
    await waitFor('the workspace RUNNING', async () => (await a.api.workspace(ws.id)).status === 'RUNNING', 30_000);
  });

  it('the database pools (both) and the event-loop delay are there, and the delay moves', async () => {
    const s1 = await scrape(a);
    expect(s1.get('a4c_db_pool_max_connections', { pool: 'api' })).to.equal(20);
    expect(s1.get('a4c_db_pool_max_connections', { pool: 'agent' })).to.equal(10);
    for (const pool of ['api', 'agent']) {
      for (const state of ['in_use', 'idle']) expect(s1.get('a4c_db_pool_connections', { pool, state }), `${pool} ${state}`).to.be.a('number').at.least(0);
      expect(s1.get('a4c_db_pool_waiting_requests', { pool }), pool).to.be.a('number').at.least(0);
    }
    const s2 = await until('more event-loop samples', a, (s) => (s.get('a4c_event_loop_delay_seconds_count') ?? 0) >= (s1.get('a4c_event_loop_delay_seconds_count') ?? 0) + 3);
    expect(s2.get('a4c_event_loop_delay_seconds_sum')).to.be.at.least(s1.get('a4c_event_loop_delay_seconds_sum') ?? 0);
  });

  it('shed requests move a4c_api_requests_shed_total, and /metrics itself is never shed', async () => {
    const before = await scrape(b);
    // Keep this process's event loop (replica B runs in it) busy past B's 50 ms bound for
    // longer than the shedding interval: sustained lag, not one stall.
    const until = Date.now() + 2500;
    const slices = new Promise<void>((resolve) => {
      const slice = () => {
        const end = Date.now() + 150;
        while (Date.now() < end) {
          // busy
        }
        if (Date.now() < until) setTimeout(slice, 2);
        else resolve();
      };
      slice();
    });
    await new Promise((r) => setTimeout(r, 1500));
    const shed = await b.api.call<{ error: string; message: string }>('GET', '/v1/hosts');
    expect(shed.status, JSON.stringify(shed.body)).to.equal(503);
    expect(shed.body.message).to.match(/overloaded/);
    await slices;
    await new Promise((r) => setTimeout(r, 1500));
    const after = await scrape(b);
    expect((after.get('a4c_api_requests_shed_total') ?? 0) - (before.get('a4c_api_requests_shed_total') ?? 0)).to.equal(1);
    expect((after.get('a4c_api_errors_total', { route: '/v1/hosts', code: '503' }) ?? 0) - (before.get('a4c_api_errors_total', { route: '/v1/hosts', code: '503' }) ?? 0)).to.equal(1);
  });

  it('asks for the scrape token where one is configured, with the error envelope', async () => {
    const none = await b.api.call<{ error: string; message: string; suggestion: string }>('GET', '/metrics', undefined, { token: null });
    expect(none.status).to.equal(401);
    expect(none.body.error).to.equal('UNAUTHENTICATED');
    expect(none.body.message).to.match(/scrape token/);
    expect(none.body.suggestion).to.be.a('string').and.not.equal('');
    const wrong = await b.api.call<{ error: string }>('GET', '/metrics', undefined, { token: `${scrapeToken}x` });
    expect(wrong.status).to.equal(401);
    expect((await b.api.call('GET', '/metrics', undefined, { token: a.cp.adminToken })).status, 'the admin token is not the scrape token').to.equal(401);
    expect((await b.api.call<string>('GET', '/metrics', undefined, { token: scrapeToken })).status).to.equal(200);
    expect((await a.api.call('POST', '/metrics', undefined, { token: null })).status).to.equal(405);
  });

  it('promtool check metrics passes on live scrapes of both replicas and the agent, and every metric the alerts and the dashboard use exists in them', async () => {
    const agentMetrics = await fetch(`${agent.statusUrl}/metrics`);
    expect(agentMetrics.status).to.equal(200);
    for (const [who, text] of [['A', (await scrape(a)).text], ['B', (await scrape(b)).text], ['the agent', await agentMetrics.text()]] as const) {
      const r = promtool(['check', 'metrics'], text);
      expect(r.status, `${who}: ${r.output}`).to.equal(0);
      expect(text, who).to.match(/^(a4c_agent_process_)?process_cpu_seconds_total[ {]/m);
    }
    const names = (await scrape(a)).names();
    for (const file of ['deploy/prometheus/alerts.yml', 'deploy/grafana/a4c.json']) {
      const used = new Set(readFileSync(path.join(ROOT, file), 'utf8').match(/\ba4c_[a-z0-9_]+/g) ?? []);
      expect(used.size, file).to.be.greaterThan(5);
      for (const m of used) expect(names.has(m), `${m} (${file}) in the scrape`).to.equal(true);
    }
  });

  it('a disconnected agent moves the connected gauges on every replica, and its stream leaves the replica that held it', async () => {
    for (const t of [a, b]) await until('connected', t, (s) => s.get('a4c_agents_connected') === 1 && s.get('a4c_host_connected', { host: hostId }) === 1);
    await agent.kill();
    for (const t of [a, b]) {
      await until('the agent seen gone', t, (s) => s.get('a4c_agents_connected') === 0 && s.get('a4c_host_connected', { host: hostId }) === 0);
    }
    expect((await scrape(a)).get('a4c_agent_sessions')).to.equal(0);
  });

  it('the fleet gauges are equal on both replicas, and equal to the database', async () => {
    // The agent is gone: nothing changes the fleet any more, so the two must agree exactly.
    const [sa, sb] = await waitFor('both replicas to show the same fleet', async () => {
      const pair = [await scrape(a), await scrape(b)] as const;
      return JSON.stringify(pair[0].lines(FLEET_FAMILIES)) === JSON.stringify(pair[1].lines(FLEET_FAMILIES)) ? pair : undefined;
    }, 15_000, 300);
    expect(sa.lines(FLEET_FAMILIES)).to.deep.equal(sb.lines(FLEET_FAMILIES));
    expect(sa.lines(FLEET_FAMILIES).length).to.be.greaterThan(15);
    expect(sa.get('a4c_workspaces_active')).to.equal(await dbCount("SELECT count(*)::int AS n FROM workspaces WHERE status = 'RUNNING'"));
    expect(sa.get('a4c_build_queue_depth')).to.equal(await dbCount("SELECT count(*)::int AS n FROM image_builds WHERE status = 'SCHEDULED'"));
    const host = (await db.query<{ disk_percent: number; memory_percent: number }>('SELECT disk_percent, memory_percent FROM host_status WHERE host_id = $1', [hostId])).rows[0];
    expect(sa.get('a4c_host_disk_usage_percent', { host: hostId })).to.equal(host?.disk_percent);
    expect(sa.get('a4c_host_memory_usage_percent', { host: hostId })).to.equal(host?.memory_percent);
    expect(sa.get('a4c_workspaces', { status: 'RUNNING' })).to.equal(3);
  });

  it('database unreachable: a4c_database_up falls to 0 and the fleet gauges go away, the scrape still answers; back to 1 after', async () => {
    const name = new URL(a.databaseUrl).pathname.slice(1);
    const admin = new pg.Client({ connectionString: `${process.env.A4C_TEST_PG_URL}/postgres` });
    await admin.connect();
    try {
      // The metrics' own connection is dropped and no new one is accepted.
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'a4c-control-plane-metrics'", [name]);
      for (const t of [a, b]) {
        const s = await until('database_up 0', t, (x) => x.get('a4c_database_up') === 0);
        expect(s.get('a4c_workspaces_active'), 'no stale fleet values').to.equal(undefined);
        expect(s.get('a4c_host_disk_usage_percent')).to.equal(undefined);
        expect(s.get('a4c_api_request_duration_seconds_count'), 'the replica\'s own series stay').to.be.greaterThan(0);
      }
    } finally {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    for (const t of [a, b]) await until('database_up 1', t, (x) => x.get('a4c_database_up') === 1 && x.get('a4c_workspaces_active') === 3);
  });

  it('the alert rules pass promtool check rules and their unit tests (promtool test rules)', () => {
    const check = promtool(['check', 'rules', 'alerts.yml']);
    expect(check.status, check.output).to.equal(0);
    expect(check.output).to.match(/SUCCESS: 7 rules found/);
    const unit = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(unit.status, unit.output).to.equal(0);
    const rules = readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8');
    for (const alert of ['HostDiskCritical', 'WorkspaceCreationSlow', 'BuildQueueBacklog', 'AgentDisconnected', 'DesiredStateNotConverging', 'ApiErrorRate', 'DatabaseUnreachable']) {
      expect(rules, alert).to.match(new RegExp(`- alert: ${alert}\\n`));
      expect(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.test.yml'), 'utf8'), `a unit test of ${alert}`).to.match(new RegExp(`alertname: ${alert}\\n`));
    }
  });

  it('the Grafana dashboard is valid JSON with the seed\'s panels', () => {
    const d = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/a4c.json'), 'utf8')) as { title: string; panels: { title: string; type: string; targets?: { expr: string }[] }[] };
    const titles = d.panels.map((p) => p.title);
    for (const t of ['Active workspaces', 'Creation P95', 'Error rate', 'Host capacity', 'Build queue depth']) expect(titles, t).to.include(t);
    expect(d.panels.find((p) => p.title === 'Host capacity')?.type).to.equal('table');
    for (const p of d.panels.filter((x) => x.type !== 'row')) expect(p.targets?.length, p.title).to.be.greaterThan(0);
  });
});
