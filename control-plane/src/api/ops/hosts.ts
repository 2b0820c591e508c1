import { notFound } from '@a4c/common';
import type { Drainer } from '../../drains/drainer.js';
import { latestDrainView } from '../../store/drains.js';
import { getHostView, listHosts } from '../../store/hosts.js';
import * as ms from '../move-schemas.js';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

const HOSTS = 'Hosts';

/** Hosts: everyone may see them (where their workspaces run); only admins change them. */
export function hostOperations(d: Pick<RouteDeps, 'db' | 'hostView'> & { drainer: Drainer; drainParallelism: number }): Operation[] {
  const host = async (id: string) => {
    const h = await getHostView(d.db, id, d.hostView);
    if (!h) throw notFound('host', id, 'list hosts with `a4c hosts`');
    return { ...h, drain: await latestDrainView(d.db, id) };
  };
  return [
    op({
      method: 'get',
      path: '/v1/hosts',
      operationId: 'listHosts',
      summary: 'List hosts',
      tag: HOSTS,
      access: 'anyone',
      responses: { 200: { description: 'Every host with capacity, reservations and latest stats', schema: s.list('hosts', s.host) } },
      handle: async (ctx) => {
        ctx.body = { hosts: await listHosts(d.db, d.hostView) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/hosts/{id}',
      operationId: 'getHost',
      summary: 'Get a host',
      tag: HOSTS,
      access: 'anyone',
      params: s.params.hostId,
      responses: { 200: { description: 'The host, with its latest drain', schema: ms.hostWithDrain } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await host(params.id);
      },
    }),
    op({
      method: 'post',
      path: '/v1/hosts/{id}/drain',
      operationId: 'drainHost',
      summary: 'Drain a host: nothing new is placed there',
      description:
        'With migrate, its workspaces are moved to other hosts (with their files), `parallelism` at a time; with deadlineSeconds, ' +
        'whatever still runs there at the deadline is stopped. Owners get a workspace.drain_notice event. Draining again changes the open drain.',
      tag: HOSTS,
      access: 'admin',
      params: s.params.hostId,
      body: ms.drainRequest,
      responses: { 200: { description: 'The host, with its drain', schema: ms.hostWithDrain } },
      errors: [403, 404],
      handle: async (ctx, { params, body }) => {
        await d.drainer.drain({
          hostId: params.id,
          actor: ctx.state.actor,
          migrate: body.migrate ?? false,
          parallelism: body.parallelism ?? d.drainParallelism,
          deadlineSeconds: body.deadlineSeconds,
        });
        ctx.body = await host(params.id);
      },
    }),
    op({
      method: 'post',
      path: '/v1/hosts/{id}/activate',
      operationId: 'activateHost',
      summary: 'Activate a drained host',
      description: 'Its open drain, if any, is cancelled; moves already under way finish.',
      tag: HOSTS,
      access: 'admin',
      params: s.params.hostId,
      responses: { 200: { description: 'The host', schema: ms.hostWithDrain } },
      errors: [403, 404],
      handle: async (ctx, { params }) => {
        await d.drainer.activate(params.id, ctx.state.actor);
        ctx.body = await host(params.id);
      },
    }),
  ];
}
