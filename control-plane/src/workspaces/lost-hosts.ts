import type { Logger } from '@a4c/common';
import type { Clock } from '../clock.js';
import { notifyHost, notifyWorkspace } from '../events/notify.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { stampDesiredRevision } from '../store/desired.js';
import { bumpRevision } from '../store/hosts.js';
import {
  claimLostHost,
  lockWorkspacesOnHost,
  overdueHosts,
  recordHostHealth,
  settleWorkspacesOfLostHost,
  type LostWorkspace,
} from '../store/lost-hosts.js';
import type { HostChanged } from './service.js';

/**
 * Hosts that are gone: removed by an admin (DELETE /v1/hosts/{id}) or without a live
 * agent session for longer than A4C_HOST_LOST_AFTER_SECONDS. Their workspaces become
 * LOST (a DELETING one is DELETED: what it was deleting went with the host), which
 * holds no reservation and no quota, and leaves the host's desired set: if the host
 * comes back, its agent removes those containers. A LOST workspace stays LOST when its
 * host returns (see docs/api.md, "Hosts that are gone", for why).
 */

/**
 * In the caller's transaction, whose first locks these must be: the host's workspaces
 * move as the state table says a lost host makes them, each with its event, and the
 * host's desired-state revision moves on (they left its desired set).
 */
export async function lockHostWorkspaces(tx: Tx, hostId: string): Promise<void> {
  await lockWorkspacesOnHost(tx, hostId);
}

export async function loseWorkspacesOfHost(tx: Tx, hostId: string, actor: string, why: string): Promise<LostWorkspace[]> {
  const error = `${why}; its container and data are gone with the host: retry it to recreate it on another host, or delete it`;
  const rows = await settleWorkspacesOfLostHost(tx, hostId, error);
  if (!rows.length) return rows;
  const revision = await bumpRevision(tx, hostId);
  // They left the host's desired set at this revision: a delta since an older one names them.
  await stampDesiredRevision(tx, rows.map((r) => r.id), revision);
  for (const r of rows) {
    await appendEvent(tx, {
      kind: r.status === 'LOST' ? 'workspace.lost' : 'workspace.deleted',
      actor,
      reason: r.status === 'LOST' ? why : `${why}; it was being deleted, and its container went with the host`,
      workspaceId: r.id,
      hostId,
      changes: changesOf(
        { status: r.was, containerId: r.container_id, error: r.prev_error },
        { status: r.status, containerId: r.status === 'DELETED' ? null : r.container_id, error: r.error },
      ),
      data: { revision },
    });
    await notifyWorkspace(tx, r.id);
  }
  await notifyHost(tx, hostId);
  return rows;
}

export interface LostHostSweepDeps {
  db: Db;
  clock: Clock;
  hostChanged: HostChanged;
  log: Logger;
  lostAfterSeconds: number;
  /** Liveness window (heartbeat period × missed beats), as placement uses it. */
  liveWithinSeconds: number;
}

/**
 * One pass of the lost-host sweep. Safe on every replica at once: the health
 * bookkeeping is idempotent, and a host is declared lost in one transaction that
 * first locks its workspaces and then claims host_status.lost_at, which only one
 * transaction can set. Returns the hosts declared lost.
 */
export async function sweepLostHosts(d: LostHostSweepDeps): Promise<string[]> {
  const now = d.clock.now();
  await recordHostHealth(d.db, now, d.liveWithinSeconds);
  const declared: string[] = [];
  for (const hostId of await overdueHosts(d.db, now, d.lostAfterSeconds, d.liveWithinSeconds)) {
    const lost = await inTx(d.db, async (tx) => {
      await lockHostWorkspaces(tx, hostId);
      const since = await claimLostHost(tx, hostId, now, d.lostAfterSeconds, d.liveWithinSeconds);
      if (!since) return undefined; // back, or another replica was first
      const why = `its host ${hostId} has had no live agent session since ${since.toISOString()} (over A4C_HOST_LOST_AFTER_SECONDS, ${d.lostAfterSeconds} s)`;
      const rows = await loseWorkspacesOfHost(tx, hostId, 'control-plane', why);
      await appendEvent(tx, {
        kind: 'host.lost',
        actor: 'control-plane',
        reason: `no live agent session since ${since.toISOString()}, over ${d.lostAfterSeconds} s: its workspaces are LOST`,
        hostId,
        changes: { lost: { from: false, to: true } },
        data: { unhealthySince: since.toISOString(), lostAfterSeconds: d.lostAfterSeconds, workspaces: rows.map((r) => r.id) },
      });
      return rows;
    });
    if (!lost) continue;
    declared.push(hostId);
    d.hostChanged(hostId);
    d.log.warn({ hostId, workspaces: lost.map((r) => r.id), lostAfterSeconds: d.lostAfterSeconds }, 'host lost: its workspaces are LOST');
  }
  return declared;
}
