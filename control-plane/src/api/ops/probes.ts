import { z } from 'zod';
import { A4cError } from '@a4c/common';
import { ping, type Db } from '../../store/db.js';
import { op, type Operation } from '../operation.js';

/** Unauthenticated probes for load balancers and systemd, and the API's own description. */
export function probeOperations(db: Db, document: () => unknown, draining: () => boolean = () => false): Operation[] {
  const status = z.strictObject({ status: z.string(), database: z.string().optional() });
  return [
    op({
      method: 'get',
      path: '/healthz',
      operationId: 'healthz',
      summary: 'Liveness: the process answers',
      tag: 'Probes',
      access: 'public',
      responses: { 200: { description: 'Alive', schema: status } },
      handle: (ctx) => {
        ctx.body = { status: 'ok' };
      },
    }),
    op({
      method: 'get',
      path: '/readyz',
      operationId: 'readyz',
      summary: 'Readiness: the database answers and this replica is not shutting down (503 while draining)',
      tag: 'Probes',
      access: 'public',
      responses: { 200: { description: 'Ready', schema: status } },
      errors: [503],
      handle: async (ctx) => {
        if (draining()) {
          throw new A4cError('UNAVAILABLE', 'this control-plane replica is shutting down (draining)', { suggestion: 'send requests to another replica; a load balancer checking /readyz takes this one out of rotation' });
        }
        try {
          await ping(db);
          ctx.body = { status: 'ready', database: 'ok' };
        } catch (e) {
          throw new A4cError('UNAVAILABLE', `database unreachable: ${(e as Error).message}`, { suggestion: 'check DATABASE_URL and that PostgreSQL runs' });
        }
      },
    }),
    op({
      method: 'get',
      path: '/v1/openapi.json',
      operationId: 'openapi',
      summary: 'This API, as an OpenAPI 3.1 document',
      tag: 'Probes',
      access: 'public',
      responses: { 200: { description: 'The document' } },
      handle: (ctx) => {
        ctx.body = document();
      },
    }),
  ];
}
