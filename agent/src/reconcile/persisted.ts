import type { DesiredState } from '@a4c/proto';
import type { StateStore } from '../state/store.js';

/**
 * What the reconciler keeps across restarts (state/store.ts writes it): the last desired
 * state and, per workspace, the spec revision it was last started for — the one fact
 * that tells a container that exited by itself (restart it, or fail) from one stopped
 * on request that a newer spec asks to run again. Runners write it concurrently; every
 * save holds the whole state as it is at that moment, and saves are applied in order.
 */
export class PersistedHostState {
  private desiredState: DesiredState | undefined;
  private started: Record<string, number> = {};

  constructor(
    private readonly store: StateStore,
    private readonly onError: (message: string) => void,
  ) {}

  async load(): Promise<void> {
    const s = await this.store.load();
    this.desiredState = s.desired;
    this.started = s.started;
  }

  get desired(): DesiredState | undefined {
    return this.desiredState;
  }

  setDesired(ds: DesiredState): Promise<void> {
    this.desiredState = ds;
    return this.persist();
  }

  startedFor(workspaceId: string): number | undefined {
    return this.started[workspaceId];
  }

  markStarted(workspaceId: string, specRevision: number): Promise<void> {
    if (this.started[workspaceId] === specRevision) return Promise.resolve();
    this.started[workspaceId] = specRevision;
    return this.persist();
  }

  forget(workspaceId: string): Promise<void> {
    if (this.started[workspaceId] === undefined) return Promise.resolve();
    delete this.started[workspaceId];
    return this.persist();
  }

  /** Forgets every workspace outside `wanted` (the authoritative desired set). */
  keepOnly(wanted: ReadonlySet<string>): Promise<void> {
    const gone = Object.keys(this.started).filter((id) => !wanted.has(id));
    if (!gone.length) return Promise.resolve();
    for (const id of gone) delete this.started[id];
    return this.persist();
  }

  private persist(): Promise<void> {
    return this.store.save({ desired: this.desiredState, started: { ...this.started } }).catch((e: unknown) => {
      this.onError(`could not persist state: ${(e as Error).message}`);
    });
  }
}
