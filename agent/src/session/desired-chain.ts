import type { DesiredState, DesiredStateRequest } from '@a4c/proto';

/** What to do with a DesiredState received on the stream. */
export type ChainStep =
  /** The complete set it results in: reconcile against it. */
  | { kind: 'apply'; state: DesiredState }
  /** Older than the set already held on this stream: nothing to do. */
  | { kind: 'stale' }
  /** A delta that does not apply to the set held: ask for the complete set (once per gap). */
  | { kind: 'gap'; request: DesiredStateRequest | undefined };

/**
 * The desired set of one stream, rebuilt from what the control plane sends (the
 * contract: proto/a4c/v1/agent.proto, DesiredState): a complete set replaces it; a delta
 * is applied only to the exact revision it says it applies to. A delta that does not
 * chain (one was lost, or this side refused one) is never applied: the agent keeps its
 * set, asks for a complete one, and ignores further deltas until it arrives. The
 * reconciler always gets the whole resulting set, so it stays level-triggered.
 */
export class DesiredChain {
  private held: DesiredState | undefined;
  private asked = false;

  /** A new stream: it starts from a complete set. */
  reset(): void {
    this.held = undefined;
    this.asked = false;
  }

  /** The whole set held on this stream, if any. */
  get current(): DesiredState | undefined {
    return this.held;
  }

  /** The revision of the set held on this stream (0: none yet). */
  get revision(): number {
    return this.held?.revision ?? 0;
  }

  receive(ds: DesiredState): ChainStep {
    if (this.held && ds.revision < this.held.revision) return { kind: 'stale' };
    if (!ds.incremental) {
      this.held = { revision: ds.revision, workspaces: ds.workspaces, incremental: false, appliesTo: 0, removed: [] };
      this.asked = false;
      return { kind: 'apply', state: this.held };
    }
    if (!this.held || ds.appliesTo !== this.held.revision) {
      const request = this.asked ? undefined : { haveRevision: this.held?.revision ?? 0, deltaAppliesTo: ds.appliesTo };
      this.asked = true;
      return { kind: 'gap', request };
    }
    const byId = new Map(this.held.workspaces.map((w) => [w.workspaceId, w]));
    for (const id of ds.removed) byId.delete(id);
    for (const w of ds.workspaces) byId.set(w.workspaceId, w);
    this.held = { revision: ds.revision, workspaces: [...byId.values()], incremental: false, appliesTo: 0, removed: [] };
    return { kind: 'apply', state: this.held };
  }
}
