import type { Logger } from '@a4c/common';
import type { ControlMessage, DesiredState } from '@a4c/proto';
import { stateOf } from '../workspaces/states.js';
import { toSpec, type DesiredLoader } from '../workspaces/desired.js';

export interface DesiredPushOptions {
  hostId: string;
  /** The agent's Hello said it applies deltas (Hello.incremental_desired_state). */
  incremental: boolean;
  /** After this many deltas on the stream the next message is complete (0: only when needed). */
  completeEvery: number;
  loader: DesiredLoader;
  /** Writes on the stream (the session holds back while its buffer is full). */
  write(msg: ControlMessage): void;
  closed(): boolean;
  log: Logger;
}

/**
 * The desired state of one agent stream, after SwarmKit's dispatcher `Assignments`:
 * the first message is the complete set, then deltas chained by revision (each says the
 * revision it applies to: the one sent just before it). A delta is read from the
 * database (the workspaces whose desired_revision passed what this stream last got,
 * store/desired.ts), never diffed in memory. A complete set is sent instead when the
 * agent cannot take deltas (an older agent), when the agent asks (a delta did not chain
 * on its side), when the database says a delta cannot express the change (a workspace
 * left the host by moving, migration 130), and every `completeEvery` deltas.
 * The contract is in proto/a4c/v1/agent.proto, DesiredState.
 */
export class DesiredPush {
  /** The revision this stream's agent holds (what was sent last); -1: nothing yet. */
  private sent = -1;
  private deltasSinceComplete = 0;
  /** The agent asked for a complete set and has not got one since. */
  private wantComplete = false;
  /** Loads in flight (at most two: a change never waits for a whole load behind another). */
  private loading = 0;
  private again = false;
  /** What this stream was sent (metrics, tests). */
  readonly counts = { complete: 0, incremental: 0, specs: 0, removed: 0 };

  constructor(private readonly o: DesiredPushOptions) {}

  /** The host's desired state may have changed: sends what is new, once the load in flight (if any) is done. */
  push(): void {
    if (this.o.closed()) return;
    if (this.loading >= 2) {
      this.again = true;
      return;
    }
    this.loading++;
    const complete =
      !this.o.incremental || this.sent < 0 || this.wantComplete || (this.o.completeEvery > 0 && this.deltasSinceComplete >= this.o.completeEvery);
    const asked = this.wantComplete;
    this.o.loader
      .load(this.o.hostId, complete ? -1 : this.sent)
      .then((r) => {
        if (this.o.closed()) return;
        // Overtaken by a newer load sent meanwhile: the agent's request waits for the next one.
        if (r.revision < this.sent) {
          if (asked && r.complete) this.again = true;
          return;
        }
        // Nothing new, unless the agent asked for the whole set again.
        if (r.revision === this.sent && !(asked && r.complete)) return;
        let msg: DesiredState;
        if (r.complete) {
          msg = { revision: r.revision, workspaces: r.rows.map(toSpec), incremental: false, appliesTo: 0, removed: [] };
          this.deltasSinceComplete = 0;
          this.wantComplete = false;
          this.counts.complete++;
        } else {
          // Read since the revision sent when it started, which is at most this.sent now:
          // the rows cover every change after this.sent too, so the delta chains on it.
          const changed = r.rows.filter((w) => stateOf(w.status).desired !== null);
          const removed = r.rows.filter((w) => stateOf(w.status).desired === null).map((w) => w.id);
          msg = { revision: r.revision, workspaces: changed.map(toSpec), incremental: true, appliesTo: this.sent, removed };
          this.deltasSinceComplete++;
          this.counts.incremental++;
          this.counts.removed += removed.length;
        }
        this.counts.specs += msg.workspaces.length;
        this.sent = r.revision;
        this.o.write({ payload: { $case: 'desiredState', value: msg } });
        this.o.log.debug(
          { revision: msg.revision, incremental: msg.incremental, appliesTo: msg.appliesTo, workspaces: msg.workspaces.length, removed: msg.removed.length },
          'desired state sent',
        );
      })
      .catch((e: unknown) => this.o.log.warn({ err: (e as Error).message }, 'could not load desired state; will retry'))
      .finally(() => {
        this.loading--;
        if (this.again && this.loading < 2) {
          this.again = false;
          this.push();
        }
      });
  }

  /** The agent's DesiredStateRequest: its set does not chain with what it was sent. */
  requestComplete(haveRevision: number, deltaAppliesTo: number): void {
    this.o.log.info({ haveRevision, deltaAppliesTo, sent: this.sent }, 'agent asked for its complete desired state');
    this.wantComplete = true;
    this.push();
  }
}
