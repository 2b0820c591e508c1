import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ID_PATTERN, isArch, type Logger } from '@a4c/common';
import {
  type AgentMessage,
  type AgentServiceServer,
  type ControlMessage,
  type Heartbeat,
  type Hello,
  type HostEvent,
  type HostStats,
  type ImageInfo,
} from '@a4c/proto';
import { readoptBuild } from '../builds/hygiene.js';
import { claimBuilds, completeBuild, recordProgress } from '../builds/queue.js';
import { recordPrunedImages } from '../disk/pruned.js';
import { applyDiskUsage } from '../disk/usage.js';
import { agentIdentity } from '../pki/ca.js';
import { checkCertificate } from '../pki/enrollment.js';
import type { ChangeFeed } from '../events/notify.js';
import { NO_OBSERVER, type Observer } from '../metrics/observer.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { agentEventKind } from '../events/kinds.js';
import { appendEvent, changesOf } from '../store/events.js';
import type { HostStatsJson } from '../store/hosts.js';
import { loadDesired, toSpec } from '../workspaces/desired.js';
import type { WorkspaceService } from '../workspaces/service.js';

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
}

type Identity = { hostId: string; serial: string } | { error: string } | undefined;

type Call = grpc.ServerDuplexStream<AgentMessage, ControlMessage>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

class RefusedError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The agent streams held by this replica, one per host. A host's desired state is
 * pushed when this replica changes it, when any replica NOTIFYs a change, and on a
 * periodic resync; every push is the complete set, so duplicates are harmless.
 */
export class AgentSessions {
  // db is the agent plane's own pool: a burst of API requests holding the API pool's
  // connections must never delay heartbeats, or busy hosts would look dead.
  private readonly byHost = new Map<string, AgentSession>();
  private readonly all = new Set<AgentSession>();
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly db: Db,
    private readonly feed: ChangeFeed,
    readonly workspaces: WorkspaceService,
    readonly opts: SessionOptions,
    readonly log: Logger,
    readonly observe: Observer = NO_OBSERVER,
  ) {}

  /** Agent streams this replica holds (hosts past their Hello). */
  get sessionCount(): number {
    return this.byHost.size;
  }

  start(): void {
    this.feed.on('host', (hostId: string) => this.push(hostId));
    this.feed.on('reconnected', () => this.pushAll());
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

  push(hostId: string): void {
    this.byHost.get(hostId)?.sendDesired();
  }

  private pushAll(): void {
    for (const s of this.byHost.values()) s.sendDesired();
  }

  claim(hostId: string, session: AgentSession): void {
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
  }
}

class AgentSession {
  readonly id = randomUUID();
  hostId: string | undefined;
  private arch = '';
  private sentRevision = -1;
  private sending = false;
  private sendAgain = false;
  private inbox: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly helloTimer: NodeJS.Timeout;
  private log: Logger;

  constructor(
    private readonly sessions: AgentSessions,
    private readonly call: Call,
    private readonly identity: Identity,
  ) {
    this.log = sessions.log.child({ sessionId: this.id });
    this.helloTimer = setTimeout(() => this.fail(new RefusedError(grpc.status.DEADLINE_EXCEEDED, 'no Hello within 10 s')), 10_000);
    call.on('data', (msg: AgentMessage) => {
      this.inbox = this.inbox.then(() => this.handle(msg)).catch((e: unknown) => this.fail(e));
    });
    call.on('end', () => void this.close());
    call.on('error', (e) => {
      this.log.debug({ err: e.message }, 'agent stream error');
      void this.cleanup();
    });
    call.on('cancelled', () => void this.cleanup());
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
    switch (p.$case) {
      case 'hello':
        throw new RefusedError(grpc.status.FAILED_PRECONDITION, 'Hello was already received on this stream');
      case 'heartbeat':
        await this.heartbeat(p.value);
        return;
      case 'workspaceStatus':
        await this.sessions.workspaces.applyReport(this.sessions.db, this.hostId, p.value);
        return;
      case 'ack':
        await this.sessions.workspaces.applyAck(this.sessions.db, this.hostId, p.value.revision);
        return;
      case 'event':
        await this.recordEvent(p.value);
        return;
      case 'diskUsage':
        await applyDiskUsage(this.sessions.db, this.sessions.workspaces, this.hostId, p.value, this.sessions.opts.diskWarnPercent ?? 90, this.log);
        return;
      case 'imagesPruned':
        await recordPrunedImages(this.sessions.db, this.hostId, p.value, this.log);
        return;
      case 'buildPoll':
        await this.assignBuilds(p.value.slots);
        return;
      case 'buildProgress': {
        const b = p.value;
        if (!UUID.test(b.buildId) || !UUID.test(b.claimId)) return;
        if (!(await recordProgress(this.sessions.db, b.buildId, b.claimId, b.percent, b.logLines.slice(-500)))) {
          const again = await readoptBuild(this.sessions.db, this.hostId, b.buildId, this.sessions.opts.buildLeaseMs);
          if (again) {
            this.log.info({ buildId: b.buildId }, 'build re-claimed by the host still running it');
            this.write(again);
            return;
          }
          this.write({ payload: { $case: 'buildCancel', value: { buildId: b.buildId, claimId: b.claimId, reason: 'the claim is no longer yours (requeued after a silent lease, cancelled, past its maximum duration, or finished)' } } });
        }
        return;
      }
      case 'buildResult': {
        const r = p.value;
        if (!UUID.test(r.buildId) || !UUID.test(r.claimId)) return;
        const hostId = this.hostId;
        const { outcome } = await inTx(this.sessions.db, (tx) =>
          completeBuild(tx, hostId, {
            buildId: r.buildId,
            claimId: r.claimId,
            success: r.success,
            imageId: r.imageId,
            error: r.error,
            logLines: r.logLines.slice(-500),
            pushedRef: r.pushedRef.slice(0, 512),
          }),
        );
        this.log.info({ buildId: r.buildId, outcome }, 'build result');
        if (outcome !== 'discarded') this.sessions.observe.imageBuilt(outcome === 'completed' ? 'success' : 'failed');
        return;
      }
    }
  }

  private async hello(h: Hello): Promise<void> {
    clearTimeout(this.helloTimer);
    if (!ID_PATTERN.test(h.hostId)) {
      throw new RefusedError(grpc.status.INVALID_ARGUMENT, `host id ${JSON.stringify(h.hostId)} is invalid: lowercase letters, digits, ".", "_", "-"`);
    }
    if (!isArch(h.arch)) throw new RefusedError(grpc.status.INVALID_ARGUMENT, `arch ${JSON.stringify(h.arch)} is not supported`);
    const cap = h.capacity ?? { memoryBytes: 0, cpus: 0, diskBytes: 0 };
    const { db, opts } = this.sessions;
    if (opts.requireClientCertificates) {
      const id = this.identity;
      if (!id || 'error' in id) throw new RefusedError(grpc.status.UNAUTHENTICATED, id?.error ?? 'no client certificate');
      if (id.hostId !== h.hostId) {
        throw new RefusedError(
          grpc.status.PERMISSION_DENIED,
          `this agent's client certificate is for host ${id.hostId}, but its Hello says host ${h.hostId}: an agent may only connect as the host its certificate names (enroll this host with its own join token and state directory)`,
        );
      }
      const check = await checkCertificate(db, id.serial, h.hostId);
      if (!check.ok) throw new RefusedError(grpc.status.PERMISSION_DENIED, check.reason);
    }
    const accepted = await inTx(db, async (tx) => {
      await tx.query(
        `INSERT INTO hosts (id, arch, agent_version, memory_bytes, cpus, disk_bytes) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO NOTHING`,
        [h.hostId, h.arch, h.agentVersion, cap.memoryBytes, cap.cpus, cap.diskBytes],
      );
      // Never two writers for one host: a live session elsewhere keeps the host. The
      // upsert's row lock makes the check and the claim one step.
      const { rows } = await tx.query(
        `INSERT INTO host_status AS s (host_id, arch, session_id, connected, connected_at, last_heartbeat_at, stats, disk_percent, memory_percent, docker_ready)
         VALUES ($1, $8, $2, true, now(), now(), $3, $5, $6, $7)
         ON CONFLICT (host_id) DO UPDATE SET arch = EXCLUDED.arch, session_id = EXCLUDED.session_id, connected = true, connected_at = now(),
           last_heartbeat_at = now(), stats = EXCLUDED.stats, disk_percent = EXCLUDED.disk_percent,
           memory_percent = EXCLUDED.memory_percent, docker_ready = EXCLUDED.docker_ready
         WHERE NOT (s.connected AND s.last_heartbeat_at > now() - make_interval(secs => $4))
         RETURNING host_id`,
        [h.hostId, this.id, statsJson(h.stats), opts.liveWithinSeconds, ...typedStats(h.stats), h.arch],
      );
      if (!rows[0]) return false;
      const before = (await tx.query<{ arch: string; agent_version: string; memory_bytes: number; cpus: number; disk_bytes: number }>(
        'SELECT arch, agent_version, memory_bytes, cpus, disk_bytes FROM hosts WHERE id = $1', [h.hostId])).rows[0];
      await tx.query(
        'UPDATE hosts SET arch = $2, agent_version = $3, memory_bytes = $4, cpus = $5, disk_bytes = $6, updated_at = now() WHERE id = $1',
        [h.hostId, h.arch, h.agentVersion, cap.memoryBytes, cap.cpus, cap.diskBytes],
      );
      await replaceImages(tx, h.hostId, h.images);
      const was = before && { arch: before.arch, agentVersion: before.agent_version, memoryBytes: before.memory_bytes, cpus: before.cpus, diskBytes: before.disk_bytes };
      await appendEvent(tx, {
        kind: 'host.connected',
        actor: `agent:${h.hostId}`,
        reason: 'its agent opened a session',
        hostId: h.hostId,
        changes: changesOf(
          { connected: false, ...was },
          { connected: true, arch: h.arch, agentVersion: h.agentVersion, memoryBytes: cap.memoryBytes, cpus: cap.cpus, diskBytes: cap.diskBytes },
        ),
        data: { sessionId: this.id, agentVersion: h.agentVersion, containers: h.workspaces.length, lastAppliedRevision: h.lastAppliedRevision },
      });
      return true;
    });
    if (!accepted) {
      throw new RefusedError(
        grpc.status.ALREADY_EXISTS,
        `host ${h.hostId} already has a live agent session; stop the other agent with this host id, or set A4C_HOST_ID to a unique value`,
      );
    }
    this.hostId = h.hostId;
    if (this.closed) {
      // The stream ended while the Hello was being recorded (the agent left, or this
      // replica is draining): undo the claim, or the host could not connect to another
      // replica until this session looked dead.
      await this.recordDisconnect();
      return;
    }
    this.arch = h.arch;
    this.log = this.log.child({ hostId: h.hostId });
    this.sessions.claim(h.hostId, this);
    this.log.info({ arch: h.arch, agentVersion: h.agentVersion, images: h.images.length }, 'agent connected');
    this.write({
      payload: { $case: 'welcome', value: { sessionId: this.id, heartbeatIntervalMs: opts.heartbeatIntervalMs, workspaceCpuSampleMs: opts.workspaceCpuSampleMs ?? 0 } },
    });
    this.sendDesired();
  }

  private async heartbeat(hb: Heartbeat): Promise<void> {
    const { db } = this.sessions;
    const still = await inTx(db, async (tx) => {
      // A revoked certificate (host removed on any replica) ends the session here.
      const { rowCount } = await tx.query(
        `UPDATE host_status SET last_heartbeat_at = now(), stats = $3, connected = true, disk_percent = $4, memory_percent = $5, docker_ready = $6
          WHERE host_id = $1 AND session_id = $2 AND NOT EXISTS (SELECT 1 FROM revoked_certificates WHERE serial = $7)`,
        [this.hostId, this.id, statsJson(hb.stats), ...typedStats(hb.stats), this.serial ?? null],
      );
      if (!rowCount) return false;
      if (hb.imagesChanged) await replaceImages(tx, this.hostId as string, hb.images);
      return true;
    });
    if (!still && this.serial) {
      const check = await checkCertificate(db, this.serial, this.hostId as string);
      if (!check.ok) throw new RefusedError(grpc.status.PERMISSION_DENIED, check.reason);
    }
    if (!still) throw new RefusedError(grpc.status.ABORTED, 'this session was superseded by a newer session for the same host');
    const cpu = hb.workspaceCpu.filter((c) => UUID.test(c.workspaceId) && Number.isFinite(c.cpuPercent) && c.cpuPercent >= 0);
    // Samples are a nicety for autostop: failing to keep them must never end the session.
    if (cpu.length) await this.sessions.opts.onWorkspaceCpu?.(db, this.hostId as string, cpu).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record workspace CPU samples'));
  }

  /**
   * Claims builds of this host's arch for its free slots and sends them, oldest first.
   * Messages of one session are handled in order, so two polls never claim at once.
   */
  private async assignBuilds(slots: number): Promise<void> {
    const claimed = await claimBuilds(this.sessions.db, this.hostId as string, this.arch, Math.min(slots, 64));
    for (const b of claimed) {
      this.log.info({ buildId: b.id, claimId: b.claim_id, attempts: b.attempts }, 'build claimed');
      this.write({
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
            leaseMs: this.sessions.opts.buildLeaseMs,
          },
        },
      });
    }
  }

  /** An agent's own event (orphan removed, container vanished or exited) goes to the activity log. */
  private async recordEvent(e: HostEvent): Promise<void> {
    const kind = /^[a-z_]{1,40}$/.test(e.kind) ? e.kind : 'unknown';
    const workspaceId = UUID.test(e.workspaceId) ? e.workspaceId : null;
    await appendEvent(this.sessions.db, {
      kind: agentEventKind(kind),
      actor: `agent:${this.hostId}`,
      reason: e.message.slice(0, 500) || kind,
      workspaceId,
      hostId: this.hostId ?? null,
      data: {
        containerId: e.containerId.slice(0, 64) || null,
        ...(agentEventKind(kind) === 'agent.unknown' ? { reportedKind: kind } : {}),
        message: e.message.slice(0, 2000),
        ...(kind === 'container_exited' ? { exitCode: e.exitCode, oomKilled: e.oomKilled } : {}),
        at: Number.isFinite(e.atUnixMs) && e.atUnixMs > 0 ? new Date(e.atUnixMs).toISOString() : null,
      },
    });
    this.log.info({ kind, workspaceId, containerId: e.containerId, message: e.message }, 'agent event');
  }

  /** Sends the host's complete desired state if it is newer than what this stream last got. */
  sendDesired(): void {
    if (!this.hostId || this.closed) return;
    if (this.sending) {
      this.sendAgain = true;
      return;
    }
    this.sending = true;
    const hostId = this.hostId;
    loadDesired(this.sessions.db, hostId)
      .then(({ revision, rows }) => {
        if (this.closed || revision <= this.sentRevision) return;
        this.sentRevision = revision;
        this.write({ payload: { $case: 'desiredState', value: { revision, workspaces: rows.map(toSpec) } } });
        this.log.debug({ revision, workspaces: rows.length }, 'desired state sent');
      })
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not load desired state; will retry'))
      .finally(() => {
        this.sending = false;
        if (this.sendAgain) {
          this.sendAgain = false;
          this.sendDesired();
        }
      });
  }

  private write(msg: ControlMessage): void {
    if (!this.closed) this.call.write(msg);
  }

  send(msg: ControlMessage): boolean {
    if (this.closed || !this.hostId) return false;
    this.call.write(msg);
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
    const refused = e instanceof RefusedError ? e : new RefusedError(grpc.status.UNAVAILABLE, `control plane error: ${(e as Error).message}`);
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
    await this.recordDisconnect();
  }

  private async recordDisconnect(): Promise<void> {
    await inTx(this.sessions.db, async (tx) => {
      const { rowCount } = await tx.query('UPDATE host_status SET connected = false WHERE host_id = $1 AND session_id = $2', [
        this.hostId,
        this.id,
      ]);
      if (rowCount) {
        await appendEvent(tx, {
          kind: 'host.disconnected',
          actor: 'control-plane',
          reason: "its agent's session ended",
          hostId: this.hostId,
          changes: { connected: { from: true, to: false } },
          data: { sessionId: this.id },
        });
      }
    }).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record the disconnect'));
  }
}

/** disk_percent, memory_percent, docker_ready: what placement filters and sorts on. */
function typedStats(s: HostStats | undefined): [number, number, boolean] {
  if (!s) return [100, 100, false];
  return [pct(s.diskPercent), pct(s.memoryPercent), s.dockerReady];
}

const pct = (n: number) => (Number.isFinite(n) ? Math.min(100, Math.max(0, Math.round(n * 100) / 100)) : 100);

function statsJson(s: HostStats | undefined): string | null {
  if (!s) return null;
  const stats: HostStatsJson = {
    diskPercent: pct(s.diskPercent),
    memoryPercent: pct(s.memoryPercent),
    cpuPercent: pct(s.cpuPercent),
    workspaceContainers: s.workspaceContainers,
    engineContainers: s.engineContainers,
    dockerReady: s.dockerReady,
    diskUsedBytes: s.diskUsedBytes,
    diskTotalBytes: s.diskTotalBytes,
    memoryUsedBytes: s.memoryUsedBytes,
    memoryTotalBytes: s.memoryTotalBytes,
  };
  return JSON.stringify(stats);
}

async function replaceImages(tx: Tx, hostId: string, images: ImageInfo[]): Promise<void> {
  await tx.query('DELETE FROM host_images WHERE host_id = $1', [hostId]);
  const valid = images.filter((i) => i.ref && i.ref.length <= 512);
  if (!valid.length) return;
  await tx.query(
    `INSERT INTO host_images (host_id, ref, image_id, project, arch, change_number, created_at)
     SELECT $1, ref, image_id, NULLIF(project, ''), NULLIF(arch, ''), NULLIF(change, ''), to_timestamp(created)
       FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[])
            AS t(ref, image_id, project, arch, change, created)
     ON CONFLICT DO NOTHING`,
    [
      hostId,
      valid.map((i) => i.ref),
      valid.map((i) => i.imageId),
      valid.map((i) => i.project),
      valid.map((i) => i.arch),
      valid.map((i) => i.changeNumber),
      valid.map((i) => i.createdUnix),
    ],
  );
}
