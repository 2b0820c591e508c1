/**
 * bench/sim-agents: a fleet of simulated a4c-agents, to load the control plane without
 * Docker. Each sim host speaks AgentService.Connect exactly as the real agent does
 * (Hello, heartbeats on the Welcome's period, WorkspaceStatus on change, ack per
 * revision, reconnect with capped exponential backoff and jitter) but "runs" its
 * workspaces in memory: a spec is RUNNING or STOPPED the moment it is received.
 */
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { DesiredChain } from '@a4c/agent';
import {
  AgentServiceClient,
  DesiredState as DesiredStateCodec,
  RunState,
  WorkspacePhase,
  type AgentMessage,
  type ControlMessage,
  type DesiredState,
  type HostCapacity,
  type HostStats,
  type ImageInfo,
  type WorkspaceStatus,
} from '@a4c/proto';

export interface SimFleetOptions {
  /** host:port of the control plane's gRPC server. */
  controlPlane: string;
  count: number;
  /** Host ids are `${hostPrefix}-${i}`. */
  hostPrefix: string;
  /** Default linux-x64. */
  arch?: string;
  /** Default 256 GiB memory, 64 CPUs, 4 TiB disk: room for any tier. */
  capacity?: HostCapacity;
  /** Default ['a4c-base:latest']. */
  images?: string[];
  /**
   * Disk and memory usage of host i, asked for every Hello and Heartbeat (so it may
   * change over time); default a stable pseudo-random 10..60 % per host.
   */
  stats?: (i: number) => { diskPercent: number; memoryPercent: number };
  /** gRPC channels (TCP connections) the streams are spread over; default ceil(count / 100). */
  channels?: number;
  /**
   * A stream with no Welcome this long after its Hello is given up and retried; default
   * 15 s. (A control plane that refuses a session by destroying its server call sends
   * no status, so without this the stream would hang forever.)
   */
  welcomeTimeoutMs?: number;
  /**
   * Default true. False: desired states are received but nothing is reported (no
   * status, no ack), to measure the control plane's placement path without the agent
   * plane's work.
   */
  reports?: boolean;
  /** Called on every DesiredState a sim receives (bench/agent-fleet.ts times propagation with it). */
  onDesiredState?: (hostId: string, ds: DesiredState) => void;
  /** Default true: the Hello says the sim applies deltas (as the real agent's does). */
  incremental?: boolean;
}

export interface SimCounters {
  hosts: number;
  connected: number;
  desiredStates: number;
  /** Encoded size of every DesiredState received, and the workspace specs and removals they carried. */
  desiredBytes: number;
  desiredSpecs: number;
  desiredRemoved: number;
  /** Complete ones among them, and DesiredStateRequests sent after a delta that did not chain. */
  desiredComplete: number;
  desiredRequests: number;
  reports: number;
  acks: number;
  heartbeats: number;
  /** Streams lost and retried (refusals included). */
  reconnects: number;
  /** Workspaces in phase RUNNING across the fleet. */
  running: number;
  /** Workspaces in phase STOPPED across the fleet. */
  stopped: number;
}

const GiB = 1024 ** 3;
export const DEFAULT_SIM_CAPACITY: HostCapacity = { memoryBytes: 256 * GiB, cpus: 64, diskBytes: 4096 * GiB };
export const SIM_AGENT_VERSION = 'sim';

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 15_000;

type Call = grpc.ClientDuplexStream<AgentMessage, ControlMessage>;
type SimPhase = WorkspacePhase.WORKSPACE_PHASE_RUNNING | WorkspacePhase.WORKSPACE_PHASE_STOPPED;

interface SimWorkspace {
  phase: SimPhase;
  specRevision: number;
  containerId: string;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** A stable number in [lo, hi) from a string. */
function stableIn(s: string, lo: number, hi: number): number {
  return lo + (sha256(s).readUInt32BE(0) / 2 ** 32) * (hi - lo);
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/** The fleet's shared tallies; every sim adds to them. */
interface Tally {
  desiredStates: number;
  desiredBytes: number;
  desiredSpecs: number;
  desiredRemoved: number;
  desiredComplete: number;
  desiredRequests: number;
  reports: number;
  acks: number;
  heartbeats: number;
  reconnects: number;
}

class SimHost {
  /** Workspaces this host has (RUNNING or STOPPED), by id. */
  readonly workspaces = new Map<string, SimWorkspace>();
  connected = false;
  lastError: string | undefined;
  private call: Call | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private welcomeTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  /** What was last reported per workspace on the current stream (phase|specRevision). */
  private readonly sent = new Map<string, string>();
  /** The desired set of the current stream, rebuilt from complete sets and deltas as the agent does. */
  private readonly chain = new DesiredChain();
  incremental = true;
  private lastAcked = -1;
  private appliedRevision = 0;
  /** Reports nothing (SimFleetOptions.reports false). */
  quiet = false;
  /** The Welcome's session id: stamped on every later message, as the real agent does. */
  private sessionId: string | undefined;
  /** The last Welcome's session id, named in the next Hello (a fast takeover after a replica dies). */
  private previousSessionId = '';

  constructor(
    readonly hostId: string,
    private readonly client: AgentServiceClient,
    private readonly arch: string,
    private readonly capacity: HostCapacity,
    private readonly images: ImageInfo[],
    private readonly usage: () => { diskPercent: number; memoryPercent: number },
    private readonly tally: Tally,
    private readonly welcomeTimeoutMs: number,
    private readonly onConnectedChange: (connected: boolean) => void,
    private readonly onDesiredState?: (hostId: string, ds: DesiredState) => void,
  ) {}

  start(): void {
    this.open();
  }

  running(): Set<string> {
    const ids = new Set<string>();
    for (const [id, w] of this.workspaces) if (w.phase === WorkspacePhase.WORKSPACE_PHASE_RUNNING) ids.add(id);
    return ids;
  }

  private stats(): HostStats {
    const containers = this.workspaces.size;
    const { diskPercent, memoryPercent } = this.usage();
    return {
      diskPercent: round2(diskPercent),
      memoryPercent: round2(memoryPercent),
      cpuPercent: round2(1 + Math.random() * 9),
      workspaceContainers: containers,
      engineContainers: containers,
      diskUsedBytes: Math.round((this.capacity.diskBytes * diskPercent) / 100),
      diskTotalBytes: this.capacity.diskBytes,
      memoryUsedBytes: Math.round((this.capacity.memoryBytes * memoryPercent) / 100),
      memoryTotalBytes: this.capacity.memoryBytes,
      dockerReady: true,
    };
  }

  private statuses(revision: number): WorkspaceStatus[] {
    return [...this.workspaces].map(([workspaceId, w]) => status(workspaceId, w.phase, w.containerId, revision));
  }

  private open(): void {
    if (this.stopped) return;
    const call = this.client.connect();
    this.call = call;
    this.chain.reset();
    let welcomed = false;
    let ended = false;
    const onEnd = (reason: string) => {
      if (ended || this.call !== call) return;
      ended = true;
      this.call = undefined;
      clearTimeout(this.heartbeatTimer);
      clearTimeout(this.welcomeTimer);
      this.setConnected(false);
      this.retry(reason);
    };
    clearTimeout(this.welcomeTimer);
    this.welcomeTimer = setTimeout(() => {
      if (welcomed || this.call !== call) return;
      onEnd(`no Welcome within ${this.welcomeTimeoutMs} ms of the Hello`);
      call.cancel();
    }, this.welcomeTimeoutMs);
    call.on('data', (msg: ControlMessage) => {
      const p = msg.payload;
      if (!p || this.call !== call) return;
      if (p.$case === 'welcome') {
        welcomed = true;
        this.sessionId = p.value.sessionId;
        this.previousSessionId = p.value.sessionId;
        clearTimeout(this.welcomeTimer);
        this.attempt = 0;
        this.lastError = undefined;
        this.sent.clear(); // a new stream: everything is reported again on it
        this.lastAcked = -1;
        this.setConnected(true);
        this.scheduleHeartbeat(call, Math.max(100, p.value.heartbeatIntervalMs));
      } else if (p.$case === 'desiredState' && welcomed) {
        this.apply(call, p.value);
      }
    });
    call.on('error', (e: grpc.ServiceError) => onEnd(e.details || e.message));
    call.on('end', () => onEnd('the control plane closed the stream'));
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code !== grpc.status.OK) onEnd(s.details);
    });
    call.write({
      payload: {
        $case: 'hello',
        value: {
          hostId: this.hostId,
          arch: this.arch,
          capacity: this.capacity,
          agentVersion: SIM_AGENT_VERSION,
          images: this.images,
          workspaces: this.statuses(this.appliedRevision),
          lastAppliedRevision: this.appliedRevision,
          stats: this.stats(),
          incrementalDesiredState: this.incremental,
          previousSessionId: this.previousSessionId,
        },
      },
    });
  }

  /** Converges at once to a desired state: reports what changed, then acks. */
  private apply(call: Call, received: DesiredState): void {
    this.tally.desiredStates++;
    this.tally.desiredBytes += DesiredStateCodec.encode(received).finish().length;
    this.tally.desiredSpecs += received.workspaces.length;
    this.tally.desiredRemoved += received.removed.length;
    if (!received.incremental) this.tally.desiredComplete++;
    this.onDesiredState?.(this.hostId, received);
    const step = this.chain.receive(received);
    if (step.kind === 'gap' && step.request && this.call === call) {
      call.write({ sessionId: this.sessionId, payload: { $case: 'desiredStateRequest', value: step.request } });
      this.tally.desiredRequests++;
    }
    if (step.kind !== 'apply') return;
    const ds = step.state;
    if (this.quiet) return;
    const wanted = new Set<string>();
    for (const spec of ds.workspaces) {
      const id = spec.workspaceId;
      wanted.add(id);
      const phase: SimPhase =
        spec.runState === RunState.RUN_STATE_STOPPED ? WorkspacePhase.WORKSPACE_PHASE_STOPPED : WorkspacePhase.WORKSPACE_PHASE_RUNNING;
      const w: SimWorkspace = { phase, specRevision: spec.specRevision, containerId: this.workspaces.get(id)?.containerId ?? containerIdOf(id) };
      this.workspaces.set(id, w);
      this.report(call, id, `${phase}|${w.specRevision}`, status(id, phase, w.containerId, ds.revision));
    }
    for (const id of [...this.workspaces.keys()]) {
      if (wanted.has(id)) continue;
      this.workspaces.delete(id);
      this.report(call, id, 'ABSENT', status(id, WorkspacePhase.WORKSPACE_PHASE_ABSENT, '', ds.revision));
      this.sent.delete(id);
    }
    this.appliedRevision = ds.revision;
    if (this.call !== call || this.lastAcked === ds.revision) return;
    call.write({ sessionId: this.sessionId, payload: { $case: 'ack', value: { revision: ds.revision } } });
    this.lastAcked = ds.revision;
    this.tally.acks++;
  }

  private report(call: Call, workspaceId: string, key: string, s: WorkspaceStatus): void {
    if (this.sent.get(workspaceId) === key || this.call !== call) return;
    call.write({ sessionId: this.sessionId, payload: { $case: 'workspaceStatus', value: s } });
    this.sent.set(workspaceId, key);
    this.tally.reports++;
  }

  private scheduleHeartbeat(call: Call, periodMs: number): void {
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = setTimeout(() => {
      if (this.call !== call) return;
      call.write({ sessionId: this.sessionId, payload: { $case: 'heartbeat', value: { stats: this.stats(), imagesChanged: false, images: [], workspaceCpu: [] } } });
      this.tally.heartbeats++;
      this.scheduleHeartbeat(call, periodMs);
    }, periodMs);
  }

  private setConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    this.onConnectedChange(connected);
  }

  private retry(reason: string): void {
    if (this.stopped) return;
    this.lastError = reason;
    this.tally.reconnects++;
    const cap = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 16);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.open(), Math.round(cap / 2 + Math.random() * (cap / 2)));
  }

  /** Ends the stream; resolves once it is closed (or after a second). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.welcomeTimer);
    const call = this.call;
    this.call = undefined;
    this.setConnected(false);
    if (!call) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      call.once('status', () => {
        clearTimeout(t);
        resolve();
      });
      call.end();
      call.cancel();
    });
  }
}

function status(workspaceId: string, phase: WorkspacePhase, containerId: string, revision: number): WorkspaceStatus {
  return { workspaceId, phase, containerId, step: '', error: '', exitCode: 0, oomKilled: false, revision };
}

/** A fake Docker container id: 64 hex digits, the same for a workspace every time. */
export function containerIdOf(workspaceId: string): string {
  return sha256(`sim-container:${workspaceId}`).toString('hex');
}

/**
 * A fleet of simulated agents. `SimFleet.start` opens every stream at once and
 * returns; `waitConnected` waits for the Welcomes.
 */
export class SimFleet {
  private readonly tally: Tally = { desiredStates: 0, desiredBytes: 0, desiredSpecs: 0, desiredRemoved: 0, desiredComplete: 0, desiredRequests: 0, reports: 0, acks: 0, heartbeats: 0, reconnects: 0 };
  private readonly sims: SimHost[] = [];
  private readonly byId = new Map<string, SimHost>();
  private readonly clients: AgentServiceClient[] = [];
  private connectedCount = 0;
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];

  private constructor() {}

  static async start(opts: SimFleetOptions): Promise<SimFleet> {
    if (!Number.isInteger(opts.count) || opts.count < 1) throw new Error(`count must be a positive integer, got ${opts.count}`);
    const fleet = new SimFleet();
    const channels = Math.max(1, Math.min(opts.count, opts.channels ?? Math.ceil(opts.count / 100)));
    for (let c = 0; c < channels; c++) {
      fleet.clients.push(
        new AgentServiceClient(opts.controlPlane, grpc.credentials.createInsecure(), {
          // Its own subchannel pool, so each client is its own TCP connection.
          'grpc.use_local_subchannel_pool': 1,
          'grpc.keepalive_time_ms': 10_000,
          'grpc.keepalive_timeout_ms': 5_000,
          'grpc.keepalive_permit_without_calls': 1,
          'grpc.initial_reconnect_backoff_ms': 200,
          'grpc.max_reconnect_backoff_ms': 2_000,
        }),
      );
    }
    const created = Math.floor(Date.now() / 1000);
    const arch = opts.arch ?? 'linux-x64';
    const images: ImageInfo[] = (opts.images ?? ['a4c-base:latest']).map((ref) => ({
      ref,
      imageId: `sha256:${sha256(`sim-image:${ref}`).toString('hex')}`,
      project: '',
      arch: '',
      changeNumber: '',
      createdUnix: created,
    }));
    const capacity = opts.capacity ?? DEFAULT_SIM_CAPACITY;
    const welcomeTimeoutMs = opts.welcomeTimeoutMs ?? 15_000;
    for (let i = 0; i < opts.count; i++) {
      const hostId = `${opts.hostPrefix}-${i}`;
      const fixed = { diskPercent: stableIn(`disk:${hostId}`, 10, 60), memoryPercent: stableIn(`mem:${hostId}`, 10, 60) };
      const stats = opts.stats;
      const usage = stats ? () => stats(i) : () => fixed;
      const sim = new SimHost(hostId, fleet.clients[i % channels] as AgentServiceClient, arch, capacity, images, usage, fleet.tally, welcomeTimeoutMs, (c) =>
        fleet.connectedChanged(c),
      opts.onDesiredState);
      sim.quiet = opts.reports === false;
      sim.incremental = opts.incremental !== false;
      fleet.sims.push(sim);
      fleet.byId.set(hostId, sim);
    }
    for (const s of fleet.sims) s.start();
    return fleet;
  }

  private connectedChanged(connected: boolean): void {
    this.connectedCount += connected ? 1 : -1;
    if (this.connectedCount === this.sims.length) {
      const w = this.waiters;
      this.waiters = [];
      for (const { resolve } of w) resolve();
    }
  }

  get hostIds(): string[] {
    return this.sims.map((s) => s.hostId);
  }

  get connected(): number {
    return this.connectedCount;
  }

  /** Resolves once every sim is connected (got its Welcome); rejects after timeoutMs. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.connectedCount === this.sims.length) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const errors = [...this.lastErrors()].slice(0, 3).map(([e, n]) => `${n}× ${e}`);
        reject(
          new Error(
            `only ${this.connectedCount} of ${this.sims.length} sim agents connected within ${timeoutMs} ms` +
              (errors.length ? `; last errors: ${errors.join(' | ')}` : ''),
          ),
        );
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Why the sims that are not connected lost (or never got) their stream, with how many. */
  lastErrors(): Map<string, number> {
    const m = new Map<string, number>();
    for (const s of this.sims) if (!s.connected && s.lastError) m.set(s.lastError, (m.get(s.lastError) ?? 0) + 1);
    return m;
  }

  /** Ids of the workspaces host `hostId` currently runs (phase RUNNING). */
  runningOn(hostId: string): Set<string> {
    return this.byId.get(hostId)?.running() ?? new Set();
  }

  /** Every host id with the workspace ids it runs. */
  running(): Map<string, Set<string>> {
    return new Map(this.sims.map((s) => [s.hostId, s.running()]));
  }

  /** The host that has workspace `workspaceId` (running or stopped), if any. */
  hostOf(workspaceId: string): string | undefined {
    return this.sims.find((s) => s.workspaces.has(workspaceId))?.hostId;
  }

  get desiredStatesReceived(): number {
    return this.tally.desiredStates;
  }

  get reportsSent(): number {
    return this.tally.reports;
  }

  get acksSent(): number {
    return this.tally.acks;
  }

  counters(): SimCounters {
    let running = 0;
    let stopped = 0;
    for (const s of this.sims) {
      for (const w of s.workspaces.values()) {
        if (w.phase === WorkspacePhase.WORKSPACE_PHASE_RUNNING) running++;
        else stopped++;
      }
    }
    return { hosts: this.sims.length, connected: this.connectedCount, ...this.tally, running, stopped };
  }

  /** Ends every stream and closes the channels; the control plane sees the hosts disconnect. */
  async stop(): Promise<void> {
    await Promise.all(this.sims.map((s) => s.stop()));
    for (const c of this.clients) c.close();
    const w = this.waiters; // nobody waits forever on a stopped fleet
    this.waiters = [];
    for (const { reject } of w) reject(new Error('the sim fleet was stopped'));
  }
}
