import { WORKSPACE_STATUSES, type WorkspaceStatus } from '@a4c/common';

/**
 * Whether a workspace in a status counts against its owner's quotas (workspaces and
 * disk): always, never, or only for A4C_FAILED_QUOTA_GRACE_SECONDS after it got there.
 */
export type QuotaRule = 'counts' | 'grace' | 'free';

/** What one workspace status means everywhere the control plane decides something. */
export interface StateRule {
  /** Holds its tier's CPU and memory on its host (hosts.reserved_memory_mb, reserved_millicpus). */
  reservesCompute: boolean;
  /** Holds its tier's disk on its host (hosts.reserved_disk_mb). */
  reservesDisk: boolean;
  /** In its host's desired set, and to run or to stay stopped there; null: not in it, so the agent removes its container. */
  desired: 'running' | 'stopped' | null;
  /** Counts against the owner's quotas. */
  quota: QuotaRule;
  /** Nothing more happens to it without someone's request: waits (`?wait=`, the CLI) end here. */
  settled: boolean;
  /**
   * What it becomes when its host is lost (removed, or unhealthy past
   * A4C_HOST_LOST_AFTER_SECONDS); null: its host does not matter to it.
   */
  onHostLost: WorkspaceStatus | null;
  /** The statuses it may move to (a report that only changes its container stays in the status). */
  next: readonly WorkspaceStatus[];
}

/**
 * The one table of workspace states. The code reads it (transitions, the desired set
 * and its run state, quotas, the stuck and lost-host sweeps, waits); the SQL that
 * cannot read it (the reservation trigger's a4c_reserves_compute / a4c_reserves_disk,
 * migration 040) is checked against it by test/states.test.ts. docs/api.md shows it.
 *
 * Why these choices:
 * - STOPPED keeps only its disk: its container and writable layer stay on the host, its
 *   processes do not (seed 000: stopping frees resources for others). STARTING takes
 *   CPU and memory again, refused with a 503 if the host has no room.
 * - STOPPING keeps CPU and memory (it runs until the agent stopped it); DELETING keeps
 *   only the disk (its container is stopped and removed; nothing may start in it again).
 * - LOST, FAILED, DELETED and REJECTED hold nothing on any host. LOST and FAILED are not
 *   in the desired set, so an agent that comes back removes their containers.
 * - LOST is free of quota: its host and data are gone; a retry counts again (and is
 *   checked against the quota like a new workspace). FAILED counts for a grace period,
 *   so a user can read the error and retry before it stops blocking new workspaces.
 */
export const STATES = {
  PENDING_APPROVAL: { reservesCompute: false, reservesDisk: false, desired: null, quota: 'counts', settled: true, onHostLost: null, next: ['CREATING', 'REJECTED', 'DELETED'] },
  REJECTED: { reservesCompute: false, reservesDisk: false, desired: null, quota: 'free', settled: true, onHostLost: null, next: ['DELETED'] },
  CREATING: { reservesCompute: true, reservesDisk: true, desired: 'running', quota: 'counts', settled: false, onHostLost: 'LOST', next: ['RUNNING', 'STOPPING', 'FAILED', 'DELETING', 'LOST'] },
  RUNNING: { reservesCompute: true, reservesDisk: true, desired: 'running', quota: 'counts', settled: true, onHostLost: 'LOST', next: ['STOPPING', 'FAILED', 'DELETING', 'LOST'] },
  STOPPING: { reservesCompute: true, reservesDisk: true, desired: 'stopped', quota: 'counts', settled: false, onHostLost: 'LOST', next: ['STOPPED', 'STARTING', 'FAILED', 'DELETING', 'LOST'] },
  STOPPED: { reservesCompute: false, reservesDisk: true, desired: 'stopped', quota: 'counts', settled: true, onHostLost: 'LOST', next: ['STARTING', 'DELETING', 'LOST'] },
  STARTING: { reservesCompute: true, reservesDisk: true, desired: 'running', quota: 'counts', settled: false, onHostLost: 'LOST', next: ['RUNNING', 'STOPPING', 'FAILED', 'DELETING', 'LOST'] },
  DELETING: { reservesCompute: false, reservesDisk: true, desired: null, quota: 'counts', settled: false, onHostLost: 'DELETED', next: ['DELETED'] },
  DELETED: { reservesCompute: false, reservesDisk: false, desired: null, quota: 'free', settled: true, onHostLost: null, next: [] },
  FAILED: { reservesCompute: false, reservesDisk: false, desired: null, quota: 'grace', settled: true, onHostLost: null, next: ['CREATING', 'DELETING'] },
  LOST: { reservesCompute: false, reservesDisk: false, desired: null, quota: 'free', settled: true, onHostLost: null, next: ['CREATING', 'DELETED'] },
} as const satisfies Record<WorkspaceStatus, StateRule>;

export const stateOf = (s: WorkspaceStatus): StateRule => STATES[s];

/** The statuses for which `pick` holds, in WORKSPACE_STATUSES order. */
export function statusesWhere(pick: (r: StateRule, s: WorkspaceStatus) => boolean): WorkspaceStatus[] {
  return WORKSPACE_STATUSES.filter((s) => pick(STATES[s], s));
}

/** `'A', 'B'`: statuses as an SQL list (they are constants, never user input). */
export function sqlList(statuses: readonly WorkspaceStatus[]): string {
  if (!statuses.length) throw new Error('an empty status list has no SQL form');
  return statuses.map((s) => `'${s}'`).join(', ');
}

/** In a host's desired set. */
export const DESIRED_STATUSES = statusesWhere((r) => r.desired !== null);
/** On their way up: failed by the stuck sweep past A4C_CREATE_TIMEOUT_SECONDS. */
export const COMING_UP_STATUSES = statusesWhere((r) => !r.settled && r.desired === 'running');
/** Whose status depends on their host: a host that stops answering makes it uncertain (hostLost), then LOST. */
export const ON_HOST_STATUSES = statusesWhere((r) => r.onHostLost !== null);

/**
 * An SQL condition: the workspace (alias `w`, or the bare table when alias is '')
 * counts against quotas. `cutoff` is the SQL of the instant before which a FAILED
 * workspace stops counting.
 */
export function countsForQuotaSql(alias: string, cutoff: string): string {
  const col = (c: string) => (alias ? `${alias}.${c}` : c);
  const counts = statusesWhere((r) => r.quota === 'counts');
  const grace = statusesWhere((r) => r.quota === 'grace');
  return `(${col('status')} IN (${sqlList(counts)}) OR (${col('status')} IN (${sqlList(grace)}) AND ${col('status_changed_at')} > ${cutoff}))`;
}

/** Moving from → to is in the table (staying in a status is always allowed). */
export function canMove(from: WorkspaceStatus, to: WorkspaceStatus): boolean {
  return from === to || (STATES[from].next as readonly WorkspaceStatus[]).includes(to);
}

/** Refuses a move the table does not allow: a bug in the caller, never the user's mistake. */
export function assertMove(from: WorkspaceStatus, to: WorkspaceStatus): void {
  if (!canMove(from, to)) throw new Error(`workspace state table: ${from} → ${to} is not an allowed transition`);
}

/** The move takes CPU and memory on the same host it did not hold: the host must have room. */
export const takesCompute = (from: WorkspaceStatus, to: WorkspaceStatus): boolean => STATES[to].reservesCompute && !STATES[from].reservesCompute;
