import type { Operation } from './operation.js';
import { auditOperations } from './ops/audit.js';
import { buildOperations } from './ops/builds.js';
import { eventOperations } from './ops/events.js';
import type { RouteDeps } from './ops/deps.js';
import { hostOperations } from './ops/hosts.js';
import { moveOperations } from './ops/moves.js';
import { quotaOperations } from './ops/quotas.js';
import { userOperations } from './ops/users.js';
import { workspaceBatchOperations } from './ops/workspace-batches.js';
import { workspaceOperations } from './ops/workspaces.js';
import { workspaceSettingsOperations } from './ops/workspace-settings.js';

export type { RouteDeps } from './ops/deps.js';
export { probeOperations } from './ops/probes.js';

/**
 * The public REST API, /v1, as one table of operations: each one's path, access rule,
 * schemas for its path, query and body, and its responses (see operation.ts). The
 * router and the OpenAPI document (GET /v1/openapi.json) are both made from this
 * table. Each resource's operations live in their own file under ops/, their SQL
 * under store/.
 */
export function v1Operations(d: RouteDeps): Operation[] {
  return [
    ...workspaceOperations(d),
    ...workspaceSettingsOperations(d),
    ...workspaceBatchOperations({ ...d, maxItems: d.workspaceBatchMax }),
    ...buildOperations(d),
    ...moveOperations({ ...d, mover: d.moves.mover }),
    ...hostOperations({ ...d, drainer: d.moves.drainer, drainParallelism: d.moves.drainParallelism }),
    ...userOperations(d),
    ...quotaOperations(d),
    ...auditOperations(d),
    ...eventOperations(d),
  ];
}
