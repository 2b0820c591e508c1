/**
 * The REST API from the browser: same origin, the token from sessionStorage in an
 * Authorization header on every call (no cookies, so no CSRF), errors as ApiError with
 * the envelope's message and suggestion.
 */

const TOKEN_KEY = 'a4c.token';
const VIA_KEY = 'a4c.token.via';

/** How the stored token was had: pasted, or from single sign-on (an ID token that expires). */
export type TokenVia = 'token' | 'sso';

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function tokenVia(): TokenVia {
  return sessionStorage.getItem(VIA_KEY) === 'sso' ? 'sso' : 'token';
}

export function setToken(token: string, via: TokenVia = 'token'): void {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(VIA_KEY, via);
}

export function clearToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(VIA_KEY);
}

/** Why the API refused the stored token, in words for the sign-in page. */
export function refusedTokenReason(): string {
  return tokenVia() === 'sso'
    ? 'Your single sign-on session expired (or was refused). Sign in again to continue.'
    : 'Your token was refused (expired or revoked); sign in again.';
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly suggestion?: string,
    readonly field?: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

interface ErrorEnvelope {
  error?: string;
  message?: string;
  suggestion?: string;
  field?: string;
  requestId?: string;
}

/** Listeners told when the server refuses the token (expired, revoked): the app signs out. */
const unauthorizedListeners = new Set<() => void>();
export function onUnauthorized(fn: () => void): () => void {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

export function authHeaders(token = getToken()): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export async function errorFromResponse(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let body: ErrorEnvelope = {};
  try {
    body = JSON.parse(text) as ErrorEnvelope;
  } catch {
    // not the API's envelope (a proxy, an HTML page): say what came back
  }
  return new ApiError(
    res.status,
    body.error ?? `HTTP_${res.status}`,
    body.message ?? (text.slice(0, 200) || res.statusText || `the control plane answered ${res.status}`),
    body.suggestion,
    body.field,
    body.requestId ?? res.headers.get('x-request-id') ?? undefined,
  );
}

export interface CallOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** A token to try instead of the stored one (sign-in). */
  token?: string;
}

export async function api<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...authHeaders(opts.token ?? getToken()) };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'NETWORK', 'the control plane did not answer', 'check that it is running and reachable, then try again');
  }
  if (!res.ok) {
    const err = await errorFromResponse(res);
    if (res.status === 401 && opts.token === undefined) unauthorizedListeners.forEach((fn) => fn());
    throw err;
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const get = <T>(path: string, signal?: AbortSignal) => api<T>('GET', path, { signal });
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, { body });
export const put = <T>(path: string, body?: unknown) => api<T>('PUT', path, { body });
export const del = <T>(path: string) => api<T>('DELETE', path);

/** A query string from the defined, non-empty values. */
export function qs(params: Record<string, string | number | boolean | undefined | null>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

/** True when the control plane has no such route (an API from a newer version). */
export function isMissingRoute(e: unknown): boolean {
  return e instanceof ApiError && e.status === 404 && /^no route for /.test(e.message);
}
