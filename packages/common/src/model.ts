/**
 * The public shapes of the REST API, shared by the control plane and the CLI.
 */
import type { Arch } from './arch.js';
import type { AutostopView } from './autostop.js';

/**
 * CREATING → RUNNING ⇄ STOPPING → STOPPED → STARTING → RUNNING; any live state →
 * DELETING → DELETED (soft: the row stays, the container goes, the volume stays).
 * FAILED carries failedStep and error. Tiers that need approval start in
 * PENDING_APPROVAL and go to CREATING (approved) or REJECTED. LOST: its host was
 * removed or unhealthy too long; delete settles it at once, retry recreates it
 * elsewhere. What each status reserves, and more: control-plane/src/workspaces/states.ts.
 */
export const WORKSPACE_STATUSES = [
  'PENDING_APPROVAL',
  'REJECTED',
  'CREATING',
  'RUNNING',
  'STOPPING',
  'STOPPED',
  'STARTING',
  'DELETING',
  'DELETED',
  'FAILED',
  'LOST',
] as const;
export type WorkspaceStatus = (typeof WORKSPACE_STATUSES)[number];

/** Statuses from which nothing more happens without a user's request. */
export const SETTLED_STATUSES: readonly WorkspaceStatus[] = ['RUNNING', 'STOPPED', 'DELETED', 'FAILED', 'PENDING_APPROVAL', 'REJECTED', 'LOST'];

/** Reads of one workspace (GET /v1/workspaces/{id}) add the autostop fields (AutostopView). */
export interface Workspace extends Partial<AutostopView> {
  id: string;
  userId: string;
  name: string;
  projectName: string;
  arch: Arch;
  tier: string;
  image: string;
  status: WorkspaceStatus;
  hostId: string | null;
  /**
   * The host stopped heartbeating (or its Docker Engine stopped answering): the status
   * is the last one known and may be stale until the host returns.
   */
  hostLost: boolean;
  containerId: string | null;
  hostname: string | null;
  /** `ssh <name>.a4c`, once `a4c config-ssh` has written the user's SSH config. */
  sshCommand: string | null;
  /** The last exec, shell, port-forward or SSH session's start, end or traffic (minute resolution); null if none yet. */
  lastActivityAt: string | null;
  failedStep: string | null;
  error: string | null;
  /** Creation attempt: 0 for the first, +1 for every retry. */
  attempt: number;
  /** What it holds on disk against its tier's disk, as its host last measured it; null before the first measure. */
  disk: WorkspaceDisk | null;
  createdAt: string;
  updatedAt: string;
}

/** A workspace's disk use: its container's writable layer plus the user's volume. */
export interface WorkspaceDisk {
  /** writableBytes + volumeBytes: what counts against the limit. */
  usedBytes: number;
  /** The tier's disk. Past 90 % the owner is warned; past 100 % the workspace is stopped. */
  limitBytes: number;
  writableBytes: number;
  volumeBytes: number;
  /** The storage driver also caps the writable layer (--storage-opt size). */
  layerLimitEnforced: boolean;
  measuredAt: string;
}

export type HostStatus = 'healthy' | 'unhealthy' | 'draining';

/** A host's latest reported stats. */
export interface HostStatsView {
  diskPercent: number;
  memoryPercent: number;
  cpuPercent: number;
  workspaceContainers: number;
  engineContainers: number;
  dockerReady: boolean;
  diskUsedBytes: number;
  diskTotalBytes: number;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
}

export interface Resources {
  memoryBytes: number;
  cpus: number;
  diskBytes: number;
}

export interface HostView {
  id: string;
  arch: Arch;
  status: HostStatus;
  connected: boolean;
  agentVersion: string;
  sessionId: string | null;
  /** What the agent reported. */
  capacity: Resources;
  /** Capacity less the configured headroom: what workspaces may reserve. */
  allocatable: Resources;
  /** What the workspaces placed here reserve. */
  reserved: Resources;
  stats: HostStatsView | null;
  workspaceCount: number;
  revision: number;
  appliedRevision: number;
  images: string[];
  lastHeartbeatAt: string | null;
  /** The heartbeat period the host's current (or last) session was told; its liveness is judged by it. */
  heartbeatIntervalMs: number | null;
  connectedAt: string | null;
}

/** User ids, names and projects: safe in URLs, Docker names, labels and hostnames. */
export const ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const ID_RULE = 'use 1-63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit';

/** CANCELLED: a user or an admin cancelled it (queued or running); COMPLETED, FAILED and CANCELLED are final. */
export const BUILD_STATUSES = ['SCHEDULED', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type BuildStatus = (typeof BUILD_STATUSES)[number];

export interface Build {
  id: string;
  userId: string;
  imageName: string;
  project: string;
  arch: Arch;
  changeNumber: string;
  status: BuildStatus;
  /** The host holding (or that last held) the claim. */
  worker: string | null;
  /** Claims made; more than one means it was requeued. */
  attempts: number;
  retryCount: number;
  progress: number;
  imageTag: string;
  imageId: string | null;
  error: string | null;
  createdAt: string;
  claimedAt: string | null;
  heartbeatAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  /** The last log lines. */
  logTail: string[];
}

export interface BuildLogLine {
  seq: number;
  at: string;
  line: string;
}

/** One entry of the activity log, as GET /v1/events and /v1/events/stream give it. */
export interface ActivityEvent {
  id: number;
  cursor: string;
  at: string;
  kind: string;
  actor: string;
  reason: string;
  workspaceId: string | null;
  hostId: string | null;
  userId: string | null;
  buildId: string | null;
  changes: Record<string, { from: unknown; to: unknown }>;
  data: Record<string, unknown>;
}
