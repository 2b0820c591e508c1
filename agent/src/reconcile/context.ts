import type { Logger } from '@a4c/common';
import { WorkspaceSpec } from '@a4c/proto';
import type { Clock } from '../clock.js';
import type { ImageConfig } from '../runtime/confinement.js';
import type { ContainerRuntime, CreateSpec, OwnedContainer } from '../runtime/runtime.js';
import type { PersistedHostState } from './persisted.js';
import type { HostReports } from './reports.js';
import type { RestartPolicy } from './restart-tracker.js';
import type { Slots } from './slots.js';
import type { RetryPolicy } from './transient.js';

export interface ReconcilerMetrics {
  passes: number;
  passErrors: number;
  orphansRemoved: number;
  vanishedRecreated: number;
  restarts: number;
  /** Create or start calls tried again after a transient engine error. */
  transientRetries: number;
  lastPassSeconds: number;
}

/** What a runner is told: its workspace's latest desired spec and, when known, its containers. */
export interface RunnerInput {
  /** undefined: the workspace is not in the authoritative desired set, so its containers go. */
  spec: WorkspaceSpec | undefined;
  /** The desired-state revision this comes from (reports carry it). */
  revision: number;
  /** Containers of this workspace as listed at tick `listedAt`; absent: the runner lists them itself. */
  containers?: { listedAt: number; list: OwnedContainer[] };
}

/** What every runner of a host shares. */
export interface RunnerContext {
  hostId: string;
  runtime: ContainerRuntime;
  clock: Clock;
  reports: HostReports;
  state: PersistedHostState;
  log: Logger;
  stopTimeoutSeconds: number;
  restart: RestartPolicy;
  retry: RetryPolicy;
  /** Pulls, creates, starts and restarts: bounded apart from stops and removals, so neither waits for the other. */
  bringUp: Slots;
  teardown: Slots;
  metrics: ReconcilerMetrics;
  /** A host-wide logical clock: container lists and acts are ordered by it. */
  tick(): number;
  /** Told whenever the runner has nothing left to do. */
  settled(workspaceId: string): void;
}

export function specKey(spec: WorkspaceSpec | undefined): string {
  return spec ? JSON.stringify(WorkspaceSpec.toJSON(spec)) : 'absent';
}

/** The container a spec asks for, with the image as the image step found it. */
export function createSpecOf(spec: WorkspaceSpec, imageConfig: ImageConfig): CreateSpec {
  return {
    workspaceId: spec.workspaceId,
    attempt: spec.attempt,
    userId: spec.userId,
    image: spec.image,
    imageConfig,
    hostname: spec.hostname,
    memoryBytes: spec.resources?.memoryBytes ?? 0,
    cpus: spec.resources?.cpus ?? 0,
    pidsLimit: spec.resources?.pidsLimit ?? 0,
    volume: spec.volume,
    readOnlyRootFs: spec.confinement?.readOnlyRootFs ?? false,
    user: spec.confinement?.user ?? '',
    runAsNonRoot: spec.confinement?.runAsNonRoot ?? false,
  };
}
