import { conflict, type AutostopView, type KeepAliveReason, type Workspace } from '@a4c/common';
import { notifyWorkspace } from '../events/notify.js';
import { autostopFacts, lockAutostopSetting, setAutostopOverride } from '../store/autostop.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import type { Autostop } from './autostop.js';

const iso = (d: Date) => d.toISOString();

/**
 * Why a workspace is (still) running and when it stops, for GET /v1/workspaces/{id}:
 * the answer to "why is my workspace still running?" from the same facts the sweep
 * decides by.
 */
export async function autostopView(db: Db, autostop: Autostop, w: Workspace): Promise<AutostopView> {
  const policy = autostop.policy();
  const f = await autostopFacts(db, policy, w.id);
  const none: AutostopView = { autostopAfterSeconds: null, autostopAt: null, keptAliveBecause: [], dormantAt: null, deleteAt: null };
  if (!f) return none;
  const now = policy.now.getTime();
  const period = f.period > 0 ? f.period : null;
  const threshold = autostop.config.cpuPercent;
  const kept: KeepAliveReason[] = [];
  let autostopAt: string | null = null;
  if (f.status === 'RUNNING') {
    for (const s of f.sessions) {
      kept.push({ reason: 'open-sessions', kind: s.kind, actor: s.actor, count: s.count, message: `${s.count} open ${s.kind} session${s.count > 1 ? 's' : ''} by ${s.actor}` });
    }
    const cpuBusy = threshold !== undefined && f.cpu_percent !== null && f.cpu_sampled_at !== null && f.cpu_percent >= threshold;
    if (cpuBusy && f.cpu_sampled_at) {
      const pct = Math.round(f.cpu_percent as number);
      kept.push({
        reason: 'cpu',
        cpuPercent: f.cpu_percent as number,
        thresholdPercent: threshold,
        sampledAt: iso(f.cpu_sampled_at),
        message: `CPU at ${pct}% of a core (sampled ${iso(f.cpu_sampled_at)}), at or above the ${threshold}% that counts as activity`,
      });
    }
    const source = f.last_activity_at && f.idle_since.getTime() === f.last_activity_at.getTime()
      ? 'session'
      : f.cpu_busy_at && f.idle_since.getTime() === f.cpu_busy_at.getTime()
        ? 'cpu'
        : 'started';
    const what = { session: 'a session began, ended or moved bytes', cpu: 'CPU was last busy', started: 'it started running' }[source];
    kept.push({ reason: 'recent-activity', source, at: iso(f.idle_since), message: `recent activity at ${iso(f.idle_since)}: ${what}; idle time counts from then` });
    if (period !== null) {
      // An open session holds it however long it is quiet: the idle time starts when it closes.
      autostopAt = f.sessions.length ? new Date(now + period * 1000).toISOString() : iso(f.stop_at);
    }
  }
  return {
    autostopAfterSeconds: period,
    autostopAt,
    keptAliveBecause: kept,
    dormantAt: f.dormant_at ? iso(f.dormant_at) : null,
    deleteAt: f.delete_at ? iso(f.delete_at) : null,
  };
}

/**
 * Sets a workspace's own idle period (PATCH): null or 0 never stops it. The caller has
 * checked the principal may (Autostop.checkOverride). One transaction with its event.
 */
export async function updateAutostop(db: Db, autostop: Autostop, id: string, seconds: number | null, actor: string): Promise<void> {
  const stored = seconds ?? 0;
  await inTx(db, async (tx) => {
    const cur = await lockAutostopSetting(tx, id);
    if (!cur) return;
    if (cur.status === 'DELETED' || cur.status === 'DELETING') throw conflict(`workspace ${id} is ${cur.status}`, 'create a new workspace');
    const before = cur.autostop_after_seconds;
    if (before === stored) return;
    await setAutostopOverride(tx, id, stored);
    const show = (v: number | null) => (v === null ? `the tier's (${autostop.tierPeriods[cur.tier] ?? 'never'})` : v === 0 ? 'never' : `${v} s`);
    await appendEvent(tx, {
      kind: 'workspace.updated',
      actor,
      reason: `autostopAfterSeconds set to ${show(stored)} (was ${show(before)})`,
      workspaceId: id,
      hostId: cur.host_id,
      changes: { autostopAfterSeconds: { from: before, to: stored } },
    });
    await notifyWorkspace(tx, id);
  });
}
