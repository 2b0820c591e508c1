import { z } from 'zod';
import { op, type Operation } from './operation.js';

const me = z
  .strictObject({
    id: z.string().meta({ description: 'the user id ("admin" for the admin token)' }),
    role: z.enum(['user', 'lead', 'admin']),
    teamId: z.string().nullable(),
  })
  .meta({ id: 'Principal' });

/**
 * Who the bearer token belongs to. The dashboard (and any client holding only a token)
 * needs it to know whose workspaces to list and which pages to offer.
 */
export function meOperations(): Operation[] {
  return [
    op({
      method: 'get',
      path: '/v1/me',
      operationId: 'whoAmI',
      summary: 'Who the token belongs to: user id, role and team',
      tag: 'Users and tokens',
      access: 'anyone',
      responses: { 200: { description: 'The caller', schema: me } },
      handle: (ctx) => {
        const p = ctx.state.principal;
        ctx.body = { id: p.id, role: p.role, teamId: p.teamId };
      },
    }),
  ];
}
