import type { Logger } from '@a4c/common';
import type { HostSender } from '../access/broker.js';
import type { ControlPlaneConfig } from '../config.js';
import { Drainer } from '../drains/drainer.js';
import { systemClock, type Clock } from '../clock.js';
import type { ChangeFeed } from '../events/notify.js';
import type { Db } from '../store/db.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { Mover } from './mover.js';
import { TransferRelay } from './relay.js';

export interface Moves {
  relay: TransferRelay;
  mover: Mover;
  drainer: Drainer;
  stop(): Promise<void>;
}

/** Wires workspace moves (relay, mover, its stale sweep) and host drains for the control plane. */
export function startMoves(
  d: { db: Db; feed: ChangeFeed; workspaces: WorkspaceService; sendToHost: HostSender; hostChanged: (hostId: string) => void; clock?: Clock | undefined },
  config: ControlPlaneConfig,
  liveWithinSeconds: number,
  log: Logger,
): Moves {
  const relay = new TransferRelay(
    d.db,
    d.feed,
    d.sendToHost,
    { advertiseAddress: config.access.advertiseGrpcAddress, requireClientCertificates: !config.grpcTls.insecure, attachTimeoutMs: config.access.attachTimeoutMs },
    log,
  );
  relay.start();
  const mover = new Mover(
    d.db,
    d.workspaces,
    relay,
    d.hostChanged,
    {
      destination: { liveWithinSeconds, ...config.placement },
      settleSeconds: config.moves.settleSeconds,
      corruptVolumeOffset: config.moves.testCorruptVolumeOffset,
    },
    log,
  );
  const drainer = new Drainer(d.db, d.workspaces, mover, d.clock ?? systemClock, config.moves.drainTickMs, log);
  drainer.start();
  const staleSweep = setInterval(() => {
    mover.failStale(config.moves.staleSeconds).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'stale-move sweep failed'));
  }, Math.min(60_000, (config.moves.staleSeconds * 1000) / 4));
  staleSweep.unref();
  if (config.moves.testCorruptVolumeOffset !== undefined) {
    log.warn({ offset: config.moves.testCorruptVolumeOffset }, 'A4C_TEST_MOVE_CORRUPT_OFFSET is set: every move will fail its checksum (tests only)');
  }
  return {
    relay,
    mover,
    drainer,
    stop: async () => {
      drainer.stop();
      clearInterval(staleSweep);
    },
  };
}
