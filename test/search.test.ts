import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import pg from 'pg';
import type { Build, Workspace } from '@a4c/common';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';

interface Page {
  workspaces: Workspace[];
  nextCursor: string | null;
}

/**
 * Fleet search over rows put straight into a real PostgreSQL (a fleet's worth of
 * workspaces is not something to create through agents in a test): every filter, q
 * with substrings and typos, keyset paging, and who sees what.
 */
describe('fleet search: GET /v1/workspaces and GET /v1/image-schedules', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let db: pg.Client;
  const s = uniqueId('s');
  const [ann, ben, cat, dan] = ['ann', 'ben', 'cat', 'dan'].map((u) => `${u}-${s}`) as [string, string, string, string];
  const team = `team-${s}`;
  const tokens: Record<string, string> = {};
  /** What was inserted, to compute the expected answers independently of the SQL. */
  const rows: { id: string; user: string; name: string; project: string; tier: string; status: string; host: string | null; error: string | null; created: number }[] = [];
  const hosts = ['rack1-node-a', 'rack1-node-b', 'rack2-node-c'];

  const get = async (q: string, who = 'admin'): Promise<Page> => {
    const r = await t.api.call<Page>('GET', `/v1/workspaces?${q}`, undefined, who === 'admin' ? {} : { token: tokens[who] });
    expect(r.status, `${q}: ${JSON.stringify(r.body)}`).to.equal(200);
    return r.body;
  };
  /** Every page, following nextCursor. */
  const all = async (q: string, who = 'admin', limit = 7): Promise<Workspace[]> => {
    const out: Workspace[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await get(`${q}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, who);
      expect(page.workspaces.length).to.be.at.most(limit);
      out.push(...page.workspaces);
      cursor = page.nextCursor;
    } while (cursor);
    return out;
  };
  const ids = (ws: { id: string }[]) => ws.map((w) => w.id);
  const expected = (pred: (r: (typeof rows)[number]) => boolean, includeDeleted = false) =>
    rows.filter((r) => (includeDeleted || r.status !== 'DELETED') && pred(r)).sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : -1)).map((r) => r.id);

  before(async () => {
    t = await startTestControlPlane();
    for (const [id, role, teamId] of [[ann, 'user', team], [ben, 'user', team], [cat, 'lead', team], [dan, 'user', null]] as const) {
      expect((await t.api.call('POST', '/v1/users', { id, role, teamId })).status).to.equal(201);
      tokens[id] = (await t.api.call<{ token: string }>('POST', `/v1/users/${id}/tokens`, { name: 't' })).body.token;
    }
    db = new pg.Client({ connectionString: t.databaseUrl });
    await db.connect();
    for (const h of hosts) await db.query("INSERT INTO hosts (id, arch) VALUES ($1, 'linux-x64')", [h]);
    const errors = [
      'container exited with code 137: out of memory (the kernel OOM-killed it); choose a larger tier',
      'image web:CL-9-linux-x64 not found on the host',
      'create did not finish within 600 s: stuck at step start',
      null,
    ];
    const statuses = ['RUNNING', 'STOPPED', 'FAILED', 'DELETED', 'CREATING'];
    const base = Date.parse('2026-01-01T00:00:00Z');
    let i = 0;
    for (const user of [ann, ben, dan]) {
      for (let k = 0; k < 24; k++, i++) {
        const status = statuses[i % statuses.length] as string;
        const r = {
          id: randomUUID(),
          user,
          name: `${['web', 'api', 'ml'][k % 3]}-${user}-${k}`,
          project: ['web', 'api', 'ml'][k % 3] as string,
          tier: ['standard', 'large'][k % 2] as string,
          status,
          host: status === 'CREATING' && k % 2 ? null : (hosts[i % hosts.length] as string),
          error: status === 'FAILED' ? errors[i % errors.length] ?? null : null,
          // Some share a creation time: paging must break ties by id.
          created: base + Math.floor(i / 2) * 1000,
        };
        rows.push(r);
        await db.query(
          `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, status, host_id, hostname, error, failed_step,
                                   memory_mb, cpus, disk_gb, pids_limit, created_at, updated_at)
           VALUES ($1, $2, $3, $4, 'linux-x64', $5, 'a4c-base:latest', $6, $7, $8, $9, $10, 64, 0.25, 1, 256, $11, $11)`,
          [r.id, r.user, r.name, r.project, r.tier, r.status, r.host, `${r.name}.ws.a4c.internal`, r.error, r.error ? 'start' : null, new Date(r.created)],
        );
      }
    }
  });
  after(async () => {
    await db?.end();
    await t?.stop();
  });

  it('each filter returns exactly its rows, newest first, across pages', async () => {
    const mine = (r: (typeof rows)[number]) => [ann, ben, dan].includes(r.user);
    expect(ids(await all(''))).to.deep.equal(expected(mine));
    expect(ids(await all('status=FAILED'))).to.deep.equal(expected((r) => r.status === 'FAILED'));
    expect(ids(await all('status=DELETED,STOPPED'))).to.deep.equal(expected((r) => r.status === 'DELETED' || r.status === 'STOPPED', true));
    expect(ids(await all(`userId=${ben}`))).to.deep.equal(expected((r) => r.user === ben));
    expect(ids(await all(`teamId=${team}`))).to.deep.equal(expected((r) => r.user === ann || r.user === ben));
    expect(ids(await all(`hostId=${hosts[1]}`))).to.deep.equal(expected((r) => r.host === hosts[1]));
    expect(ids(await all('project=ml'))).to.deep.equal(expected((r) => r.project === 'ml'));
    expect(ids(await all('tier=large'))).to.deep.equal(expected((r) => r.tier === 'large'));
    expect(ids(await all(`status=FAILED&hostId=${hosts[0]}&tier=standard`))).to.deep.equal(
      expected((r) => r.status === 'FAILED' && r.host === hosts[0] && r.tier === 'standard'),
    );
    const oldest = await all('sort=createdAt', 'admin', 5);
    expect(ids(oldest)).to.deep.equal(expected(mine).reverse());
    const page = await get('limit=500');
    expect(page.nextCursor, 'the last page says so').to.equal(null);
  });

  it('q finds text in names, projects, hostnames, hosts and errors, case-insensitively and with typos', async () => {
    const oom = (r: (typeof rows)[number]) => (r.error ?? '').includes('out of memory');
    expect(ids(await all('status=FAILED&q=out%20of%20memory'))).to.deep.equal(expected((r) => r.status === 'FAILED' && oom(r)));
    expect(ids(await all('q=OUT%20OF%20MEMORY', 'admin', 3)), 'case-insensitive').to.deep.equal(expected(oom));
    expect(ids(await all('q=out%20of%20memroy')), 'a typo, when nothing has the text as it is').to.deep.equal(expected(oom));
    expect(ids(await all('q=rack2-nod')), 'a substring that exists: no near misses (rack1-node-…)').to.deep.equal(expected((r) => r.host === hosts[2]));
    expect(ids(await all(`q=${encodeURIComponent('rack2-node')}`)), 'host ids').to.deep.equal(expected((r) => r.host === hosts[2]));
    const one = rows.find((r) => r.status === 'RUNNING') as (typeof rows)[number];
    expect(ids(await all(`q=${encodeURIComponent(`${one.name}.ws.a4c.internal`)}`)), 'a whole hostname').to.include(one.id);
    expect(ids(await all('q=CL-9-linux')), 'error text with dashes').to.deep.equal(expected((r) => (r.error ?? '').includes('CL-9-linux')));
    expect(ids(await all('q=100%25_%5C')), 'LIKE wildcards are literal').to.deep.equal([]);
    expect(ids(await all('q=zzzzqqqq')), 'nothing like it').to.deep.equal([]);
  });

  it('users see their own, leads their team, and naming what one may not read is a 404', async () => {
    expect(ids(await all('', ann))).to.deep.equal(expected((r) => r.user === ann));
    expect(ids(await all('', cat))).to.deep.equal(expected((r) => r.user === ann || r.user === ben));
    expect(ids(await all(`hostId=${hosts[0]}`, dan))).to.deep.equal(expected((r) => r.user === dan && r.host === hosts[0]));
    expect((await t.api.call('GET', `/v1/workspaces?userId=${ann}`, undefined, { token: tokens[dan] })).status).to.equal(404);
    expect((await t.api.call('GET', `/v1/workspaces?teamId=${team}`, undefined, { token: tokens[ann] })).status).to.equal(404);
  });

  it('refuses bad input naming the field', async () => {
    for (const [q, field] of [['status=EXPLODED', 'status'], ['sort=name', 'sort'], ['limit=0', 'limit'], ['cursor=abc', 'cursor'], ['q=', 'q'], ['bogus=1', 'bogus']]) {
      const r = await t.api.call<{ error: string; field: string }>('GET', `/v1/workspaces?${q}`);
      expect([r.status, r.body.error, r.body.field], q).to.deep.equal([400, 'INVALID_ARGUMENT', field]);
    }
  });

  it('builds: hostId and q over the error and the log lines, a page at a time', async () => {
    const mk = async (user: string, host: string | null, error: string | null, lines: string[]) => {
      const id = randomUUID();
      await db.query(
        `INSERT INTO image_builds (id, user_id, image_name, project, arch, change_number, image_tag, status, worker_host_id, error, created_at)
         VALUES ($1, $2, 'img', 'web', 'linux-x64', 'CL-1', 'img:CL-1-linux-x64', $3, $4, $5, now() - make_interval(secs => $6))`,
        [id, user, error ? 'FAILED' : 'COMPLETED', host, error, Math.random() * 1000],
      );
      for (const line of lines) await db.query('INSERT INTO build_logs (build_id, line) VALUES ($1, $2)', [id, line]);
      return id;
    };
    const b1 = await mk(ann, hosts[0] as string, 'npm ERR! code ETARGET', ['Step 1/4 : FROM a4c-base', 'npm ERR! notarget No matching version']);
    const b2 = await mk(ann, hosts[1] as string, null, ['Step 1/4 : FROM a4c-base', 'Successfully built 0123abcd']);
    const b3 = await mk(ben, hosts[0] as string, 'no space left on device', ['Step 3/4 : RUN make']);
    const list = async (q: string, token?: string) => {
      const r = await t.api.call<{ builds: Build[]; nextCursor: string | null }>('GET', `/v1/image-schedules?${q}`, undefined, token ? { token } : {});
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      return r.body;
    };
    expect(new Set((await list(`hostId=${hosts[0]}`)).builds.map((b) => b.id))).to.deep.equal(new Set([b1, b3]));
    expect((await list('q=etarget')).builds.map((b) => b.id), 'the error').to.deep.equal([b1]);
    expect((await list('q=successfully%20built')).builds.map((b) => b.id), 'a log line').to.deep.equal([b2]);
    expect(new Set((await list('q=FROM%20a4c-base')).builds.map((b) => b.id))).to.deep.equal(new Set([b1, b2]));
    expect((await list('q=no%20space', tokens[ann])).builds, "another user's build stays hidden").to.deep.equal([]);
    const first = await list('userId=' + ann + '&limit=1');
    expect(first.builds).to.have.length(1);
    const second = await list(`userId=${ann}&limit=1&cursor=${first.nextCursor}`);
    expect(second.nextCursor).to.equal(null);
    expect(new Set([...first.builds, ...second.builds].map((b) => b.id))).to.deep.equal(new Set([b1, b2]));
  });
});
