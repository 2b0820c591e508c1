import type { ComponentChildren } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError } from './lib/api.js';
import { dateTime, relative } from './lib/format.js';
import type { StreamState } from './lib/stream.js';

/** An API error as a person needs it: what happened, what to do next, and the request id to quote. */
export function ErrorBox({ error, onRetry, title }: { error: unknown; onRetry?: () => void; title?: string }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : undefined;
  const message = e ? e.message : error instanceof Error ? error.message : String(error);
  return (
    <div class="error-box" role="alert">
      <p class="error-title">
        {title ?? 'Something went wrong'}
        {e && e.code !== 'NETWORK' ? <span class="error-code">{e.status ? `${e.status} ` : ''}{e.code}</span> : null}
      </p>
      <p class="error-message">{message}</p>
      {e?.suggestion ? <p class="error-suggestion">{e.suggestion}</p> : null}
      <div class="error-footer">
        {e?.requestId ? <span class="muted small">request {e.requestId}</span> : <span />}
        {onRetry ? (
          <button type="button" class="btn btn-small" onClick={onRetry}>
            Try again
          </button>
        ) : null}
      </div>
    </div>
  );
}

export function Notice({ children, tone = 'info' }: { children: ComponentChildren; tone?: 'info' | 'warn' }) {
  return <div class={`notice notice-${tone}`}>{children}</div>;
}

const STATUS_TONE: Record<string, string> = {
  RUNNING: 'ok',
  healthy: 'ok',
  COMPLETED: 'ok',
  CREATING: 'busy',
  STARTING: 'busy',
  STOPPING: 'busy',
  DELETING: 'busy',
  IN_PROGRESS: 'busy',
  SCHEDULED: 'wait',
  PENDING_APPROVAL: 'wait',
  draining: 'wait',
  STOPPED: 'idle',
  DELETED: 'idle',
  FAILED: 'bad',
  REJECTED: 'bad',
  LOST: 'bad',
  unhealthy: 'bad',
};

export function StatusBadge({ status, lost }: { status: string; lost?: boolean }) {
  const tone = STATUS_TONE[status] ?? 'idle';
  const label = status.replace(/_/g, ' ').toLowerCase();
  return (
    <span class={`badge badge-${tone}`} data-status={status}>
      <span class="dot" aria-hidden="true" />
      {label}
      {lost ? <span class="badge-note"> · host lost</span> : null}
    </span>
  );
}

export function Time({ iso, now }: { iso: string | null | undefined; now?: number }) {
  if (!iso) return <span class="muted">never</span>;
  return (
    <time dateTime={iso} title={dateTime(iso)}>
      {relative(iso, now)}
    </time>
  );
}

/**
 * A capacity bar: a used part against a total, with optional threshold marks (the
 * placement thresholds) and a tone once the value passes them.
 */
export function Bar({
  label,
  value,
  max,
  detail,
  thresholds = [],
}: {
  label: string;
  value: number;
  max: number;
  detail: string;
  thresholds?: { at: number; label: string }[];
}) {
  const pct = max > 0 ? Math.min(100, Math.max(0, (value / max) * 100)) : 0;
  const passed = thresholds.filter((t) => pct >= t.at).length;
  const tone = passed === 0 ? 'ok' : passed === thresholds.length && thresholds.length > 1 ? 'bad' : 'warn';
  return (
    <div class="bar-row">
      <div class="bar-head">
        <span class="bar-label">{label}</span>
        <span class="bar-detail">{detail}</span>
      </div>
      <div class="bar" role="progressbar" aria-label={`${label}: ${detail}`} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(pct)}>
        <div class={`bar-fill bar-${tone}`} style={{ width: `${pct}%` }} />
        {thresholds.map((t) => (
          <div class="bar-mark" style={{ left: `${t.at}%` }} title={t.label} key={t.at} />
        ))}
      </div>
    </div>
  );
}

/**
 * A confirmation in a modal <dialog>: focus moves into it, Escape cancels, and focus
 * returns to where it was. Used where data could be lost.
 */
export function Confirm({
  open,
  title,
  children,
  confirmLabel,
  danger,
  onConfirm,
  onCancel,
}: {
  open: boolean;
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  danger?: boolean;
  onConfirm(): void;
  onCancel(): void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} class="dialog" aria-labelledby={titleId} onCancel={(e) => (e.preventDefault(), onCancel())}>
      <h2 id={titleId}>{title}</h2>
      <div class="dialog-body">{children}</div>
      <div class="dialog-actions">
        <button type="button" class="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" class={`btn ${danger ? 'btn-danger' : 'btn-primary'}`} onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function PageHeader({ title, subtitle, children }: { title: ComponentChildren; subtitle?: ComponentChildren; children?: ComponentChildren }) {
  return (
    <header class="page-header">
      <div>
        <h1 tabIndex={-1} id="page-title">
          {title}
        </h1>
        {subtitle ? <p class="page-subtitle">{subtitle}</p> : null}
      </div>
      {children ? <div class="page-actions">{children}</div> : null}
    </header>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <p class="empty-title">{title}</p>
      {children ? <div class="empty-body">{children}</div> : null}
    </div>
  );
}

export function Loading({ label = 'Loading' }: { label?: string }) {
  return (
    <p class="loading" role="status">
      <span class="spinner" aria-hidden="true" />
      {label}…
    </p>
  );
}

/** Says how fresh the page is: live from the events stream, reconnecting, or polling. */
export function LiveState({ state, pollSeconds }: { state: StreamState; pollSeconds?: number }) {
  const [, force] = useState(0);
  useEffect(() => {
    if (state.kind !== 'reconnecting') return;
    const id = setInterval(() => force((n) => n + 1), 1000);
    return () => clearInterval(id);
  }, [state]);
  let text: string;
  let tone: string;
  switch (state.kind) {
    case 'live':
      text = 'Live';
      tone = 'ok';
      break;
    case 'connecting':
      text = 'Connecting…';
      tone = 'wait';
      break;
    case 'reconnecting': {
      const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      text = `Live updates lost (${state.reason}); reconnecting${s ? ` in ${s} s` : '…'}`;
      tone = 'bad';
      break;
    }
    case 'unavailable':
      text = pollSeconds ? `Refreshing every ${pollSeconds} s` : 'Not live';
      tone = 'idle';
      break;
    default:
      text = 'Paused';
      tone = 'idle';
  }
  return (
    <span class={`live live-${tone}`} role="status" aria-live="polite" data-live={state.kind}>
      <span class="dot" aria-hidden="true" />
      {text}
    </span>
  );
}

export function Field({ label, children, mono }: { label: string; children: ComponentChildren; mono?: boolean }) {
  return (
    <div class="field">
      <dt>{label}</dt>
      <dd class={mono ? 'mono' : undefined}>{children ?? <span class="muted">–</span>}</dd>
    </div>
  );
}

export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="btn btn-small btn-ghost"
      aria-label={`${label}: ${text}`}
      onClick={async () => {
        await copyText(text);
        setDone(true);
        setTimeout(() => setDone(false), 1500);
      }}
    >
      {done ? 'Copied' : label}
    </button>
  );
}

/** The clipboard API where the page is a secure context, else the old selection way. */
export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    const t = document.createElement('textarea');
    t.value = text;
    t.setAttribute('readonly', '');
    t.className = 'offscreen';
    document.body.appendChild(t);
    t.select();
    document.execCommand('copy');
    t.remove();
  }
}

