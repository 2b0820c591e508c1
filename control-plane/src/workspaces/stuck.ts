import type { Logger } from '@a4c/common';
import { notifyHost, notifyWorkspace } from '../events/notify.js';
import type { Observer } from '../metrics/observer.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { bumpRevision } from '../store/hosts.js';
import type { HostChanged } from './service.js';
import { COMING_UP_STATUSES, sqlList } from './states.js';

export interface SweepDeps {
  db: Db;
  /** Told after commit when a host's desired state changed. */
  hostChanged: HostChanged;
  observe: Observer;
  log: Logger;
}

/**
 * Fails workspaces that have been coming up (CREATING, STARTING: the state table's
 * unsettled statuses that should run) for longer than timeoutSeconds,
 * naming the step they were stuck at. Safe on every replica at once: SKIP LOCKED, and
 * each row changes in one statement.
 */
export async function failStuck(d: SweepDeps, timeoutSeconds: number): Promise<number> {
  const hosts = new Set<string>();
  let creationsFailed = 0;
  const n = await inTx(d.db, async (tx) => {
    const { rows } = await tx.query<{ id: string; host_id: string | null; failed_step: string; status: string; error: string; was: string; container_id: string | null }>(
      `WITH stuck AS (
         SELECT id, status AS was FROM workspaces
          WHERE status IN (${sqlList(COMING_UP_STATUSES)}) AND status_changed_at < now() - make_interval(secs => $1)
          ORDER BY status_changed_at LIMIT 100 FOR UPDATE SKIP LOCKED)
       UPDATE workspaces w
          SET status = 'FAILED',
              failed_step = COALESCE(w.current_step, 'dispatch'),
              error = format('%s did not finish within %s s: stuck at step %s%s', lower(w.status), $1::int,
                             COALESCE(w.current_step, 'dispatch'),
                             CASE WHEN w.current_step IS NULL THEN ' (the host''s agent never reported on it; is the host connected?)' ELSE '' END),
              updated_at = now()
         FROM stuck WHERE w.id = stuck.id
       RETURNING w.id, w.host_id, w.failed_step, w.status, w.error, stuck.was, w.container_id`,
      [timeoutSeconds],
    );
    creationsFailed = rows.filter((r) => r.was === 'CREATING').length;
    for (const r of rows) {
      if (r.host_id) hosts.add(r.host_id);
      await appendEvent(tx, {
        kind: 'workspace.failed',
        actor: 'control-plane',
        reason: r.error,
        workspaceId: r.id,
        hostId: r.host_id,
        changes: changesOf({ status: r.was, failedStep: null, error: null }, { status: r.status, failedStep: r.failed_step, error: r.error }),
        data: { step: r.failed_step, timeoutSeconds },
      });
      await notifyWorkspace(tx, r.id);
    }
    // Failed workspaces leave their host's desired set.
    for (const h of [...hosts].sort()) {
      const revision = await bumpRevision(tx, h);
      await tx.query(`UPDATE workspaces SET desired_revision = $2 WHERE host_id = $1 AND status = 'FAILED' AND id = ANY($3)`, [h, revision, rows.map((r) => r.id)]);
      await notifyHost(tx, h);
    }
    return rows.length;
  });
  for (const h of hosts) d.hostChanged(h);
  for (let i = 0; i < creationsFailed; i++) d.observe.workspaceCreated('failed');
  if (n) d.log.warn({ workspaces: n, timeoutSeconds }, 'failed workspaces stuck coming up');
  return n;
}
