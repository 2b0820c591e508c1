import { listAudit } from '../../store/audit.js';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

/** The audit log: one row per mutating call (admins). */
export function auditOperations(d: Pick<RouteDeps, 'db'>): Operation[] {
  return [
    op({
      method: 'get',
      path: '/v1/audit',
      operationId: 'listAudit',
      summary: 'Read the audit log: one row per mutating call, newest first',
      tag: 'Audit',
      access: 'admin',
      query: s.requests.auditQuery,
      responses: { 200: { description: 'Entries', schema: s.list('entries', s.auditEntry) } },
      errors: [403],
      handle: async (ctx, { query }) => {
        ctx.body = { entries: await listAudit(d.db, { actor: query.actor, after: query.after, limit: query.limit ?? 100 }) };
      },
    }),
  ];
}
