import { notFound } from '@a4c/common';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

const QUOTAS = 'Quotas';

/** Quotas: users and their leads read them; admins set them. */
export function quotaOperations(d: Pick<RouteDeps, 'db' | 'quotas'>): Operation[] {
  return [
    op({
      method: 'get',
      path: '/v1/users/{userId}/quota',
      operationId: 'getUserQuota',
      summary: "A user's quota: limits, where each comes from, and usage",
      tag: QUOTAS,
      access: 'self-or-lead',
      params: s.params.userId,
      responses: { 200: { description: 'The quota', schema: s.userQuota } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await d.quotas.view(d.db, params.userId);
      },
    }),
    op({
      method: 'put',
      path: '/v1/users/{userId}/quota',
      operationId: 'putUserQuota',
      summary: "Set a user's quota overrides (null: inherit)",
      tag: QUOTAS,
      access: 'admin',
      params: s.params.userId,
      body: s.requests.quota,
      responses: { 200: { description: 'The quota', schema: s.userQuota } },
      errors: [403],
      handle: async (ctx, { params, body }) => {
        ctx.body = await d.quotas.setUser(params.userId, body, ctx.state.actor);
      },
    }),
    op({
      method: 'get',
      path: '/v1/teams/{teamId}/quota',
      operationId: 'getTeamQuota',
      summary: "A team's default quota",
      description: 'Admins, and the lead of that team.',
      tag: QUOTAS,
      access: 'owner',
      params: s.params.teamId,
      responses: { 200: { description: 'The team quota', schema: s.teamQuota } },
      errors: [404],
      handle: async (ctx, { params }) => {
        const p = ctx.state.principal;
        if (p.role !== 'admin' && !(p.role === 'lead' && p.teamId === params.teamId)) throw notFound('team', params.teamId);
        ctx.body = await d.quotas.team(params.teamId);
      },
    }),
    op({
      method: 'put',
      path: '/v1/teams/{teamId}/quota',
      operationId: 'putTeamQuota',
      summary: "Set a team's default quota (null: the control plane's default)",
      tag: QUOTAS,
      access: 'admin',
      params: s.params.teamId,
      body: s.requests.quota,
      responses: { 200: { description: 'The team quota', schema: s.teamQuota } },
      errors: [403],
      handle: async (ctx, { params, body }) => {
        ctx.body = await d.quotas.setTeam(params.teamId, body, ctx.state.actor);
      },
    }),
  ];
}
