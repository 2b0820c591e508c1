import { userVolumeName } from '@a4c/common';
import { RunState, type WorkspaceSpec } from '@a4c/proto';
import type { Db } from '../store/db.js';
import { loadDesiredRows, type DesiredQuery, type DesiredRows } from '../store/desired.js';
import type { WorkspaceRow } from '../store/workspaces.js';
import { stateOf } from './states.js';

/** The host's revision and its whole desired set, read in one snapshot. */
export async function loadDesired(db: Db, hostId: string): Promise<{ revision: number; rows: WorkspaceRow[] }> {
  const r = (await loadDesiredRows(db, [{ hostId, since: -1 }])).get(hostId) as DesiredRows;
  return { revision: r.revision, rows: r.rows };
}

/**
 * Desired-state loads of all sessions of a replica, gathered: the hosts asked for on
 * one turn of the event loop are read together, in one statement; while `parallel`
 * statements run, new requests gather until one finishes. A burst of changes (a
 * placement batch touching hundreds of hosts, a NOTIFY storm, the periodic resync)
 * costs a few statements, not one per host, and a host's change waits behind at most
 * part of one statement.
 */
export class DesiredLoader {
  private pending = new Map<string, { since: number; waiters: Array<{ resolve: (r: DesiredRows) => void; reject: (e: unknown) => void }> }>();
  private running = 0;
  private scheduled = false;
  /** Statements run and hosts read (bench and tests). */
  readonly counts = { statements: 0, hosts: 0, rows: 0 };

  constructor(
    private readonly db: Db,
    /** Most hosts per statement. */
    private readonly maxHosts = 1000,
    /** Statements at once (each holds one connection of the agent plane's pool). */
    private readonly parallel = 2,
  ) {}

  /** One host's desired state since `since` (-1: the whole set). Asked twice before it runs: the lower since wins. */
  load(hostId: string, since: number): Promise<DesiredRows> {
    return new Promise((resolve, reject) => {
      const p = this.pending.get(hostId);
      if (p) {
        p.since = Math.min(p.since, since);
        p.waiters.push({ resolve, reject });
      } else {
        this.pending.set(hostId, { since, waiters: [{ resolve, reject }] });
      }
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running >= this.parallel || this.scheduled || !this.pending.size) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    if (this.running >= this.parallel || !this.pending.size) return;
    this.running++;
    const batch = new Map<string, { since: number; waiters: Array<{ resolve: (r: DesiredRows) => void; reject: (e: unknown) => void }> }>();
    for (const [hostId, p] of this.pending) {
      if (batch.size >= this.maxHosts) break;
      batch.set(hostId, p);
    }
    for (const hostId of batch.keys()) this.pending.delete(hostId);
    try {
      const queries: DesiredQuery[] = [...batch].map(([hostId, p]) => ({ hostId, since: p.since }));
      const result = await loadDesiredRows(this.db, queries);
      this.counts.statements++;
      this.counts.hosts += queries.length;
      for (const [hostId, p] of batch) {
        const r = result.get(hostId) as DesiredRows;
        this.counts.rows += r.rows.length;
        for (const w of p.waiters) w.resolve(r);
      }
    } catch (e) {
      for (const p of batch.values()) for (const w of p.waiters) w.reject(e);
    } finally {
      this.running--;
      this.schedule();
    }
  }
}

/** A desired workspace as the agent gets it; its run state is the state table's. */
export function toSpec(r: WorkspaceRow): WorkspaceSpec {
  const stopped = stateOf(r.status).desired === 'stopped';
  return {
    workspaceId: r.id,
    userId: r.user_id,
    // A moved workspace's container is made from its source container, committed.
    image: r.run_image ?? r.image,
    hostname: (r.hostname ?? r.id).split('.')[0] as string,
    runState: stopped ? RunState.RUN_STATE_STOPPED : RunState.RUN_STATE_RUNNING,
    resources: {
      memoryBytes: r.memory_mb * 1024 * 1024,
      cpus: r.cpus,
      pidsLimit: r.pids_limit,
      diskBytes: Math.round(r.disk_gb * 1024 ** 3),
    },
    volume: userVolumeName(r.user_id),
    specRevision: r.desired_revision,
    attempt: r.attempt,
    pullFrom: r.pull_ref ?? '',
    confinement: {
      readOnlyRootFs: r.read_only_rootfs,
      user: r.run_as_user ?? '',
      runAsNonRoot: r.run_as_non_root,
    },
  };
}
