import type { Logger } from '@a4c/common';
import type { Policy } from '../../auth/principals.js';
import type { EventHub } from '../../events/hub.js';
import type { BuildService } from '../../builds/service.js';
import type { Drainer } from '../../drains/drainer.js';
import type { Mover } from '../../moves/mover.js';
import type { Quotas } from '../../quotas/quotas.js';
import type { Db } from '../../store/db.js';
import type { HostViewOptions } from '../../store/hosts.js';
import type { Autostop } from '../../workspaces/autostop.js';
import type { WorkspaceService } from '../../workspaces/service.js';

/** What the /v1 operations need; each file of operations takes the parts it uses. */
export interface RouteDeps {
  db: Db;
  workspaces: WorkspaceService;
  /** Idle autostop and dormancy: the view on one workspace, who may change its period. */
  autostop: Autostop;
  builds: BuildService;
  quotas: Quotas;
  policy: Policy;
  maxWaitSeconds: number;
  /** Most creates in one POST /v1/workspace-batches. */
  workspaceBatchMax: number;
  hostView: HostViewOptions;
  events: {
    hub: EventHub;
    /** A comment line on event streams this often. */
    heartbeatMs: number;
    /** Event streams end after this long; clients reconnect with Last-Event-ID. */
    streamMaxSeconds: number;
  };
  log: Logger;
  /** Workspace moves and host drains. */
  moves: { mover: Mover; drainer: Drainer; drainParallelism: number };
}
