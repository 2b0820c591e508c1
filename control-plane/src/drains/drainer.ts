import { randomUUID } from 'node:crypto';
import { A4cError, notFound, type Logger } from '@a4c/common';
import type { Mover } from '../moves/mover.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { cancelDrain, drainWork, finishDrain, lockOpenDrains, openDrain, type DrainRow } from '../store/drains.js';
import { appendEvent, changesOf } from '../store/events.js';
import type { WorkspaceService } from '../workspaces/service.js';

import type { Clock } from '../clock.js';

export interface DrainRequest {
  hostId: string;
  actor: string;
  migrate: boolean;
  parallelism: number;
  deadlineSeconds: number | undefined;
}

/**
 * Drains with a deadline (Nomad's node drain with `migrate`): on every tick, for each
 * open drain, moves workspaces off the host at most `parallelism` at a time, and once
 * the deadline passes stops whatever is still there. Open drains are row-locked per
 * tick (SKIP LOCKED), so replicas share them without doing one twice.
 */
export class Drainer {
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly workspaces: WorkspaceService,
    private readonly mover: Mover,
    private readonly clock: Clock,
    private readonly tickMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Drains the host (nothing new is placed there) and, with a deadline or migrate, opens a drain the ticks work on. */
  async drain(r: DrainRequest): Promise<void> {
    const found = await inTx(this.db, async (tx) => {
      const { rows } = await tx.query<{ was: boolean }>(
        `UPDATE hosts h SET draining = true, updated_at = now() FROM (SELECT draining AS was FROM hosts WHERE id = $1 FOR UPDATE) old
          WHERE h.id = $1 RETURNING old.was`,
        [r.hostId],
      );
      if (!rows[0]) return false;
      const deadlineAt = r.deadlineSeconds !== undefined ? new Date(this.clock.now().getTime() + r.deadlineSeconds * 1000) : null;
      const what = [r.migrate ? `moving its workspaces off, ${r.parallelism} at a time` : '', deadlineAt ? `stopping what is left at ${deadlineAt.toISOString()}` : '']
        .filter(Boolean)
        .join('; ');
      await appendEvent(tx, {
        kind: 'host.drained',
        actor: r.actor,
        reason: `drained by ${r.actor}: nothing new is placed there${what ? `; ${what}` : ''}`,
        hostId: r.hostId,
        changes: changesOf({ draining: rows[0].was }, { draining: true }),
        data: { migrate: r.migrate, parallelism: r.parallelism, deadlineAt: deadlineAt?.toISOString() ?? null },
      });
      if (r.migrate || deadlineAt) {
        await openDrain(tx, { id: randomUUID(), hostId: r.hostId, actor: r.actor, migrate: r.migrate, parallelism: r.parallelism, deadlineAt });
      }
      return true;
    });
    if (!found) throw notFound('host', r.hostId, 'list hosts with `a4c hosts`');
    void this.tick();
  }

  /** Activates the host; its open drain (if any) is cancelled. Moves under way finish. */
  async activate(hostId: string, actor: string): Promise<void> {
    const found = await inTx(this.db, async (tx) => {
      const { rows } = await tx.query<{ was: boolean }>(
        `UPDATE hosts h SET draining = false, updated_at = now() FROM (SELECT draining AS was FROM hosts WHERE id = $1 FOR UPDATE) old
          WHERE h.id = $1 RETURNING old.was`,
        [hostId],
      );
      if (!rows[0]) return false;
      await appendEvent(tx, { kind: 'host.activated', actor, reason: `activated by ${actor}`, hostId, changes: changesOf({ draining: rows[0].was }, { draining: false }) });
      await cancelDrain(tx, hostId, actor);
      return true;
    });
    if (!found) throw notFound('host', hostId, 'list hosts with `a4c hosts`');
  }

  /** One pass over the open drains; concurrent calls share the running pass. */
  tick(): Promise<void> {
    this.ticking ??= this.pass()
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'drain pass failed'))
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  private async pass(): Promise<void> {
    const client = await this.db.connect();
    try {
      await client.query('BEGIN');
      const drains = await lockOpenDrains(client);
      for (const d of drains) await this.work(client, d);
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }

  private async work(tx: Tx, d: DrainRow): Promise<void> {
    const log = this.log.child({ hostId: d.host_id, drainId: d.id });
    const work = await drainWork(tx, d);
    const now = this.clock.now();
    if (d.deadline_at && now >= d.deadline_at) {
      // The deadline: whatever still runs here is stopped (moves already copying go on).
      const left = work.remaining.filter((w) => w.status === 'RUNNING' || w.status === 'STARTING' || w.status === 'CREATING');
      for (const w of left) {
        await this.workspaces.stop(w.id, `drain:${d.id}`).catch((e: unknown) => log.warn({ workspaceId: w.id, err: (e as Error).message }, 'could not stop at the drain deadline'));
        await appendEvent(this.db, {
          kind: 'workspace.force_stopped',
          actor: `drain:${d.id}`,
          reason: `the drain deadline of host ${d.host_id} (${d.deadline_at.toISOString()}) passed with this workspace still there; start it again (\`a4c ws start ${w.id}\`) once the host is back, or move it (\`a4c ws move ${w.id}\`)`,
          workspaceId: w.id,
          hostId: d.host_id,
          data: { drainId: d.id, deadlineAt: d.deadline_at.toISOString() },
        });
      }
      // On the transaction holding the drain's row lock: any other would wait on it.
      await finishDrain(tx, d, 'DEADLINE_REACHED', left.length, `the drain deadline passed: ${left.length} workspace(s) stopped, ${work.remaining.length - left.length} other(s) left as they were`);
      log.warn({ stopped: left.length }, 'drain deadline reached');
      return;
    }
    if (!work.remaining.length && !work.moving) {
      if (d.migrate) {
        await finishDrain(tx, d, 'DONE', 0, `every workspace is off host ${d.host_id}`);
        log.info('drain done: the host is empty');
      }
      return;
    }
    if (!d.migrate) return;
    let free = d.parallelism - work.moving;
    for (const w of work.remaining) {
      if (free <= 0) break;
      if (work.failed.has(w.id) || (w.status !== 'RUNNING' && w.status !== 'STOPPED')) continue;
      try {
        await this.mover.begin(w.id, undefined, `drain:${d.id}`, d.id);
        free--;
      } catch (e) {
        // Already moving (by its owner), or no room elsewhere yet: tried again on the next tick.
        if (!(e instanceof A4cError)) throw e;
        log.info({ workspaceId: w.id, err: e.message }, 'could not start a drain move yet');
      }
    }
  }
}
