import { A4cError, notFound } from '@a4c/common';
import type { Mover } from '../../moves/mover.js';
import { getMove, latestMoveOf, toMoveView } from '../../store/moves.js';
import { listVolumesOfUser } from '../../store/volumes.js';
import * as ms from '../move-schemas.js';
import { op, type Ctx, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

/** Moving a workspace to another host with its files, and the volumes that hold them. */
export function moveOperations(d: Pick<RouteDeps, 'db' | 'workspaces' | 'policy'> & { mover: Mover }): Operation[] {
  const readable = async (ctx: Ctx, id: string) => {
    const w = await d.workspaces.get(id);
    await d.policy.read(ctx.state.principal, w.userId, 'workspace', w.id);
    return w;
  };
  return [
    op({
      method: 'post',
      path: '/v1/workspaces/{id}/move',
      operationId: 'moveWorkspace',
      summary: 'Move a workspace to another host with its files',
      description:
        "Stops it, copies its writable layer and its volume from the source host's agent to the destination's through the control plane, " +
        'verifies the SHA-256 of both streams at both ends, then starts it on the destination with the same id and hostname. ' +
        'On any failure before the switch the original stays on its host and runs again if it ran. Answers at once; follow the move ' +
        'with GET /v1/workspaces/{id}/move or the workspace.move_* events.',
      tag: 'Workspaces',
      access: 'owner',
      params: s.params.workspace,
      body: ms.moveRequest,
      responses: { 202: { description: 'The move, under way (STOPPING)', schema: ms.move } },
      errors: [403, 404, 409],
      handle: async (ctx, { params, body }) => {
        const w = await readable(ctx, params.id);
        if (ctx.state.principal.role !== 'admin' && ctx.state.principal.id !== w.userId) {
          throw new A4cError('PERMISSION_DENIED', `only ${w.userId} or an admin may move this workspace`, { suggestion: 'ask its owner or an admin' });
        }
        const m = await d.mover.begin(w.id, body.toHostId, ctx.state.actor);
        ctx.status = 202;
        ctx.body = toMoveView(m);
      },
    }),
    op({
      method: 'get',
      path: '/v1/workspaces/{id}/move',
      operationId: 'getWorkspaceMove',
      summary: "A workspace's latest move and its progress",
      tag: 'Workspaces',
      access: 'owner',
      params: s.params.workspace,
      responses: { 200: { description: 'The latest move: status, bytes copied, verified sums, error', schema: ms.move } },
      errors: [404],
      handle: async (ctx, { params }) => {
        const w = await readable(ctx, params.id);
        const m = await latestMoveOf(d.db, w.id);
        if (!m) throw notFound('move of workspace', w.id, `move it with \`a4c ws move ${w.id}\``);
        ctx.body = toMoveView((await getMove(d.db, m.id)) ?? m);
      },
    }),
    op({
      method: 'get',
      path: '/v1/users/{userId}/volumes',
      operationId: 'listUserVolumes',
      summary: "A user's volumes: where their files are",
      description:
        "One entry per host and project whose workspaces used the user's volume there. Placement prefers a host holding the volume for the project.",
      tag: 'Workspaces',
      access: 'self-or-lead',
      params: s.params.userId,
      responses: { 200: { description: 'The volumes, most recently used first', schema: s.list('volumes', ms.volume) } },
      handle: async (ctx, { params }) => {
        ctx.body = { volumes: await listVolumesOfUser(d.db, params.userId) };
      },
    }),
  ];
}
