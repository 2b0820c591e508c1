import * as grpc from '@grpc/grpc-js';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from '@a4c/common';
import type { AgentServiceServer, ControlMessage } from '@a4c/proto';
import type { ChangeFeed } from '../events/notify.js';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import { agentIdentity } from '../pki/ca.js';
import type { Db } from '../store/db.js';
import { GroupCommit } from '../store/group-commit.js';
import { closeHostSessions, type EndedSession } from '../store/host-sessions.js';
import { DesiredLoader } from '../workspaces/desired.js';
import type { WorkspaceService } from '../workspaces/service.js';
import { heartbeatPeriodMs } from './heartbeat-period.js';
import { FeedbackBatcher } from './feedback-batches.js';
import { HeartbeatBatcher } from './heartbeats.js';
import { HelloBatcher } from './hellos.js';
import { AgentSession, type Call, type Identity } from './session.js';

export interface SessionOptions {
  heartbeatIntervalMs: number;
  /** How long a build's claim holder may stay silent before the build is requeued. */
  buildLeaseMs: number;
  liveWithinSeconds: number;
  /** How often every session re-checks its host's revision, in case a NOTIFY was missed. */
  resyncIntervalMs: number;
  /**
   * TLS with client certificates: the Hello's host id must be the one the certificate
   * names, and the certificate must be one enrollment issued and nobody revoked.
   */
  requireClientCertificates?: boolean;
  /** A workspace using this share of its tier's disk is warned (default 90). */
  diskWarnPercent?: number;
  /** Asked of agents in the Welcome: how often to sample their workspaces' CPU (0: never). */
  workspaceCpuSampleMs?: number;
  /** Where the samples go (workspaces/autostop.ts). */
  onWorkspaceCpu?: (db: Db, hostId: string, samples: { workspaceId: string; cpuPercent: number }[]) => Promise<void>;
  /** A stream with no Hello this long is refused (default 10 s). */
  helloTimeoutMs?: number;
  /** Unhandled messages of one stream before it is paused (default 64). */
  inboxDepth?: number;
  /** Heartbeats within this window share one transaction (default 50 ms). */
  heartbeatBatchMs?: number;
  /** Most heartbeats per transaction (default 1000). */
  heartbeatBatchMax?: number;
  /** Status reports and acks within this window share one transaction (default 0: those that arrive while the previous batch commits). */
  reportBatchMs?: number;
  /** Most status reports and acks per transaction (default 1000). */
  reportBatchMax?: number;
  /** Connections of the agent plane's pool (A4C_DB_AGENT_POOL_SIZE; default 10). */
  dbConnections?: number;
  /** After this many deltas on a stream its next desired state is complete (A4C_DESIRED_COMPLETE_EVERY; default 100). */
  desiredCompleteEvery?: number;
  /** The fleet's target heartbeat rate; heartbeatIntervalMs is the least period (default 0: always heartbeatIntervalMs). */
  maxHeartbeatsPerSecond?: number;
  /** Most Hellos per transaction (default 1000). */
  helloBatchMax?: number;
}

/**
 * Connections of the agent pool the batchers may hold at once, kept free of the writes
 * limiter: the heartbeat, Hello, report and disconnect batches one each, and two
 * desired-state loads (workspaces/desired.ts, DesiredLoader).
 */
const BATCHERS_CONNECTIONS = 6;

const SUPERSEDED = 'this session was superseded by a newer session for the same host';

/**
 * The agent streams held by this replica, one per host. A host's desired state is
 * pushed when this replica changes it, when any replica NOTIFYs a change, and on a
 * periodic resync; a push sends only what is newer than the stream's last revision
 * (agents/desired-push.ts), so duplicates are harmless.
 */
export class AgentSessions {
  // db is the agent plane's own pool: a burst of API requests holding the API pool's
  // connections must never delay heartbeats, or busy hosts would look dead.
  private readonly byHost = new Map<string, AgentSession>();
  private readonly all = new Set<AgentSession>();
  private resyncTimer: NodeJS.Timeout | undefined;
  readonly heartbeats: HeartbeatBatcher;
  /** Desired-state loads of every session, gathered into few statements. */
  readonly desired: DesiredLoader;
  readonly hellos: HelloBatcher;
  /** Workspace status reports and acks of every session, in batches. */
  readonly feedback: FeedbackBatcher;
  /** Sessions that ended, recorded many per statement (store/host-sessions.ts). */
  readonly disconnects: GroupCommit<EndedSession>;
  /**
   * Every database use of the sessions but heartbeats, Hellos, reports, acks and
   * disconnects, which have batchers of their own (the streams' other messages), runs through
   * this, at most the pool's size less the batchers' six at once: after a connect storm of thousands of
   * agents their work waits here, each stream paused past its inbox depth, instead of
   * timing out in the pool's queue, and the batches (one transaction at a time each)
   * always find a free connection.
   */
  readonly writes: LimitFunction;

  constructor(
    readonly db: Db,
    private readonly feed: ChangeFeed,
    readonly workspaces: WorkspaceService,
    readonly opts: SessionOptions,
    readonly log: Logger,
    readonly observe: Observer = NO_OBSERVER,
  ) {
    this.writes = pLimit(Math.max(1, (opts.dbConnections ?? 10) - BATCHERS_CONNECTIONS));
    this.desired = new DesiredLoader(db);
    this.disconnects = new GroupCommit((ended) => closeHostSessions(db, ended), 1000);
    this.heartbeats = new HeartbeatBatcher(db, opts.heartbeatBatchMs ?? 50, opts.heartbeatBatchMax ?? 1000, log);
    this.hellos = new HelloBatcher(
      db,
      {
        liveWithinSeconds: opts.liveWithinSeconds,
        // liveWithinSeconds is the configured period × the miss limit (server.ts).
        heartbeatMissLimit: (opts.liveWithinSeconds * 1000) / opts.heartbeatIntervalMs,
        periodMs: (hosts) => heartbeatPeriodMs(hosts, opts.heartbeatIntervalMs, opts.maxHeartbeatsPerSecond ?? 0),
      },
      opts.helloBatchMax ?? 1000,
      log,
    );
    this.feedback = new FeedbackBatcher(db, { windowMs: opts.reportBatchMs ?? 0, max: opts.reportBatchMax ?? 1000 }, { hostChanged: (h) => this.push(h), observe, log });
  }

  /** Agent streams this replica holds (hosts past their Hello). */
  get sessionCount(): number {
    return this.byHost.size;
  }

  /** Agent-plane writes queued or running (the disconnects of streams just ended among them): a drain waits for them. */
  get pendingWrites(): number {
    return this.writes.activeCount + this.writes.pendingCount + this.disconnects.size;
  }

  start(): void {
    this.feed.on('host', (hostId: string) => this.push(hostId));
    this.feed.on('reconnected', () => this.pushAll());
    // A newer session of the host (on any replica) replaced one this replica holds.
    this.feed.on('session', (payload: string) => {
      const [hostId, sessionId] = payload.split(' ');
      const s = hostId ? this.byHost.get(hostId) : undefined;
      if (s && s.id === sessionId) s.refuse(grpc.status.ABORTED, SUPERSEDED);
    });
    this.resyncTimer = setInterval(() => this.pushAll(), this.opts.resyncIntervalMs);
    this.resyncTimer.unref();
  }

  /** AgentService.Connect; Tunnel is the access broker's (access/broker.ts). */
  readonly service: Pick<AgentServiceServer, 'connect'> = {
    connect: (call: Call) => {
      let identity: Identity;
      if (this.opts.requireClientCertificates) {
        const peer = call.getAuthContext().sslPeerCertificate;
        identity = peer ? agentIdentity(peer) : { error: 'no client certificate was presented' };
      }
      const session = new AgentSession(this, call, identity);
      this.all.add(session);
    },
  };

  /** Sends a control message on the host's stream, if this replica holds it; false otherwise. */
  sendTo(hostId: string, msg: ControlMessage): boolean {
    const s = this.byHost.get(hostId);
    return s ? s.send(msg) : false;
  }

  /** The host's stream's unhandled messages here, and whether it is paused for them. */
  inboxOf(hostId: string): { queued: number; paused: boolean } | undefined {
    return this.byHost.get(hostId)?.inboxState;
  }

  push(hostId: string): void {
    this.byHost.get(hostId)?.sendDesired();
  }

  private pushAll(): void {
    for (const s of this.byHost.values()) s.sendDesired();
  }

  claim(hostId: string, session: AgentSession): void {
    // The host's agent came back on a new stream to this same replica: the old one is done.
    const old = this.byHost.get(hostId);
    if (old && old !== session) old.refuse(grpc.status.ABORTED, SUPERSEDED);
    this.byHost.set(hostId, session);
  }

  release(session: AgentSession): void {
    this.all.delete(session);
    if (session.hostId && this.byHost.get(session.hostId) === session) this.byHost.delete(session.hostId);
  }

  /** Closes the live session of a host on this replica (its certificate was revoked). */
  disconnect(hostId: string, reason: string): void {
    this.byHost.get(hostId)?.refuse(grpc.status.PERMISSION_DENIED, reason);
  }


  /** Graceful shutdown: close every stream; agents reconnect (to another replica, if any). */
  async stop(): Promise<void> {
    clearInterval(this.resyncTimer);
    await Promise.all([...this.all].map((s) => s.close()));
    this.heartbeats.stop();
    this.hellos.stop();
    this.feedback.stop();
  }
}
