import { randomUUID } from 'node:crypto';
import { acceptAttach, dialingHost } from './attach.js';
import * as grpc from '@grpc/grpc-js';
import { A4cError, type Logger } from '@a4c/common';
import { TunnelKind, type ControlMessage, type TunnelDown, type TunnelUp } from '@a4c/proto';
import type { ChangeFeed } from '../events/notify.js';
import { notifyTunnel } from '../events/notify.js';
import {
  endAccessSession,
  getAccessSession,
  insertAccessSession,
  lockAndCountOpenSessions,
  markAttached,
  refreshSessions,
  SESSION_SEEN_INTERVAL_MS,
  type AccessKind,
  type AccessSessionRow,
  type SessionEnd,
} from '../store/access.js';
import { inTx, type Db } from '../store/db.js';

export type TunnelCall = grpc.ServerDuplexStream<TunnelUp, TunnelDown>;

export interface AccessOptions {
  /** Live sessions allowed per workspace and per principal; 0: no limit. */
  maxPerWorkspace: number;
  maxPerUser: number;
  /** A session with no bytes either way for this long is closed; 0: never. */
  idleTimeoutMs: number;
  /** How long a user waits for the host's agent to open its tunnel. */
  attachTimeoutMs: number;
  /** This replica's gRPC address as agents can dial it; '' when every agent's own address reaches it (one replica). */
  advertiseAddress: string;
  requireClientCertificates: boolean;
}

export interface AccessRequest {
  workspaceId: string;
  hostId: string;
  actor: string;
  kind: AccessKind;
  command: string[];
  tty: boolean;
  cols: number;
  rows: number;
  port: number;
  env: string[];
}

/** Sends a control message on the host's Connect stream if this replica holds it. */
export type HostSender = (hostId: string, msg: ControlMessage) => boolean;

interface Pending {
  hostId: string;
  resolve(call: TunnelCall): void;
  timer: NodeJS.Timeout | undefined;
}

/** A live session's counters, refreshed to PostgreSQL periodically and at its end. */
export interface LiveSession {
  readonly id: string;
  readonly workspaceId: string;
  bytesIn: number;
  bytesOut: number;
  /** Bytes moved since the last refresh: the workspace counts as active. */
  activeSinceRefresh: boolean;
  /** Ends the session from the control plane's side (shutdown), telling the user why. */
  abort(reason: string): void;
}

const KINDS: Record<AccessKind, TunnelKind> = {
  exec: TunnelKind.TUNNEL_KIND_EXEC,
  shell: TunnelKind.TUNNEL_KIND_EXEC,
  'port-forward': TunnelKind.TUNNEL_KIND_PORT_FORWARD,
  ssh: TunnelKind.TUNNEL_KIND_SSH,
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Pairs users' sessions with the tunnels agents open for them (Nomad's `alloc exec`
 * turned around: the host never listens). A request is recorded in PostgreSQL under
 * the session limits, then NOTIFYed; whichever replica holds the host's Connect stream
 * sends OpenTunnel, and the agent dials this replica's Tunnel with the session id.
 */
export class TunnelBroker {
  private readonly pending = new Map<string, Pending>();
  private readonly live = new Map<string, LiveSession>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(
    private readonly db: Db,
    private readonly feed: ChangeFeed,
    private readonly sendToHost: HostSender,
    readonly opts: AccessOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.feed.on('tunnel', (id: string) => void this.dispatch(id));
    this.refreshTimer = setInterval(() => void this.refresh(), SESSION_SEEN_INTERVAL_MS);
    this.refreshTimer.unref();
  }

  /**
   * Records the session (429 past a limit) and waits for the agent's tunnel; 503 if it
   * does not come in time. The caller owns the returned stream and must call end().
   */
  async request(req: AccessRequest): Promise<{ id: string; call: TunnelCall }> {
    if (this.stopping) throw new A4cError('UNAVAILABLE', 'this control plane is shutting down', { suggestion: 'try again: another replica will take it' });
    const id = randomUUID();
    // Waiting starts before the commit: the NOTIFY, the agent's OpenTunnel and its
    // attach can all arrive before this function would otherwise get to register it.
    let attached: (call: TunnelCall) => void = () => undefined;
    const arrived = new Promise<TunnelCall>((resolve) => (attached = resolve));
    const pending: Pending = { hostId: req.hostId, resolve: (call) => attached(call), timer: undefined };
    this.pending.set(id, pending);
    this.requests.set(id, req);
    try {
      await inTx(this.db, async (tx) => {
        const open = await lockAndCountOpenSessions(tx, req.workspaceId, req.actor);
        const { maxPerWorkspace, maxPerUser } = this.opts;
        if (maxPerWorkspace && open.workspace >= maxPerWorkspace) {
          throw new A4cError('TOO_MANY_SESSIONS', `workspace ${req.workspaceId} already has ${open.workspace} open sessions (the limit is ${maxPerWorkspace})`, {
            suggestion: 'close a shell, exec, port-forward or ssh session into it and try again; see them with `a4c ws sessions ID`',
            limit: maxPerWorkspace,
            current: open.workspace,
          });
        }
        if (maxPerUser && open.actor >= maxPerUser) {
          throw new A4cError('TOO_MANY_SESSIONS', `${req.actor} already has ${open.actor} open sessions (the limit is ${maxPerUser})`, {
            suggestion: 'close one of your sessions and try again',
            limit: maxPerUser,
            current: open.actor,
          });
        }
        await insertAccessSession(tx, {
          id,
          workspaceId: req.workspaceId,
          hostId: req.hostId,
          actor: req.actor,
          kind: req.kind,
          command: req.kind === 'exec' || req.kind === 'shell' ? req.command : null,
          tty: req.tty,
          port: req.kind === 'port-forward' ? req.port : null,
          terminal: req.tty ? { cols: req.cols, rows: req.rows, env: req.env } : null,
          replica: this.opts.advertiseAddress,
        });
        await notifyTunnel(tx, id);
      });
    } catch (e) {
      this.pending.delete(id);
      this.requests.delete(id);
      throw e;
    }
    try {
      const call = await Promise.race([
        arrived,
        new Promise<never>((_resolve, reject) => {
          pending.timer = setTimeout(() => {
            reject(
              new A4cError('UNAVAILABLE', `the agent of host ${req.hostId} did not open a tunnel within ${Math.round(this.opts.attachTimeoutMs / 1000)} s`, {
                suggestion: `check that the host's agent is connected (\`a4c hosts get ${req.hostId}\`) and can reach this control plane's gRPC address${this.opts.advertiseAddress ? ` (${this.opts.advertiseAddress})` : ''}; then try again`,
              }),
            );
          }, this.opts.attachTimeoutMs);
        }),
      ]);
      await markAttached(this.db, id).catch(() => undefined);
      return { id, call };
    } catch (e) {
      await endAccessSession(this.db, id, { exitCode: null, reason: (e as Error).message, bytesIn: 0, bytesOut: 0 }).catch(() => undefined);
      throw e;
    } finally {
      clearTimeout(pending.timer);
      this.pending.delete(id);
      this.requests.delete(id);
    }
  }

  /** Requests this replica made and still waits on, for dispatching without a round trip. */
  private readonly requests = new Map<string, AccessRequest>();

  /** A session was recorded (on any replica): if this replica holds the host's stream, ask its agent for the tunnel. */
  private async dispatch(id: string): Promise<void> {
    if (!UUID.test(id)) return;
    try {
      const local = this.requests.get(id);
      const row = local ? undefined : await getAccessSession(this.db, id);
      const msg = local ? openTunnelFor(id, local, this.opts.advertiseAddress) : row && !row.attached_at && !row.ended_at ? openTunnelFromRow(row) : undefined;
      if (!msg) return;
      const hostId = local?.hostId ?? (row as AccessSessionRow).host_id;
      if (this.sendToHost(hostId, { payload: { $case: 'openTunnel', value: msg } })) {
        this.log.debug({ sessionId: id, hostId }, 'asked the agent for a tunnel');
      }
    } catch (e) {
      this.log.warn({ sessionId: id, err: (e as Error).message }, 'could not dispatch a tunnel request');
    }
  }

  /** AgentService.Tunnel: the agent attaches a tunnel to a waiting session. */
  readonly handleTunnel = (call: TunnelCall): void => {
    acceptAttach(call, 'TunnelAttach', (first: TunnelUp) => this.attach(call, first));
  };

  private async attach(call: TunnelCall, first: TunnelUp): Promise<void> {
    if (first.payload?.$case !== 'attach') throw Object.assign(new Error('the first message of a Tunnel must be a TunnelAttach'), { code: grpc.status.FAILED_PRECONDITION });
    const { tunnelId, hostId } = first.payload.value;
    const p = this.pending.get(tunnelId);
    if (!p) throw Object.assign(new Error(`no session ${tunnelId} waits on this control plane (it timed out, or belongs to another replica)`), { code: grpc.status.NOT_FOUND });
    const agentHost = await dialingHost(call, hostId, this.db, this.opts.requireClientCertificates);
    if (agentHost !== p.hostId) {
      throw Object.assign(new Error(`session ${tunnelId} is for host ${p.hostId}, not ${agentHost}`), { code: grpc.status.PERMISSION_DENIED });
    }
    this.pending.delete(tunnelId);
    p.resolve(call);
  }

  /** A session is live: its counters are refreshed until end(). */
  track(s: LiveSession): void {
    this.live.set(s.id, s);
  }

  async end(s: LiveSession, end: Omit<SessionEnd, 'bytesIn' | 'bytesOut'>): Promise<void> {
    this.live.delete(s.id);
    await endAccessSession(this.db, s.id, { ...end, bytesIn: s.bytesIn, bytesOut: s.bytesOut }).catch((e: unknown) =>
      this.log.warn({ sessionId: s.id, err: (e as Error).message }, 'could not record the end of a session'),
    );
  }

  private async refresh(): Promise<void> {
    const live = [...this.live.values()];
    if (!live.length) return;
    const active = [...new Set(live.filter((s) => s.activeSinceRefresh).map((s) => s.workspaceId))];
    for (const s of live) s.activeSinceRefresh = false;
    await refreshSessions(this.db, live, active).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not refresh live sessions'));
  }

  get liveCount(): number {
    return this.live.size;
  }

  /** Shutdown: refuse new sessions, end the live ones with a message saying why. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.refreshTimer);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    const live = [...this.live.values()];
    for (const s of live) s.abort('the control plane is shutting down; connect again (another replica, or this one once it is back, will serve you)');
    // Let the bridges record their ends before the pool closes.
    const deadline = Date.now() + 2_000;
    while (this.live.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
}

function openTunnelFor(id: string, r: AccessRequest, address: string) {
  return {
    tunnelId: id,
    address,
    workspaceId: r.workspaceId,
    kind: KINDS[r.kind],
    command: r.command,
    tty: r.tty,
    size: r.tty ? { cols: r.cols, rows: r.rows } : undefined,
    port: r.port,
    env: r.env,
  };
}

/** Another replica's session: everything the agent needs is in its row. */
function openTunnelFromRow(row: AccessSessionRow) {
  return {
    tunnelId: row.id,
    address: row.replica,
    workspaceId: row.workspace_id,
    kind: KINDS[row.kind],
    command: row.command ?? [],
    tty: row.tty,
    size: row.terminal ? { cols: row.terminal.cols, rows: row.terminal.rows } : undefined,
    port: row.port ?? 0,
    env: row.terminal?.env ?? [],
  };
}
