import { A4cError } from '@a4c/common';
import { issueToken, listTokens, revokeToken } from '../../auth/principals.js';
import { createUser, getUser, listUsers, putUser } from '../../store/users.js';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

const USERS = 'Users and tokens';

/** Users (admins create and change them) and their API tokens. */
export function userOperations(d: Pick<RouteDeps, 'db'>): Operation[] {
  return [
    op({
      method: 'post',
      path: '/v1/users',
      operationId: 'createUser',
      summary: 'Create a user',
      tag: USERS,
      access: 'admin',
      body: s.requests.newUser,
      responses: { 201: { description: 'The user', schema: s.user } },
      errors: [403, 409],
      handle: async (ctx, { body }) => {
        const created = await createUser(d.db, { id: body.id, teamId: body.teamId ?? null, role: body.role ?? 'user' }, ctx.state.actor);
        if (!created) throw new A4cError('CONFLICT', `user ${body.id} already exists`, { suggestion: `change it with PUT /v1/users/${body.id}` });
        ctx.status = 201;
        ctx.body = await getUser(d.db, body.id);
      },
    }),
    op({
      method: 'get',
      path: '/v1/users',
      operationId: 'listUsers',
      summary: 'List users',
      tag: USERS,
      access: 'admin',
      responses: { 200: { description: 'Users by id', schema: s.list('users', s.user) } },
      errors: [403],
      handle: async (ctx) => {
        ctx.body = { users: await listUsers(d.db) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}',
      operationId: 'getUser',
      summary: 'Get a user',
      description: 'A user never created explicitly but named in a request shows as a plain user.',
      tag: USERS,
      access: 'self-or-lead',
      params: s.params.userId,
      responses: { 200: { description: 'The user', schema: s.user } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await getUser(d.db, params.userId);
      },
    }),
    op({
      method: 'put',
      path: '/v1/users/{userId}',
      operationId: 'putUser',
      summary: "Create or change a user's team and role",
      tag: USERS,
      access: 'admin',
      params: s.params.newUserId,
      body: s.requests.user,
      responses: { 200: { description: 'The user', schema: s.user } },
      errors: [403],
      handle: async (ctx, { params, body }) => {
        await putUser(d.db, params.userId, body, ctx.state.actor);
        ctx.body = await getUser(d.db, params.userId);
      },
    }),
    op({
      method: 'post',
      path: '/v1/users/{userId}/tokens',
      operationId: 'issueToken',
      summary: 'Issue an API token',
      description: 'The token is in the answer once and never again; only its hash is kept.',
      tag: USERS,
      access: 'self',
      params: s.params.userId,
      body: s.requests.newToken,
      responses: { 201: { description: 'The token, with its secret', schema: s.issuedToken } },
      errors: [404],
      handle: async (ctx, { params, body }) => {
        ctx.status = 201;
        ctx.set('cache-control', 'no-store');
        ctx.body = await issueToken(d.db, params.userId, body.name, body.ttlSeconds, ctx.state.actor);
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}/tokens',
      operationId: 'listTokens',
      summary: "List a user's API tokens (never their secrets)",
      tag: USERS,
      access: 'self',
      params: s.params.userId,
      responses: { 200: { description: 'The tokens', schema: s.list('tokens', s.token) } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = { tokens: await listTokens(d.db, params.userId) };
      },
    }),
    op({
      method: 'delete',
      path: '/v1/users/{userId}/tokens/{tokenId}',
      operationId: 'revokeToken',
      summary: 'Revoke an API token',
      description: 'Takes effect on the next request. Idempotent.',
      tag: USERS,
      access: 'self',
      params: s.params.userToken,
      responses: { 200: { description: 'The token, revoked', schema: s.token } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await revokeToken(d.db, params.userId, params.tokenId, ctx.state.actor);
      },
    }),
  ];
}
