import { A4cError, notFound, type Workspace } from '@a4c/common';
import type { Principal } from '../../auth/principals.js';
import type { EventScope } from '../../store/events.js';
import { op, type Ctx, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import { autostopView } from '../../workspaces/autostop-view.js';
import type { RouteDeps } from './deps.js';

const WS = 'Workspaces';

/** Workspaces: create, read, stop, start, retry, approve, reject, delete. */
export function workspaceOperations(d: Pick<RouteDeps, 'db' | 'workspaces' | 'policy' | 'maxWaitSeconds' | 'autostop'>): Operation[] {
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

  return [
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
        if (body.autostopAfterSeconds !== undefined) d.autostop.checkOverride(ctx.state.principal, body.tier, body.autostopAfterSeconds);
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
        const w = await ws.getOwned(params.userId, params.id);
        ctx.body = { ...w, ...(await autostopView(d.db, d.autostop, w)) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/workspaces',
      operationId: 'searchWorkspaces',
      summary: "List and search the fleet's workspaces",
      description:
        'Admins see every workspace, leads their team\'s, users their own. Filters combine; q finds text in names, projects, ' +
        'hostnames, host ids, failed steps and errors (substring, case-insensitive, typos tolerated). DELETED ones only when ' +
        'status names DELETED. A page at a time: pass nextCursor as cursor.',
      tag: WS,
      access: 'anyone',
      query: s.requests.fleet,
      responses: { 200: { description: 'The workspaces, in the sort order', schema: s.page('workspaces', s.workspace) } },
      errors: [404],
      handle: async (ctx, { query }) => {
        const p = ctx.state.principal;
        if (query.userId) await can.read(p, query.userId);
        if (query.teamId && p.role !== 'admin' && !(p.role === 'lead' && p.teamId === query.teamId)) throw notFound('team', query.teamId);
        const { status, ...rest } = query;
        ctx.body = await ws.search({ ...rest, statuses: status, sort: query.sort ?? '-createdAt', limit: query.limit ?? 50, scope: scopeOf(p) });
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
        const w = await readable(ctx, params.id);
        ctx.body = { ...w, ...(await autostopView(d.db, d.autostop, w)) };
      },
    }),
    ...(
      [
        ['stop', 'Stop a workspace', 'The container and its data stay. Idempotent.'],
        ['start', 'Start a stopped workspace', 'Starts the same container, taking its CPU and memory on its host again: 503 NO_ROOM_ON_HOST if the host has none. Idempotent.'],
        ['retry', 'Retry a FAILED or LOST workspace', 'Places it again, as a new one (quota and placement), with the next attempt and the same id; the agent removes what an older attempt left first.'],
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
        errors: action === 'stop' ? [403, 404, 409] : [403, 404, 409, 429, 503],
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
  ];
}

/** What a principal may see of the fleet and the activity log: all, their team's (leads), or their own. */
export function scopeOf(p: Principal): EventScope {
  if (p.role === 'admin') return { all: true };
  return { all: false, userId: p.id, teamId: p.role === 'lead' ? p.teamId : null };
}
