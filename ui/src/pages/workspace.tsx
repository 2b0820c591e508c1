import { useLocation, useRoute } from 'preact-iso';
import { useEffect, useState } from 'preact/hooks';
import { get } from '../lib/api.js';
import { useInterval, useLoad, useNow, useSession } from '../lib/hooks.js';
import { SETTLED, type Workspace } from '../lib/model.js';
import { CopyButton, ErrorBox, Field, Loading, PageHeader, StatusBadge, Time } from '../components.js';
import { WorkspaceActions } from '../workspace-actions.js';
import { WebTerminal } from '../terminal.js';
import { Timeline } from '../timeline.js';
import { dateTime, shortId } from '../lib/format.js';

const STEP_TEXT: Record<string, string> = {
  image: 'getting the image onto the host',
  create: 'creating the container',
  start: 'starting the container',
  ready: 'waiting for the container to run',
  run: 'running (it exited by itself)',
  dispatch: 'handing it to the host’s agent',
};

/** What to do about a failure, from the step it failed at and the error. */
function failureSuggestion(w: Workspace): string {
  if (w.error && /out of memory/i.test(w.error)) return 'It ran out of memory: delete it and create it again with a larger tier.';
  if (w.failedStep === 'image') return 'The host could not get the image. Check the image name (or schedule a build for the project), then Retry.';
  if (w.failedStep === 'dispatch') return 'The host’s agent never acted on it: check the host on the Hosts page, then Retry (it may be placed elsewhere).';
  if (w.failedStep === 'run') return 'Its main process kept exiting. Retry starts it afresh; if it fails again, check the image.';
  return 'Retry removes what the failed attempt left and creates it afresh, possibly on another host.';
}

const STEPS = ['Requested', 'Placed on a host', 'Container starting', 'Running'];

function progressStep(w: Workspace): number {
  if (w.status === 'RUNNING') return 4;
  if (w.status === 'CREATING' || w.status === 'STARTING') return w.hostId ? 2 : 1;
  return 0;
}

export function WorkspacePage() {
  const { params } = useRoute();
  const { me } = useSession();
  const { route } = useLocation();
  const id = params.id as string;
  const loaded = useLoad((signal) => get<Workspace>(`/v1/workspaces/${encodeURIComponent(id)}`, signal), [id]);
  const [w, setW] = useState<Workspace>();
  const now = useNow();
  useEffect(() => loaded.data && setW(loaded.data), [loaded.data]);
  useEffect(() => setW(undefined), [id]);
  // Refresh quickly while it changes, slowly once settled; events make it immediate.
  const settled = w ? SETTLED.includes(w.status) : false;
  useInterval(() => loaded.reload(), settled ? 5000 : 1000);

  if (!w) {
    return loaded.error ? (
      <>
        <PageHeader title="Workspace" />
        <ErrorBox error={loaded.error} onRetry={loaded.reload} title="Could not load this workspace" />
        <p>
          <a href="/ui/workspaces">Back to workspaces</a>
        </p>
      </>
    ) : (
      <Loading label="Loading the workspace" />
    );
  }
  const canChange = me.role === 'admin' || me.id === w.userId;
  const step = progressStep(w);
  return (
    <>
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href="/ui/workspaces">Workspaces</a> <span aria-hidden="true">/</span> <span aria-current="page">{w.name}</span>
      </nav>
      <PageHeader
        title={w.name}
        subtitle={
          <>
            <StatusBadge status={w.status} lost={w.hostLost} /> <span class="muted">{w.projectName} · {w.tier} · {w.arch}</span>
          </>
        }
      >
        <WorkspaceActions
          w={w}
          canChange={canChange}
          onDone={(after) => {
            setW(after);
            if (after.status === 'DELETING' || after.status === 'DELETED') route('/ui/workspaces');
          }}
        />
      </PageHeader>
      {loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} title="Could not refresh" /> : null}

      {step > 0 && step < 4 ? (
        <section class="card progress-card" aria-label="Progress">
          <ol class="stepper">
            {STEPS.map((s, i) => (
              <li key={s} class={i < step ? 'done' : i === step ? 'current' : ''} aria-current={i === step ? 'step' : undefined}>
                <span class="step-dot" aria-hidden="true" />
                {s}
              </li>
            ))}
          </ol>
          <p class="muted small">It usually takes a few seconds. This page updates by itself.</p>
        </section>
      ) : null}

      {w.status === 'FAILED' || w.status === 'REJECTED' ? (
        <section class="failure" role="alert" aria-labelledby="failure-title">
          <h2 id="failure-title">{w.status === 'REJECTED' ? 'An admin rejected this workspace' : `Failed while ${STEP_TEXT[w.failedStep ?? ''] ?? w.failedStep ?? 'coming up'}`}</h2>
          {w.failedStep ? (
            <p>
              Step <code>{w.failedStep}</code>, attempt {w.attempt + 1}
            </p>
          ) : null}
          {w.error ? <pre class="failure-error">{w.error}</pre> : null}
          {w.status === 'FAILED' ? <p class="failure-suggestion">{failureSuggestion(w)}</p> : null}
        </section>
      ) : null}

      {w.hostLost ? (
        <p class="notice notice-warn">Its host stopped reporting: the status shown is the last one known. Nothing is deleted; it recovers when the host returns.</p>
      ) : null}

      <div class="grid-2">
        <section class="card" aria-labelledby="details-title">
          <h2 id="details-title">Details</h2>
          <dl class="fields">
            <Field label="Owner">{w.userId}</Field>
            <Field label="Host">{w.hostId ? <a href={`/ui/hosts/${w.hostId}`}>{w.hostId}</a> : null}</Field>
            <Field label="Hostname" mono>
              {w.hostname}
            </Field>
            <Field label="SSH">
              {w.sshCommand ? (
                <span class="inline-copy">
                  <code>{w.sshCommand}</code> <CopyButton text={w.sshCommand} />
                </span>
              ) : null}
            </Field>
            <Field label="Image" mono>
              {w.image}
            </Field>
            <Field label="Container" mono>
              {w.containerId ? w.containerId.slice(0, 12) : null}
            </Field>
            <Field label="Attempt">{String(w.attempt + 1)}</Field>
            <Field label="Created">
              <Time iso={w.createdAt} now={now} /> <span class="muted small">({dateTime(w.createdAt)})</span>
            </Field>
            <Field label="Last session">
              {w.lastActivityAt ? <Time iso={w.lastActivityAt} now={now} /> : <span class="muted">none yet</span>}
            </Field>
            {w.autostopAfterSeconds !== undefined ? (
              <Field label="Autostop">
                {w.autostopAt ? <Time iso={w.autostopAt} now={now} /> : <span class="muted">never</span>}
                {w.autostopAfterSeconds ? <span class="muted small"> (after {Math.round(w.autostopAfterSeconds / 60)} min idle)</span> : null}
                {w.autostopAfterSeconds && w.keptAliveBecause?.length ? (
                  <ul class="small kept-alive" aria-label="Kept alive because">
                    {w.keptAliveBecause.map((k) => (
                      <li key={k.message}>{k.message}</li>
                    ))}
                  </ul>
                ) : null}
              </Field>
            ) : null}
            {w.dormantAt ? (
              <Field label="Dormant">
                since <Time iso={w.dormantAt} now={now} />
                {w.deleteAt ? (
                  <>
                    ; deleted <Time iso={w.deleteAt} now={now} /> unless started
                  </>
                ) : null}
              </Field>
            ) : null}
            <Field label="Last change">
              <Time iso={w.updatedAt} now={now} />
            </Field>
            <Field label="ID" mono>
              <span title={w.id}>{shortId(w.id)}</span> <CopyButton text={w.id} label="Copy id" />
            </Field>
          </dl>
        </section>
        <Timeline workspaceId={w.id} onEvent={() => loaded.reload()} />
      </div>

      {w.status === 'RUNNING' ? (
        <WebTerminal workspaceId={w.id} />
      ) : (
        <section class="card terminal-off">
          <h2>Terminal</h2>
          <p class="muted">The terminal opens once the workspace is running{w.status === 'STOPPED' && canChange ? ': start it first' : ''}.</p>
        </section>
      )}
    </>
  );
}
