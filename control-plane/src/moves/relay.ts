import { randomUUID } from 'node:crypto';
import { acceptAttach, dialingHost } from '../access/attach.js';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '@a4c/common';
import { OpenTransfer, type TransferDown, type TransferUp } from '@a4c/proto';
import type { HostSender } from '../access/broker.js';
import { CHANNEL_TRANSFER, type ChangeFeed } from '../events/notify.js';
import type { Db } from '../store/db.js';

export type TransferCall = grpc.ServerDuplexStream<TransferUp, TransferDown>;

export interface RelayOptions {
  /** This replica's gRPC address as agents can dial it; '' when every agent's own address reaches it. */
  advertiseAddress: string;
  requireClientCertificates: boolean;
  /** How long to wait for an agent to open its side of a transfer. */
  attachTimeoutMs: number;
}

interface Pending {
  hostId: string;
  resolve(call: TransferCall): void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Pairs the two sides of a workspace move with this replica (tunnels' pattern: the
 * agent dials, no host listens). OpenTransfer goes on the host's Connect stream if this
 * replica holds it, else through NOTIFY to the replica that does; the agent then
 * attaches to this replica's AgentService.Transfer with the transfer id.
 */
export class TransferRelay {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly sendToHost: HostSender,
    readonly opts: RelayOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.feed.on('transfer', (payload: string) => {
      try {
        const { hostId, open } = JSON.parse(payload) as { hostId: string; open: unknown };
        this.sendToHost(hostId, { payload: { $case: 'openTransfer', value: OpenTransfer.fromJSON(open) } });
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'bad transfer notification');
      }
    });
  }

  /** Tells the host's agent to open one side (wherever its stream is held). */
  private async tell(hostId: string, open: OpenTransfer): Promise<void> {
    if (this.sendToHost(hostId, { payload: { $case: 'openTransfer', value: open } })) return;
    await this.db.query('SELECT pg_notify($1, $2)', [CHANNEL_TRANSFER, JSON.stringify({ hostId, open: OpenTransfer.toJSON(open) })]);
  }

  /** Asks the host's agent for one side of a transfer and waits for it to attach. */
  async open(hostId: string, o: Omit<OpenTransfer, 'transferId' | 'address' | 'abort'>): Promise<{ transferId: string; call: TransferCall }> {
    const transferId = randomUUID();
    const arrived = new Promise<TransferCall>((resolve) => this.pending.set(transferId, { hostId, resolve }));
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.tell(hostId, { ...o, transferId, address: this.opts.advertiseAddress, abort: false });
      const call = await Promise.race([
        arrived,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(
            () => reject(new Error(`the agent of host ${hostId} did not open its side of the transfer within ${Math.round(this.opts.attachTimeoutMs / 1000)} s (is it connected, and can it reach this control plane?)`)),
            this.opts.attachTimeoutMs,
          );
        }),
      ]);
      return { transferId, call };
    } finally {
      clearTimeout(timer);
      this.pending.delete(transferId);
    }
  }

  /** Tells a receiver to undo what a failed transfer left; best effort (an absent agent has nothing running from it). */
  async abort(hostId: string, o: { transferId: string; workspaceId: string; imageRef: string; volume: string }): Promise<void> {
    await this.tell(hostId, { ...o, address: '', role: 0, abort: true }).catch(() => undefined);
  }

  /** AgentService.Transfer: an agent attaches one side of a move. */
  readonly handleTransfer = (call: TransferCall): void => {
    acceptAttach(call, 'TransferAttach', (first: TransferUp) => this.attach(call, first));
  };

  private async attach(call: TransferCall, first: TransferUp): Promise<void> {
    if (first.payload?.$case !== 'attach') throw Object.assign(new Error('the first message of a Transfer must be a TransferAttach'), { code: grpc.status.FAILED_PRECONDITION });
    const { transferId, hostId } = first.payload.value;
    const p = UUID.test(transferId) ? this.pending.get(transferId) : undefined;
    if (!p) throw Object.assign(new Error(`no transfer ${transferId} waits on this control plane`), { code: grpc.status.NOT_FOUND });
    const agentHost = await dialingHost(call, hostId, this.db, this.opts.requireClientCertificates);
    if (agentHost !== p.hostId) throw Object.assign(new Error(`transfer ${transferId} is for host ${p.hostId}, not ${agentHost}`), { code: grpc.status.PERMISSION_DENIED });
    this.pending.delete(transferId);
    p.resolve(call);
  }
}
