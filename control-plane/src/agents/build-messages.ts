import type { Logger } from '@a4c/common';
import type { BuildProgress, BuildResult, ControlMessage } from '@a4c/proto';
import { readoptBuild } from '../builds/hygiene.js';
import { claimBuilds, completeBuild, recordProgress } from '../builds/queue.js';
import type { Observer } from '../metrics/observer.js';
import { inTx, type Db } from '../store/db.js';
import type { SessionGuard } from '../store/host-sessions.js';
import { UUID } from './proto-mapping.js';

/** What a build message needs of the session it came on. */
export interface BuildSession {
  db: Db;
  hostId: string;
  arch: string;
  buildLeaseMs: number;
  log: Logger;
  observe: Observer;
  /** Every write checks, in its own transaction, that this session is still the host's. */
  live: SessionGuard;
  write(msg: ControlMessage): void;
}

/**
 * Claims builds of this host's arch for its free slots and sends them, oldest first.
 * Messages of one session are handled in order, so two polls never claim at once.
 */
export async function assignBuilds(s: BuildSession, slots: number): Promise<void> {
  const claimed = await inTx(s.db, async (tx) => {
    await s.live(tx);
    return claimBuilds(tx, s.hostId, s.arch, Math.min(slots, 64));
  });
  for (const b of claimed) {
    s.log.info({ buildId: b.id, claimId: b.claim_id, attempts: b.attempts }, 'build claimed');
    s.write({
      payload: {
        $case: 'buildAssignment',
        value: {
          buildId: b.id,
          claimId: b.claim_id as string,
          imageName: b.image_name,
          project: b.project,
          arch: b.arch,
          changeNumber: b.change_number,
          imageTag: b.image_tag,
          leaseMs: s.buildLeaseMs,
        },
      },
    });
  }
}

/** Progress under a claim; a lost claim is re-adopted if nobody else took the build, else the worker is told to stop. */
export async function buildProgress(s: BuildSession, b: BuildProgress): Promise<void> {
  if (!UUID.test(b.buildId) || !UUID.test(b.claimId)) return;
  const recorded = await inTx(s.db, async (tx) => {
    await s.live(tx);
    return recordProgress(tx, b.buildId, b.claimId, b.percent, b.logLines.slice(-500));
  });
  if (recorded) return;
  const again = await readoptBuild(s.db, s.hostId, b.buildId, s.buildLeaseMs, s.live);
  if (again) {
    s.log.info({ buildId: b.buildId }, 'build re-claimed by the host still running it');
    s.write(again);
    return;
  }
  s.write({
    payload: {
      $case: 'buildCancel',
      value: {
        buildId: b.buildId,
        claimId: b.claimId,
        reason: 'the claim is no longer yours (requeued after a silent lease, cancelled, past its maximum duration, or finished)',
      },
    },
  });
}

export async function buildResult(s: BuildSession, r: BuildResult): Promise<void> {
  if (!UUID.test(r.buildId) || !UUID.test(r.claimId)) return;
  const { outcome } = await inTx(s.db, async (tx) => {
    await s.live(tx);
    return completeBuild(tx, s.hostId, {
      buildId: r.buildId,
      claimId: r.claimId,
      success: r.success,
      imageId: r.imageId,
      error: r.error,
      logLines: r.logLines.slice(-500),
      pushedRef: r.pushedRef.slice(0, 512),
    });
  });
  s.log.info({ buildId: r.buildId, outcome }, 'build result');
  if (outcome !== 'discarded') s.observe.imageBuilt(outcome === 'completed' ? 'success' : 'failed');
}
