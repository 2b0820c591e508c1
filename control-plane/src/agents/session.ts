import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ID_PATTERN, isArch, type Logger } from '@a4c/common';
import type { AgentMessage, ControlMessage, Heartbeat, Hello } from '@a4c/proto';
import { recordPrunedImages } from '../disk/pruned.js';
import { applyDiskUsage } from '../disk/usage.js';
import { checkCertificate } from '../pki/enrollment.js';
import { appendEvent } from '../store/events.js';
import { inTx } from '../store/db.js';
import { sessionGuard, SessionSuperseded, type SessionGuard } from '../store/host-sessions.js';
import { AckRefused, type FeedbackItem } from '../workspaces/agent-feedback.js';
import { assignBuilds, buildProgress, buildResult, type BuildSession } from './build-messages.js';
import { DesiredPush } from './desired-push.js';
import { hostEventRow, imageRows, statsColumns, UUID } from './proto-mapping.js';
import type { AgentSessions } from './sessions.js';

export type Identity = { hostId: string; serial: string } | { error: string } | undefined;

export type Call = grpc.ServerDuplexStream<AgentMessage, ControlMessage>;

export class RefusedError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * One agent stream: Hello first, then the agent's messages handled in order, and the
 * host's desired state pushed whenever it is newer than what this stream last got.
 */
export class AgentSession {
  readonly id = randomUUID();
  hostId: string | undefined;
  private arch = '';
  /** The host's desired state on this stream (set at the Hello). */
  private desired: DesiredPush | undefined;
  /** Messages waiting to be handled, in order; the stream is paused while there are inboxDepth of them. */
  private readonly inbox: AgentMessage[] = [];
  private draining = false;
  private paused = false;
  /** The outbound buffer is full: desired state waits for 'drain' and is then sent once, as it is then. */
  private blocked = false;
  private closed = false;
  private readonly helloTimer: NodeJS.Timeout;
  private log: Logger;

  constructor(
    private readonly sessions: AgentSessions,
    private readonly call: Call,
    private readonly identity: Identity,
  ) {
    this.log = sessions.log.child({ sessionId: this.id });
    const helloMs = sessions.opts.helloTimeoutMs ?? 10_000;
    this.helloTimer = setTimeout(() => this.fail(new RefusedError(grpc.status.DEADLINE_EXCEEDED, `no Hello within ${helloMs} ms of the stream opening`)), helloMs);
    call.on('data', (msg: AgentMessage) => this.receive(msg));
    call.on('drain', () => {
      if (!this.blocked) return;
      this.blocked = false;
      this.sendDesired();
    });
    call.on('end', () => void this.close());
    call.on('error', (e) => {
      this.log.debug({ err: e.message }, 'agent stream error');
      void this.cleanup();
    });
    call.on('cancelled', () => void this.cleanup());
  }

  /**
   * Heartbeats go to the replica's batcher at once, beside the inbox: a host whose
   * reports keep its inbox busy still heartbeats on time. Everything else is handled in
   * order; past inboxDepth unhandled messages the stream is paused, so HTTP/2 flow
   * control holds the agent back instead of this process buffering without bound.
   */
  private receive(msg: AgentMessage): void {
    if (this.closed) return;
    if (msg.payload?.$case === 'heartbeat' && this.hostId) {
      if (msg.sessionId && msg.sessionId !== this.id) {
        this.fail(new RefusedError(grpc.status.FAILED_PRECONDITION, `a message for session ${msg.sessionId} came on session ${this.id}`));
        return;
      }
      this.heartbeat(msg.payload.value).catch((e: unknown) => this.fail(e));
      return;
    }
    // The Hello arrived in time; it may wait its turn for the database (see AgentSessions.writes).
    if (msg.payload?.$case === 'hello') clearTimeout(this.helloTimer);
    this.inbox.push(msg);
    if (!this.paused && this.inbox.length >= (this.sessions.opts.inboxDepth ?? 64)) {
      this.paused = true;
      this.call.pause();
    }
    void this.drainInbox();
  }

  private async drainInbox(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.closed) {
        const msg = this.inbox.shift();
        if (!msg) break;
        if (this.paused && this.inbox.length <= (this.sessions.opts.inboxDepth ?? 64) / 2) {
          this.paused = false;
          this.call.resume();
        }
        try {
          const item = this.feedbackItem(msg);
          if (item) {
            // Reports and acks go to the replica's batch (agents/feedback-batches.ts), not
            // to a turn at the pool; those waiting right behind this one go with it, in
            // order, and the next message is handled once the batch committed.
            const items = [item];
            const depth = this.sessions.opts.inboxDepth ?? 64;
            for (let next = this.peekFeedback(); next && items.length < depth; next = this.peekFeedback()) {
              this.inbox.shift();
              items.push(next);
            }
            await this.sessions.feedback.submit(items);
          } else {
            // A Hello waits for its batch (agents/hellos.ts), not for a slot of the limiter.
            await (this.hostId ? this.sessions.writes(() => this.handle(msg)) : this.handle(msg));
          }
        } catch (e) {
          this.fail(e);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  /** A status report or ack of this session, as an item of the report batch; anything else: undefined. */
  private feedbackItem(msg: AgentMessage): FeedbackItem | undefined {
    const p = msg.payload;
    if (!this.hostId || this.closed || (msg.sessionId && msg.sessionId !== this.id)) return undefined;
    if (p?.$case === 'workspaceStatus') return { kind: 'report', hostId: this.hostId, sessionId: this.id, report: p.value };
    if (p?.$case === 'ack') return { kind: 'ack', hostId: this.hostId, sessionId: this.id, revision: p.value.revision };
    return undefined;
  }

  private peekFeedback(): FeedbackItem | undefined {
    const msg = this.inbox[0];
    return msg && this.feedbackItem(msg);
  }

  /** Unhandled messages of this stream, and whether it is paused for them. */
  get inboxState(): { queued: number; paused: boolean } {
    return { queued: this.inbox.length, paused: this.paused };
  }

  private async handle(msg: AgentMessage): Promise<void> {
    if (this.closed) return;
    const p = msg.payload;
    if (!p) return;
    if (!this.hostId) {
      if (p.$case !== 'hello') throw new RefusedError(grpc.status.FAILED_PRECONDITION, 'the first message must be a Hello');
      await this.hello(p.value);
      return;
    }
    if (msg.sessionId && msg.sessionId !== this.id) {
      throw new RefusedError(grpc.status.FAILED_PRECONDITION, `a message for session ${msg.sessionId} came on session ${this.id}`);
    }
    const { db, workspaces, opts } = this.sessions;
    const live = this.live;
    const hostId = this.hostId;
    switch (p.$case) {
      case 'hello':
        throw new RefusedError(grpc.status.FAILED_PRECONDITION, 'Hello was already received on this stream');
      case 'heartbeat':
        await this.heartbeat(p.value);
        return;
      case 'workspaceStatus':
        await this.sessions.feedback.submit([{ kind: 'report', hostId, sessionId: this.id, report: p.value }]);
        return;
      case 'ack':
        await this.sessions.feedback.submit([{ kind: 'ack', hostId, sessionId: this.id, revision: p.value.revision }]);
        return;
      case 'event':
        await inTx(db, async (tx) => {
          await live(tx);
          await appendEvent(tx, hostEventRow(hostId, p.value));
        });
        this.log.info({ kind: p.value.kind, workspaceId: p.value.workspaceId, containerId: p.value.containerId, message: p.value.message }, 'agent event');
        return;
      case 'diskUsage':
        await applyDiskUsage(db, workspaces, this.hostId, p.value, opts.diskWarnPercent ?? 90, this.log, live);
        return;
      case 'imagesPruned':
        await recordPrunedImages(db, this.hostId, p.value, this.log, live);
        return;
      case 'buildPoll':
        await assignBuilds(this.builds(), p.value.slots);
        return;
      case 'buildProgress':
        await buildProgress(this.builds(), p.value);
        return;
      case 'buildResult':
        await buildResult(this.builds(), p.value);
        return;
      case 'desiredStateRequest':
        this.desired?.requestComplete(p.value.haveRevision, p.value.deltaAppliesTo);
        return;
    }
  }

  private builds(): BuildSession {
    return {
      db: this.sessions.db,
      hostId: this.hostId as string,
      arch: this.arch,
      buildLeaseMs: this.sessions.opts.buildLeaseMs,
      log: this.log,
      observe: this.sessions.observe,
      live: this.live,
      write: (m) => this.write(m),
    };
  }

  /** Set at the Hello: this session's writes apply only while it is its host's. */
  private live: SessionGuard = () => Promise.reject(new Error('no Hello yet'));

  private async hello(h: Hello): Promise<void> {
    clearTimeout(this.helloTimer);
    if (!ID_PATTERN.test(h.hostId)) {
      throw new RefusedError(grpc.status.INVALID_ARGUMENT, `host id ${JSON.stringify(h.hostId)} is invalid: lowercase letters, digits, ".", "_", "-"`);
    }
    if (!isArch(h.arch)) throw new RefusedError(grpc.status.INVALID_ARGUMENT, `arch ${JSON.stringify(h.arch)} is not supported`);
    const cap = h.capacity ?? { memoryBytes: 0, cpus: 0, diskBytes: 0 };
    const { opts } = this.sessions;
    let serial: string | null = null;
    if (opts.requireClientCertificates) {
      const id = this.identity;
      if (!id || 'error' in id) throw new RefusedError(grpc.status.UNAUTHENTICATED, id?.error ?? 'no client certificate');
      if (id.hostId !== h.hostId) {
        throw new RefusedError(
          grpc.status.PERMISSION_DENIED,
          `this agent's client certificate is for host ${id.hostId}, but its Hello says host ${h.hostId}: an agent may only connect as the host its certificate names (enroll this host with its own join token and state directory)`,
        );
      }
      serial = id.serial;
    }
    const claim = await this.sessions.hellos.submit({
      hostId: h.hostId,
      arch: h.arch,
      agentVersion: h.agentVersion,
      memoryBytes: cap.memoryBytes,
      cpus: cap.cpus,
      diskBytes: cap.diskBytes,
      stats: statsColumns(h.stats),
      images: imageRows(h.images),
      containers: h.workspaces.length,
      lastAppliedRevision: h.lastAppliedRevision,
      sessionId: this.id,
      previousSessionId: h.previousSessionId,
      serial,
    });
    if (!claim.ok) throw new RefusedError(claim.refusal === 'certificate' ? grpc.status.PERMISSION_DENIED : grpc.status.ALREADY_EXISTS, claim.message);
    this.hostId = h.hostId;
    if (this.closed) {
      // The stream ended while the Hello was being recorded (the agent left, or this
      // replica is draining): undo the claim, or the host could not connect to another
      // replica until this session looked dead.
      const hostId = h.hostId;
      await this.sessions.disconnects.add({ hostId, sessionId: this.id }).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record the disconnect'));
      return;
    }
    this.live = sessionGuard(h.hostId, this.id);
    this.arch = h.arch;
    this.log = this.log.child({ hostId: h.hostId });
    this.sessions.claim(h.hostId, this);
    this.desired = new DesiredPush({
      hostId: h.hostId,
      incremental: h.incrementalDesiredState === true,
      completeEvery: opts.desiredCompleteEvery ?? 100,
      loader: this.sessions.desired,
      write: (m) => this.write(m),
      closed: () => this.closed,
      log: this.log,
    });
    this.log.info(
      { arch: h.arch, agentVersion: h.agentVersion, images: h.images.length, heartbeatIntervalMs: claim.heartbeatIntervalMs, superseded: claim.superseded ?? undefined, takeover: claim.takeover },
      'agent connected',
    );
    this.write({
      payload: { $case: 'welcome', value: { sessionId: this.id, heartbeatIntervalMs: claim.heartbeatIntervalMs, workspaceCpuSampleMs: opts.workspaceCpuSampleMs ?? 0 } },
    });
    // After a connect storm, thousands of first loads are gathered by the replica's
    // DesiredLoader into a few statements (at most two at once), so they never crowd the
    // pool ahead of the heartbeat batch.
    this.sendDesired();
  }

  private async heartbeat(hb: Heartbeat): Promise<void> {
    const { db } = this.sessions;
    const hostId = this.hostId as string;
    const still = await this.sessions.heartbeats.submit({
      hostId,
      sessionId: this.id,
      stats: statsColumns(hb.stats),
      serial: this.serial ?? null,
      images: hb.imagesChanged ? imageRows(hb.images) : undefined,
    });
    if (this.closed) return;
    if (!still && this.serial) {
      const check = await checkCertificate(db, this.serial, hostId);
      if (!check.ok) throw new RefusedError(grpc.status.PERMISSION_DENIED, check.reason);
    }
    if (!still) throw new RefusedError(grpc.status.ABORTED, 'this session was superseded by a newer session for the same host');
    const cpu = hb.workspaceCpu.filter((c) => UUID.test(c.workspaceId) && Number.isFinite(c.cpuPercent) && c.cpuPercent >= 0);
    // Samples are a nicety for autostop: failing to keep them must never end the session.
    if (cpu.length) await this.sessions.opts.onWorkspaceCpu?.(db, hostId, cpu).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record workspace CPU samples'));
  }

  /**
   * Sends the host's desired state if it is newer than what this stream last got
   * (agents/desired-push.ts: complete first, then deltas). Loads of all sessions are
   * gathered into few statements (DesiredLoader), so the periodic resync of every
   * session costs one statement per thousand hosts and never queues behind the agents'
   * writes.
   */
  sendDesired(): void {
    if (!this.hostId || this.closed) return;
    // A slow agent: nothing more is queued for it; at 'drain' it gets the state as it is then.
    if (this.blocked) return;
    this.desired?.push();
  }

  /** Writes whatever the buffer holds; a full buffer (write() false) holds back desired state until 'drain'. */
  private write(msg: ControlMessage): void {
    if (this.closed) return;
    if (!this.call.write(msg)) this.blocked = true;
  }

  send(msg: ControlMessage): boolean {
    if (this.closed || !this.hostId) return false;
    this.write(msg);
    return true;
  }

  private get serial(): string | undefined {
    return this.identity && 'serial' in this.identity ? this.identity.serial : undefined;
  }

  refuse(code: grpc.status, message: string): void {
    this.fail(new RefusedError(code, message));
  }

  private fail(e: unknown): void {
    if (this.closed) return;
    const refused =
      e instanceof RefusedError
        ? e
        : e instanceof SessionSuperseded
          ? new RefusedError(grpc.status.ABORTED, 'this session was superseded by a newer session for the same host')
          : e instanceof AckRefused
            ? new RefusedError(grpc.status.INVALID_ARGUMENT, e.message)
            : new RefusedError(grpc.status.UNAVAILABLE, `control plane error: ${(e as Error).message}`);
    this.log.warn({ err: refused.message, code: refused.code }, 'closing agent session');
    // emit('error'), not destroy(): grpc-js sends the status to the agent only on this
    // path; a destroyed stream ends silently and the agent would wait forever.
    this.call.emit('error', Object.assign(new Error(refused.message), { code: refused.code, details: refused.message }));
    void this.cleanup();
  }

  async close(): Promise<void> {
    if (!this.closed) this.call.end();
    await this.cleanup();
  }

  private async cleanup(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.helloTimer);
    this.sessions.release(this);
    if (!this.hostId) return;
    this.log.info('agent disconnected');
    const hostId = this.hostId;
    await this.sessions.disconnects.add({ hostId, sessionId: this.id }).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record the disconnect'));
  }
}
