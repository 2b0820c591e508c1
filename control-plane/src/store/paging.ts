import { invalidArgument } from '@a4c/common';

/**
 * Keyset paging: a page ends at a row, and the next page starts after that row's sort
 * key and id. Stable while rows are added or change, unlike offsets. The cursor is
 * opaque to clients: base64url of [sort key as PostgreSQL text, id].
 */
export interface PageKey {
  key: string;
  id: string;
  /** The listing's mode, when it has more than one (fleet search: near misses instead of substrings). */
  mode?: string | undefined;
}

export function encodePageCursor(k: PageKey): string {
  return Buffer.from(JSON.stringify(k.mode ? [k.key, k.id, k.mode] : [k.key, k.id])).toString('base64url');
}

export function decodePageCursor(s: string): PageKey {
  try {
    const v: unknown = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    if (
      Array.isArray(v) &&
      (v.length === 2 || (v.length === 3 && typeof v[2] === 'string' && v[2].length <= 16)) &&
      typeof v[0] === 'string' &&
      typeof v[1] === 'string' &&
      v[0].length <= 64 &&
      /^[0-9a-f-]{36}$/.test(v[1])
    ) {
      return { key: v[0], id: v[1], mode: v[2] as string | undefined };
    }
  } catch {
    // refused below
  }
  throw invalidArgument('cursor', 'is not a cursor this listing gave out; pass nextCursor of the previous page unchanged');
}

/** A LIKE pattern matching text containing s anywhere, case-insensitively (s lowercased, wildcards escaped). */
export function containsPattern(s: string): string {
  return `%${s.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}
