import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Koa from 'koa';
import type { Logger } from '@a4c/common';
import type { State } from '../api/http.js';
import { tokenEndpointOrigin, type BrowserSignInSettings } from '../auth/oidc-browser.js';

/** Where `npm run build` puts the dashboard: ui/dist beside control-plane/ in the checkout or the install prefix. */
export const DEFAULT_UI_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../ui/dist');

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.woff2': 'font/woff2',
  '.png': 'image/png',
  '.txt': 'text/plain; charset=utf-8',
};

/** Asset names as the bundler writes them: a name, a content hash, an extension. Nothing else is served. */
const ASSET = /^\/ui\/assets\/([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.(?:js|css|map|svg|woff2|png|txt))$/;

/**
 * The policy of every dashboard page. Scripts only from this origin. Styles from this
 * origin, plus <style> elements carrying this response's nonce: xterm.js makes a few
 * at run time (its cell sizes and theme), and the app stamps the nonce on them as they
 * are created (ui/src/lib/csp-nonce.ts) — no 'unsafe-inline' anywhere. connect-src
 * 'self' covers the API, the events stream and the exec WebSocket (same origin); with
 * single sign-on, also the identity provider's token endpoint (the browser exchanges
 * its code there), and no other origin.
 */
export function contentSecurityPolicy(nonce: string, tokenOrigin?: string): string {
  return [
    "default-src 'none'",
    "script-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    "img-src 'self' data:",
    "font-src 'self'",
    tokenOrigin ? `connect-src 'self' ${tokenOrigin}` : "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

function securityHeaders(ctx: Koa.Context): void {
  ctx.set('x-content-type-options', 'nosniff');
  ctx.set('referrer-policy', 'no-referrer');
  ctx.set('cross-origin-opener-policy', 'same-origin');
  ctx.set('cross-origin-resource-policy', 'same-origin');
}

/**
 * Serves the web dashboard at /ui/ from the bundle `npm run build` made: hashed assets
 * under /ui/assets/ cached for a year (their names change with their content), and
 * index.html, never cached, for every other /ui/ path so that deep links work (the app
 * routes in the browser). `/` and `/ui` redirect to `/ui/`. Without a bundle the
 * control plane still runs and /ui/ says how to build it.
 */
export function serveUi(dir: string, log: Logger, sso?: BrowserSignInSettings): Koa.Middleware<State> {
  let warned = false;
  return async (ctx, next) => {
    const p = ctx.path;
    if (p !== '/' && p !== '/ui' && !p.startsWith('/ui/')) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (p === '/' || p === '/ui') {
      ctx.redirect('/ui/');
      return;
    }
    securityHeaders(ctx);
    const asset = ASSET.exec(p);
    if (asset) {
      const file = path.join(dir, 'assets', asset[1] as string);
      const body = await readFile(file).catch(() => undefined);
      if (!body) {
        ctx.status = 404;
        ctx.type = 'text/plain; charset=utf-8';
        ctx.set('cache-control', 'no-store');
        ctx.body = `no dashboard asset ${asset[1]}: reload the page (the dashboard may have been rebuilt)\n`;
        return;
      }
      ctx.type = TYPES[path.extname(file)] ?? 'application/octet-stream';
      ctx.set('cache-control', 'public, max-age=31536000, immutable');
      ctx.body = body;
      return;
    }
    if (p.startsWith('/ui/assets/')) {
      ctx.status = 404;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = 'no such dashboard asset\n';
      return;
    }
    const html = await readFile(path.join(dir, 'index.html'), 'utf8').catch(() => undefined);
    ctx.set('cache-control', 'no-store');
    if (html === undefined) {
      if (!warned) log.warn({ dir }, 'the web dashboard was not built: /ui/ answers 503 until `npm run build` is run');
      warned = true;
      ctx.status = 503;
      ctx.type = 'text/plain; charset=utf-8';
      ctx.set('content-security-policy', "default-src 'none'");
      ctx.body = `The A4C web dashboard was not built.\n\nRun \`npm run build\` in the A4C checkout (it bundles ui/ into ${dir}), then reload this page.\nThe REST API under /v1 works without it.\n`;
      return;
    }
    const nonce = randomBytes(18).toString('base64');
    // Unknown yet (discovery failed): the page says so from /v1/auth/config, and a reload retries.
    const signIn = sso && (await sso.get().catch(() => undefined));
    ctx.set('content-security-policy', contentSecurityPolicy(nonce, signIn && tokenEndpointOrigin(signIn)));
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = html.replaceAll('__CSP_NONCE__', nonce);
  };
}
