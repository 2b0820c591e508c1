import Router, { type RouterContext } from '@koa/router';
import { A4cError, notFound } from '@a4c/common';
import { issueToken, listTokens, revokeToken, type Policy } from '../auth/principals.js';
import type { BuildService } from '../builds/service.js';
import type { Quotas } from '../quotas/quotas.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { getHostView, listHosts, setDraining, type HostViewOptions } from '../store/hosts.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { readJson, type State } from './http.js';
import { parse, parseWait, schemas } from './validate.js';

export interface RouteDeps {
  db: Db;
  workspaces: WorkspaceService;
  builds: BuildService;
  quotas: Quotas;
  policy: Policy;
  maxWaitSeconds: number;
  hostView: HostViewOptions;
}

type Ctx = RouterContext<State>;

/**
 * The public REST API, /v1. Authentication runs before these routes; every handler
 * starts with its authorization check (Policy, auth/principals.ts): admin only, act for
 * a user (the user or an admin), or read a user's things (also their team's lead).
 */
export function v1Routes(d: RouteDeps): Router<State> {
  const r = new Router<State>({ prefix: '/v1' });
  const ws = d.workspaces;
  const can = d.policy;
  const userParam = (ctx: Ctx) => parse(schemas.userId, ctx.params.userId, 'userId');
  /** The workspace, if the caller may read it; 404 otherwise. */
  const readable = async (ctx: Ctx) => {
    const w = await ws.get(ctx.params.id as string);
    await can.read(ctx.state.principal, w.userId, 'workspace', w.id);
    return w;
  };
  /** The workspace, if the caller may change it; 404 if they may not even read it, 403 if only read. */
  const writable = async (ctx: Ctx) => {
    const w = await readable(ctx);
    if (ctx.state.principal.role !== 'admin' && ctx.state.principal.id !== w.userId) {
      throw new A4cError('PERMISSION_DENIED', `only ${w.userId} or an admin may change this workspace`);
    }
    return w;
  };
  /** Validates ?wait first, then acts: bad input must change nothing. */
  const settle = async <T extends { id: string }>(ctx: Ctx, status: number, act: () => Promise<T>) => {
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    const after = await act();
    ctx.status = status;
    ctx.body = wait ? await ws.waitSettled(after.id, wait) : after;
  };

  // ---- workspaces
  r.post('/users/:userId/workspaces', async (ctx) => {
    const userId = userParam(ctx);
    can.write(ctx.state.principal, userId);
    const wait = parseWait(ctx.query.wait, d.maxWaitSeconds);
    const body = parse(schemas.createWorkspace, await readJson(ctx));
    const created = await ws.create({ userId, ...body }, ctx.state.actor);
    ctx.status = 201;
    ctx.set('location', `/v1/workspaces/${created.id}`);
    ctx.body = wait ? await ws.waitSettled(created.id, wait) : created;
  });

  r.get('/users/:userId/workspaces', async (ctx) => {
    const userId = userParam(ctx);
    await can.read(ctx.state.principal, userId);
    ctx.body = { workspaces: await ws.listOfUser(userId, ctx.query.includeDeleted === 'true') };
  });

  r.get('/users/:userId/workspaces/:id', async (ctx) => {
    const userId = userParam(ctx);
    await can.read(ctx.state.principal, userId, 'workspace', ctx.params.id as string);
    ctx.body = await ws.getOwned(userId, ctx.params.id as string);
  });

  r.get('/workspaces/:id', async (ctx) => {
    ctx.body = await readable(ctx);
  });

  for (const action of ['stop', 'start', 'retry'] as const) {
    r.post(`/workspaces/:id/${action}`, async (ctx) => {
      await writable(ctx);
      await settle(ctx, 202, () => ws[action](ctx.params.id as string, ctx.state.actor));
    });
  }

  r.post('/workspaces/:id/approve', async (ctx) => {
    can.admin(ctx.state.principal);
    await settle(ctx, 202, () => ws.approve(ctx.params.id as string, ctx.state.actor));
  });

  r.post('/workspaces/:id/reject', async (ctx) => {
    can.admin(ctx.state.principal);
    const body = parse(schemas.reject, await readJson(ctx));
    ctx.body = await ws.reject(ctx.params.id as string, ctx.state.actor, body.reason);
  });

  const remove = async (ctx: Ctx, userId?: string) => {
    if (userId) {
      // The path names the owner: another user's workspace does not exist under it.
      const w = await readable(ctx);
      if (w.userId !== userId) throw notFound('workspace', w.id, 'list your workspaces with `a4c ws list`');
    }
    const w = await writable(ctx);
    await settle(ctx, 202, () => ws.delete(w.id, ctx.state.actor));
  };
  r.delete('/workspaces/:id', (ctx) => remove(ctx));
  r.delete('/users/:userId/workspaces/:id', (ctx) => remove(ctx, userParam(ctx)));

  // ---- image builds
  r.post('/users/:userId/image-schedules', async (ctx) => {
    const userId = userParam(ctx);
    can.write(ctx.state.principal, userId);
    const body = parse(schemas.scheduleBuild, await readJson(ctx));
    const b = await d.builds.schedule({ userId, ...body }, ctx.state.actor);
    ctx.status = 202;
    ctx.set('location', `/v1/image-schedules/${b.id}`);
    ctx.body = b;
  });

  r.get('/image-schedules', async (ctx) => {
    const q = parse(schemas.buildFilter, { ...ctx.query }, 'query');
    const p = ctx.state.principal;
    // Non-admins list their own builds, or (a lead) a team member's when they name one.
    const userId = p.role === 'admin' ? q.userId : (q.userId ?? p.id);
    if (userId) await can.read(p, userId);
    ctx.body = { builds: await d.builds.list({ ...q, userId, limit: q.limit ?? 100 }) };
  });

  r.get('/image-schedules/:id', async (ctx) => {
    const b = await d.builds.get(ctx.params.id as string);
    await can.read(ctx.state.principal, b.userId, 'image build', b.id);
    ctx.body = b;
  });

  r.get('/image-schedules/:id/logs', async (ctx) => {
    const q = parse(schemas.logQuery, { ...ctx.query }, 'query');
    const b = await d.builds.get(ctx.params.id as string);
    await can.read(ctx.state.principal, b.userId, 'image build', b.id);
    ctx.body = await d.builds.logs(b.id, q.after ?? 0, q.limit ?? 1000);
  });

  // ---- hosts: everyone may see them (where their workspaces run); only admins change them
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
      can.admin(ctx.state.principal);
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

  // ---- users and their tokens
  r.post('/users', async (ctx) => {
    can.admin(ctx.state.principal);
    const body = parse(schemas.newUser, await readJson(ctx));
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
  });

  r.get('/users', async (ctx) => {
    can.admin(ctx.state.principal);
    const { rows } = await d.db.query<{ id: string; team_id: string | null; role: string }>('SELECT id, team_id, role FROM users ORDER BY id LIMIT 10000');
    ctx.body = { users: rows.map((u) => ({ id: u.id, teamId: u.team_id, role: u.role })) };
  });

  r.get('/users/:userId', async (ctx) => {
    const userId = userParam(ctx);
    await can.read(ctx.state.principal, userId);
    ctx.body = await userView(d.db, userId);
  });

  r.put('/users/:userId', async (ctx) => {
    can.admin(ctx.state.principal);
    const userId = userParam(ctx);
    const body = parse(schemas.user, await readJson(ctx));
    await inTx(d.db, async (tx) => {
      await tx.query(
        `INSERT INTO users (id, team_id, role) VALUES ($1, $2, COALESCE($3, 'user'))
         ON CONFLICT (id) DO UPDATE SET team_id = CASE WHEN $4 THEN EXCLUDED.team_id ELSE users.team_id END,
                                        role = COALESCE($3, users.role), updated_at = now()`,
        [userId, body.teamId ?? null, body.role ?? null, body.teamId !== undefined],
      );
      await appendEvent(tx, { kind: 'user.updated', actor: ctx.state.actor, data: { userId, ...body } });
    });
    ctx.body = await userView(d.db, userId);
  });

  r.post('/users/:userId/tokens', async (ctx) => {
    const userId = userParam(ctx);
    can.write(ctx.state.principal, userId);
    const body = parse(schemas.newToken, await readJson(ctx));
    ctx.status = 201;
    ctx.body = await issueToken(d.db, userId, body.name, body.ttlSeconds);
  });

  r.get('/users/:userId/tokens', async (ctx) => {
    const userId = userParam(ctx);
    can.write(ctx.state.principal, userId);
    ctx.body = { tokens: await listTokens(d.db, userId) };
  });

  r.delete('/users/:userId/tokens/:tokenId', async (ctx) => {
    const userId = userParam(ctx);
    can.write(ctx.state.principal, userId);
    ctx.body = await revokeToken(d.db, userId, ctx.params.tokenId as string);
  });

  // ---- quotas: users and their leads read them; admins set them
  r.get('/users/:userId/quota', async (ctx) => {
    const userId = userParam(ctx);
    await can.read(ctx.state.principal, userId);
    ctx.body = await d.quotas.view(d.db, userId);
  });

  r.put('/users/:userId/quota', async (ctx) => {
    can.admin(ctx.state.principal);
    const userId = userParam(ctx);
    const body = parse(schemas.quota, await readJson(ctx));
    ctx.body = await d.quotas.setUser(userId, body);
  });

  r.get('/teams/:teamId/quota', async (ctx) => {
    const teamId = parse(schemas.teamId, ctx.params.teamId, 'teamId');
    const p = ctx.state.principal;
    if (p.role !== 'admin' && !(p.role === 'lead' && p.teamId === teamId)) throw notFound('team', teamId);
    ctx.body = await d.quotas.team(teamId);
  });

  r.put('/teams/:teamId/quota', async (ctx) => {
    can.admin(ctx.state.principal);
    const teamId = parse(schemas.teamId, ctx.params.teamId, 'teamId');
    const body = parse(schemas.quota, await readJson(ctx));
    ctx.body = await d.quotas.setTeam(teamId, body);
  });

  // ---- the audit log (admins)
  r.get('/audit', async (ctx) => {
    can.admin(ctx.state.principal);
    const q = parse(schemas.auditQuery, { ...ctx.query }, 'query');
    const { rows } = await d.db.query<{ id: number; at: Date; request_id: string; actor: string; action: string; target: string; outcome: number; error: string | null }>(
      `SELECT * FROM audit_log WHERE ($1::text IS NULL OR actor = $1) AND ($2::bigint IS NULL OR id > $2)
        ORDER BY id DESC LIMIT $3`,
      [q.actor ?? null, q.after ?? null, q.limit ?? 100],
    );
    ctx.body = {
      entries: rows.map((e) => ({ id: e.id, at: e.at.toISOString(), requestId: e.request_id, actor: e.actor, action: e.action, target: e.target, outcome: e.outcome, error: e.error })),
    };
  });

  return r;
}

async function userView(db: Db, id: string): Promise<{ id: string; teamId: string | null; role: string }> {
  const { rows } = await db.query<{ team_id: string | null; role: string }>('SELECT team_id, role FROM users WHERE id = $1', [id]);
  // A user who has only ever been named in a request has no row yet: a plain user.
  return { id, teamId: rows[0]?.team_id ?? null, role: rows[0]?.role ?? 'user' };
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
