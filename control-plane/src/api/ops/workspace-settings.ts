import { A4cError } from '@a4c/common';
import { autostopView, updateAutostop } from '../../workspaces/autostop-view.js';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import type { RouteDeps } from './deps.js';

/** A workspace's settings that change without re-creating it: its idle autostop period. */
export function workspaceSettingsOperations(d: Pick<RouteDeps, 'db' | 'workspaces' | 'policy' | 'autostop'>): Operation[] {
  return [
    op({
      method: 'patch',
      path: '/v1/workspaces/{id}',
      operationId: 'updateWorkspace',
      summary: "Change a workspace's settings",
      description:
        "autostopAfterSeconds: stop it after this long idle; 0 or null: never. A user may only shorten their tier's period " +
        '(403 otherwise); an admin may set anything. Answers with the workspace as GET shows it (autostopAt, keptAliveBecause).',
      tag: 'Workspaces',
      access: 'owner',
      params: s.params.workspace,
      body: s.requests.updateWorkspace,
      responses: { 200: { description: 'The workspace, changed', schema: s.workspace } },
      errors: [403, 404, 409],
      handle: async (ctx, { params, body }) => {
        const p = ctx.state.principal;
        const w = await d.workspaces.get(params.id);
        await d.policy.read(p, w.userId, 'workspace', w.id);
        if (p.role !== 'admin' && p.id !== w.userId) throw new A4cError('PERMISSION_DENIED', `only ${w.userId} or an admin may change this workspace`);
        d.autostop.checkOverride(p, w.tier, body.autostopAfterSeconds);
        await updateAutostop(d.db, d.autostop, w.id, body.autostopAfterSeconds, ctx.state.actor);
        const after = await d.workspaces.get(w.id);
        ctx.body = { ...after, ...(await autostopView(d.db, d.autostop, after)) };
      },
    }),
  ];
}
