import { useState } from 'preact/hooks';
import { del, post } from './lib/api.js';
import type { Workspace } from './lib/model.js';
import { Confirm, ErrorBox } from './components.js';

type Action = 'stop' | 'start' | 'retry' | 'delete';

const LABEL: Record<Action, string> = { stop: 'Stop', start: 'Start', retry: 'Retry', delete: 'Delete' };

/** What can be done to a workspace in its state, by someone allowed to change it. */
export function actionsFor(w: Workspace): Action[] {
  switch (w.status) {
    case 'RUNNING':
      return ['stop', 'delete'];
    case 'STOPPED':
      return ['start', 'delete'];
    case 'FAILED':
    case 'LOST':
      return ['retry', 'delete'];
    case 'CREATING':
    case 'STARTING':
    case 'STOPPING':
    case 'PENDING_APPROVAL':
      return ['delete'];
    default:
      return [];
  }
}

/**
 * Stop, start, retry and delete, each asking first where something could be lost:
 * stopping ends the running processes, deleting removes the container.
 */
export function WorkspaceActions({ w, canChange, compact, onDone }: { w: Workspace; canChange: boolean; compact?: boolean; onDone(w: Workspace): void }) {
  const [asking, setAsking] = useState<Action>();
  const [busy, setBusy] = useState<Action>();
  const [error, setError] = useState<unknown>();
  if (!canChange) return null;
  const run = async (a: Action) => {
    setAsking(undefined);
    setBusy(a);
    setError(undefined);
    try {
      const path = `/v1/workspaces/${w.id}`;
      const after = a === 'delete' ? await del<Workspace>(path) : await post<Workspace>(`${path}/${a}`);
      onDone(after);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(undefined);
    }
  };
  const actions = actionsFor(w);
  if (!actions.length) return null;
  return (
    <div class={compact ? 'actions actions-compact' : 'actions'}>
      {actions.map((a) => (
        <button
          type="button"
          key={a}
          class={`btn ${compact ? 'btn-small' : ''} ${a === 'delete' ? 'btn-danger-quiet' : a === 'start' || a === 'retry' ? 'btn-primary' : ''}`}
          disabled={busy !== undefined}
          aria-label={compact ? `${LABEL[a]} ${w.name}` : undefined}
          onClick={() => (a === 'stop' || a === 'delete' ? setAsking(a) : run(a))}
        >
          {busy === a ? `${LABEL[a]}…` : LABEL[a]}
        </button>
      ))}
      <Confirm
        open={asking === 'stop'}
        title={`Stop ${w.name}?`}
        confirmLabel="Stop workspace"
        onCancel={() => setAsking(undefined)}
        onConfirm={() => run('stop')}
      >
        <p>Everything running in it ends: unsaved work in open editors and shells is lost. The container and its files stay, and Start resumes it.</p>
      </Confirm>
      <Confirm
        open={asking === 'delete'}
        title={`Delete ${w.name}?`}
        confirmLabel="Delete workspace"
        danger
        onCancel={() => setAsking(undefined)}
        onConfirm={() => run('delete')}
      >
        <p>
          The container is removed, with everything outside <code>/workspace</code>. Your files in <code>/workspace</code> (the volume{' '}
          <code>a4c-home-{w.userId}</code>) stay. This cannot be undone.
        </p>
      </Confirm>
      {error ? (
        <div class="actions-error">
          <ErrorBox error={error} title={`Could not ${busy ?? 'do that'}`} />
        </div>
      ) : null}
    </div>
  );
}
