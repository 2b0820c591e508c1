import { LABEL_IMAGE_ARCH, LABEL_IMAGE_CHANGE, LABEL_IMAGE_PROJECT, type Logger } from '@a4c/common';
import type { HostStats, ImageInfo } from '@a4c/proto';
import Docker from 'dockerode';
import type { AgentConfig } from './config.js';
import { loadOrCreateHostKey } from './access/host-key.js';
import { serveSsh } from './access/ssh.js';
import { Tunnels } from './access/tunnels.js';
import { Builder } from './builds/builder.js';
import { DiskAndImages } from './disk/wiring.js';
import { Transfers } from './move/transfers.js';
import { Reconciler } from './reconcile/reconciler.js';
import { DockerRuntime, dockerOptions } from './runtime/docker.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import { AgentIdentity } from './session/identity.js';
import { ControlPlaneSession } from './session/session.js';
import { ControlPlaneAddresses } from './session/addresses.js';
import { StateStore } from './state/store.js';
import { StatsCollector } from './stats/collector.js';
import { WorkspaceCpuSampler } from './stats/workspace-cpu.js';
import { agentMetrics } from './status/metrics.js';
import { startStatusServer } from './status/server.js';

export const AGENT_VERSION = '0.1.0';

export interface Agent {
  statusPort: number;
  /** Graceful: stop streaming and reconciling; workspaces keep running. */
  stop(): Promise<void>;
}

export async function startAgent(config: AgentConfig, log: Logger): Promise<Agent> {
  let session: ControlPlaneSession | undefined;
  let builder: Builder | undefined;
  const disk = new DiskAndImages(config, (m) => session?.send(m) ?? false, log, () => builder?.snapshot().inFlight.map((b) => b.buildId) ?? []);
  const runtime: ContainerRuntime = new DockerRuntime({
    storageOpt: disk.storageOpt,
    dockerHost: config.dockerHost,
    hostId: config.hostId,
    networkMode: config.networkMode,
    stopTimeoutSeconds: config.stopTimeoutSeconds,
    namePrefix: config.enginePrefix,
  });
  const stats = new StatsCollector(runtime, config.diskPath, config.offer);
  const store = new StateStore(config.stateDir);
  const cpu = new WorkspaceCpuSampler(runtime, log);
  let observePass: ((seconds: number) => void) | undefined;
  const reconciler = new Reconciler(
    runtime,
    store,
    {
      report: (s) => session?.report(s) ?? false,
      converged: (revision) => {
        if (revision !== lastAcked) {
          if (session?.ack(revision)) lastAcked = revision;
        }
      },
      event: (e) => void session?.send({ payload: { $case: 'event', value: e } }),
    },
    {
      hostId: config.hostId,
      parallelism: config.parallelism,
      stopTimeoutSeconds: config.stopTimeoutSeconds,
      maxRestarts: config.maxRestarts,
      restartBackoffMs: config.restartBackoffMs,
      transientAttempts: config.transientAttempts,
      transientBackoffMs: config.transientBackoffMs,
      observePass: (s) => observePass?.(s),
    },
    log,
  );
  let lastAcked = -1;
  await reconciler.load();

  // Stats and the image list are refreshed on their own loop; heartbeats send the latest
  // snapshot at once. A Docker Engine slow to answer `docker info` under load must
  // never delay a heartbeat, or a busy host would look dead.
  let latest: { stats: HostStats; images: ImageInfo[] | undefined } | undefined;
  let refreshing: Promise<void> | undefined;
  const refresh = (): Promise<void> =>
    (refreshing ??= (async () => {
      try {
        const s = await stats.collect(reconciler.ownedCount());
        // The first sample sets the baseline; only a change of reachability is an event.
        if (latest && latest.stats.dockerReady !== s.dockerReady) {
          reconciler.hostEvent(
            s.dockerReady ? 'docker_reachable' : 'docker_unreachable',
            s.dockerReady ? `the Docker Engine at ${config.dockerHost ?? 'the default socket'} answers again` : `the Docker Engine at ${config.dockerHost ?? 'the default socket'} stopped answering; nothing new can run here until it does`,
          );
        }
        const imgs = s.dockerReady ? await images().catch(() => undefined) : undefined;
        latest = { stats: s, images: imgs ?? latest?.images };
      } finally {
        refreshing = undefined;
      }
    })());

  let lastImagesKey = '';
  const images = async (): Promise<ImageInfo[]> =>
    (await runtime.listImages()).map((i) => ({
      ref: i.ref,
      imageId: i.imageId,
      project: i.labels[LABEL_IMAGE_PROJECT] ?? '',
      arch: i.labels[LABEL_IMAGE_ARCH] ?? '',
      changeNumber: i.labels[LABEL_IMAGE_CHANGE] ?? '',
      createdUnix: i.createdUnix,
    }));
  const imagesKey = (list: ImageInfo[]) => list.map((i) => `${i.ref}@${i.imageId}`).sort().join(',');

  // The engine's own event stream drives passes within moments of a change; the sweep
  // covers anything the stream missed (and re-opens it if it broke).
  let unwatch: (() => void) | undefined;
  let debounce: NodeJS.Timeout | undefined;
  const watchDocker = async () => {
    if (unwatch) return;
    try {
      unwatch = await runtime.watch(
        () => {
          clearTimeout(debounce);
          debounce = setTimeout(() => reconciler.requestPass(), 50);
        },
        () => {
          unwatch = undefined;
        },
      );
    } catch {
      unwatch = undefined;
    }
  };

  builder = new Builder(
    { dockerHost: config.dockerHost, stateDir: config.stateDir, ...config.builds },
    (m) => session?.send(m) ?? false,
    log,
  );

  const identity = new AgentIdentity(
    { stateDir: config.stateDir, hostId: config.hostId, joinToken: config.joinToken, controlPlaneUrl: config.controlPlaneUrl, insecure: config.grpcInsecure },
    log,
  );
  const first = config.controlPlanes[0] as { host: string; port: number };
  const currentAddress = () => session?.state.address ?? `${first.host.includes(':') ? `[${first.host}]` : first.host}:${first.port}`;
  // Sessions into workspaces: exec, port-forward and SSH through tunnels the agent dials.
  const accessDocker = new Docker(dockerOptions(config.dockerHost));
  const hostKey = loadOrCreateHostKey(config.stateDir);
  const tunnels = new Tunnels(
    accessDocker,
    {
      hostId: config.hostId,
      // An OpenTunnel without an address: dial back the replica this agent is connected to.
      get defaultAddress() {
        return currentAddress();
      },
      credentials: () => identity.credentials(),
      findContainer: async (workspaceId) =>
        (await runtime.listOwned()).find((c) => c.workspaceId === workspaceId && c.state === 'running')?.id,
      ssh: async (stream, t) => {
        const summary = await serveSsh(stream, { docker: accessDocker, ...t, hostKeys: [hostKey], log });
        log.info({ workspaceId: t.workspaceId, channels: summary.channels.slice(0, 20), sftp: summary.sftp, error: summary.error }, 'ssh connection ended');
      },
    },
    log,
  );

  // Workspace moves: the bytes of a stopped workspace, through the control plane.
  const transfers = new Transfers(
    accessDocker,
    runtime,
    {
      hostId: config.hostId,
      get defaultAddress() {
        return currentAddress();
      },
      credentials: () => identity.credentials(),
      namePrefix: config.enginePrefix,
    },
    log,
  );

  void transfers.removeLeftovers().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not look for move leftovers'));

  session = new ControlPlaneSession(
    new ControlPlaneAddresses(config.controlPlanes),
    () => identity.credentials(),
    {
      hello: async () => {
        const [capacity, imgs, s] = await Promise.all([stats.capacity(), images().catch(() => []), stats.collect(reconciler.ownedCount())]);
        lastImagesKey = imagesKey(imgs);
        return {
          hostId: config.hostId,
          arch: config.arch,
          capacity,
          agentVersion: AGENT_VERSION,
          images: imgs,
          workspaces: reconciler.observedStatuses(),
          lastAppliedRevision: reconciler.appliedRevision,
          stats: s,
        };
      },
      heartbeat: async () => {
        void refresh().catch(() => undefined);
        if (!latest) await refresh();
        const snap = latest as NonNullable<typeof latest>;
        let changed: ImageInfo[] | undefined;
        if (snap.images && imagesKey(snap.images) !== lastImagesKey) {
          lastImagesKey = imagesKey(snap.images);
          changed = snap.images;
        }
        return { stats: { ...snap.stats, workspaceContainers: reconciler.ownedCount() }, images: changed, workspaceCpu: cpu.take() };
      },
      onWelcome: (w) => cpu.setPeriod(w.workspaceCpuSampleMs),
      onDesiredState: (ds) => {
        log.debug({ revision: ds.revision, workspaces: ds.workspaces.length }, 'desired state received');
        tunnels.onDesiredState(ds.workspaces);
        disk.onDesiredState(ds.workspaces);
        void reconciler.setDesired(ds);
      },
      onOpenTunnel: (t) => tunnels.open(t),
      onOpenTransfer: (t) => transfers.open(t),
      onBuildAssignment: (a) => builder.onAssignment(a),
      onBuildCancel: (c) => builder.onCancel(c),
      onNewStream: () => {
        lastAcked = -1;
        reconciler.resetReports();
        builder.onNewStream();
      },
    },
    log,
  );

  const metrics = agentMetrics({ hostId: config.hostId, reconciler, session: () => session?.state, stats: () => latest?.stats });
  observePass = metrics.observePass;

  const statusServer = await startStatusServer(config.statusBind, config.statusPort, {
    metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
    ready: async () => {
      try {
        await runtime.ping();
        return { ok: true };
      } catch (e) {
        return { ok: false, reason: `Docker Engine does not answer: ${(e as Error).message}` };
      }
    },
    status: async () => {
      const docker = await runtime.ping().then(
        () => ({ reachable: true as const }),
        (e: unknown) => ({ reachable: false as const, error: (e as Error).message }),
      );
      const hostStats = latest?.stats;
      return {
        hostId: config.hostId,
        arch: config.arch,
        agentVersion: AGENT_VERSION,
        controlPlane: { addresses: config.controlPlane, ...session?.state, tls: identity.status() },
        docker,
        reconcile: reconciler.snapshot(),
        builds: builder.snapshot(),
        disk: disk.snapshot(),
        stats: hostStats,
      };
    },
  });

  void disk.start();
  await watchDocker();
  reconciler.requestPass(); // adopt and observe what runs before the first desired state
  const sweep = setInterval(() => {
    void watchDocker();
    reconciler.requestPass();
  }, config.reconcileIntervalMs);
  session.start();
  if (config.builds.slots > 0) await builder.start();
  log.info({ arch: config.arch, statusPort: statusServer.port, controlPlane: config.controlPlane }, 'agent started');

  return {
    statusPort: statusServer.port,
    stop: async () => {
      clearInterval(sweep);
      cpu.stop();
      builder.stop();
      disk.stop();
      tunnels.stop();
      transfers.stop();
      clearTimeout(debounce);
      unwatch?.();
      session?.stop();
      await reconciler.stop();
      await new Promise<void>((resolve) => statusServer.close(() => resolve()));
      statusServer.closeAllConnections();
      log.info('agent stopped; workspaces left running');
    },
  };
}
