import type { Logger } from '@a4c/common';
import { TransferPart, type TransferPartEnd, type TransferUp } from '@a4c/proto';
import type { TransferCall } from './relay.js';

/** Progress is reported at most this often while bytes flow (and at each part's end). */
const PROGRESS_EVERY_MS = 1000;

export interface Sums {
  /** What the sender says it sent, per part. */
  sent: Map<TransferPart, TransferPartEnd>;
  /** What the receiver says it received and applied. */
  got: TransferPartEnd[];
}

export interface PipeOptions {
  fromHostId: string;
  toHostId: string;
  /** Tests only: flip the byte at this offset of the volume stream. */
  corruptVolumeOffset: number | undefined;
  progress(bytesDone: number, part: string): void;
  log: Logger;
}

const partName = (p: TransferPart) => (p === TransferPart.TRANSFER_PART_IMAGE ? 'writable layer' : 'volume');

/**
 * Relays the sender's stream to the receiver with back-pressure: the sender is read
 * only while the receiver's HTTP/2 window has room, so nothing is buffered beyond it.
 * Resolves with both ends' sums once the receiver has answered; rejects, saying which
 * side failed and why, if either stream breaks or reports an error first. It ends
 * neither call (a gRPC server cannot half-close: its end ends the call).
 */
export function relayTransfer(src: TransferCall, dst: TransferCall, o: PipeOptions): Promise<Sums> {
  return new Promise<Sums>((resolve, reject) => {
    const sent = new Map<TransferPart, TransferPartEnd>();
    let bytes = 0;
    let volumeOffset = 0;
    let settled = false;
    let lastProgress = Date.now();
    let part: TransferPart = TransferPart.TRANSFER_PART_UNSPECIFIED;
    const done = (err: Error | undefined, sums?: Sums) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve(sums as Sums);
    };
    const progress = (force = false) => {
      if (!force && Date.now() - lastProgress < PROGRESS_EVERY_MS) return;
      lastProgress = Date.now();
      o.progress(bytes, partName(part));
    };
    src.on('data', (m: TransferUp) => {
      const p = m.payload;
      if (!p) return;
      if (p.$case === 'chunk') {
        part = p.value.part;
        let data = Buffer.from(p.value.data);
        if (part === TransferPart.TRANSFER_PART_VOLUME) {
          const at = o.corruptVolumeOffset;
          if (at !== undefined && at >= volumeOffset && at < volumeOffset + data.length) {
            data = Buffer.from(data);
            data[at - volumeOffset] = (data[at - volumeOffset] as number) ^ 0xff;
            o.log.warn({ offset: at }, 'test hook: flipped a byte of the volume stream in transit');
          }
          volumeOffset += data.length;
        }
        bytes += data.length;
        progress();
        if (!dst.write({ payload: { $case: 'chunk', value: { part, data } } })) {
          src.pause();
          dst.once('drain', () => src.resume());
        }
      } else if (p.$case === 'partEnd') {
        sent.set(p.value.part, p.value);
        progress(true);
        dst.write({ payload: { $case: 'partEnd', value: p.value } });
      } else if (p.$case === 'result') {
        if (p.value.error) done(new Error(`host ${o.fromHostId} could not send the workspace: ${p.value.error}`));
        else dst.write({ payload: { $case: 'done', value: true } });
      }
    });
    const srcGone = (why: string) => {
      if (sent.size < 2) done(new Error(`the stream from host ${o.fromHostId} broke before everything was sent (${why})`));
    };
    src.on('end', () => srcGone('it ended'));
    src.on('error', (e: Error) => srcGone(e.message));
    src.on('cancelled', () => srcGone('cancelled'));
    dst.on('data', (m: TransferUp) => {
      const p = m.payload;
      if (p?.$case !== 'result') return;
      if (p.value.error) done(new Error(`host ${o.toHostId} could not receive the workspace: ${p.value.error}`));
      else done(undefined, { sent, got: p.value.parts });
    });
    const dstGone = (why: string) => done(new Error(`the stream to host ${o.toHostId} broke before it confirmed what it received (${why}); is its agent still running?`));
    dst.on('end', () => dstGone('it ended'));
    dst.on('error', (e: Error) => dstGone(e.message));
    dst.on('cancelled', () => dstGone('cancelled'));
    src.resume();
    dst.resume();
  });
}
