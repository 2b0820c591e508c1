import { useRoute } from 'preact-iso';
import { useEffect, useRef, useState } from 'preact/hooks';
import { get, post } from '../lib/api.js';
import { useInterval, useLoad, useNow } from '../lib/hooks.js';
import type { Build, BuildLogLine } from '../lib/model.js';
import { Confirm, ErrorBox, Field, Loading, PageHeader, StatusBadge, Time } from '../components.js';

/** A build and its log, followed while it runs (GET …/logs?after=<last seq>). */
export function BuildPage() {
  const { params } = useRoute();
  const id = params.id as string;
  const loaded = useLoad((signal) => get<Build>(`/v1/image-schedules/${encodeURIComponent(id)}`, signal), [id]);
  const b = loaded.data;
  const [lines, setLines] = useState<BuildLogLine[]>([]);
  const [logError, setLogError] = useState<unknown>();
  const [follow, setFollow] = useState(true);
  const after = useRef(0);
  const logBox = useRef<HTMLPreElement>(null);
  const now = useNow();
  const [asking, setAsking] = useState(false);
  const [cancelling, setCancelling] = useState(false);
  const [cancelError, setCancelError] = useState<unknown>();
  const finished = b && (b.status === 'COMPLETED' || b.status === 'FAILED' || b.status === 'CANCELLED');

  const readLog = async () => {
    try {
      const r = await get<{ status: string; lines: BuildLogLine[] }>(`/v1/image-schedules/${encodeURIComponent(id)}/logs?after=${after.current}&limit=1000`);
      if (r.lines.length) {
        after.current = r.lines[r.lines.length - 1]?.seq ?? after.current;
        setLines((l) => [...l, ...r.lines]);
      }
      setLogError(undefined);
    } catch (e) {
      setLogError(e);
    }
  };
  useEffect(() => {
    after.current = 0;
    setLines([]);
    void readLog();
  }, [id]);
  useInterval(() => {
    if (!finished) {
      loaded.reload();
      void readLog();
    }
  }, 1000);
  useEffect(() => {
    if (follow && logBox.current) logBox.current.scrollTop = logBox.current.scrollHeight;
  }, [lines, follow]);

  const cancel = async () => {
    setAsking(false);
    setCancelling(true);
    setCancelError(undefined);
    try {
      await post<Build>(`/v1/image-schedules/${encodeURIComponent(id)}/cancel`);
      loaded.reload();
      void readLog();
    } catch (e) {
      setCancelError(e);
    } finally {
      setCancelling(false);
    }
  };

  if (!b) return loaded.error ? <ErrorBox error={loaded.error} onRetry={loaded.reload} title="Could not load this build" /> : <Loading label="Loading the build" />;
  const again = `/ui/builds/new?${new URLSearchParams({ imageName: b.imageName, project: b.project, arch: b.arch, changeNumber: b.changeNumber })}`;
  return (
    <>
      <nav class="crumbs" aria-label="Breadcrumb">
        <a href="/ui/builds">Builds</a> <span aria-hidden="true">/</span> <span aria-current="page">{b.imageTag}</span>
      </nav>
      <PageHeader title={b.imageTag} subtitle={<StatusBadge status={b.status} />}>
        {finished ? (
          <a class="btn" href={again}>
            Build again…
          </a>
        ) : (
          <button type="button" class="btn btn-danger-quiet" disabled={cancelling} onClick={() => setAsking(true)}>
            {cancelling ? 'Cancel build…' : 'Cancel build'}
          </button>
        )}
      </PageHeader>
      <Confirm open={asking} title={`Cancel ${b.imageTag}?`} confirmLabel="Cancel build" danger onCancel={() => setAsking(false)} onConfirm={() => void cancel()}>
        <p>{b.status === 'IN_PROGRESS' ? 'The build stops on its host now; what it made so far is thrown away.' : 'It leaves the queue and is never built.'} Build again to start over.</p>
      </Confirm>
      {cancelError ? <ErrorBox error={cancelError} title="Could not cancel the build" /> : null}
      {b.error ? (
        <section class="failure" role="alert">
          <h2>The build failed</h2>
          <pre class="failure-error">{b.error}</pre>
          <p class="failure-suggestion">Fix the cause, then build again (same project, arch and change number).</p>
        </section>
      ) : null}
      <div class="grid-2">
        <section class="card" aria-labelledby="build-details">
          <h2 id="build-details">Details</h2>
          <dl class="fields">
            <Field label="Project">{b.project}</Field>
            <Field label="Change">{b.changeNumber}</Field>
            <Field label="Architecture">{b.arch}</Field>
            <Field label="User">{b.userId}</Field>
            <Field label="Worker">{b.worker ? <a href={`/ui/hosts/${b.worker}`}>{b.worker}</a> : null}</Field>
            <Field label="Progress">{`${Math.round(b.progress)} %`}</Field>
            <Field label="Claims">{`${b.attempts} (requeued ${b.retryCount} times)`}</Field>
            <Field label="Scheduled">
              <Time iso={b.createdAt} now={now} />
            </Field>
            <Field label="Finished">{b.finishedAt ? <Time iso={b.finishedAt} now={now} /> : null}</Field>
            <Field label="Image id" mono>
              {b.imageId ? b.imageId.replace(/^sha256:/, '').slice(0, 12) : null}
            </Field>
          </dl>
        </section>
        <section class="card log-card" aria-labelledby="log-title">
          <div class="card-head">
            <h2 id="log-title">Log</h2>
            <label class="check">
              <input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} /> Follow
            </label>
          </div>
          {logError ? <ErrorBox error={logError} /> : null}
          <pre class="log" ref={logBox} tabIndex={0} aria-label="Build log">
            {lines.length ? lines.map((l) => `${l.line}\n`).join('') : finished ? 'No log lines.' : 'Waiting for the first log lines…'}
          </pre>
        </section>
      </div>
    </>
  );
}
