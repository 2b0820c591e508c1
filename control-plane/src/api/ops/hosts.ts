import { notFound } from '@a4c/common';
import { getHostView, listHosts, setDraining } from '../../store/hosts.js';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

const HOSTS = 'Hosts';

/** Hosts: everyone may see them (where their workspaces run); only admins change them. */
export function hostOperations(d: Pick<RouteDeps, 'db' | 'hostView'>): Operation[] {
  const host = async (id: string) => {
    const h = await getHostView(d.db, id, d.hostView);
    if (!h) throw notFound('host', id, 'list hosts with `a4c hosts`');
    return h;
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
      responses: { 200: { description: 'The host', schema: s.host } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await host(params.id);
      },
    }),
    ...([['drain', true], ['activate', false]] as const).map(([action, draining]) =>
      op({
        method: 'post',
        path: `/v1/hosts/{id}/${action}`,
        operationId: `${action}Host`,
        summary: draining ? 'Drain a host: nothing new is placed there' : 'Activate a drained host',
        tag: HOSTS,
        access: 'admin',
        params: s.params.hostId,
        responses: { 200: { description: 'The host', schema: s.host } },
        errors: [403, 404],
        handle: async (ctx, { params }) => {
          if (!(await setDraining(d.db, params.id, draining, ctx.state.actor))) throw notFound('host', params.id, 'list hosts with `a4c hosts`');
          ctx.body = await host(params.id);
        },
      }),
    ),
  ];
}
