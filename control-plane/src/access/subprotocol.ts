/** The subprotocol every access WebSocket speaks; browsers also offer their token as `a4c.bearer.<base64url>`. */
export const SUBPROTOCOL = 'a4c.v1';
export const BEARER_PROTOCOL_PREFIX = 'a4c.bearer.';

/** The bearer token a browser offers as a subprotocol (it cannot set headers on a WebSocket). */
export function tokenFromSubprotocols(header: string): string | undefined {
  for (const p of header.split(',').map((s) => s.trim())) {
    if (p.startsWith(BEARER_PROTOCOL_PREFIX)) {
      const raw = p.slice(BEARER_PROTOCOL_PREFIX.length);
      if (!/^[A-Za-z0-9_-]+$/.test(raw)) return undefined;
      return Buffer.from(raw, 'base64url').toString('utf8');
    }
  }
  return undefined;
}
