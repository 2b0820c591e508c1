import client from 'prom-client';
import type { Reconciler } from '../reconcile/reconciler.js';
import type { SessionState } from '../session/session.js';

export interface MetricSources {
  hostId: string;
  reconciler: Reconciler;
  session: () => SessionState | undefined;
  stats: () => { diskPercent: number; memoryPercent: number; dockerReady: boolean } | undefined;
}

/**
 * The agent's Prometheus metrics. Counters and gauges read the agent's own state when
 * scraped; only the pass duration is observed as it happens.
 */
export function agentMetrics(src: MetricSources): { registry: client.Registry; observePass(seconds: number): void } {
  const registry = new client.Registry();
  registry.setDefaultLabels({ host: src.hostId });
  client.collectDefaultMetrics({ register: registry, prefix: 'a4c_agent_process_' });
  // Gauges named _total, which Prometheus keeps for counters (`promtool check metrics`
  // refuses them); nodejs_active_handles and nodejs_active_requests carry the same counts.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(`a4c_agent_process_${name}`);
  }
  const duration = new client.Histogram({
    name: 'a4c_agent_reconcile_duration_seconds',
    help: 'Duration of reconcile passes',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const m = src.reconciler.metrics;
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counter('a4c_agent_reconcile_passes_total', 'Reconcile passes run', () => m.passes);
  counter('a4c_agent_reconcile_errors_total', 'Reconcile passes that failed as a whole (e.g. Docker unreachable)', () => m.passErrors);
  counter('a4c_agent_orphans_removed_total', 'Containers removed because they were not in the desired state', () => m.orphansRemoved);
  counter('a4c_agent_vanished_recreated_total', 'Workspace containers that vanished and were created again', () => m.vanishedRecreated);
  counter('a4c_agent_restarts_total', 'Workspace containers restarted after exiting by themselves', () => m.restarts);
  counter('a4c_agent_transient_retries_total', 'Container creates and starts tried again after a transient engine error', () => m.transientRetries);
  counter('a4c_agent_stream_reconnects_total', 'Times the control plane stream was lost', () => src.session()?.reconnects ?? 0);
  new client.Gauge({
    name: 'a4c_agent_workspaces',
    help: 'Workspaces on this host by observed phase',
    labelNames: ['phase'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [phase, n] of Object.entries(src.reconciler.phases())) this.set({ phase: phase.toLowerCase() }, n);
    },
  });
  const gauge = (name: string, help: string, read: () => number | undefined) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const v = read();
        if (v !== undefined) this.set(v);
      },
    });
  gauge('a4c_agent_host_disk_percent', 'Used share of the filesystem holding the Docker data root', () => src.stats()?.diskPercent);
  gauge('a4c_agent_host_memory_percent', 'Used share of host memory', () => src.stats()?.memoryPercent);
  gauge('a4c_agent_docker_ready', '1 when the Docker Engine answers', () => (src.stats() ? Number(src.stats()?.dockerReady) : undefined));
  gauge('a4c_agent_control_plane_connected', '1 while the stream to the control plane is open', () => Number(src.session()?.connected ?? false));
  gauge('a4c_agent_applied_revision', 'Last desired-state revision the host converged to', () => src.reconciler.appliedRevision);
  return { registry, observePass: (s) => duration.observe(s) };
}
