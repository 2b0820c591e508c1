import { randomUUID } from 'node:crypto';
import { conflict, notFound, userVolumeName, type Logger } from '@a4c/common';
import { TransferPart, TransferRole } from '@a4c/proto';
import { notifyHost, notifyWorkspace } from '../events/notify.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { bumpRevision } from '../store/hosts.js';
import {
  checkSourceLive,
  getMove,
  holdDestination,
  insertMove,
  recordProgress,
  recordSums,
  recordVolumeSize,
  releaseHold,
  setMoveStatus,
  staleMoves,
  touchVolume,
  type DestinationPolicy,
  type MoveRow,
} from '../store/moves.js';
import { getWorkspace, type WorkspaceRow } from '../store/workspaces.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { relayTransfer } from './pipe.js';
import type { TransferCall, TransferRelay } from './relay.js';

export interface MoverOptions {
  destination: DestinationPolicy;
  /** How long a workspace may take to stop at the source, and to start at the destination. */
  settleSeconds: number;
  /** Tests only (A4C_TEST_MOVE_CORRUPT_OFFSET): flip the byte at this offset of the volume stream in transit. */
  corruptVolumeOffset: number | undefined;
}

/**
 * Moves a workspace to another host with its files: stop it, copy its writable layer
 * (the container committed to an image) and its volume from the source agent to the
 * destination agent through this replica (TransferRelay), compare the SHA-256 both
 * ends computed, and only then switch the workspace to the destination (same id and
 * hostname) in one transaction that also moves its reservation. Any failure before the
 * switch leaves the source untouched and starts the workspace again if it ran.
 */
export class Mover {
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    private readonly db: Db,
    private readonly workspaces: WorkspaceService,
    private readonly relay: TransferRelay,
    private readonly hostChanged: (hostId: string) => void,
    private readonly opts: MoverOptions,
    private readonly log: Logger,
  ) {}

  /** Moves this replica is running now. */
  get active(): number {
    return this.running.size;
  }

  /**
   * Records the move and holds the destination's resources (409 if the workspace cannot
   * move now, 503 if no host fits), then runs it in the background.
   */
  async begin(workspaceId: string, toHostId: string | undefined, actor: string, drainId: string | null = null): Promise<MoveRow> {
    const move = await inTx(this.db, async (tx) => {
      const ws = UUID.test(workspaceId) ? await getWorkspace(tx, workspaceId, true) : undefined;
      if (!ws) throw notFound('workspace', workspaceId, 'list your workspaces with `a4c ws list`');
      if ((ws.status !== 'RUNNING' && ws.status !== 'STOPPED') || !ws.host_id) {
        throw conflict(`a ${ws.status} workspace cannot be moved; only a RUNNING or STOPPED one`, 'wait until it is RUNNING or STOPPED, then move it');
      }
      await checkSourceLive(tx, ws, this.opts.destination.liveWithinSeconds);
      const to = await holdDestination(tx, ws, toHostId, this.opts.destination);
      const id = randomUUID();
      const m = await insertMove(tx, {
        id,
        ws,
        toHostId: to,
        actor,
        drainId,
        wasRunning: ws.status === 'RUNNING',
        imageRef: `a4c-moved/${ws.id}:${id.slice(0, 8)}`,
      });
      await appendEvent(tx, {
        kind: 'workspace.move_started',
        actor,
        reason: `move from host ${ws.host_id} to host ${to} asked${drainId ? ' (host drain)' : ''}`,
        workspaceId: ws.id,
        hostId: ws.host_id,
        data: { moveId: id, fromHostId: ws.host_id, toHostId: to, wasRunning: m.was_running, drainId },
      });
      await notifyWorkspace(tx, ws.id);
      return m;
    });
    this.log.info({ moveId: move.id, workspaceId, from: move.from_host_id, to: move.to_host_id }, 'move started');
    const run = this.run(move).finally(() => this.running.delete(move.id));
    this.running.set(move.id, run);
    return move;
  }

  /** Resolves when every move this replica runs has finished (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running.size) await Promise.allSettled([...this.running.values()]);
  }

  private async run(move: MoveRow): Promise<void> {
    const log = this.log.child({ moveId: move.id, workspaceId: move.workspace_id });
    const actor = `move:${move.id}`;
    let switched = false;
    let receiverTransfer: string | undefined;
    const calls: TransferCall[] = [];
    const ws0 = (await getWorkspace(this.db, move.workspace_id)) as WorkspaceRow;
    const volume = userVolumeName(ws0.user_id);
    try {
      // 1. Stop it at the source: its files must not change while they are copied.
      if (move.was_running) await this.workspaces.stop(move.workspace_id, actor);
      const stopped = await this.workspaces.waitSettled(move.workspace_id, this.opts.settleSeconds);
      if (stopped.status !== 'STOPPED') throw new Error(`the workspace did not stop at the source within ${this.opts.settleSeconds} s (it is ${stopped.status})`);
      const at = (await getWorkspace(this.db, move.workspace_id)) as WorkspaceRow;
      if (at.host_id !== move.from_host_id) throw new Error(`the workspace is no longer on host ${move.from_host_id}`);

      // 2. Copy, both ends hashing.
      await this.step(move, 'COPYING', `copying the writable layer and the volume from host ${move.from_host_id} to host ${move.to_host_id}`);
      const src = await this.relay.open(move.from_host_id, {
        workspaceId: move.workspace_id,
        role: TransferRole.TRANSFER_ROLE_SEND,
        imageRef: move.image_ref.replace(/^a4c-moved\//, 'a4c-move-out/'),
        volume: '',
      });
      calls.push(src.call);
      const dst = await this.relay.open(move.to_host_id, {
        workspaceId: move.workspace_id,
        role: TransferRole.TRANSFER_ROLE_RECEIVE,
        imageRef: move.image_ref,
        volume,
      });
      calls.push(dst.call);
      receiverTransfer = dst.transferId;
      const sums = await relayTransfer(src.call, dst.call, {
        fromHostId: move.from_host_id,
        toHostId: move.to_host_id,
        corruptVolumeOffset: this.opts.corruptVolumeOffset,
        progress: (bytes, part) => this.progress(move, bytes, part, log),
        log,
      });

      // 3. Verify: what the destination received is what the source sent.
      await this.step(move, 'VERIFYING', 'comparing the SHA-256 sums computed at the source and at the destination');
      const part = (p: TransferPart) => {
        const sent = sums.sent.get(p);
        const got = sums.got.find((g) => g.part === p);
        const name = p === TransferPart.TRANSFER_PART_IMAGE ? 'writable layer' : 'volume';
        if (!sent || !got) throw new Error(`the ${name} was not transferred completely`);
        if (sent.sha256 !== got.sha256 || sent.bytes !== got.bytes) {
          throw new Error(`checksum mismatch on the ${name}: the source sent ${sent.bytes} bytes with SHA-256 ${sent.sha256}, the destination received ${got.bytes} bytes with SHA-256 ${got.sha256}`);
        }
        return sent;
      };
      const image = part(TransferPart.TRANSFER_PART_IMAGE);
      const vol = part(TransferPart.TRANSFER_PART_VOLUME);
      await recordSums(this.db, move.id, { imageBytes: image.bytes, imageSha256: image.sha256, volumeBytes: vol.bytes, volumeSha256: vol.sha256 });

      // 4. Switch: one transaction moves the workspace, its reservation and the hold.
      await this.switch(move, at.desired_revision, volume, vol.bytes);
      switched = true;

      // 5. Start at the destination.
      if (move.was_running) {
        const ws = await this.workspaces.waitSettled(move.workspace_id, this.opts.settleSeconds);
        if (ws.status !== 'RUNNING') {
          throw new Error(`the workspace was moved to host ${move.to_host_id} but did not start there (it is ${ws.status}${ws.error ? `: ${ws.error}` : ''})`);
        }
      }
      await inTx(this.db, async (tx) => {
        await setMoveStatus(tx, move.id, 'SUCCEEDED');
        await appendEvent(tx, {
          kind: 'workspace.move_succeeded',
          actor,
          reason: `moved from host ${move.from_host_id} to host ${move.to_host_id}${move.was_running ? ' and running there' : ''}`,
          workspaceId: move.workspace_id,
          hostId: move.to_host_id,
          data: { moveId: move.id, fromHostId: move.from_host_id, toHostId: move.to_host_id, bytes: image.bytes + vol.bytes },
        });
        await notifyWorkspace(tx, move.workspace_id);
      });
      log.info({ bytes: image.bytes + vol.bytes }, 'move succeeded');
    } catch (e) {
      const error = (e as Error).message;
      log.warn({ err: error, switched }, 'move failed');
      for (const c of calls) endQuietly(c);
      if (!switched && receiverTransfer) {
        await this.relay.abort(move.to_host_id, { transferId: receiverTransfer, workspaceId: move.workspace_id, imageRef: move.image_ref, volume });
      }
      await this.fail(move, error, switched).catch((e2: unknown) => log.error({ err: (e2 as Error).message }, 'could not record a failed move'));
    } finally {
      for (const c of calls) endQuietly(c);
    }
  }

  private async step(move: MoveRow, status: 'COPYING' | 'VERIFYING', reason: string): Promise<void> {
    await inTx(this.db, async (tx) => {
      await setMoveStatus(tx, move.id, status);
      await appendEvent(tx, {
        kind: status === 'COPYING' ? 'workspace.move_copying' : 'workspace.move_verifying',
        actor: `move:${move.id}`,
        reason,
        workspaceId: move.workspace_id,
        hostId: move.from_host_id,
        data: { moveId: move.id, fromHostId: move.from_host_id, toHostId: move.to_host_id },
      });
      await notifyWorkspace(tx, move.workspace_id);
    });
  }

  /** Progress of the copy: the move row and an event, at most once a second (relayTransfer decides). */
  private progress(move: MoveRow, bytes: number, part: string, log: Logger): void {
    void recordProgress(this.db, move.id, bytes)
      .then(() =>
        appendEvent(this.db, {
          kind: 'workspace.move_progress',
          actor: `move:${move.id}`,
          reason: `${bytes} bytes copied (${part})`,
          workspaceId: move.workspace_id,
          hostId: move.from_host_id,
          data: { moveId: move.id, bytesDone: bytes, part },
        }),
      )
      .catch((e: unknown) => log.debug({ err: (e as Error).message }, 'could not record move progress'));
  }

  private async switch(move: MoveRow, stoppedRevision: number, volume: string, volumeBytes: number): Promise<void> {
    const actor = `move:${move.id}`;
    await inTx(this.db, async (tx) => {
      const cur = await getWorkspace(tx, move.workspace_id, true);
      if (!cur || cur.status !== 'STOPPED' || cur.host_id !== move.from_host_id || cur.desired_revision !== stoppedRevision) {
        throw new Error(`the workspace changed while it was copied (it is ${cur?.status ?? 'gone'}); nothing was switched`);
      }
      // Lock order: workspace row, then host rows in id order.
      const revisions = new Map<string, number>();
      for (const h of [move.from_host_id, move.to_host_id].sort()) revisions.set(h, await bumpRevision(tx, h));
      const status = move.was_running ? 'STARTING' : 'STOPPED';
      await tx.query(
        `UPDATE workspaces SET host_id = $2, run_image = $3, status = $4, container_id = NULL, current_step = NULL,
                               desired_revision = $5, updated_at = now() WHERE id = $1`,
        [cur.id, move.to_host_id, move.image_ref, status, revisions.get(move.to_host_id)],
      );
      await releaseHold(tx, move.id);
      await touchVolume(tx, cur.user_id, move.to_host_id, cur.project_name, volume);
      await recordVolumeSize(tx, cur.user_id, move.to_host_id, volumeBytes);
      if (move.was_running) await setMoveStatus(tx, move.id, 'STARTING');
      await appendEvent(tx, {
        kind: 'workspace.moved',
        actor,
        reason: `copy verified (SHA-256 at both ends); now on host ${move.to_host_id}, its container at host ${move.from_host_id} is removed`,
        workspaceId: cur.id,
        hostId: move.to_host_id,
        changes: changesOf({ hostId: cur.host_id, status: cur.status, containerId: cur.container_id }, { hostId: move.to_host_id, status, containerId: null }),
        data: { moveId: move.id, fromHostId: move.from_host_id, toHostId: move.to_host_id, image: move.image_ref },
      });
      await notifyHost(tx, move.from_host_id);
      await notifyHost(tx, move.to_host_id);
      await notifyWorkspace(tx, cur.id);
    });
    this.hostChanged(move.from_host_id);
    this.hostChanged(move.to_host_id);
  }

  /** A failed move: the hold released; before the switch, the source workspace runs again if it ran. */
  private async fail(move: MoveRow, error: string, switched: boolean): Promise<void> {
    const said = switched ? error : `${error}; the workspace stays on host ${move.from_host_id}${move.was_running ? ' and is started again' : ''}`;
    await inTx(this.db, async (tx) => {
      await releaseHold(tx, move.id);
      await setMoveStatus(tx, move.id, 'FAILED', said);
      await appendEvent(tx, {
        kind: 'workspace.move_failed',
        actor: `move:${move.id}`,
        reason: said,
        workspaceId: move.workspace_id,
        hostId: move.from_host_id,
        data: { moveId: move.id, fromHostId: move.from_host_id, toHostId: move.to_host_id, switched },
      });
      await notifyWorkspace(tx, move.workspace_id);
    });
    if (!switched && move.was_running) {
      const ws = await getWorkspace(this.db, move.workspace_id);
      if (ws && ws.host_id === move.from_host_id && (ws.status === 'STOPPED' || ws.status === 'STOPPING')) {
        await this.workspaces.start(move.workspace_id, `move:${move.id}`);
      }
    }
  }

  /**
   * Moves that stopped making progress (their replica died mid-way) fail: the hold is
   * released and the workspace started again at the source if it ran and was not switched.
   */
  async failStale(olderThanSeconds: number): Promise<number> {
    const stale = (await staleMoves(this.db, olderThanSeconds)).filter((m) => !this.running.has(m.id));
    for (const m of stale) {
      const cur = await getMove(this.db, m.id);
      if (!cur || cur.status === 'SUCCEEDED' || cur.status === 'FAILED') continue;
      await this.fail(cur, `the move made no progress for ${olderThanSeconds} s (the control plane running it stopped)`, cur.status === 'STARTING');
    }
    return stale.length;
  }
}

export function endQuietly(c: TransferCall): void {
  try {
    c.end();
  } catch {
    // already ended
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
