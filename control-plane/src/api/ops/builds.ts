import { A4cError } from '@a4c/common';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

const BUILDS = 'Image builds';

/** Image builds: schedule, list, read, and read the log. */
export function buildOperations(d: Pick<RouteDeps, 'builds' | 'policy'>): Operation[] {
  const can = d.policy;
  return [
    op({
      method: 'post',
      path: '/v1/users/{userId}/image-schedules',
      operationId: 'scheduleBuild',
      summary: 'Schedule an image build',
      description: 'An agent of the arch claims it, builds the project image and reports progress and logs.',
      tag: BUILDS,
      access: 'self',
      params: s.params.userId,
      body: s.requests.scheduleBuild,
      responses: { 202: { description: 'SCHEDULED', schema: s.build, headers: { Location: 'the build' } } },
      errors: [404],
      handle: async (ctx, { params, body }) => {
        const b = await d.builds.schedule({ userId: params.userId, ...body }, ctx.state.actor);
        ctx.status = 202;
        ctx.set('location', `/v1/image-schedules/${b.id}`);
        ctx.body = b;
      },
    }),
    op({
      method: 'get',
      path: '/v1/image-schedules',
      operationId: 'listBuilds',
      summary: 'List image builds',
      description:
        "Non-admins list their own builds, or (a lead) a team member's when they name one with userId. " +
        'hostId: builds that host claimed; q: text in the error or the log lines. Newest first, a page at a time: pass nextCursor as cursor.',
      tag: BUILDS,
      access: 'anyone',
      query: s.requests.buildFilter,
      responses: { 200: { description: 'Newest first', schema: s.page('builds', s.build) } },
      errors: [404],
      handle: async (ctx, { query }) => {
        const p = ctx.state.principal;
        const userId = p.role === 'admin' ? query.userId : (query.userId ?? p.id);
        if (userId) await can.read(p, userId);
        ctx.body = await d.builds.list({ ...query, userId, limit: query.limit ?? 100 });
      },
    }),
    op({
      method: 'get',
      path: '/v1/image-schedules/{id}',
      operationId: 'getBuild',
      summary: 'Get an image build',
      tag: BUILDS,
      access: 'owner',
      params: s.params.build,
      responses: { 200: { description: 'The build with its last log lines', schema: s.build } },
      errors: [404],
      handle: async (ctx, { params }) => {
        const b = await d.builds.get(params.id);
        await can.read(ctx.state.principal, b.userId, 'image build', b.id);
        ctx.body = b;
      },
    }),
    op({
      method: 'post',
      path: '/v1/image-schedules/{id}/cancel',
      operationId: 'cancelBuild',
      summary: 'Cancel an image build',
      description:
        'A SCHEDULED build never runs; an IN_PROGRESS one is stopped on its host (the agent stops the Docker build). ' +
        'The build becomes CANCELLED with a build.cancelled event. Cancelling a cancelled build changes nothing (200); a COMPLETED or FAILED one: 409.',
      tag: BUILDS,
      access: 'owner',
      params: s.params.build,
      responses: { 200: { description: 'CANCELLED', schema: s.build } },
      errors: [403, 404, 409],
      handle: async (ctx, { params }) => {
        const b = await d.builds.get(params.id);
        const p = ctx.state.principal;
        await can.read(p, b.userId, 'image build', b.id);
        if (p.role !== 'admin' && p.id !== b.userId) {
          throw new A4cError('PERMISSION_DENIED', `only ${b.userId} or an admin may cancel this build`, { suggestion: `ask ${b.userId} or an admin` });
        }
        ctx.body = await d.builds.cancel(b.id, ctx.state.actor);
      },
    }),
    op({
      method: 'get',
      path: '/v1/image-schedules/{id}/logs',
      operationId: 'getBuildLogs',
      summary: "Read an image build's log",
      description: 'Follow a build by asking again with after set to the last seq seen.',
      tag: BUILDS,
      access: 'owner',
      params: s.params.build,
      query: s.requests.logQuery,
      responses: { 200: { description: 'Log lines in order', schema: s.buildLogs } },
      errors: [404],
      handle: async (ctx, { params, query }) => {
        const b = await d.builds.get(params.id);
        await can.read(ctx.state.principal, b.userId, 'image build', b.id);
        ctx.body = await d.builds.logs(b.id, query.after ?? 0, query.limit ?? 1000);
      },
    }),
  ];
}
