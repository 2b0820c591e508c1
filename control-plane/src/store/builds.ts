import type { Arch, BuildStatus } from '@a4c/common';
import type { BuildRow } from '../builds/queue.js';
import type { Db } from './db.js';
import { containsPattern, decodePageCursor, encodePageCursor } from './paging.js';

export interface BuildQuery {
  status?: BuildStatus | undefined;
  project?: string | undefined;
  arch?: Arch | undefined;
  userId?: string | undefined;
  /** The host that claimed the build. */
  hostId?: string | undefined;
  /** Text in the error or in a log line (substring, case-insensitive; trigram-indexed, migration 021). */
  q?: string | undefined;
  limit: number;
  cursor?: string | undefined;
}

/** Builds matching the filters, newest first, a page at a time (keyset: see paging.ts). */
export async function searchBuilds(db: Db, f: BuildQuery): Promise<{ rows: BuildRow[]; nextCursor: string | null }> {
  const params: unknown[] = [];
  const p = (v: unknown) => `$${params.push(v)}`;
  const where: string[] = ['true'];
  if (f.status) where.push(`b.status = ${p(f.status)}`);
  if (f.project) where.push(`b.project = ${p(f.project)}`);
  if (f.arch) where.push(`b.arch = ${p(f.arch)}`);
  if (f.userId) where.push(`b.user_id = ${p(f.userId)}`);
  if (f.hostId) where.push(`b.worker_host_id = ${p(f.hostId)}`);
  if (f.q) {
    const pat = p(containsPattern(f.q));
    where.push(`(lower(b.error) LIKE ${pat} OR b.id IN (SELECT l.build_id FROM build_logs l WHERE lower(l.line) LIKE ${pat}))`);
  }
  if (f.cursor) {
    const c = decodePageCursor(f.cursor);
    where.push(`(b.created_at, b.id) < (${p(c.key)}::timestamptz, ${p(c.id)}::uuid)`);
  }
  // Planned for each call, like the fleet search (store/fleet.ts).
  const { rows } = await db.query<BuildRow & { page_key: string }>({
    text: `SELECT b.*, b.created_at::text AS page_key FROM image_builds b
            WHERE ${where.join(' AND ')}
            ORDER BY b.created_at DESC, b.id DESC LIMIT ${p(f.limit + 1)}`,
    values: params,
  });
  const more = rows.length > f.limit;
  const page = rows.slice(0, f.limit);
  const last = page[page.length - 1];
  return { rows: page, nextCursor: more && last ? encodePageCursor({ key: last.page_key, id: last.id }) : null };
}
