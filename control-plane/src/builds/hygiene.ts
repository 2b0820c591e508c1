import { conflict, notFound, type Build, type Logger } from '@a4c/common';
import type { ControlMessage } from '@a4c/proto';
import { cancelBuildRow, failOverlongBuilds, reclaimForSameWorker } from '../store/build-hygiene.js';
import type { SessionGuard } from '../store/host-sessions.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import { toBuild, type BuildRow } from './queue.js';

/** Sends a control message on a host's stream if this replica holds it; false otherwise. */
export type SendToHost = (hostId: string, msg: ControlMessage) => boolean;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Tells a build's worker to stop it. Only the replica holding the host's stream can say
 * so now; on any other replica the worker hears it at its next progress report, which
 * carries the claim that is no longer running (agents/build-messages.ts answers it with a
 * BuildCancel), within its heartbeat period.
 */
function tellWorker(send: SendToHost, row: BuildRow, reason: string): void {
  if (row.worker_host_id && row.claim_id) {
    send(row.worker_host_id, { payload: { $case: 'buildCancel', value: { buildId: row.id, claimId: row.claim_id, reason } } });
  }
}

/** POST /v1/image-schedules/{id}/cancel: a queued build never runs; a running one is stopped on its host. */
export async function cancelBuild(db: Db, send: SendToHost, id: string, actor: string, log: Logger): Promise<Build> {
  const reason = `cancelled by ${actor}`;
  const res = UUID.test(id)
    ? await inTx(db, async (tx) => {
        const r = await cancelBuildRow(tx, id, reason);
        if (!r || r.row.status !== 'CANCELLED' || r.was === 'CANCELLED') return r;
        await appendEvent(tx, {
          kind: 'build.cancelled',
          actor,
          reason: r.was === 'IN_PROGRESS' ? `${reason}; its worker ${r.row.worker_host_id} is told to stop it` : `${reason} while queued`,
          hostId: r.was === 'IN_PROGRESS' ? r.row.worker_host_id : null,
          buildId: r.row.id,
          userId: r.row.user_id,
          changes: { status: { from: r.was, to: 'CANCELLED' }, error: { from: null, to: reason } },
          data: { buildId: r.row.id, was: r.was, worker: r.was === 'IN_PROGRESS' ? r.row.worker_host_id : null },
        });
        return r;
      })
    : undefined;
  if (!res) throw notFound('image build', id, 'list builds with `a4c build list`');
  if (res.row.status !== 'CANCELLED') {
    throw conflict(`image build ${id} already finished (${res.row.status}); only a SCHEDULED or IN_PROGRESS build can be cancelled`, 'schedule a new build if you need the image');
  }
  if (res.was === 'IN_PROGRESS') tellWorker(send, res.row, reason);
  log.info({ buildId: id, was: res.was, actor }, 'build cancelled');
  return toBuild(res.row);
}

/** The maximum build duration: overlong builds FAILED with the reason, their workers told to stop. */
export async function failOverlong(db: Db, send: SendToHost, maxSeconds: number): Promise<BuildRow[]> {
  const rows = await inTx(db, async (tx) => {
    const failed = await failOverlongBuilds(tx, maxSeconds);
    for (const r of failed) {
      await appendEvent(tx, {
        kind: 'build.failed',
        actor: 'control-plane',
        reason: r.error ?? 'the build ran too long',
        hostId: r.worker_host_id,
        buildId: r.id,
        userId: r.user_id,
        changes: { status: { from: 'IN_PROGRESS', to: 'FAILED' }, error: { from: null, to: r.error } },
        data: { buildId: r.id, reason: 'max_duration', maxSeconds, error: r.error },
      });
    }
    return failed;
  });
  for (const r of rows) tellWorker(send, r, r.error ?? 'the build ran too long');
  return rows;
}

/**
 * The worker of a requeued build reported progress under its old claim: if nobody else
 * claimed the build meanwhile, it is the same host's again under a new claim, and the
 * answer is a BuildAssignment that the agent adopts for the build it is still running
 * (agent/src/builds/builder.ts). undefined: the worker must stop instead.
 */
export async function readoptBuild(db: Db, hostId: string, buildId: string, leaseMs: number, live?: SessionGuard): Promise<ControlMessage | undefined> {
  const row = await inTx(db, async (tx) => {
    await live?.(tx);
    const r = await reclaimForSameWorker(tx, buildId, hostId);
    if (r) {
      await appendEvent(tx, {
        kind: 'build.claimed',
        actor: `agent:${hostId}`,
        reason: `host ${hostId} was still running it after its lease lapsed; claimed again by the same host, which carries on`,
        hostId,
        buildId: r.id,
        changes: { status: { from: 'SCHEDULED', to: 'IN_PROGRESS' }, worker: { from: hostId, to: hostId } },
        data: { buildId: r.id, claimId: r.claim_id, attempts: r.attempts, readopted: true },
      });
    }
    return r;
  });
  if (!row) return undefined;
  return {
    payload: {
      $case: 'buildAssignment',
      value: {
        buildId: row.id,
        claimId: row.claim_id as string,
        imageName: row.image_name,
        project: row.project,
        arch: row.arch,
        changeNumber: row.change_number,
        imageTag: row.image_tag,
        leaseMs,
      },
    },
  };
}
