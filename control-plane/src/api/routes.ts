import Router, { type RouterContext } from '@koa/router';
import { A4cError, notFound } from '@a4c/common';
import type { Quotas } from '../quotas/quotas.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { getHostView, listHosts, setDraining, type HostViewOptions } from '../store/hosts.js';
import type { BuildService } from '../builds/service.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { readJson, type State } from './http.js';
import { parse, parseWait, schemas } from './validate.js';

export interface RouteDeps {
  db: Db;
  workspaces: WorkspaceService;
  builds: BuildService;
  quotas: Quotas;
  maxWaitSeconds: number;
  hostView: HostViewOptions;
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

  r.post('/workspaces/:id/approve', async (ctx) => {
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    const after = await ws.approve(ctx.params.id as string, ctx.state.actor);
    ctx.status = 202;
    ctx.body = wait ? await ws.waitSettled(after.id, wait) : after;
  });

  r.post('/workspaces/:id/retry', async (ctx) => {
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    const after = await ws.retry(ctx.params.id as string, ctx.state.actor);
    ctx.status = 202;
    ctx.body = wait ? await ws.waitSettled(after.id, wait) : after;
  });

  r.post('/workspaces/:id/reject', async (ctx) => {
    const body = parse(schemas.reject, await readJson(ctx));
    ctx.body = await ws.reject(ctx.params.id as string, ctx.state.actor, body.reason);
  });

  const remove = async (ctx: RouterContext<State>, userId?: string) => {
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    if (userId) await ws.getOwned(userId, ctx.params.id as string);
    const after = await ws.delete(ctx.params.id as string, ctx.state.actor);
    ctx.status = 202;
    ctx.body = wait ? await ws.waitSettled(after.id, wait) : after;
  };
  r.delete('/workspaces/:id', (ctx) => remove(ctx));
  r.delete('/users/:userId/workspaces/:id', (ctx) => remove(ctx, parse(schemas.userId, ctx.params.userId, 'userId')));

  r.post('/users/:userId/image-schedules', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    const body = parse(schemas.scheduleBuild, await readJson(ctx));
    const b = await d.builds.schedule({ userId, ...body }, ctx.state.actor);
    ctx.status = 202;
    ctx.set('location', `/v1/image-schedules/${b.id}`);
    ctx.body = b;
  });

  r.get('/image-schedules', async (ctx) => {
    const q = parse(schemas.buildFilter, { ...ctx.query }, 'query');
    ctx.body = { builds: await d.builds.list({ ...q, limit: q.limit ?? 100 }) };
  });

  r.get('/image-schedules/:id', async (ctx) => {
    ctx.body = await d.builds.get(ctx.params.id as string);
  });

  r.get('/image-schedules/:id/logs', async (ctx) => {
    const q = parse(schemas.logQuery, { ...ctx.query }, 'query');
    ctx.body = await d.builds.logs(ctx.params.id as string, q.after ?? 0, q.limit ?? 1000);
  });

  r.get('/hosts', async (ctx) => {
    ctx.body = { hosts: await listHosts(d.db, d.hostView) };
  });

  const host = async (id: string) => {
    const h = await getHostView(d.db, id, d.hostView);
    if (!h) throw notFound('host', id, 'list hosts with `a4c hosts`');
    return h;
  };
  r.get('/hosts/:id', async (ctx) => {
    ctx.body = await host(parse(schemas.hostId, ctx.params.id, 'hostId'));
  });

  for (const [action, draining] of [['drain', true], ['activate', false]] as const) {
    r.post(`/hosts/:id/${action}`, async (ctx) => {
      const id = parse(schemas.hostId, ctx.params.id, 'hostId');
      const found = await inTx(d.db, async (tx) => {
        if (!(await setDraining(tx, id, draining))) return false;
        await appendEvent(tx, { kind: draining ? 'host.drained' : 'host.activated', actor: ctx.state.actor, hostId: id });
        return true;
      });
      if (!found) throw notFound('host', id, 'list hosts with `a4c hosts`');
      ctx.body = await host(id);
    });
  }

  r.get('/users/:userId', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    const q = await d.quotas.view(d.db, userId);
    ctx.body = { id: userId, teamId: q.teamId };
  });

  r.put('/users/:userId', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    const body = parse(schemas.user, await readJson(ctx));
    await inTx(d.db, async (tx) => {
      await tx.query(
        `INSERT INTO users (id, team_id) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET team_id = EXCLUDED.team_id, updated_at = now()`,
        [userId, body.teamId],
      );
      await appendEvent(tx, { kind: 'user.updated', actor: ctx.state.actor, data: { userId, teamId: body.teamId } });
    });
    ctx.body = { id: userId, teamId: body.teamId };
  });

  r.get('/users/:userId/quota', async (ctx) => {
    ctx.body = await d.quotas.view(d.db, parse(schemas.userId, ctx.params.userId, 'userId'));
  });

  r.put('/users/:userId/quota', async (ctx) => {
    const userId = parse(schemas.userId, ctx.params.userId, 'userId');
    const body = parse(schemas.quota, await readJson(ctx));
    ctx.body = await d.quotas.setUser(userId, body);
  });

  r.get('/teams/:teamId/quota', async (ctx) => {
    ctx.body = await d.quotas.team(parse(schemas.teamId, ctx.params.teamId, 'teamId'));
  });

  r.put('/teams/:teamId/quota', async (ctx) => {
    const teamId = parse(schemas.teamId, ctx.params.teamId, 'teamId');
    const body = parse(schemas.quota, await readJson(ctx));
    ctx.body = await d.quotas.setTeam(teamId, body);
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
