import { createHash, timingSafeEqual } from 'node:crypto';
import type Koa from 'koa';
import { A4cError } from '@a4c/common';
import type { State } from '../api/http.js';
import type { ControlPlaneMetrics } from './registry.js';

export const METRICS_PATH = '/metrics';

/** The label of requests that match no route: their raw paths would make a series each. */
export const UNMATCHED = 'unmatched';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** A route as the operations table declares it: `/v1/workspaces/{id}`. */
export interface RouteTemplate {
  method: string;
  path: string;
}

/**
 * Finds the route template of a request from the operations table, for requests the
 * router never matched (refused before it ran: no token, rate limited, shed). Among
 * templates matching the path, the one for the request's method and with the most
 * literal segments wins, as a reader would expect.
 */
export function routeMatcher(routes: readonly RouteTemplate[]): (method: string, path: string) => string {
  const compiled = routes.map((r) => {
    const segments = r.path.split('/');
    const pattern = segments.map((s) => (/^\{\w+\}$/.test(s) ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
    return { method: r.method.toUpperCase(), path: r.path, re: new RegExp(`^${pattern}/?$`), literals: segments.filter((s) => !s.startsWith('{')).length };
  });
  return (method, path) => {
    let best: (typeof compiled)[number] | undefined;
    let bestScore = -1;
    for (const c of compiled) {
      if (!c.re.test(path)) continue;
      const score = c.literals * 2 + (c.method === method || (method === 'HEAD' && c.method === 'GET') ? 1 : 0);
      if (score > bestScore) {
        best = c;
        bestScore = score;
      }
    }
    return best?.path ?? UNMATCHED;
  };
}

/**
 * Outermost middleware: times every request and counts the ones answered 400 or more,
 * labelled with the route template (from the router when it matched, else from the
 * table), the method and the status the error handler settled on.
 */
export function httpMetrics(metrics: ControlPlaneMetrics, routes: readonly RouteTemplate[]): Koa.Middleware<State> {
  const match = routeMatcher(routes);
  return async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      const matched = (ctx as unknown as { _matchedRoute?: unknown })._matchedRoute;
      const route = typeof matched === 'string' ? matched.replace(/:(\w+)/g, '{$1}') : match(ctx.method, ctx.path);
      const method = METHODS.has(ctx.method) ? ctx.method : 'OTHER';
      const code = String(ctx.status);
      metrics.requestSeconds.observe({ route, method, code }, (performance.now() - started) / 1000);
      if (ctx.status >= 400) metrics.requestErrors.inc({ route, code });
    }
  };
}

/**
 * GET /metrics. Open like the probes, or, with a scrape token configured, only for
 * `Authorization: Bearer <token>` (compared in constant time). Never shed: it is
 * mounted before the load shedder, since an overloaded control plane is when the
 * numbers matter.
 */
export function metricsEndpoint(metrics: ControlPlaneMetrics, scrapeToken: string | undefined): Koa.Middleware<State> {
  const want = scrapeToken === undefined ? undefined : digest(scrapeToken);
  return async (ctx, next) => {
    if (ctx.path !== METRICS_PATH) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      ctx.set('allow', 'GET, HEAD');
      throw new A4cError('METHOD_NOT_ALLOWED', `${ctx.method} ${METRICS_PATH} is not allowed; use GET`);
    }
    if (want) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(ctx.get('authorization'));
      if (!m || !timingSafeEqual(digest(m[1] as string), want)) {
        throw new A4cError('UNAUTHENTICATED', m ? 'wrong scrape token for /metrics' : 'missing bearer token: /metrics needs the scrape token', {
          suggestion: 'configure the scrape with "authorization: { credentials: <A4C_METRICS_TOKEN> }" (Prometheus sends it as a bearer token)',
        });
      }
    }
    const { contentType, body } = await metrics.scrape();
    ctx.set('cache-control', 'no-store');
    ctx.type = contentType;
    ctx.body = body;
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
