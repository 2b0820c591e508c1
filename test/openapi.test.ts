import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { waitFor } from './support/net.js';
import { openSocket } from './support/access.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Build, Workspace } from '@a4c/common';
import { commitImage, docker, removeHostContainers, ROOT, TINY_TIERS, spawnAgent, startTestControlPlane, uniqueId, type AgentProcess, type ApiResponse, type TestControlPlane } from './support/cluster.js';

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>;
  components: { schemas: Record<string, unknown> };
};

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => Ajv2020;

/**
 * The OpenAPI document is generated from the schemas that validate requests. This
 * proves it is a valid OpenAPI 3.1 document (checked by an independent validator), and
 * that it is true: every operation in it is called here against a real control plane
 * and agent, and every answer — successes and errors — must have its status documented
 * for that operation and a body that matches the documented schema.
 */
describe('the OpenAPI document (/v1/openapi.json)', function () {
  this.timeout(120_000);
  let t: TestControlPlane;
  let agent: AgentProcess;
  let agentB: AgentProcess;
  let doc: Doc;
  let ajv: Ajv2020;
  const hostId = uniqueId('oas');
  /** A second host on the same engine (its own container and volume names), to move to. */
  const hostB = uniqueId('oas-b');
  const user = uniqueId('oas-user');
  const team = uniqueId('oas-team');
  /** operationId → statuses seen, to prove every operation was exercised with a success. */
  const seen = new Map<string, Set<number>>();
  const problems: string[] = [];

  const templates = () =>
    Object.entries(doc.paths).flatMap(([template, ops]) =>
      Object.entries(ops).map(([method, o]) => ({ template, method, o, re: new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`) })),
    );

  /** A call whose answer must be documented and match its schema. */
  const call = async <T = Record<string, unknown>>(method: string, p: string, body?: unknown, init: { token?: string | null } = {}): Promise<ApiResponse<T>> => {
    const r = await t.api.call<T>(method, p, body, init);
    const pathOnly = p.split('?')[0] as string;
    const match = templates().find((x) => x.method === method.toLowerCase() && x.re.test(pathOnly));
    if (!match) {
      problems.push(`${method} ${pathOnly}: no operation in the document (answered ${r.status})`);
      return r;
    }
    (seen.get(match.o.operationId) ?? seen.set(match.o.operationId, new Set()).get(match.o.operationId))?.add(r.status);
    const response = match.o.responses[String(r.status)];
    if (!response) {
      problems.push(`${match.o.operationId}: answered ${r.status}, which is not documented (${JSON.stringify(r.body).slice(0, 200)})`);
      return r;
    }
    const schema = response.content?.['application/json']?.schema;
    if (schema) {
      const pointer = `openapi#/paths/${escape(match.template)}/${match.method}/responses/${r.status}/content/application~1json/schema`;
      const validate = ajv.getSchema(pointer) ?? ajv.compile({ $ref: pointer });
      if (!validate(r.body)) {
        problems.push(`${match.o.operationId} ${r.status}: body does not match the schema: ${ajv.errorsText(validate.errors)} in ${JSON.stringify(r.body).slice(0, 300)}`);
      }
    }
    return r;
  };

  before(async () => {
    await commitImage('a4c-oas-broken:test', ['CMD ["/no/such/program"]']);
    t = await startTestControlPlane({
      A4C_TIERS: JSON.stringify({ ...JSON.parse(TINY_TIERS), approval: { memoryMb: 64, cpus: 0.25, diskGb: 1, requiresApproval: true } }),
    });
    agent = await spawnAgent({ hostId, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0', A4C_MAX_RESTARTS: '0' } });
    await t.api.waitHostConnected(hostId);
    agentB = await spawnAgent({ hostId: hostB, controlPlane: t.grpcAddress, env: { A4C_BUILD_SLOTS: '0', A4C_ENGINE_NAME_PREFIX: `${hostB}-` } });
    await t.api.waitHostConnected(hostB);
    const r = await t.api.call<Doc>('GET', '/v1/openapi.json', undefined, { token: null });
    expect(r.status, 'the document needs no credential').to.equal(200);
    doc = r.body;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema(doc, 'openapi');
  });
  after(async () => {
    await agent?.kill();
    await agentB?.kill();
    await t?.stop();
    await removeHostContainers(hostId, hostB);
    await docker().getImage('a4c-oas-broken:test').remove({ force: true }).catch(() => undefined);
  });

  it('is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator)', async () => {
    expect(doc.openapi).to.equal('3.1.0');
    const validator = new Validator();
    const res = await validator.validate(doc as unknown as Parameters<Validator["validate"]>[0]);
    expect(res.errors ?? [], JSON.stringify(res.errors, null, 1)?.slice(0, 2000)).to.deep.equal([]);
    expect(res.valid).to.equal(true);
    // and every $ref resolves
    const refs = JSON.stringify(doc).match(/"\$ref":"#\/components\/schemas\/[^"]+"/g) ?? [];
    for (const ref of refs) expect(doc.components.schemas, ref).to.have.property(ref.split('/').pop()!.replace(/"$/, ''));
  });

  it('describes every route the server answers: each operation called, each answer documented and matching its schema', async () => {
    // ---- users and tokens
    expect((await call('POST', '/v1/users', { id: user, teamId: team, role: 'user' })).status).to.equal(201);
    expect((await call('POST', '/v1/users', { id: user })).status, 'a second create conflicts').to.equal(409);
    expect((await call('GET', '/v1/users')).status).to.equal(200);
    expect((await call('PUT', `/v1/users/${user}`, { teamId: team })).status).to.equal(200);
    expect((await call('GET', `/v1/users/${user}`)).status).to.equal(200);
    const tok = await call<{ id: string; token: string }>('POST', `/v1/users/${user}/tokens`, { name: 'oas', ttlSeconds: 3600 });
    expect(tok.status).to.equal(201);
    expect((await call('GET', `/v1/users/${user}/tokens`)).status).to.equal(200);
    const asUser = { token: tok.body.token };
    const me = await call<{ id: string; role: string }>('GET', '/v1/me', undefined, asUser);
    expect(me.body).to.deep.include({ id: user, role: 'user' });

    // ---- quotas
    expect((await call('PUT', `/v1/users/${user}/quota`, { maxWorkspaces: 3, maxDiskGb: null })).status).to.equal(200);
    expect((await call('GET', `/v1/users/${user}/quota`)).status).to.equal(200);
    expect((await call('PUT', `/v1/teams/${team}/quota`, { maxConcurrentBuilds: 1 })).status).to.equal(200);
    expect((await call('GET', `/v1/teams/${team}/quota`)).status).to.equal(200);

    // ---- workspaces, as the user
    const created = await call<Workspace>('POST', `/v1/users/${user}/workspaces?wait=30`, { projectName: 'oas', arch: 'linux-x64', tier: 'tiny' }, asUser);
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    expect(created.body.status).to.equal('RUNNING');
    const id = created.body.id;
    expect((await call('GET', `/v1/users/${user}/workspaces?includeDeleted=true`, undefined, asUser)).status).to.equal(200);
    expect((await call('GET', `/v1/users/${user}/workspaces/${id}`, undefined, asUser)).status).to.equal(200);
    expect((await call('GET', `/v1/workspaces/${id}`, undefined, asUser)).status).to.equal(200);
    expect((await call('PATCH', `/v1/workspaces/${id}`, { autostopAfterSeconds: 600 }, asUser)).status).to.equal(200);
    expect((await call('POST', `/v1/workspaces/${id}/stop?wait=30`, undefined, asUser)).status).to.equal(202);
    expect((await call('POST', `/v1/workspaces/${id}/start?wait=30`, undefined, asUser)).status).to.equal(202);
    // ---- a move to the second host, its progress, where the user's files are
    await waitFor('the workspace RUNNING again', async () => (await t.api.workspace(id)).status === 'RUNNING', 30_000, 100);
    // To whichever host it is not on (placement may have chosen either).
    const other = (await t.api.workspace(id)).hostId === hostB ? hostId : hostB;
    const moved = await call('POST', `/v1/workspaces/${id}/move`, { toHostId: other }, asUser);
    expect(moved.status, JSON.stringify(moved.body)).to.equal(202);
    await waitFor('the move done', async () => (await call<{ status: string }>('GET', `/v1/workspaces/${id}/move`, undefined, asUser)).body.status === 'SUCCEEDED', 30_000, 200);
    expect((await call('GET', `/v1/users/${user}/volumes`, undefined, asUser)).status).to.equal(200);
    // ---- getting in: WebSockets answer 101; a plain GET is a documented 426
    for (const [opId, p] of [
      ['execWorkspace', `/v1/workspaces/${id}/exec?command=true`],
      ['portForwardWorkspace', `/v1/workspaces/${id}/port-forward?port=9`],
      ['sshWorkspace', `/v1/workspaces/${id}/ssh`],
    ] as const) {
      const sock = await openSocket(t.api.baseUrl, p, asUser.token as string);
      (seen.get(opId) ?? seen.set(opId, new Set()).get(opId))?.add(101);
      expect(templates().find((x) => x.o.operationId === opId)?.o.responses['101'], `${opId} documents 101`).to.not.equal(undefined);
      sock.close();
      expect((await call('GET', p, undefined, asUser)).status).to.equal(426);
    }
    expect((await call('GET', `/v1/workspaces/${id}/sessions?limit=5`, undefined, asUser)).status).to.equal(200);
    expect((await call('POST', `/v1/workspaces/${id}/retry`, undefined, asUser)).status, 'only a FAILED workspace is retried').to.equal(409);
    const broken = await call<Workspace>('POST', `/v1/users/${user}/workspaces?wait=30`, { projectName: 'oas', arch: 'linux-x64', tier: 'tiny', image: 'a4c-oas-broken:test' }, asUser);
    // Its command cannot run: it fails at start, or just after it (A4C_MAX_RESTARTS=0).
    await waitFor('the broken workspace FAILED', async () => (await t.api.workspace(broken.body.id)).status === 'FAILED', 30_000, 100);
    expect((await call('POST', `/v1/workspaces/${broken.body.id}/retry`, undefined, asUser)).status).to.equal(202);
    expect((await call('DELETE', `/v1/workspaces/${broken.body.id}?wait=30`, undefined, asUser)).status).to.equal(202);
    expect((await call('POST', `/v1/workspaces/${id}/approve`, undefined, asUser)).status, 'users do not approve').to.equal(403);
    expect((await call('DELETE', `/v1/users/${user}/workspaces/${id}?wait=30`, undefined, asUser)).status).to.equal(202);
    const second = await call<Workspace>('POST', `/v1/users/${user}/workspaces`, { projectName: 'oas', arch: 'linux-x64', tier: 'tiny' }, asUser);
    expect(second.status).to.equal(201);
    expect((await call('DELETE', `/v1/workspaces/${second.body.id}?wait=30`, undefined, asUser)).status).to.equal(202);
    // a tier that needs approval: one rejected, one approved
    const pend = await call<Workspace>('POST', `/v1/users/${user}/workspaces`, { projectName: 'oas', arch: 'linux-x64', tier: 'approval' });
    expect(pend.body.status).to.equal('PENDING_APPROVAL');
    expect((await call('POST', `/v1/workspaces/${pend.body.id}/reject`, { reason: 'not now' })).status).to.equal(200);
    const approve = await call<Workspace>('POST', `/v1/users/${user}/workspaces`, { projectName: 'oas', arch: 'linux-x64', tier: 'approval' });
    expect((await call('POST', `/v1/workspaces/${approve.body.id}/approve?wait=30`)).status).to.equal(202);
    expect((await call('DELETE', `/v1/workspaces/${approve.body.id}?wait=30`)).status).to.equal(202);

    // ---- many creates in one request: one created (approval tier, no host), one refused (another user's)
    const batch = await call<{ results: { status: number; workspace?: Workspace }[] }>(
      'POST',
      '/v1/workspace-batches',
      { workspaces: [{ userId: user, projectName: 'oas', arch: 'linux-x64', tier: 'approval' }, { userId: 'oas-someone-else', projectName: 'oas', arch: 'linux-x64', tier: 'tiny' }] },
      asUser,
    );
    expect(batch.body.results?.map((r) => r.status), JSON.stringify(batch.body)).to.deep.equal([201, 404]);
    expect((await call('DELETE', `/v1/workspaces/${batch.body.results[0]?.workspace?.id}?wait=30`, undefined, asUser)).status).to.equal(202);
    expect((await call('POST', '/v1/workspace-batches', { workspaces: [] })).status).to.equal(400);

    // ---- fleet search, a page at a time
    const fleet = await call<{ workspaces: Workspace[]; nextCursor: string | null }>('GET', `/v1/workspaces?status=RUNNING,FAILED,DELETED&project=oas&limit=1`, undefined, asUser);
    expect(fleet.status).to.equal(200);
    expect(fleet.body.nextCursor).to.be.a('string');
    expect((await call('GET', `/v1/workspaces?q=oas&sort=updatedAt&cursor=${fleet.body.nextCursor}`)).status).to.equal(200);
    expect((await call('GET', `/v1/workspaces?hostId=${hostId}&tier=tiny&userId=${user}&teamId=${team}`)).status).to.equal(200);
    expect((await call('GET', '/v1/workspaces?cursor=bm9wZQ')).status, 'a cursor not given out').to.equal(400);

    // ---- the activity log
    const evs = await call<{ events: { cursor: string }[]; nextCursor: string }>('GET', `/v1/events?workspaceId=${id}&limit=3`, undefined, asUser);
    expect(evs.status).to.equal(200);
    expect(evs.body.events.length).to.equal(3);
    expect((await call('GET', `/v1/events?after=${evs.body.nextCursor}&kind=workspace.running,workspace.stopped&since=2020-01-01T00:00:00Z`)).status).to.equal(200);
    {
      // The stream never ends by itself: read its head and first bytes, then hang up.
      const abort = new AbortController();
      const res = await fetch(`${t.api.baseUrl}/v1/events/stream?workspaceId=${id}&after=${evs.body.events[0]?.cursor}`, {
        headers: { authorization: `Bearer ${tok.body.token}` },
        signal: abort.signal,
      });
      const documented = doc.paths['/v1/events/stream']?.get?.responses[String(res.status)];
      if (!documented?.content?.['text/event-stream']) problems.push(`streamEvents: answered ${res.status}, not documented as text/event-stream`);
      (seen.get('streamEvents') ?? seen.set('streamEvents', new Set()).get('streamEvents'))?.add(res.status);
      expect(res.headers.get('content-type')).to.match(/^text\/event-stream/);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let text = '';
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        if (/^event:/m.test(text)) break;
      }
      abort.abort();
      expect(res.status, text).to.equal(200);
      expect(text).to.match(/^id: ?\d+-\d+$/m);
    }

    // ---- image builds
    const b = await call<Build>('POST', `/v1/users/${user}/image-schedules`, { imageName: 'oas/img', project: 'oas', arch: 'linux-x64', changeNumber: 'CL-1' }, asUser);
    expect(b.status).to.equal(202);
    // Cancelled at once, before its build (a second or more) can finish.
    expect((await call('POST', `/v1/image-schedules/${b.body.id}/cancel`, undefined, asUser)).status).to.equal(200);
    expect((await call('GET', `/v1/image-schedules?status=SCHEDULED&limit=5`, undefined, asUser)).status).to.equal(200);
    const searched = await call<{ builds: Build[]; nextCursor: string | null }>('GET', `/v1/image-schedules?q=nothing%20like%20this&hostId=${hostId}&limit=1`);
    expect([searched.status, searched.body.builds, searched.body.nextCursor]).to.deep.equal([200, [], null]);
    expect((await call('GET', `/v1/image-schedules/${b.body.id}`, undefined, asUser)).status).to.equal(200);
    expect((await call('GET', `/v1/image-schedules/${b.body.id}/logs?after=0`, undefined, asUser)).status).to.equal(200);

    // ---- hosts and agents
    expect((await call('GET', '/v1/hosts')).status).to.equal(200);
    expect((await call('GET', `/v1/hosts/${hostId}`)).status).to.equal(200);
    expect((await call('POST', `/v1/hosts/${hostId}/drain`)).status).to.equal(200);
    expect((await call('POST', `/v1/hosts/${hostId}/activate`)).status).to.equal(200);
    const jt = await call<{ token: string }>('POST', '/v1/join-tokens', { hostId: 'oas-spare', ttlSeconds: 60 });
    expect(jt.status).to.equal(201);
    expect((await call('POST', '/v1/agents/enroll', { joinToken: jt.body.token, hostId: 'oas-spare', csr: 'not a csr' }, { token: null })).status).to.equal(400);
    expect((await call('DELETE', '/v1/hosts/oas-never-was')).status).to.equal(404);
    expect((await call('GET', '/healthz', undefined, { token: null })).status).to.equal(200);
    expect((await call('GET', '/readyz', undefined, { token: null })).status).to.equal(200);
    expect((await call('GET', '/v1/openapi.json', undefined, { token: null })).status).to.equal(200);
    expect((await call('GET', '/v1/auth/config', undefined, { token: null })).status).to.equal(200);

    // ---- webhooks (nothing listens at the URL: deliveries just fail and wait)
    const hook = await call<{ id: string }>('POST', '/v1/webhooks', { url: 'http://127.0.0.1:9/hook', events: ['build.completed', 'workspace.*'] }, asUser);
    expect(hook.status, JSON.stringify(hook.body)).to.equal(201);
    expect((await call('POST', '/v1/webhooks', { url: 'ftp://x', events: ['*'] }, asUser)).status).to.equal(400);
    expect((await call('GET', '/v1/webhooks', undefined, asUser)).status).to.equal(200);
    expect((await call('GET', `/v1/webhooks/${hook.body.id}`, undefined, asUser)).status).to.equal(200);
    expect((await call('PATCH', `/v1/webhooks/${hook.body.id}`, { description: 'oas' }, asUser)).status).to.equal(200);
    expect((await call('POST', `/v1/webhooks/${hook.body.id}/test`, undefined, asUser)).status).to.equal(202);
    expect((await call('GET', `/v1/webhooks/${hook.body.id}/deliveries?limit=5`, undefined, asUser)).status).to.equal(200);
    expect((await call('DELETE', `/v1/webhooks/${hook.body.id}`, undefined, asUser)).status).to.equal(200);
    expect((await call('GET', `/v1/webhooks/${hook.body.id}`, undefined, asUser)).status).to.equal(404);

    // ---- the audit log, and token revocation last
    expect((await call('GET', '/v1/audit?limit=10')).status).to.equal(200);
    expect((await call('DELETE', `/v1/users/${user}/tokens/${tok.body.id}`)).status).to.equal(200);

    // ---- errors are documented too
    expect((await call('GET', '/v1/hosts', undefined, { token: null })).status).to.equal(401);
    expect((await call('GET', '/v1/workspaces/not-a-uuid')).status).to.equal(400);
    expect((await call('GET', '/v1/workspaces/6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f')).status).to.equal(404);
    expect((await call('GET', '/v1/audit?limit=0')).status).to.equal(400);
    expect((await call('GET', `/v1/users/${user}/workspaces?bogus=1`)).status).to.equal(400);
    expect((await call('POST', `/v1/users/${user}/workspaces`, { projectName: 'oas', arch: 'linux-x64', tier: 'tiny', privileged: true })).status).to.equal(400);

    const removed = await call('DELETE', `/v1/hosts/${hostId}`);
    expect(removed.status).to.equal(200);

    expect(problems, problems.join('\n')).to.deep.equal([]);
    const never = templates()
      .map((x) => x.o.operationId)
      .filter((opId) => ![...(seen.get(opId) ?? [])].some((s) => s < 300 || (opId === 'enrollAgent' && s === 400)));
    expect(never, 'operations never answered with a success here').to.deep.equal([]);
  });

  it('docs/api.md lists every operation of the document', () => {
    const md = readFileSync(path.join(ROOT, 'docs/api.md'), 'utf8');
    const missing = templates()
      .map((x) => `${x.method.toUpperCase()} ${x.template}`)
      .filter((line) => !md.includes(line));
    expect(missing, 'add these to docs/api.md').to.deep.equal([]);
  });
});

/** JSON pointer escaping of a path template. */
function escape(p: string): string {
  return p.replace(/~/g, '~0').replace(/\//g, '~1');
}
