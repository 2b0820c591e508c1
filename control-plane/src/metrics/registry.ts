import { WORKSPACE_STATUSES, type Logger } from '@a4c/common';
import client from 'prom-client';
import { readFleet, type FleetState } from '../store/metrics.js';
import type { Observer } from './observer.js';
import type pg from 'pg';

/** What the metrics read when scraped. */
export interface MetricSources {
  /** The metrics' own pool (store/metrics.ts createMetricsPool). */
  metricsDb: pg.Pool;
  /** The API's and the agent plane's pools, by the name of the `pool` label. */
  pools: Record<'api' | 'agent', pg.Pool>;
  liveWithinSeconds: number;
  /** How long one read of the fleet serves scrapes. */
  cacheMs: number;
  /** Agent streams this replica holds. */
  sessionCount(): number;
  /** Requests the load shedder answered 503. */
  shedCount(): number;
}

const CREATION_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 180, 300, 600];
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const LAG_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const LAG_SAMPLE_MS = 100;

/**
 * prom-client's default gauges that end in _total, which Prometheus reserves for
 * counters (`promtool check metrics` refuses them); nodejs_active_handles and
 * nodejs_active_requests carry the same counts by type.
 */
const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

let processRegistry: client.Registry | undefined;

/**
 * prom-client's default process metrics (CPU, memory, heap, GC, event loop), once per
 * process: they describe the process, which control planes started in one process
 * (the tests) share, and their monitors cannot be stopped.
 */
function processMetrics(): client.Registry {
  if (!processRegistry) {
    processRegistry = new client.Registry();
    client.collectDefaultMetrics({ register: processRegistry });
    for (const name of LINT_FAILING_DEFAULTS) processRegistry.removeSingleMetric(name);
  }
  return processRegistry;
}

/**
 * The control plane's Prometheus metrics, one registry per control plane (tests run
 * several in one process). Three kinds:
 *  - events this replica handled (requests, creations, builds, placements): counters
 *    and histograms fed as they happen (the Observer);
 *  - this replica's own state (pools, agent streams, shed requests, event loop): read
 *    when scraped;
 *  - the fleet (hosts, workspaces, the build queue): read from PostgreSQL when
 *    scraped, cached for `cacheMs`, so every replica shows the same values.
 */
export class ControlPlaneMetrics implements Observer {
  /** This control plane's metrics and the process's. */
  readonly registry: client.Registry;
  private readonly creationSeconds: client.Histogram<never>;
  private readonly created: client.Counter<'result'>;
  private readonly built: client.Counter<'result'>;
  private readonly conflicts: client.Counter<never>;
  private readonly retries: client.Counter<never>;
  private readonly placements: client.Counter<'result'>;
  readonly requestSeconds: client.Histogram<'route' | 'method' | 'code'>;
  readonly requestErrors: client.Counter<'route' | 'code'>;
  private readonly lagTimer: NodeJS.Timeout;
  private fleet: { read: Promise<FleetState | undefined>; doneAt?: number } | undefined;

  constructor(
    private readonly src: MetricSources,
    private readonly log: Logger,
  ) {
    const own = new client.Registry();
    const registers = [own];

    // ---- events, per replica
    this.creationSeconds = new client.Histogram({
      name: 'a4c_workspace_creation_duration_seconds',
      help: 'Seconds from a workspace creation request (or its approval or retry) to RUNNING, observed by the replica that applied the report',
      buckets: CREATION_BUCKETS,
      registers,
    });
    this.created = new client.Counter({ name: 'a4c_workspaces_created_total', help: 'Workspace creations ended, by result: success (RUNNING) or failed (FAILED before RUNNING, or timed out)', labelNames: ['result'], registers });
    this.built = new client.Counter({ name: 'a4c_images_built_total', help: 'Image builds ended, by result: success or failed (including builds failed after their retries ran out)', labelNames: ['result'], registers });
    this.conflicts = new client.Counter({ name: 'a4c_placement_conflicts_total', help: 'Placement attempts that found hosts with room, every one locked by a concurrent placement', registers });
    this.retries = new client.Counter({ name: 'a4c_placement_retries_total', help: 'Placement attempts repeated after a conflict', registers });
    this.placements = new client.Counter({ name: 'a4c_placements_total', help: 'Placements ended, by result: placed, no_capacity (503 CAPACITY_EXHAUSTED) or busy (contention outlasted the patience)', labelNames: ['result'], registers });
    for (const result of ['success', 'failed']) {
      this.created.inc({ result }, 0);
      this.built.inc({ result }, 0);
    }
    for (const result of ['placed', 'no_capacity', 'busy']) this.placements.inc({ result }, 0);
    this.requestSeconds = new client.Histogram({
      name: 'a4c_api_request_duration_seconds',
      help: 'HTTP requests by route template (never the raw path), method and status code',
      labelNames: ['route', 'method', 'code'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.requestErrors = new client.Counter({ name: 'a4c_api_errors_total', help: 'HTTP requests answered with a status of 400 or more, by route template and status code', labelNames: ['route', 'code'], registers });

    // ---- this replica
    const shed = new client.Counter({
      name: 'a4c_api_requests_shed_total',
      help: 'API requests answered 503 at once by load shedding',
      registers,
      collect: () => {
        shed.reset();
        shed.inc(src.shedCount());
      },
    });
    const sessions: client.Gauge = new client.Gauge({
      name: 'a4c_agent_sessions',
      help: 'Agent streams this replica holds',
      registers,
      collect: () => {
        sessions.set(src.sessionCount());
      },
    });
    const poolConnections = new client.Gauge({
      name: 'a4c_db_pool_connections',
      help: 'Connections of this replica\'s PostgreSQL pools by state: in_use (checked out) or idle',
      labelNames: ['pool', 'state'],
      registers,
      collect: () => {
        for (const [pool, p] of Object.entries(src.pools)) {
          poolConnections.set({ pool, state: 'in_use' }, p.totalCount - p.idleCount);
          poolConnections.set({ pool, state: 'idle' }, p.idleCount);
        }
      },
    });
    const poolWaiting = new client.Gauge({
      name: 'a4c_db_pool_waiting_requests',
      help: 'Queries waiting for a connection of this replica\'s PostgreSQL pools',
      labelNames: ['pool'],
      registers,
      collect: () => {
        for (const [pool, p] of Object.entries(src.pools)) poolWaiting.set({ pool }, p.waitingCount);
      },
    });
    const poolMax = new client.Gauge({
      name: 'a4c_db_pool_max_connections',
      help: 'Size of this replica\'s PostgreSQL pools',
      labelNames: ['pool'],
      registers,
      collect: () => {
        for (const [pool, p] of Object.entries(src.pools)) poolMax.set({ pool }, p.options.max);
      },
    });
    // How late a timer that should fire every 100 ms fires: the time every request
    // waits before it is even read. A histogram, so it adds up over scrapes and replicas.
    const lag = new client.Histogram({ name: 'a4c_event_loop_delay_seconds', help: `How late a timer due every ${LAG_SAMPLE_MS} ms fired`, buckets: LAG_BUCKETS, registers });
    let due = performance.now() + LAG_SAMPLE_MS;
    this.lagTimer = setInterval(() => {
      const now = performance.now();
      lag.observe(Math.max(0, now - due) / 1000);
      due = now + LAG_SAMPLE_MS;
    }, LAG_SAMPLE_MS);
    this.lagTimer.unref();

    // ---- the fleet, from PostgreSQL
    const fleetGauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: client.Gauge<L>, f: FleetState) => void) => {
      const g: client.Gauge<L> = new client.Gauge<L>({
        name,
        help,
        labelNames,
        registers,
        collect: async () => {
          const f = await this.readFleet();
          g.reset();
          if (f) fill(g, f);
          // Unknown is absent, never a 0 that reads as "no workspaces" (reset() leaves a label-less gauge at 0).
          else if (labelNames.length === 0) g.remove();
        },
      });
      return g;
    };
    const up: client.Gauge = new client.Gauge({
      name: 'a4c_database_up',
      help: '1 if this replica read the fleet from PostgreSQL at its last scrape, else 0 (the fleet gauges are then absent)',
      registers,
      collect: async () => {
        up.set((await this.readFleet()) ? 1 : 0);
      },
    });
    fleetGauge('a4c_workspaces', 'Workspaces by status (DELETED left out), fleet-wide', ['status'], (g, f) => {
      for (const status of WORKSPACE_STATUSES) if (status !== 'DELETED') g.set({ status }, f.workspaces[status] ?? 0);
    });
    fleetGauge('a4c_workspaces_active', 'Workspaces RUNNING, fleet-wide', [], (g, f) => g.set(f.workspaces.RUNNING ?? 0));
    fleetGauge('a4c_build_queue_depth', 'Image builds waiting for a worker (SCHEDULED), fleet-wide', [], (g, f) => g.set(f.builds.SCHEDULED ?? 0));
    fleetGauge('a4c_builds', 'Unfinished image builds by status (SCHEDULED, IN_PROGRESS), fleet-wide', ['status'], (g, f) => {
      for (const status of ['SCHEDULED', 'IN_PROGRESS']) g.set({ status }, f.builds[status] ?? 0);
    });
    fleetGauge('a4c_agents_connected', 'Hosts with a live agent session (on any replica)', [], (g, f) => g.set(f.hosts.filter((h) => h.connected).length));
    const perHost = (name: string, help: string, read: (h: FleetState['hosts'][number]) => number | null) =>
      fleetGauge(name, help, ['host'], (g, f) => {
        for (const h of f.hosts) {
          const v = read(h);
          if (v !== null) g.set({ host: h.id }, v);
        }
      });
    perHost('a4c_host_disk_usage_percent', 'Used share of the filesystem holding the host\'s Docker data root, as last reported, in percent', (h) => h.diskPercent);
    perHost('a4c_host_memory_usage_percent', 'Used share of the host\'s memory, as last reported, in percent', (h) => h.memoryPercent);
    perHost('a4c_host_connected', '1 while the host has a live agent session (on any replica)', (h) => Number(h.connected));
    perHost('a4c_host_docker_ready', '1 if the host\'s agent last reported its Docker Engine answering', (h) => Number(h.dockerReady));
    perHost('a4c_host_draining', '1 while the host is drained (no new workspaces)', (h) => Number(h.draining));
    perHost('a4c_host_workspaces', 'Workspaces holding a reservation on the host', (h) => h.workspaces);
    perHost('a4c_host_desired_state_lag', 'Desired-state revisions the host\'s agent has not acknowledged yet (revision - applied)', (h) => Math.max(0, h.revision - h.appliedRevision));
    perHost('a4c_host_applied_revision', 'Last desired-state revision the host\'s agent acknowledged', (h) => h.appliedRevision);
    this.registry = client.Registry.merge([own, processMetrics()]);
  }

  /**
   * The fleet, read once for all the gauges of a scrape (they collect at once) and
   * reused for cacheMs after the read ended; undefined if PostgreSQL did not answer.
   */
  private readFleet(): Promise<FleetState | undefined> {
    const f = this.fleet;
    if (f && (f.doneAt === undefined || performance.now() - f.doneAt < this.src.cacheMs)) return f.read;
    const entry: { read: Promise<FleetState | undefined>; doneAt?: number } = {
      read: readFleet(this.src.metricsDb, this.src.liveWithinSeconds)
        .catch((e: unknown) => {
          this.log.warn({ err: (e as Error).message }, 'metrics: could not read the fleet from PostgreSQL');
          return undefined;
        })
        .finally(() => {
          entry.doneAt = performance.now();
        }),
    };
    this.fleet = entry;
    return entry.read;
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  stop(): void {
    clearInterval(this.lagTimer);
  }

  // ---- Observer
  workspaceCreated(result: 'success' | 'failed', seconds?: number): void {
    this.created.inc({ result });
    if (result === 'success' && seconds !== undefined) this.creationSeconds.observe(Math.max(0, seconds));
  }

  imageBuilt(result: 'success' | 'failed'): void {
    this.built.inc({ result });
  }

  placementConflict(): void {
    this.conflicts.inc();
  }

  placementRetry(): void {
    this.retries.inc();
  }

  placement(result: 'placed' | 'no_capacity' | 'busy'): void {
    this.placements.inc({ result });
  }
}
