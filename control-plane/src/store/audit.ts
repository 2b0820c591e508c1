import type { Db } from './db.js';

export interface AuditEntry {
  id: number;
  at: string;
  requestId: string;
  actor: string;
  action: string;
  target: string;
  outcome: number;
  error: string | null;
}

export async function recordAudit(db: Db, e: Omit<AuditEntry, 'id' | 'at'>): Promise<void> {
  await db.query('INSERT INTO audit_log (request_id, actor, action, target, outcome, error) VALUES ($1, $2, $3, $4, $5, $6)', [
    e.requestId,
    e.actor,
    e.action,
    e.target,
    e.outcome,
    e.error,
  ]);
}

/** Many entries in one statement (the API's audit middleware groups concurrent requests' rows). */
export async function recordAudits(db: Db, es: Omit<AuditEntry, 'id' | 'at'>[]): Promise<void> {
  await db.query(
    `INSERT INTO audit_log (request_id, actor, action, target, outcome, error)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[])`,
    [es.map((e) => e.requestId), es.map((e) => e.actor), es.map((e) => e.action), es.map((e) => e.target), es.map((e) => e.outcome), es.map((e) => e.error)],
  );
}

/** Newest first; `after` keeps only entries with a larger id. */
export async function listAudit(db: Db, q: { actor?: string | undefined; after?: number | undefined; limit: number }): Promise<AuditEntry[]> {
  const { rows } = await db.query<{ id: string; at: Date; request_id: string; actor: string; action: string; target: string; outcome: number; error: string | null }>(
    `SELECT * FROM audit_log WHERE ($1::text IS NULL OR actor = $1) AND ($2::bigint IS NULL OR id > $2)
      ORDER BY id DESC LIMIT $3`,
    [q.actor ?? null, q.after ?? null, q.limit],
  );
  return rows.map((e) => ({ id: Number(e.id), at: e.at.toISOString(), requestId: e.request_id, actor: e.actor, action: e.action, target: e.target, outcome: e.outcome, error: e.error }));
}
