import { useState } from 'preact/hooks';
import { post } from './lib/api.js';
import { bytes, cpus, percent } from './lib/format.js';
import type { HostView } from './lib/model.js';
import { Bar, Confirm, ErrorBox, StatusBadge, Time } from './components.js';

/** The placement thresholds' defaults (A4C_MAX_DISK_PERCENT, A4C_MAX_MEMORY_PERCENT): the API does not report the configured ones yet. */
export const DISK_THRESHOLD = 80;
export const MEMORY_THRESHOLD = 90;

export function HostCard({ h, admin, now, link = true, onChange }: { h: HostView; admin: boolean; now: number; link?: boolean; onChange(h: HostView): void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [asking, setAsking] = useState(false);
  const draining = h.status === 'draining';
  const toggle = async () => {
    setAsking(false);
    setBusy(true);
    setError(undefined);
    try {
      onChange(await post<HostView>(`/v1/hosts/${encodeURIComponent(h.id)}/${draining ? 'activate' : 'drain'}`));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const s = h.stats;
  return (
    <article class="card host-card" aria-labelledby={`host-${h.id}`} data-host={h.id}>
      <div class="host-head">
        <div>
          <h2 id={`host-${h.id}`} class="host-name">
            {link ? <a href={`/ui/hosts/${encodeURIComponent(h.id)}`}>{h.id}</a> : h.id}
          </h2>
          <p class="muted small">
            {h.arch} · agent {h.agentVersion || 'unknown'} · {h.workspaceCount} workspace{h.workspaceCount === 1 ? '' : 's'}
          </p>
        </div>
        <div class="host-status">
          <StatusBadge status={h.status} />
          <span class="muted small" data-heartbeat>
            {h.connected ? 'heartbeat ' : 'last heartbeat '}
            <Time iso={h.lastHeartbeatAt} now={now} />
          </span>
        </div>
      </div>
      {!h.connected ? <p class="notice notice-warn">Not connected: nothing new is placed here until its agent reports again. Its workspaces are kept.</p> : null}
      {s && !s.dockerReady ? <p class="notice notice-warn">Its Docker Engine is not answering.</p> : null}
      <div class="bars">
        <p class="bars-title">Reserved of allocatable</p>
        <Bar label="CPU" value={h.reserved.cpus} max={h.allocatable.cpus} detail={`${cpus(h.reserved.cpus)} of ${cpus(h.allocatable.cpus)}`} />
        <Bar label="Memory" value={h.reserved.memoryBytes} max={h.allocatable.memoryBytes} detail={`${bytes(h.reserved.memoryBytes)} of ${bytes(h.allocatable.memoryBytes)}`} />
        <Bar label="Disk" value={h.reserved.diskBytes} max={h.allocatable.diskBytes} detail={`${bytes(h.reserved.diskBytes)} of ${bytes(h.allocatable.diskBytes)}`} />
        <p class="bars-title">In use on the host</p>
        {s ? (
          <>
            <Bar
              label="Disk used"
              value={s.diskPercent}
              max={100}
              detail={`${percent(s.diskPercent)} · placement stops at ${DISK_THRESHOLD} %`}
              thresholds={[{ at: DISK_THRESHOLD, label: `no new workspaces at ${DISK_THRESHOLD} %` }]}
            />
            <Bar
              label="Memory used"
              value={s.memoryPercent}
              max={100}
              detail={`${percent(s.memoryPercent)} · placement stops at ${MEMORY_THRESHOLD} %`}
              thresholds={[{ at: MEMORY_THRESHOLD, label: `no new workspaces at ${MEMORY_THRESHOLD} %` }]}
            />
          </>
        ) : (
          <p class="muted small">No stats reported yet.</p>
        )}
      </div>
      {admin ? (
        <div class="host-actions">
          <button type="button" class={`btn btn-small ${draining ? 'btn-primary' : ''}`} disabled={busy} onClick={() => (draining ? toggle() : setAsking(true))}>
            {busy ? (draining ? 'Activating…' : 'Draining…') : draining ? 'Activate' : 'Drain'}
          </button>
          <span class="muted small">{draining ? 'Draining: no new workspaces are placed here.' : 'Accepting new workspaces.'}</span>
          <Confirm open={asking} title={`Drain ${h.id}?`} confirmLabel="Drain host" onCancel={() => setAsking(false)} onConfirm={toggle}>
            <p>No new workspaces will be placed on {h.id}. The {h.workspaceCount} already there keep running. Activate it again at any time.</p>
          </Confirm>
        </div>
      ) : null}
      <ErrorBox error={error} title="Could not change the host" />
    </article>
  );
}
