import * as grpc from '@grpc/grpc-js';
import type { Logger } from '@a4c/common';
import { systemClock, type Clock } from '../clock.js';
import {
  AgentServiceClient,
  type AgentMessage,
  type BuildAssignment,
  type BuildCancel,
  type ControlMessage,
  type DesiredState,
  type Hello,
  type ImageInfo,
  type OpenTransfer,
  type OpenTunnel,
  type Welcome,
  type WorkspaceCpu,
  type WorkspaceStatus,
} from '@a4c/proto';
import type { ControlPlaneAddresses, Target } from './addresses.js';
import { DesiredChain } from './desired-chain.js';

/** Trailer of a stream the control plane ended because it is shutting down (control-plane/src/replicas/lifecycle.ts). */
const GO_ELSEWHERE = 'a4c-go-elsewhere';

export interface SessionHandlers {
  /** Builds the Hello for a new stream (current capacity, images, containers); the session adds its previous session id. */
  hello(): Promise<Omit<Hello, 'previousSessionId'>>;
  /** Builds a heartbeat: stats, and images if they changed since the last one sent. */
  heartbeat(): Promise<{ stats: Hello['stats']; images: ImageInfo[] | undefined; workspaceCpu?: WorkspaceCpu[] }>;
  /** The control plane's Welcome (its heartbeat and CPU sampling periods). */
  onWelcome?(welcome: Welcome): void;
  /** The complete desired set, each time it changes: deltas are already applied (session/desired-chain.ts). */
  onDesiredState(msg: Extract<ControlMessage['payload'], { $case: 'desiredState' }>['value']): void;
  onBuildAssignment(msg: BuildAssignment): void;
  onBuildCancel(msg: BuildCancel): void;
  onOpenTunnel(msg: OpenTunnel): void;
  /** One side of a workspace move (agent/src/move/); absent: refused by not answering. */
  onOpenTransfer?(msg: OpenTransfer): void;
  onNewStream(): void;
}

export interface SessionState {
  connected: boolean;
  sessionId: string | undefined;
  /** Since when the agent is connected, or disconnected. */
  since: string;
  reconnects: number;
  lastError: string | undefined;
  heartbeatIntervalMs: number;
  /** The control-plane address in use, or last tried. */
  address: string | undefined;
}

/** A stream with no Welcome this long after its Hello is given up and opened again. */
export const DEFAULT_WELCOME_TIMEOUT_MS = 15_000;

export interface SessionOptions {
  welcomeTimeoutMs?: number;
  clock?: Clock;
}

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 15_000;

/**
 * Keeps one AgentService.Connect stream open to a control-plane replica: when the
 * stream fails it goes on to the next address at once (session/addresses.ts), and only
 * after every address failed in a row waits, with capped exponential backoff and jitter
 * (so a fleet does not reconnect in step after a restart). A stream ended with the
 * GO_ELSEWHERE trailer (a draining replica) counts as a failure of that address only.
 * Heartbeats on the period the control plane sets. The TLS identity is the same for
 * every replica (they share one CA).
 */
export class ControlPlaneSession {
  private client: AgentServiceClient | undefined;
  private call: grpc.ClientDuplexStream<AgentMessage, ControlMessage> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private cancelWelcomeDeadline: () => void = () => undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  /** Streams that failed since the last Welcome. */
  private failedInRow = 0;
  private target: Target | undefined;
  private stopped = false;
  /** The desired set of the current stream, rebuilt from complete sets and deltas. */
  private readonly desired = new DesiredChain();
  /**
   * The last Welcome's session id, kept after its stream ends: the next Hello names it,
   * so a control plane that still counts that session live (its replica was killed, or
   * the stream died silently) hands the host over at once instead of after the
   * liveness window.
   */
  private previousSessionId = '';
  readonly state: SessionState = {
    connected: false,
    sessionId: undefined,
    since: new Date().toISOString(),
    reconnects: 0,
    lastError: undefined,
    heartbeatIntervalMs: 0,
    address: undefined,
  };

  /**
   * credentials: the channel's (TLS with the agent's client certificate, enrolling
   * first if need be; or plaintext when explicitly insecure). Asked for until it
   * succeeds, with the same backoff as the stream.
   */
  constructor(
    private readonly addresses: ControlPlaneAddresses,
    private readonly credentials: () => Promise<grpc.ChannelCredentials>,
    private readonly handlers: SessionHandlers,
    private readonly log: Logger,
    private readonly opts: SessionOptions = {},
  ) {}

  private async channel(): Promise<AgentServiceClient> {
    if (this.client) return this.client;
    const credentials = await this.credentials();
    const target = await this.addresses.next();
    this.target = target;
    this.state.address = target.address;
    // A name resolved to this IP: its certificate names the name, not the IP.
    const name = target.serverName ? { 'grpc.ssl_target_name_override': target.serverName, 'grpc.default_authority': target.serverName } : {};
    this.client = new AgentServiceClient(target.address, credentials, {
      ...name,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Our own backoff decides when to retry; keep the channel's short.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
    });
    return this.client;
  }

  start(): void {
    void this.open();
  }

  /** Sends if a stream is open; false otherwise (the caller re-sends on the next stream). */
  send(msg: AgentMessage): boolean {
    if (!this.call || !this.state.connected) return false;
    // Stamped with the session it is meant for: a write of a stream the control plane
    // superseded is refused, never applied to the newer session.
    this.call.write({ ...msg, sessionId: this.state.sessionId });
    return true;
  }

  report(status: WorkspaceStatus): boolean {
    return this.send({ payload: { $case: 'workspaceStatus', value: status } });
  }

  ack(revision: number): boolean {
    return this.send({ payload: { $case: 'ack', value: { revision } } });
  }

  private async open(): Promise<void> {
    if (this.stopped) return;
    let client: AgentServiceClient;
    try {
      client = await this.channel();
    } catch (e) {
      this.retry((e as Error).message);
      return;
    }
    if (this.stopped) return;
    let hello: Omit<Hello, 'previousSessionId'>;
    try {
      hello = await this.handlers.hello();
    } catch (e) {
      this.retry(`could not describe the host: ${(e as Error).message}`);
      return;
    }
    const call = client.connect();
    this.call = call;
    let welcomed = false;
    call.on('data', (msg: ControlMessage) => {
      const p = msg.payload;
      if (!p) return;
      if (p.$case === 'welcome') {
        welcomed = true;
        this.cancelWelcomeDeadline();
        this.attempt = 0;
        this.failedInRow = 0;
        this.state.connected = true;
        this.state.sessionId = p.value.sessionId;
        this.previousSessionId = p.value.sessionId;
        this.state.since = new Date().toISOString();
        this.state.lastError = undefined;
        this.state.heartbeatIntervalMs = p.value.heartbeatIntervalMs;
        this.desired.reset();
        this.log.info({ sessionId: p.value.sessionId, address: this.target?.address }, 'connected to control plane');
        this.handlers.onNewStream();
        this.handlers.onWelcome?.(p.value);
        this.scheduleHeartbeat(call, Math.max(100, p.value.heartbeatIntervalMs));
      } else if (p.$case === 'desiredState' && welcomed) {
        this.receiveDesired(p.value);
      } else if (p.$case === 'buildAssignment' && welcomed) {
        this.handlers.onBuildAssignment(p.value);
      } else if (p.$case === 'buildCancel' && welcomed) {
        this.handlers.onBuildCancel(p.value);
      } else if (p.$case === 'openTunnel' && welcomed) {
        this.handlers.onOpenTunnel(p.value);
      } else if (p.$case === 'openTransfer' && welcomed) {
        this.handlers.onOpenTransfer?.(p.value);
      }
    });
    let ended = false;
    const onEnd = (reason: string, handedOver = false) => {
      if (ended || this.call !== call) return;
      ended = true;
      this.call = undefined;
      clearTimeout(this.heartbeatTimer);
      this.cancelWelcomeDeadline();
      if (this.state.connected) {
        this.state.connected = false;
        this.state.since = new Date().toISOString();
        this.state.sessionId = undefined;
      }
      this.retry(reason, handedOver);
    };
    // "PERMISSION_DENIED: <why>": the status name tells refusals from outages at a glance.
    const why = (code: grpc.status, details: string) => `${grpc.status[code] ?? code}: ${details}`;
    call.on('error', (e: grpc.ServiceError) => onEnd(e.details ? why(e.code, e.details) : e.message, (e.metadata?.get(GO_ELSEWHERE).length ?? 0) > 0));
    call.on('end', () => onEnd('the control plane closed the stream'));
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code !== grpc.status.OK) onEnd(why(s.code, s.details), s.metadata.get(GO_ELSEWHERE).length > 0);
    });
    // This agent applies deltas: the control plane may send them after a complete set.
    call.write({ payload: { $case: 'hello', value: { ...hello, incrementalDesiredState: true, previousSessionId: this.previousSessionId } } });
    // A control plane that accepted the stream but never answers (overloaded, wedged,
    // or a proxy that swallowed the refusal) must not hold the agent forever.
    const welcomeMs = this.opts.welcomeTimeoutMs ?? DEFAULT_WELCOME_TIMEOUT_MS;
    this.cancelWelcomeDeadline();
    this.cancelWelcomeDeadline = (this.opts.clock ?? systemClock).after(welcomeMs, () => {
      if (welcomed || this.call !== call) return;
      onEnd(`no Welcome within ${welcomeMs} ms of the Hello`);
      call.cancel();
    });
  }

  private receiveDesired(ds: DesiredState): void {
    const step = this.desired.receive(ds);
    if (step.kind === 'apply') {
      this.handlers.onDesiredState(step.state);
    } else if (step.kind === 'gap' && step.request) {
      this.log.warn(
        { haveRevision: step.request.haveRevision, appliesTo: ds.appliesTo, revision: ds.revision },
        'a desired-state delta does not apply to the set held; asking for the complete set',
      );
      this.send({ payload: { $case: 'desiredStateRequest', value: step.request } });
    }
  }

  private scheduleHeartbeat(call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>, periodMs: number): void {
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = setTimeout(() => {
      if (this.call !== call) return;
      this.handlers.heartbeat().then(
        (hb) => {
          if (this.call !== call) return;
          call.write({
            sessionId: this.state.sessionId,
            payload: { $case: 'heartbeat', value: { stats: hb.stats, imagesChanged: hb.images !== undefined, images: hb.images ?? [], workspaceCpu: hb.workspaceCpu ?? [] } },
          });
          this.scheduleHeartbeat(call, periodMs);
        },
        (e: unknown) => {
          this.log.warn({ err: (e as Error).message }, 'could not collect stats');
          this.scheduleHeartbeat(call, periodMs);
        },
      );
    }, periodMs);
  }

  private retry(reason: string, handedOver = false): void {
    if (this.stopped) return;
    this.state.lastError = reason;
    this.state.reconnects++;
    // The next attempt dials the next address.
    this.client?.close();
    this.client = undefined;
    this.failedInRow++;
    let delay: number;
    if (this.failedInRow % this.addresses.count !== 0) {
      // Other addresses not tried yet in this round: go on to the next now (a short jitter
      // keeps a replica's whole fleet from arriving at the same instant).
      delay = Math.round(Math.random() * (handedOver ? 100 : MIN_BACKOFF_MS));
    } else {
      const cap = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 16);
      delay = Math.round(cap / 2 + Math.random() * (cap / 2));
    }
    const log = { reason, address: this.target?.address, retryInMs: delay };
    if (handedOver) this.log.info(log, 'control plane replica is shutting down; moving to another');
    else this.log.warn(log, 'control plane stream lost; reconnecting');
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.open(), delay);
  }

  /** Stops streaming; the workspaces on the host are left exactly as they are. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.heartbeatTimer);
    this.cancelWelcomeDeadline();
    const call = this.call;
    this.call = undefined;
    this.state.connected = false;
    call?.end();
    call?.cancel();
    this.client?.close();
  }
}
