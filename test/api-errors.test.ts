import { expect } from 'chai';
import { startTestControlPlane, uniqueId, type TestControlPlane } from './support/cluster.js';

interface ErrBody {
  error: string;
  message: string;
  field?: string;
  suggestion?: string;
  requestId?: string;
}

describe('REST API: bad input and authentication', () => {
  let t: TestControlPlane;
  const user = uniqueId('dave');
  const valid = { projectName: 'p', arch: 'linux-x64', tier: 'tiny' };

  before(async () => {
    t = await startTestControlPlane();
  });
  after(async () => {
    await t?.stop();
  });

  const create = (body: unknown, init: { rawBody?: string; contentType?: string } = {}) =>
    t.api.call<ErrBody>('POST', `/v1/users/${user}/workspaces`, body, init);

  const cases: [string, () => Promise<{ status: number; body: ErrBody }>, number, string, string | undefined][] = [
    ['unknown tier', () => create({ ...valid, tier: 'gigantic' }), 400, 'INVALID_ARGUMENT', 'tier'],
    ['unknown arch', () => create({ ...valid, arch: 'windows-x86' }), 400, 'INVALID_ARGUMENT', 'arch'],
    ['missing projectName', () => create({ arch: 'linux-x64', tier: 'tiny' }), 400, 'INVALID_ARGUMENT', 'projectName'],
    ['projectName of the wrong type', () => create({ ...valid, projectName: 42 }), 400, 'INVALID_ARGUMENT', 'projectName'],
    ['unknown field', () => create({ ...valid, privileged: true }), 400, 'INVALID_ARGUMENT', 'privileged'],
    ['shell metacharacters in a name', () => create({ ...valid, name: 'x; rm -rf /' }), 400, 'INVALID_ARGUMENT', 'name'],
    ['an image that is not a reference', () => create({ ...valid, image: '--privileged' }), 400, 'INVALID_ARGUMENT', 'image'],
    ['body that is an array', () => create([valid]), 400, 'INVALID_ARGUMENT', 'body'],
    ['malformed JSON', () => create(undefined, { rawBody: '{"projectName": "p",' }), 400, 'INVALID_JSON', undefined],
    ['not JSON at all', () => create(undefined, { rawBody: 'projectName=p', contentType: 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE', undefined],
    ['a huge body', () => create(undefined, { rawBody: JSON.stringify({ ...valid, name: 'x'.repeat(100_000) }) }), 413, 'PAYLOAD_TOO_LARGE', undefined],
    ['an invalid user id', () => t.api.call<ErrBody>('POST', '/v1/users/Robert%27%3B%20DROP%20TABLE/workspaces', valid), 400, 'INVALID_ARGUMENT', 'userId'],
    ['an invalid wait', () => t.api.call<ErrBody>('POST', `/v1/users/${user}/workspaces?wait=forever`, valid), 400, 'INVALID_ARGUMENT', 'wait'],
    ['a workspace id that is not a uuid', () => t.api.call<ErrBody>('GET', '/v1/workspaces/nope'), 400, 'INVALID_ARGUMENT', 'id'],
    ['a user named admin (the admin token\'s name in the audit log)', () => t.api.call<ErrBody>('POST', '/v1/users', { id: 'admin' }), 400, 'INVALID_ARGUMENT', 'id'],
    ['an unknown query parameter', () => t.api.call<ErrBody>('GET', `/v1/users/${user}/workspaces?includedeleted=true`), 400, 'INVALID_ARGUMENT', 'includedeleted'],
    ['a query parameter given twice', () => t.api.call<ErrBody>('POST', `/v1/users/${user}/workspaces?wait=1&wait=2`, valid), 400, 'INVALID_ARGUMENT', 'wait'],
    ['a workspace that does not exist', () => t.api.call<ErrBody>('GET', '/v1/workspaces/6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f'), 404, 'NOT_FOUND', undefined],
    ['stopping a workspace that does not exist', () => t.api.call<ErrBody>('POST', '/v1/workspaces/6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f/stop'), 404, 'NOT_FOUND', undefined],
    ['deleting a workspace that does not exist', () => t.api.call<ErrBody>('DELETE', '/v1/workspaces/6f1c3b8e-1b2a-4c3d-8e9f-0a1b2c3d4e5f'), 404, 'NOT_FOUND', undefined],
    ['a host that does not exist', () => t.api.call<ErrBody>('GET', '/v1/hosts/nowhere'), 404, 'NOT_FOUND', undefined],
    ['an unknown route', () => t.api.call<ErrBody>('GET', '/v1/nothing-here'), 404, 'NOT_FOUND', undefined],
    ['a wrong method', () => t.api.call<ErrBody>('PUT', '/v1/hosts'), 405, 'METHOD_NOT_ALLOWED', undefined],
    ['no token', () => t.api.call<ErrBody>('GET', '/v1/hosts', undefined, { token: null }), 401, 'UNAUTHENTICATED', undefined],
    ['a wrong token', () => t.api.call<ErrBody>('GET', '/v1/hosts', undefined, { token: 'not-the-token' }), 401, 'UNAUTHENTICATED', undefined],
  ];

  for (const [what, call, status, code, field] of cases) {
    it(`${what}: ${status} ${code}${field ? ` naming ${field}` : ''}`, async () => {
      const r = await call();
      expect(r.status, JSON.stringify(r.body)).to.equal(status);
      expect(r.body.error).to.equal(code);
      expect(r.body.message).to.be.a('string').and.not.equal('');
      expect(r.body.requestId).to.be.a('string');
      if (field) {
        expect(r.body.field).to.equal(field);
        expect(r.body.message).to.contain(field);
      }
    });
  }

  it('says why nothing can be placed when no host exists: 503 CAPACITY_EXHAUSTED with a suggestion', async () => {
    const r = await create(valid);
    expect(r.status).to.equal(503);
    expect(r.body.error).to.equal('CAPACITY_EXHAUSTED');
    expect(r.body.message).to.contain('linux-x64');
    expect(r.body.suggestion).to.be.a('string');
  });

  it('the wrong token is refused for every route, and nothing was created by any of the above', async () => {
    const list = await t.api.call<{ workspaces: unknown[] }>('GET', `/v1/users/${user}/workspaces?includeDeleted=true`);
    expect(list.status).to.equal(200);
    expect(list.body.workspaces).to.deep.equal([]);
    for (const [method, p] of [['GET', `/v1/users/${user}/workspaces`], ['POST', `/v1/users/${user}/workspaces`], ['GET', '/v1/hosts/x'], ['DELETE', '/v1/workspaces/x']]) {
      const r = await t.api.call<ErrBody>(method as string, p as string, undefined, { token: 'wrong' });
      expect(r.status, `${method} ${p}`).to.equal(401);
    }
  });

  it('health and readiness need no token; readiness checks the database', async () => {
    const h = await t.api.call('GET', '/healthz', undefined, { token: null });
    expect(h.status).to.equal(200);
    const r = await t.api.call<{ database: string }>('GET', '/readyz', undefined, { token: null });
    expect(r.status).to.equal(200);
    expect(r.body.database).to.equal('ok');
  });
});
