import type { ErrorBody, Workspace } from '@a4c/common';
import { recordAudits } from '../../store/audit.js';
import { toA4cError } from '../http.js';
import type { CreateWorkspaceInput } from '../../workspaces/service.js';
import { op, type Operation } from '../operation.js';
import { batchResponse, workspaceBatch } from '../workspace-batch-schemas.js';
import type { RouteDeps } from './deps.js';

/** The JSON of one create's request, at most: the body limit is this times the item limit. */
const ITEM_BYTES = 1024;

/** What to do next, for errors that do not say it themselves. */
const NEXT: Partial<Record<string, string>> = {
  NOT_FOUND: 'create workspaces only for yourself; an admin may create them for anyone',
  INVALID_ARGUMENT: 'correct this item and send it again',
  INTERNAL: 'send this item again; the request id identifies the error in the control plane logs',
  UNAVAILABLE: 'send this item again in a few seconds; it was not created',
};

type Result = { index: number; userId: string; name: string | null } & ({ status: 201; workspace: Workspace } | { status: number; error: ErrorBody });

/**
 * Many workspaces in one request: a lead of a workshop, or a script, creating one for
 * each of many users (admins), or several of one's own. Each item is decided exactly as
 * POST /v1/users/{userId}/workspaces would decide it alone (who may create it, its
 * tier's autostop rule, its name, quota, creation rate, capacity), all of them through
 * the same placement queue, so they share its transactions. The answer comes once every
 * placement is committed, with one result per item.
 */
export function workspaceBatchOperations(d: Pick<RouteDeps, 'db' | 'workspaces' | 'policy' | 'autostop' | 'log'> & { maxItems: number }): Operation[] {
  return [
    op({
      method: 'post',
      path: '/v1/workspace-batches',
      operationId: 'createWorkspaceBatch',
      summary: 'Create many workspaces in one request',
      description:
        `Up to ${d.maxItems} creates (A4C_WORKSPACE_BATCH_MAX), each the body of POST /v1/users/{userId}/workspaces with its userId. ` +
        'Each is decided as that create would be, on its own: a user may create only their own workspaces, an admin anyone\'s; ' +
        'names, quotas, creation rates and capacity are checked per workspace in the order given. One that fails fails alone: ' +
        'its result carries the status and error a single create would have answered; the others are created. Answered once ' +
        'every created workspace is placed and committed (CREATING, or PENDING_APPROVAL for tiers that need approval). ' +
        'A request that is malformed as a whole (not a list, too many items, a field of an item invalid) is refused with 400 and creates nothing.',
      tag: 'Workspaces',
      access: 'anyone',
      body: workspaceBatch(d.maxItems),
      maxBodyBytes: Math.max(64 * 1024, d.maxItems * ITEM_BYTES),
      responses: { 200: { description: 'One result per item, in order: 201 with the workspace, or its error', schema: batchResponse } },
      errors: [413],
      handle: async (ctx, { body }) => {
        const p = ctx.state.principal;
        const results: (Result | undefined)[] = body.workspaces.map(() => undefined);
        const fail = (i: number, e: unknown): Result => {
          const it = body.workspaces[i] as (typeof body.workspaces)[number];
          // As the API would answer it alone (a database out of reach: 503 UNAVAILABLE).
          const err = toA4cError(e);
          if (err.code === 'INTERNAL') d.log.error({ err: e, requestId: ctx.state.requestId, index: i }, 'batch item failed');
          const b = err.toBody();
          return { index: i, userId: it.userId, name: it.name ?? null, status: err.status, error: { ...b, suggestion: b.suggestion ?? NEXT[err.code] ?? 'correct this item and send it again' } };
        };
        // Each item's own checks, before any placement: who may create it, its autostop period.
        const go: { i: number; input: CreateWorkspaceInput }[] = [];
        for (const [i, it] of body.workspaces.entries()) {
          try {
            d.policy.write(p, it.userId);
            if (it.autostopAfterSeconds !== undefined) d.autostop.checkOverride(p, it.tier, it.autostopAfterSeconds);
            go.push({ i, input: it });
          } catch (e) {
            results[i] = fail(i, e);
          }
        }
        const settled = await d.workspaces.createMany(
          go.map((g) => g.input),
          ctx.state.actor,
        );
        for (const [n, s] of settled.entries()) {
          const { i, input } = go[n] as (typeof go)[number];
          results[i] = s.status === 'fulfilled' ? { index: i, userId: input.userId, name: input.name ?? null, status: 201, workspace: s.value } : fail(i, s.reason);
        }
        const done = results as Result[];
        // Every item in the audit log as a single create would be, in one statement.
        await recordAudits(
          d.db,
          done.map((r) => ({
            requestId: ctx.state.requestId,
            actor: ctx.state.actor,
            action: 'POST /v1/workspace-batches item',
            target: `/v1/users/${r.userId}/workspaces${'workspace' in r ? `/${r.workspace.id}` : ''}`.slice(0, 500),
            outcome: r.status,
            error: 'error' in r ? `${r.error.error}: ${r.error.message.slice(0, 500)}` : null,
          })),
        ).catch((e: unknown) => d.log.warn({ err: (e as Error).message }, 'could not write the audit log'));
        const created = done.filter((r) => r.status === 201).length;
        ctx.status = 200;
        ctx.body = { created, failed: done.length - created, results: done };
      },
    }),
  ];
}
