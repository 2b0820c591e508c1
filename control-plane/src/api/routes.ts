import { z } from 'zod';
import { A4cError, notFound, type Workspace } from '@a4c/common';
import { issueToken, listTokens, revokeToken, type Policy } from '../auth/principals.js';
import type { BuildService } from '../builds/service.js';
import type { Quotas } from '../quotas/quotas.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { getHostView, listHosts, setDraining, type HostViewOptions } from '../store/hosts.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { op, type Ctx, type Operation } from './operation.js';
import * as s from './schemas.js';

export interface RouteDeps {
  db: Db;
  workspaces: WorkspaceService;
  builds: BuildService;
  quotas: Quotas;
  policy: Policy;
  maxWaitSeconds: number;
  hostView: HostViewOptions;
}

const WS = 'Workspaces';
const BUILDS = 'Image builds';
const HOSTS = 'Hosts';
const USERS = 'Users and tokens';
const QUOTAS = 'Quotas';
const AUDIT = 'Audit';

/**
 * The public REST API, /v1, as a table of operations: each one's path, access rule,
 * schemas for its path, query and body, and its responses. The router and the OpenAPI
 * document (GET /v1/openapi.json) are both made from this table.
 */
export function v1Operations(d: RouteDeps): Operation[] {
  const ws = d.workspaces;
  const can = d.policy;
  const wait = s.waitQuery(d.maxWaitSeconds);
  const workspaceOut = { schema: s.workspace };

  /** The workspace, if the caller may read it; 404 otherwise. */
  const readable = async (ctx: Ctx, id: string) => {
    const w = await ws.get(id);
    await can.read(ctx.state.principal, w.userId, 'workspace', w.id);
    return w;
  };
  /** 403 unless the caller may change a workspace they can read (its owner or an admin; a lead only reads). */
  const mayChange = (ctx: Ctx, w: Workspace) => {
    if (ctx.state.principal.role !== 'admin' && ctx.state.principal.id !== w.userId) {
      throw new A4cError('PERMISSION_DENIED', `only ${w.userId} or an admin may change this workspace`);
    }
    return w;
  };
  /** The workspace, if the caller may change it; 404 if they may not even read it, 403 if only read. */
  const writable = async (ctx: Ctx, id: string) => mayChange(ctx, await readable(ctx, id));
  /** Acts, then answers with the workspace: as it is, or once settled if ?wait asked. */
  const settle = async (ctx: Ctx, status: number, waitSeconds: number | undefined, act: () => Promise<Workspace>) => {
    const after = await act();
    ctx.status = status;
    ctx.body = waitSeconds ? await ws.waitSettled(after.id, waitSeconds) : after;
  };
  const host = async (id: string) => {
    const h = await getHostView(d.db, id, d.hostView);
    if (!h) throw notFound('host', id, 'list hosts with `a4c hosts`');
    return h;
  };

  const ops: Operation[] = [
    // ---- workspaces
    op({
      method: 'post',
      path: '/v1/users/{userId}/workspaces',
      operationId: 'createWorkspace',
      summary: 'Create a workspace',
      description: 'Places the workspace on a host and starts its container. Tiers that need approval start PENDING_APPROVAL.',
      tag: WS,
      access: 'self',
      params: s.params.userId,
      query: wait,
      body: s.requests.createWorkspace,
      responses: { 201: { description: 'Created: CREATING, or settled if wait was given', ...workspaceOut, headers: { Location: 'the workspace' } } },
      errors: [404, 409],
      handle: async (ctx, { params, query, body }) => {
        const created = await ws.create({ userId: params.userId, ...body }, ctx.state.actor);
        ctx.status = 201;
        ctx.set('location', `/v1/workspaces/${created.id}`);
        ctx.body = query.wait ? await ws.waitSettled(created.id, query.wait) : created;
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}/workspaces',
      operationId: 'listWorkspaces',
      summary: "List a user's workspaces",
      tag: WS,
      access: 'self-or-lead',
      params: s.params.userId,
      query: s.requests.listWorkspaces,
      responses: { 200: { description: 'The workspaces', schema: s.list('workspaces', s.workspace) } },
      errors: [404],
      handle: async (ctx, { params, query }) => {
        ctx.body = { workspaces: await ws.listOfUser(params.userId, query.includeDeleted ?? false) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}/workspaces/{id}',
      operationId: 'getUserWorkspace',
      summary: "Get one of a user's workspaces",
      tag: WS,
      access: 'self-or-lead',
      params: s.params.userWorkspace,
      responses: { 200: { description: 'The workspace', ...workspaceOut } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await ws.getOwned(params.userId, params.id);
      },
    }),
    op({
      method: 'get',
      path: '/v1/workspaces/{id}',
      operationId: 'getWorkspace',
      summary: 'Get a workspace',
      tag: WS,
      access: 'owner',
      params: s.params.workspace,
      responses: { 200: { description: 'The workspace', ...workspaceOut } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await readable(ctx, params.id);
      },
    }),
    ...(
      [
        ['stop', 'Stop a workspace', 'The container and its data stay. Idempotent.'],
        ['start', 'Start a stopped workspace', 'Starts the same container. Idempotent.'],
        ['retry', 'Retry a FAILED workspace', 'Places it again with the next attempt; the agent removes what the failed attempt left first.'],
      ] as const
    ).map(([action, summary, description]) =>
      op({
        method: 'post',
        path: `/v1/workspaces/{id}/${action}`,
        operationId: `${action}Workspace`,
        summary,
        description,
        tag: WS,
        access: 'owner',
        params: s.params.workspace,
        query: wait,
        responses: { 202: { description: 'Under way (or settled, with wait)', ...workspaceOut } },
        errors: [403, 404, 409],
        handle: async (ctx, { params, query }) => {
          await writable(ctx, params.id);
          await settle(ctx, 202, query.wait, () => ws[action](params.id, ctx.state.actor));
        },
      }),
    ),
    op({
      method: 'post',
      path: '/v1/workspaces/{id}/approve',
      operationId: 'approveWorkspace',
      summary: 'Approve a PENDING_APPROVAL workspace',
      description: 'Places it; 503 and it stays pending if nothing fits.',
      tag: WS,
      access: 'admin',
      params: s.params.workspace,
      query: wait,
      responses: { 202: { description: 'Placed, CREATING (or settled, with wait)', ...workspaceOut } },
      errors: [403, 404, 409],
      handle: async (ctx, { params, query }) => {
        await settle(ctx, 202, query.wait, () => ws.approve(params.id, ctx.state.actor));
      },
    }),
    op({
      method: 'post',
      path: '/v1/workspaces/{id}/reject',
      operationId: 'rejectWorkspace',
      summary: 'Reject a PENDING_APPROVAL workspace',
      tag: WS,
      access: 'admin',
      params: s.params.workspace,
      body: s.requests.reject,
      responses: { 200: { description: 'REJECTED, the reason in error', ...workspaceOut } },
      errors: [403, 404, 409],
      handle: async (ctx, { params, body }) => {
        ctx.body = await ws.reject(params.id, ctx.state.actor, body.reason);
      },
    }),
    op({
      method: 'delete',
      path: '/v1/workspaces/{id}',
      operationId: 'deleteWorkspace',
      summary: 'Delete a workspace',
      description: "Soft: the record stays (DELETED), the container goes, the user's volume stays. Idempotent.",
      tag: WS,
      access: 'owner',
      params: s.params.workspace,
      query: wait,
      responses: { 202: { description: 'DELETING (or settled, with wait)', ...workspaceOut } },
      errors: [403, 404],
      handle: async (ctx, { params, query }) => {
        const w = await writable(ctx, params.id);
        await settle(ctx, 202, query.wait, () => ws.delete(w.id, ctx.state.actor));
      },
    }),
    op({
      method: 'delete',
      path: '/v1/users/{userId}/workspaces/{id}',
      operationId: 'deleteUserWorkspace',
      summary: "Delete one of a user's workspaces",
      description: 'As deleteWorkspace, checked to belong to the user in the path.',
      tag: WS,
      access: 'owner',
      params: s.params.userWorkspace,
      query: wait,
      responses: { 202: { description: 'DELETING (or settled, with wait)', ...workspaceOut } },
      errors: [403, 404],
      handle: async (ctx, { params, query }) => {
        // The path names the owner: another user's workspace does not exist under it.
        const w = await readable(ctx, params.id);
        if (w.userId !== params.userId) throw notFound('workspace', w.id, 'list your workspaces with `a4c ws list`');
        mayChange(ctx, w);
        await settle(ctx, 202, query.wait, () => ws.delete(w.id, ctx.state.actor));
      },
    }),

    // ---- image builds
    op({
      method: 'post',
      path: '/v1/users/{userId}/image-schedules',
      operationId: 'scheduleBuild',
      summary: 'Schedule an image build',
      description: 'An agent of the arch claims it, builds the project image and reports progress and logs.',
      tag: BUILDS,
      access: 'self',
      params: s.params.userId,
      body: s.requests.scheduleBuild,
      responses: { 202: { description: 'SCHEDULED', schema: s.build, headers: { Location: 'the build' } } },
      errors: [404],
      handle: async (ctx, { params, body }) => {
        const b = await d.builds.schedule({ userId: params.userId, ...body }, ctx.state.actor);
        ctx.status = 202;
        ctx.set('location', `/v1/image-schedules/${b.id}`);
        ctx.body = b;
      },
    }),
    op({
      method: 'get',
      path: '/v1/image-schedules',
      operationId: 'listBuilds',
      summary: 'List image builds',
      description: "Non-admins list their own builds, or (a lead) a team member's when they name one with userId.",
      tag: BUILDS,
      access: 'anyone',
      query: s.requests.buildFilter,
      responses: { 200: { description: 'Newest first', schema: s.list('builds', s.build) } },
      errors: [404],
      handle: async (ctx, { query }) => {
        const p = ctx.state.principal;
        const userId = p.role === 'admin' ? query.userId : (query.userId ?? p.id);
        if (userId) await can.read(p, userId);
        ctx.body = { builds: await d.builds.list({ ...query, userId, limit: query.limit ?? 100 }) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/image-schedules/{id}',
      operationId: 'getBuild',
      summary: 'Get an image build',
      tag: BUILDS,
      access: 'owner',
      params: s.params.build,
      responses: { 200: { description: 'The build with its last log lines', schema: s.build } },
      errors: [404],
      handle: async (ctx, { params }) => {
        const b = await d.builds.get(params.id);
        await can.read(ctx.state.principal, b.userId, 'image build', b.id);
        ctx.body = b;
      },
    }),
    op({
      method: 'get',
      path: '/v1/image-schedules/{id}/logs',
      operationId: 'getBuildLogs',
      summary: "Read an image build's log",
      description: 'Follow a build by asking again with after set to the last seq seen.',
      tag: BUILDS,
      access: 'owner',
      params: s.params.build,
      query: s.requests.logQuery,
      responses: { 200: { description: 'Log lines in order', schema: s.buildLogs } },
      errors: [404],
      handle: async (ctx, { params, query }) => {
        const b = await d.builds.get(params.id);
        await can.read(ctx.state.principal, b.userId, 'image build', b.id);
        ctx.body = await d.builds.logs(b.id, query.after ?? 0, query.limit ?? 1000);
      },
    }),

    // ---- hosts: everyone may see them (where their workspaces run); only admins change them
    op({
      method: 'get',
      path: '/v1/hosts',
      operationId: 'listHosts',
      summary: 'List hosts',
      tag: HOSTS,
      access: 'anyone',
      responses: { 200: { description: 'Every host with capacity, reservations and latest stats', schema: s.list('hosts', s.host) } },
      handle: async (ctx) => {
        ctx.body = { hosts: await listHosts(d.db, d.hostView) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/hosts/{id}',
      operationId: 'getHost',
      summary: 'Get a host',
      tag: HOSTS,
      access: 'anyone',
      params: s.params.hostId,
      responses: { 200: { description: 'The host', schema: s.host } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await host(params.id);
      },
    }),
    ...([['drain', true], ['activate', false]] as const).map(([action, draining]) =>
      op({
        method: 'post',
        path: `/v1/hosts/{id}/${action}`,
        operationId: `${action}Host`,
        summary: draining ? 'Drain a host: nothing new is placed there' : 'Activate a drained host',
        tag: HOSTS,
        access: 'admin',
        params: s.params.hostId,
        responses: { 200: { description: 'The host', schema: s.host } },
        errors: [403, 404],
        handle: async (ctx, { params }) => {
          const found = await inTx(d.db, async (tx) => {
            if (!(await setDraining(tx, params.id, draining))) return false;
            await appendEvent(tx, { kind: draining ? 'host.drained' : 'host.activated', actor: ctx.state.actor, hostId: params.id });
            return true;
          });
          if (!found) throw notFound('host', params.id, 'list hosts with `a4c hosts`');
          ctx.body = await host(params.id);
        },
      }),
    ),

    // ---- users and their tokens
    op({
      method: 'post',
      path: '/v1/users',
      operationId: 'createUser',
      summary: 'Create a user',
      tag: USERS,
      access: 'admin',
      body: s.requests.newUser,
      responses: { 201: { description: 'The user', schema: s.user } },
      errors: [403, 409],
      handle: async (ctx, { body }) => {
        const created = await inTx(d.db, async (tx) => {
          const { rowCount } = await tx.query('INSERT INTO users (id, team_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
            body.id,
            body.teamId ?? null,
            body.role ?? 'user',
          ]);
          if (rowCount) await appendEvent(tx, { kind: 'user.created', actor: ctx.state.actor, data: { userId: body.id, teamId: body.teamId ?? null, role: body.role ?? 'user' } });
          return Boolean(rowCount);
        });
        if (!created) throw new A4cError('CONFLICT', `user ${body.id} already exists`, { suggestion: `change it with PUT /v1/users/${body.id}` });
        ctx.status = 201;
        ctx.body = await userView(d.db, body.id);
      },
    }),
    op({
      method: 'get',
      path: '/v1/users',
      operationId: 'listUsers',
      summary: 'List users',
      tag: USERS,
      access: 'admin',
      responses: { 200: { description: 'Users by id', schema: s.list('users', s.user) } },
      errors: [403],
      handle: async (ctx) => {
        const { rows } = await d.db.query<{ id: string; team_id: string | null; role: 'user' | 'lead' | 'admin' }>('SELECT id, team_id, role FROM users ORDER BY id LIMIT 10000');
        ctx.body = { users: rows.map((u) => ({ id: u.id, teamId: u.team_id, role: u.role })) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}',
      operationId: 'getUser',
      summary: 'Get a user',
      description: 'A user never created explicitly but named in a request shows as a plain user.',
      tag: USERS,
      access: 'self-or-lead',
      params: s.params.userId,
      responses: { 200: { description: 'The user', schema: s.user } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await userView(d.db, params.userId);
      },
    }),
    op({
      method: 'put',
      path: '/v1/users/{userId}',
      operationId: 'putUser',
      summary: "Create or change a user's team and role",
      tag: USERS,
      access: 'admin',
      params: s.params.newUserId,
      body: s.requests.user,
      responses: { 200: { description: 'The user', schema: s.user } },
      errors: [403],
      handle: async (ctx, { params, body }) => {
        await inTx(d.db, async (tx) => {
          await tx.query(
            `INSERT INTO users (id, team_id, role) VALUES ($1, $2, COALESCE($3, 'user'))
             ON CONFLICT (id) DO UPDATE SET team_id = CASE WHEN $4 THEN EXCLUDED.team_id ELSE users.team_id END,
                                            role = COALESCE($3, users.role), updated_at = now()`,
            [params.userId, body.teamId ?? null, body.role ?? null, body.teamId !== undefined],
          );
          await appendEvent(tx, { kind: 'user.updated', actor: ctx.state.actor, data: { userId: params.userId, ...body } });
        });
        ctx.body = await userView(d.db, params.userId);
      },
    }),
    op({
      method: 'post',
      path: '/v1/users/{userId}/tokens',
      operationId: 'issueToken',
      summary: 'Issue an API token',
      description: 'The token is in the answer once and never again; only its hash is kept.',
      tag: USERS,
      access: 'self',
      params: s.params.userId,
      body: s.requests.newToken,
      responses: { 201: { description: 'The token, with its secret', schema: s.issuedToken } },
      errors: [404],
      handle: async (ctx, { params, body }) => {
        ctx.status = 201;
        ctx.set('cache-control', 'no-store');
        ctx.body = await issueToken(d.db, params.userId, body.name, body.ttlSeconds);
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}/tokens',
      operationId: 'listTokens',
      summary: "List a user's API tokens (never their secrets)",
      tag: USERS,
      access: 'self',
      params: s.params.userId,
      responses: { 200: { description: 'The tokens', schema: s.list('tokens', s.token) } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = { tokens: await listTokens(d.db, params.userId) };
      },
    }),
    op({
      method: 'delete',
      path: '/v1/users/{userId}/tokens/{tokenId}',
      operationId: 'revokeToken',
      summary: 'Revoke an API token',
      description: 'Takes effect on the next request. Idempotent.',
      tag: USERS,
      access: 'self',
      params: s.params.userToken,
      responses: { 200: { description: 'The token, revoked', schema: s.token } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await revokeToken(d.db, params.userId, params.tokenId);
      },
    }),

    // ---- quotas: users and their leads read them; admins set them
    op({
      method: 'get',
      path: '/v1/users/{userId}/quota',
      operationId: 'getUserQuota',
      summary: "A user's quota: limits, where each comes from, and usage",
      tag: QUOTAS,
      access: 'self-or-lead',
      params: s.params.userId,
      responses: { 200: { description: 'The quota', schema: s.userQuota } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await d.quotas.view(d.db, params.userId);
      },
    }),
    op({
      method: 'put',
      path: '/v1/users/{userId}/quota',
      operationId: 'putUserQuota',
      summary: "Set a user's quota overrides (null: inherit)",
      tag: QUOTAS,
      access: 'admin',
      params: s.params.userId,
      body: s.requests.quota,
      responses: { 200: { description: 'The quota', schema: s.userQuota } },
      errors: [403],
      handle: async (ctx, { params, body }) => {
        ctx.body = await d.quotas.setUser(params.userId, body);
      },
    }),
    op({
      method: 'get',
      path: '/v1/teams/{teamId}/quota',
      operationId: 'getTeamQuota',
      summary: "A team's default quota",
      description: 'Admins, and the lead of that team.',
      tag: QUOTAS,
      access: 'owner',
      params: s.params.teamId,
      responses: { 200: { description: 'The team quota', schema: s.teamQuota } },
      errors: [404],
      handle: async (ctx, { params }) => {
        const p = ctx.state.principal;
        if (p.role !== 'admin' && !(p.role === 'lead' && p.teamId === params.teamId)) throw notFound('team', params.teamId);
        ctx.body = await d.quotas.team(params.teamId);
      },
    }),
    op({
      method: 'put',
      path: '/v1/teams/{teamId}/quota',
      operationId: 'putTeamQuota',
      summary: "Set a team's default quota (null: the control plane's default)",
      tag: QUOTAS,
      access: 'admin',
      params: s.params.teamId,
      body: s.requests.quota,
      responses: { 200: { description: 'The team quota', schema: s.teamQuota } },
      errors: [403],
      handle: async (ctx, { params, body }) => {
        ctx.body = await d.quotas.setTeam(params.teamId, body);
      },
    }),

    // ---- the audit log (admins)
    op({
      method: 'get',
      path: '/v1/audit',
      operationId: 'listAudit',
      summary: 'Read the audit log: one row per mutating call, newest first',
      tag: AUDIT,
      access: 'admin',
      query: s.requests.auditQuery,
      responses: { 200: { description: 'Entries', schema: s.list('entries', s.auditEntry) } },
      errors: [403],
      handle: async (ctx, { query }) => {
        const { rows } = await d.db.query<{ id: string; at: Date; request_id: string; actor: string; action: string; target: string; outcome: number; error: string | null }>(
          `SELECT * FROM audit_log WHERE ($1::text IS NULL OR actor = $1) AND ($2::bigint IS NULL OR id > $2)
            ORDER BY id DESC LIMIT $3`,
          [query.actor ?? null, query.after ?? null, query.limit ?? 100],
        );
        ctx.body = {
          entries: rows.map((e) => ({ id: Number(e.id), at: e.at.toISOString(), requestId: e.request_id, actor: e.actor, action: e.action, target: e.target, outcome: e.outcome, error: e.error })),
        };
      },
    }),
  ];
  return ops;
}

async function userView(db: Db, id: string): Promise<{ id: string; teamId: string | null; role: string }> {
  const { rows } = await db.query<{ team_id: string | null; role: string }>('SELECT team_id, role FROM users WHERE id = $1', [id]);
  // A user who has only ever been named in a request has no row yet: a plain user.
  return { id, teamId: rows[0]?.team_id ?? null, role: rows[0]?.role ?? 'user' };
}

/** Unauthenticated probes for load balancers and systemd, and the API's own description. */
export function probeOperations(db: Db, document: () => unknown): Operation[] {
  const status = z.strictObject({ status: z.string(), database: z.string().optional() });
  return [
    op({
      method: 'get',
      path: '/healthz',
      operationId: 'healthz',
      summary: 'Liveness: the process answers',
      tag: 'Probes',
      access: 'public',
      responses: { 200: { description: 'Alive', schema: status } },
      handle: (ctx) => {
        ctx.body = { status: 'ok' };
      },
    }),
    op({
      method: 'get',
      path: '/readyz',
      operationId: 'readyz',
      summary: 'Readiness: the database answers',
      tag: 'Probes',
      access: 'public',
      responses: { 200: { description: 'Ready', schema: status } },
      handle: async (ctx) => {
        try {
          await db.query('SELECT 1');
          ctx.body = { status: 'ready', database: 'ok' };
        } catch (e) {
          throw new A4cError('UNAVAILABLE', `database unreachable: ${(e as Error).message}`, { suggestion: 'check DATABASE_URL and that PostgreSQL runs' });
        }
      },
    }),
    op({
      method: 'get',
      path: '/v1/openapi.json',
      operationId: 'openapi',
      summary: 'This API, as an OpenAPI 3.1 document',
      tag: 'Probes',
      access: 'public',
      responses: { 200: { description: 'The document' } },
      handle: (ctx) => {
        ctx.body = document();
      },
    }),
  ];
}
