import { createHash } from 'node:crypto';
import { DialBackClients } from '../access/dial-back.js';
import { PassThrough, type Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type Docker from 'dockerode';
import type { Logger } from '@a4c/common';
import {
  TransferPart,
  TransferRole,
  type OpenTransfer,
  type TransferDown,
  type TransferPartEnd,
  type TransferUp,
} from '@a4c/proto';
import { splitRef } from '../runtime/docker.js';
import type { ContainerRuntime } from '../runtime/runtime.js';

export type TransferCall = grpc.ClientDuplexStream<TransferUp, TransferDown>;

export interface TransferOptions {
  hostId: string;
  /** The control plane address the agent's own stream uses: where an OpenTransfer without an address goes. */
  defaultAddress: string;
  credentials: () => Promise<grpc.ChannelCredentials>;
  /** Before volume names on this engine (A4C_ENGINE_NAME_PREFIX). */
  namePrefix: string;
}

/** gRPC's default message limit is 4 MiB: chunks stay well under it. */
const MAX_CHUNK = 256 * 1024;

/**
 * Labels a committed workspace image must not carry: a container made from it would
 * inherit them, and a helper container with a4c.managed=true and a host id would look
 * like a workspace to a reconciler on the same engine.
 */
const CLEARED_LABELS = 'LABEL a4c.managed="" a4c.host.id="" a4c.workspace.id="" a4c.user.id="" a4c.attempt=""';

/** On the helper container a receive extracts the volume through: the host whose agent made it. */
const LABEL_MOVE_HELPER = 'a4c.move.host';

/** What a receive left on this host, to undo if the move fails later. */
interface Received {
  imageRef: string;
  volume: string;
  createdVolume: boolean;
}

/**
 * The agent's end of a workspace move (proto: AgentService.Transfer). SEND commits the
 * stopped container to an image and streams `docker save` of it, then a tar of its
 * /workspace, hashing as it goes. RECEIVE loads the image and extracts the tar into
 * the volume as the bytes arrive, hashing what it got, and never touches a workspace
 * container: the reconciler creates the moved container once the control plane puts
 * the workspace in this host's desired state. Both dial the control plane, like tunnels.
 */
export class Transfers {
  private readonly clients: DialBackClients;
  private readonly received = new Map<string, Received>();
  private live = 0;

  constructor(
    private readonly docker: Docker,
    private readonly runtime: ContainerRuntime,
    private readonly opts: TransferOptions,
    private readonly log: Logger,
  ) {
    this.clients = new DialBackClients(() => opts.defaultAddress, opts.credentials);
  }

  get count(): number {
    return this.live;
  }

  /** Handles an OpenTransfer; never throws (a failure reaches the control plane through the stream or its timeout). */
  open(msg: OpenTransfer): void {
    const log = this.log.child({ transferId: msg.transferId, workspaceId: msg.workspaceId });
    if (msg.abort) {
      void this.undo(msg).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not undo a failed transfer'));
      return;
    }
    this.live++;
    const run = msg.role === TransferRole.TRANSFER_ROLE_SEND ? this.send(msg, log) : this.receive(msg, log);
    void run
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'transfer failed'))
      .finally(() => {
        this.live--;
      });
  }

  private async dial(msg: OpenTransfer): Promise<TransferCall> {
    const call = (await this.clients.get(msg.address)).transfer();
    call.on('error', () => undefined); // every use below watches for the end it causes
    call.write({ payload: { $case: 'attach', value: { transferId: msg.transferId, hostId: this.opts.hostId } } });
    return call;
  }

  private async send(msg: OpenTransfer, log: Logger): Promise<void> {
    const call = await this.dial(msg);
    const ended = new Promise<void>((resolve) => {
      call.on('end', resolve);
      call.on('error', () => resolve());
      call.on('close', () => resolve());
    });
    call.resume(); // nothing comes down to a sender but the end
    let committed = false;
    try {
      const c = (await this.runtime.listOwned()).find((o) => o.workspaceId === msg.workspaceId);
      if (!c) throw new Error(`workspace ${msg.workspaceId} has no container on host ${this.opts.hostId}`);
      if (c.state === 'running' || c.state === 'restarting' || c.state === 'paused') {
        throw new Error(`workspace ${msg.workspaceId}'s container is ${c.state}; it must be stopped before it is moved`);
      }
      const [repo, tag] = splitRef(msg.imageRef);
      const container = this.docker.getContainer(c.id);
      await container.commit({ repo, tag, pause: false, changes: [CLEARED_LABELS] });
      committed = true;
      log.info({ imageRef: msg.imageRef }, 'committed the workspace for a move');
      const image = (await this.docker.getImage(msg.imageRef).get()) as unknown as Readable;
      await sendPart(call, TransferPart.TRANSFER_PART_IMAGE, image);
      const volume = (await container.getArchive({ path: '/workspace' })) as unknown as Readable;
      await sendPart(call, TransferPart.TRANSFER_PART_VOLUME, volume);
      call.write({ payload: { $case: 'result', value: { parts: [], error: '' } } });
      call.end();
      // The image stays until the relay is done with both ends: on an engine shared with
      // the receiver, removing it early could take the image it is still loading.
      await ended;
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'could not send the workspace');
      try {
        call.write({ payload: { $case: 'result', value: { parts: [], error: (e as Error).message } } });
        call.end();
      } catch {
        // the stream is gone already
      }
    } finally {
      if (committed) await this.docker.getImage(msg.imageRef).remove().catch(() => undefined);
    }
  }

  private async receive(msg: OpenTransfer, log: Logger): Promise<void> {
    const call = await this.dial(msg);
    const volume = `${this.opts.namePrefix}${msg.volume}`;
    const rec: Received = { imageRef: msg.imageRef, volume, createdVolume: false };
    this.received.set(msg.transferId, rec);
    let helper: Docker.Container | undefined;
    const parts: TransferPartEnd[] = [];
    const sent = new Map<TransferPart, TransferPartEnd>();
    let current: { part: TransferPart; sink: PassThrough; done: Promise<void>; hash: ReturnType<typeof createHash>; bytes: number } | undefined;
    let done = false;

    const begin = async (part: TransferPart) => {
      const sink = new PassThrough({ highWaterMark: 1024 * 1024 });
      let consumer: Promise<void>;
      if (part === TransferPart.TRANSFER_PART_IMAGE) {
        consumer = this.load(sink, msg.imageRef);
      } else if (part === TransferPart.TRANSFER_PART_VOLUME) {
        rec.createdVolume = !(await this.docker.getVolume(volume).inspect().then(() => true, () => false));
        const image = await this.docker.getImage(msg.imageRef).inspect().catch((e: Error) => e.message);
        if (typeof image === 'string') throw new Error(`the loaded image ${msg.imageRef} is gone: ${image}`);
        helper = await this.docker.createContainer({
          name: `${this.opts.namePrefix}a4c-move-${msg.transferId}`,
          Image: msg.imageRef,
          Cmd: ['true'],
          Labels: { 'a4c.managed': 'false', [LABEL_MOVE_HELPER]: this.opts.hostId, 'a4c.move': msg.transferId },
          HostConfig: { NetworkMode: 'none', Mounts: [{ Type: 'volume', Source: volume, Target: '/workspace' }] },
        });
        const h = helper;
        consumer = h.putArchive(sink, { path: '/' }).then(drain);
      } else {
        throw new Error(`unknown transfer part ${part}`);
      }
      // A consumer that fails early must not leave the writer waiting on a full sink.
      consumer.catch(() => sink.resume());
      current = { part, sink, done: consumer, hash: createHash('sha256'), bytes: 0 };
    };

    const inbox = messages(call);
    try {
      for (let m = await inbox.next(); m; m = await inbox.next()) {
        const p = m.payload;
        if (!p) continue;
        if (p.$case === 'chunk') {
          if (current && current.part !== p.value.part) throw new Error('a part began before the previous one ended');
          if (!current) await begin(p.value.part);
          const cur = current as unknown as NonNullable<typeof current>;
          const data = Buffer.from(p.value.data);
          cur.hash.update(data);
          cur.bytes += data.length;
          if (!cur.sink.write(data)) await Promise.race([new Promise((r) => cur.sink.once('drain', r)), cur.done]);
        } else if (p.$case === 'partEnd') {
          if (!current) await begin(p.value.part);
          const cur = current as unknown as NonNullable<typeof current>;
          cur.sink.end();
          await cur.done;
          const got = { part: cur.part, sha256: cur.hash.digest('hex'), bytes: cur.bytes };
          parts.push(got);
          sent.set(cur.part, p.value);
          current = undefined;
          if (got.sha256 !== p.value.sha256 || got.bytes !== p.value.bytes) {
            throw new Error(
              `checksum mismatch on the ${partName(got.part)}: sent ${p.value.bytes} bytes with SHA-256 ${p.value.sha256}, received ${got.bytes} bytes with SHA-256 ${got.sha256}`,
            );
          }
          log.info({ part: partName(got.part), bytes: got.bytes, sha256: got.sha256 }, 'received and verified a part');
        } else if (p.$case === 'done') {
          done = true;
          break;
        }
      }
      call.resume(); // nothing more is expected but the end of the call
      if (!done) throw new Error('the transfer ended before every part arrived');
      for (const part of [TransferPart.TRANSFER_PART_IMAGE, TransferPart.TRANSFER_PART_VOLUME]) {
        if (!sent.has(part)) throw new Error(`the ${partName(part)} never arrived`);
      }
      call.write({ payload: { $case: 'result', value: { parts, error: '' } } });
      call.end();
    } catch (e) {
      const err = (e as Error).message;
      log.warn({ err }, 'could not receive the workspace; undoing');
      current?.sink.destroy();
      try {
        call.write({ payload: { $case: 'result', value: { parts, error: err } } });
        call.end();
      } catch {
        // the stream is gone already
      }
      await helper?.remove({ force: true }).catch(() => undefined);
      helper = undefined;
      await this.undo(msg);
    } finally {
      await helper?.remove({ force: true }).catch(() => undefined);
    }
  }

  /** `docker load` of a stream, tagged as `ref` (whatever tag the sender's engine gave it). */
  private async load(src: Readable, ref: string): Promise<void> {
    const res = (await this.docker.loadImage(src as unknown as NodeJS.ReadableStream, { quiet: true })) as unknown as Readable;
    let out = '';
    for await (const c of res) out += (c as Buffer).toString();
    const lines = out.split('\n').filter(Boolean).map((l) => {
      try {
        return JSON.parse(l) as { stream?: string; error?: string; errorDetail?: { message?: string } };
      } catch {
        return { stream: l };
      }
    });
    const failed = lines.find((l) => l.error || l.errorDetail);
    if (failed) throw new Error(`docker load failed: ${failed.error ?? failed.errorDetail?.message}`);
    const loaded = lines.map((l) => /Loaded image: (\S+)/.exec(l.stream ?? '')?.[1]).find(Boolean);
    if (!loaded) throw new Error(`docker load did not say which image it loaded: ${out.slice(0, 300)}`);
    if (loaded !== ref) {
      const [repo, tag] = splitRef(ref);
      await this.docker.getImage(loaded).tag({ repo, tag });
      await this.docker.getImage(loaded).remove().catch(() => undefined); // an untag: `ref` keeps it
    }
  }

  /** Undoes a receive: the loaded image, and the volume if this transfer created it. */
  private async undo(msg: OpenTransfer): Promise<void> {
    const rec = this.received.get(msg.transferId);
    this.received.delete(msg.transferId);
    await this.docker.getImage(msg.imageRef).remove().catch(() => undefined);
    if (rec?.createdVolume) await this.docker.getVolume(rec.volume).remove().catch(() => undefined);
    this.log.info({ transferId: msg.transferId, workspaceId: msg.workspaceId, removedVolume: rec?.createdVolume ?? false }, 'undid a transfer');
  }

  /**
   * At start-up: helper containers a receive left when this agent stopped mid-way (no
   * receive outlives its process, so every one found is a leftover).
   */
  async removeLeftovers(): Promise<void> {
    const list = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_MOVE_HELPER}=${this.opts.hostId}`] } });
    for (const c of list) {
      await this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      this.log.info({ containerId: c.Id, transferId: c.Labels['a4c.move'] }, 'removed a move helper container left by an interrupted transfer');
    }
  }

  stop(): void {
    this.clients.close();
  }
}

function partName(p: TransferPart): string {
  return p === TransferPart.TRANSFER_PART_IMAGE ? 'image (writable layer)' : p === TransferPart.TRANSFER_PART_VOLUME ? 'volume' : `part ${p}`;
}

/** Streams one part up with back-pressure, hashing it, and ends it with its sum. */
async function sendPart(call: TransferCall, part: TransferPart, src: Readable): Promise<void> {
  const hash = createHash('sha256');
  let bytes = 0;
  const broken = new Promise<never>((_resolve, reject) => {
    const fail = () => reject(new Error('the control plane ended the transfer'));
    call.once('end', fail);
    call.once('error', fail);
  });
  broken.catch(() => undefined);
  try {
    for await (const chunk of src) {
      const buf = chunk as Buffer;
      for (let off = 0; off < buf.length; off += MAX_CHUNK) {
        const data = buf.subarray(off, off + MAX_CHUNK);
        hash.update(data);
        bytes += data.length;
        if (!call.write({ payload: { $case: 'chunk', value: { part, data } } })) {
          await Promise.race([new Promise((r) => call.once('drain', r)), broken]);
        }
      }
    }
  } catch (e) {
    src.destroy();
    throw e;
  }
  call.write({ payload: { $case: 'partEnd', value: { part, sha256: hash.digest('hex'), bytes } } });
}

/**
 * The call's messages one at a time, the call paused while one is being handled (so
 * HTTP/2 flow control holds the sender back). Not for-await: leaving such a loop early
 * (an error) destroys the call, and the error could no longer be reported on it.
 */
function messages(call: TransferCall): { next(): Promise<TransferDown | undefined> } {
  const queue: TransferDown[] = [];
  let ended: Error | null | undefined;
  let wake: (() => void) | undefined;
  call.on('data', (m: TransferDown) => {
    queue.push(m);
    call.pause();
    wake?.();
  });
  call.on('end', () => {
    ended ??= null;
    wake?.();
  });
  call.on('error', (e: Error) => {
    ended ??= e;
    wake?.();
  });
  return {
    async next() {
      for (;;) {
        const m = queue.shift();
        if (m) {
          if (!queue.length) call.resume();
          return m;
        }
        if (ended === null) return undefined;
        if (ended) throw new Error(`the control plane ended the transfer: ${ended.message}`);
        call.resume();
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    },
  };
}

/** Reads a Docker response stream to its end (putArchive answers with one). */
async function drain(res: unknown): Promise<void> {
  const r = res as Readable | undefined;
  if (r && typeof (r as Readable)[Symbol.asyncIterator] === 'function') for await (const _ of r) void _;
}
