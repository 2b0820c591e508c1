import Router, { type RouterContext } from '@koa/router';
import { A4cError, notFound } from '@a4c/common';
import type { Db } from '../store/db.js';
import { getHostView, listHosts } from '../store/hosts.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { readJson, type State } from './http.js';
import { parse, parseWait, schemas } from './validate.js';

export interface RouteDeps {
  db: Db;
  workspaces: WorkspaceService;
  maxWaitSeconds: number;
  liveWithinSeconds: number;
}

/** The public REST API, /v1. Authentication is applied before these routes. */
export function v1Routes(d: RouteDeps): Router<State> {
  const r = new Router<State>({ prefix: '/v1' });
  const ws = d.workspaces;

  r.post('/users/:userId/workspaces', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    const body = parse(schemas.createWorkspace, await readJson(ctx));
    const created = await ws.create({ userId, ...body }, ctx.state.actor);
    ctx.status = 201;
    ctx.set('location', `/v1/workspaces/${created.id}`);
    ctx.body = wait ? await ws.waitSettled(created.id, wait) : created;
  });

  r.get('/users/:userId/workspaces', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    const includeDeleted = ctx.query.includeDeleted === 'true';
    ctx.body = { workspaces: await ws.listOfUser(userId, includeDeleted) };
  });

  r.get('/users/:userId/workspaces/:id', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    ctx.body = await ws.getOwned(userId, ctx.params.id as string);
  });

  r.get('/workspaces/:id', async (ctx) => {
    ctx.body = await ws.get(ctx.params.id as string);
  });

  for (const action of ['stop', 'start'] as const) {
    r.post(`/workspaces/:id/${action}`, async (ctx) => {
      const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
      const after = await ws[action](ctx.params.id as string, ctx.state.actor);
      ctx.status = 202;
      ctx.body = wait ? await ws.waitSettled(after.id, wait) : after;
    });
  }

  const remove = async (ctx: RouterContext<State>, userId?: string) => {
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    if (userId) await ws.getOwned(userId, ctx.params.id as string);
    const after = await ws.delete(ctx.params.id as string, ctx.state.actor);
    ctx.status = 202;
    ctx.body = wait ? await ws.waitSettled(after.id, wait) : after;
  };
  r.delete('/workspaces/:id', (ctx) => remove(ctx));
  r.delete('/users/:userId/workspaces/:id', (ctx) => remove(ctx, parse(schemas.userId, ctx.params.userId, 'userId')));

  r.get('/hosts', async (ctx) => {
    ctx.body = { hosts: await listHosts(d.db, d.liveWithinSeconds) };
  });

  r.get('/hosts/:id', async (ctx) => {
    const host = await getHostView(d.db, ctx.params.id as string, d.liveWithinSeconds);
    if (!host) throw notFound('host', ctx.params.id as string, 'list hosts with `a4c hosts`');
    ctx.body = host;
  });

  return r;
}

/** Unauthenticated probes for load balancers and systemd. */
export function probeRoutes(db: Db): Router<State> {
  const r = new Router<State>();
  r.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  r.get('/readyz', async (ctx) => {
    try {
      await db.query('SELECT 1');
      ctx.body = { status: 'ready', database: 'ok' };
    } catch (e) {
      throw new A4cError('UNAVAILABLE', `database unreachable: ${(e as Error).message}`, { suggestion: 'check DATABASE_URL and that PostgreSQL runs' });
    }
  });
  return r;
}
