import http from 'node:http';
import type http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from '@a4c/common';
import { AgentServiceService, type ControlMessage } from '@a4c/proto';
import { AccessService } from './access/service.js';
import { TunnelBroker } from './access/broker.js';
import { AgentSessions } from './agents/sessions.js';
import { accessOperations } from './api/ops/access.js';
import { adminPkiOperations, enrollOperations } from './api/ops/agents.js';
import { audit, errors, requireToken, type State } from './api/http.js';
import { rateLimit } from './api/limits.js';
import { LoadShedder } from './api/shedding.js';
import { OidcVerifier } from './auth/oidc.js';
import { BrowserSignInSettings } from './auth/oidc-browser.js';
import { authOperations } from './api/ops/auth.js';
import { Policy } from './auth/principals.js';
import { openApiDocument } from './api/openapi.js';
import { meOperations } from './api/me.js';
import { mountOperations } from './api/operation.js';
import { probeOperations, v1Operations } from './api/routes.js';
import { loadAdminToken } from './auth/token.js';
import type { ControlPlaneConfig } from './config.js';
import { EventHub } from './events/hub.js';
import { ChangeFeed } from './events/notify.js';
import { pruneEvents } from './store/events.js';
import { createPool } from './store/db.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './store/embedded.js';
import { databaseFailure, isConnectionFailure, listenFailure } from './startup.js';
import { migrate } from './store/migrate.js';
import { Quotas } from './quotas/quotas.js';
import { WorkspaceService } from './workspaces/service.js';
import { failStuck } from './workspaces/stuck.js';
import { sweepLostHosts } from './workspaces/lost-hosts.js';
import { Autostop } from './workspaces/autostop.js';
import { systemClock, type Clock } from './clock.js';
import { startMoves } from './moves/start.js';
import { expireLeases } from './builds/queue.js';
import { failOverlong } from './builds/hygiene.js';
import { BuildService } from './builds/service.js';
import { issueServerCertificate } from './pki/ca.js';
import { sharedCa } from './pki/shared-ca.js';
import { ReplicaLifecycle } from './replicas/lifecycle.js';
import { httpMetrics, METRICS_PATH, metricsEndpoint } from './metrics/http.js';
import { ControlPlaneMetrics } from './metrics/registry.js';
import { createMetricsPool } from './store/metrics.js';
import { DEFAULT_UI_DIR, serveUi } from './ui/serve.js';
import { webhookOperations } from './api/ops/webhooks.js';
import { WebhookDispatcher } from './webhooks/dispatcher.js';
import { webhookMetrics } from './webhooks/metrics.js';
import { WebhookService } from './webhooks/service.js';

/**
 * HTTP/2 receive window of the agent plane, per stream (and 16× that per connection).
 * The default 64 KiB lets one stream move 64 KiB per round trip: about 13 MiB/s between
 * two busy event loops on loopback, far below what a tunnel must carry. 1 MiB keeps a
 * stalled reader's backlog per session small while letting bytes flow at memory speed.
 */
const TUNNEL_WINDOW_BYTES = 1024 * 1024;

/**
 * grpc-js lets a client set its receive window (grpc-node.flow_control_window) but not a
 * server; the server's HTTP/2 sessions are widened as they open instead.
 */
function widenHttp2Windows(server: grpc.Server, window: number): void {
  const http2Servers = (server as unknown as { http2Servers?: Map<http2.Http2Server, unknown> }).http2Servers;
  for (const h of http2Servers?.keys() ?? []) {
    h.on('session', (session: http2.ServerHttp2Session) => {
      session.setLocalWindowSize(window * 16);
      session.settings({ initialWindowSize: window });
    });
  }
}

/** Reported in the OpenAPI document's info.version. */
export const CONTROL_PLANE_VERSION = '0.1.0';

export interface ControlPlane {
  httpPort: number;
  grpcPort: number;
  adminToken: string;
  databaseUrl: string;
  /** Graceful: stop accepting, close agent streams, finish requests, close the database. */
  stop(): Promise<void>;
}

/** What a test may replace: the clock that time-dependent decisions read. */
export interface ControlPlaneDeps {
  clock?: Clock;
}

/**
 * Starts a replica. A start that fails half-way undoes what it started (above all the
 * embedded PostgreSQL, a child process that would outlive us and hold its port and data
 * directory), then rethrows: main.ts prints what failed and the fix.
 */
export async function startControlPlane(config: ControlPlaneConfig, log: Logger, deps: ControlPlaneDeps = {}): Promise<ControlPlane> {
  const undo: Array<() => Promise<unknown> | unknown> = [];
  try {
    return await startSteps(config, log, deps, undo);
  } catch (e) {
    for (const u of undo.reverse()) {
      try {
        await u();
      } catch (err) {
        log.warn({ err: (err as Error | undefined)?.message }, 'could not undo a start-up step');
      }
    }
    throw e;
  }
}

async function startSteps(config: ControlPlaneConfig, log: Logger, deps: ControlPlaneDeps, undo: Array<() => Promise<unknown> | unknown>): Promise<ControlPlane> {
  const clock = deps.clock ?? systemClock;
  const adminToken = await loadAdminToken(config.dataDir, config.adminToken);
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    const e = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort, log);
    embedded = e;
    undo.push(() => e.stop());
    databaseUrl = embedded.url;
  }
  const db = createPool(databaseUrl, config.dbPoolSize, config.dbTimeouts);
  const agentDb = createPool(databaseUrl, config.dbAgentPoolSize, config.dbTimeouts);
  undo.push(() => db.end(), () => agentDb.end());
  try {
    await migrate(db, log);
  } catch (e) {
    // The first contact with the database: a wrong URL, a refused password or a server
    // that is down all surface here.
    if (isConnectionFailure(e)) throw databaseFailure(e, databaseUrl, Boolean(embedded));
    throw e;
  }
  // The agent plane's CA, one for all replicas (kept in PostgreSQL): signs the gRPC
  // server's certificate and, at enrollment, the agents'.
  const ca = await sharedCa(db, { dataDir: config.dataDir, supplied: config.grpcTls.ca, encryptionKey: config.replicas.caEncryptionKey }, log);
  const lifecycle = new ReplicaLifecycle(config.replicas.shutdownGraceMs, log);
  const feed = new ChangeFeed(databaseUrl, log);
  await feed.start();
  undo.push(() => feed.stop());
  const eventHub = new EventHub(db, feed, log, { bufferSize: 5000, pollMs: 1000, pendingPollMs: 50 });
  await eventHub.start();
  undo.push(() => eventHub.stop());

  const liveWithinSeconds = (config.heartbeatIntervalMs * config.heartbeatMissLimit) / 1000;
  const metricsDb = createMetricsPool(databaseUrl, 5000);
  let sessions: AgentSessions | undefined;
  let shedder: LoadShedder | undefined;
  const metrics = new ControlPlaneMetrics(
    {
      metricsDb,
      pools: { api: db, agent: agentDb },
      liveWithinSeconds,
      cacheMs: config.metrics.cacheMs,
      sessionCount: () => sessions?.sessionCount ?? 0,
      shedCount: () => shedder?.shedCount ?? 0,
    },
    log,
  );
  const quotas = new Quotas(db, config.defaultQuota, config.createRate, { seconds: config.failedQuotaGraceSeconds, clock });
  const workspaces = new WorkspaceService(
    db,
    feed,
    quotas,
    {
      tiers: config.tiers,
      defaultImage: config.defaultImage,
      hostnameDomain: config.hostnameDomain,
      placement: { liveWithinSeconds, ...config.placement },
      batch: config.placement.batch,
    },
    (hostId) => sessions?.push(hostId),
    log,
    metrics,
  );
  const autostop = new Autostop(db, workspaces, config.tiers, config.autostop, deps.clock ?? systemClock, log);
  sessions = new AgentSessions(
    agentDb,
    feed,
    workspaces,
    {
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      liveWithinSeconds,
      resyncIntervalMs: 10_000,
      buildLeaseMs: config.buildLeaseMs,
      requireClientCertificates: !config.grpcTls.insecure,
      diskWarnPercent: config.diskWarnPercent,
      workspaceCpuSampleMs: autostop.cpuSampleMs,
      onWorkspaceCpu: (pool, hostId, samples) => autostop.recordCpu(pool, hostId, samples),
      ...config.agentPlane,
      dbConnections: config.dbAgentPoolSize,
    },
    log,
    metrics,
  );
  const sendToHost = (hostId: string, msg: ControlMessage) => sessions?.sendTo(hostId, msg) ?? false;
  const builds = new BuildService(db, quotas, log, sendToHost);
  sessions.start();
  undo.push(() => sessions?.stop());
  const broker = new TunnelBroker(
    db,
    feed,
    (hostId, msg) => sessions?.sendTo(hostId, msg) ?? false,
    { ...config.access, advertiseAddress: config.access.advertiseGrpcAddress, requireClientCertificates: !config.grpcTls.insecure },
    log,
  );
  broker.start();
  const access = new AccessService(broker, log);
  undo.push(() => access.stop());
  const moves = startMoves(
    { db, feed, workspaces, sendToHost: (hostId, msg) => sessions?.sendTo(hostId, msg) ?? false, hostChanged: (hostId) => sessions?.push(hostId), clock: deps.clock },
    config,
    liveWithinSeconds,
    log,
  );
  undo.push(() => moves.stop());

  // Workspaces stuck coming up (an agent that went silent mid-creation, a start that
  // never happened) fail with the step they were stuck at instead of hanging forever.
  const stuckSweep = setInterval(() => {
    failStuck({ db, hostChanged: (h) => sessions?.push(h), observe: metrics, log }, config.createTimeoutSeconds).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'stuck-workspace sweep failed'));
  }, Math.min(10_000, Math.max(500, (config.createTimeoutSeconds * 1000) / 4)));
  stuckSweep.unref();
  // Hosts gone longer than A4C_HOST_LOST_AFTER_SECONDS: their workspaces become LOST.
  let sweepingLost = false;
  const lostSweep = setInterval(() => {
    if (sweepingLost) return;
    sweepingLost = true;
    sweepLostHosts({ db, clock, hostChanged: (h) => sessions?.push(h), log, lostAfterSeconds: config.hostLostAfterSeconds, liveWithinSeconds })
      .catch((e: unknown) => log.warn({ err: (e as Error).message }, 'lost-host sweep failed'))
      .finally(() => {
        sweepingLost = false;
      });
  }, Math.min(10_000, Math.max(1000, (config.hostLostAfterSeconds * 1000) / 10)));
  lostSweep.unref();
  // Idle workspaces stop, long-stopped ones become dormant (and, if the admin wants it, are deleted), warnings first.
  autostop.start();
  // Builds whose worker went silent go back to the queue (or fail after the retries).
  const leaseSweep = setInterval(() => {
    expireLeases(db, config.buildLeaseMs, config.buildMaxRetries).then(
      (rows) => {
        for (const r of rows) if (r.status === 'FAILED') metrics.imageBuilt('failed');
        if (rows.length) log.warn({ builds: rows.map((r) => ({ id: r.id, status: r.status, retryCount: r.retry_count })) }, 'build leases expired');
      },
      (e: unknown) => log.warn({ err: (e as Error).message }, 'build lease sweep failed'),
    );
  }, Math.min(10_000, Math.max(200, config.buildLeaseMs / 4)));
  leaseSweep.unref();
  // Builds running past A4C_BUILD_MAX_SECONDS fail even while their worker heartbeats.
  const overlongSweep = setInterval(() => {
    failOverlong(db, sendToHost, config.buildMaxSeconds).then(
      (rows) => {
        rows.forEach(() => metrics.imageBuilt('failed'));
        if (rows.length) log.warn({ builds: rows.map((r) => r.id), maxSeconds: config.buildMaxSeconds }, 'builds past their maximum duration failed');
      },
      (e: unknown) => log.warn({ err: (e as Error).message }, 'build duration sweep failed'),
    );
  }, Math.min(10_000, Math.max(250, (config.buildMaxSeconds * 1000) / 4)));
  overlongSweep.unref();
  // The activity log keeps A4C_EVENT_RETENTION_DAYS; every replica prunes (SKIP LOCKED
  // batches, so they share the work instead of waiting on each other).
  let pruning = false;
  const pruneSweep = setInterval(() => {
    if (!config.events.retentionDays || pruning) return;
    pruning = true;
    pruneEvents(db, config.events.retentionDays, config.events.pruneBatch)
      .then(
        (n) => n && log.info({ events: n, retentionDays: config.events.retentionDays }, 'pruned the activity log'),
        (e: unknown) => log.warn({ err: (e as Error).message }, 'activity log pruning failed'),
      )
      .finally(() => {
        pruning = false;
      });
  }, 60_000);
  pruneSweep.unref();
  // Webhook deliveries: every replica claims its share (SKIP LOCKED), off the API's path.
  const webhookDispatcher = new WebhookDispatcher(db, feed, log, config.webhooks, clock, webhookMetrics(metrics.registry));
  webhookDispatcher.start();

  // One table of operations makes both the routers and the OpenAPI document.
  const pki = { db, ca, disconnectHost: (hostId: string, reason: string) => sessions?.disconnect(hostId, reason) };
  const policy = new Policy(db);
  const authed = [
    ...v1Operations({
      db,
      workspaces,
      autostop,
      builds,
      quotas,
      policy,
      maxWaitSeconds: config.maxWaitSeconds,
      workspaceBatchMax: config.workspaceBatchMax,
      hostView: { liveWithinSeconds, headroom: config.placement.headroom },
      events: { hub: eventHub, heartbeatMs: config.events.heartbeatMs, streamMaxSeconds: config.events.streamMaxSeconds },
      log,
      moves: { mover: moves.mover, drainer: moves.drainer, drainParallelism: config.moves.drainParallelism },
    }),
    ...adminPkiOperations(pki),
    ...meOperations(),
    ...accessOperations({ db, workspaces, policy, access }),
    ...webhookOperations({ db, webhooks: new WebhookService(db, policy) }),
  ];
  let document: unknown;
  const browserSignIn = config.oidc && new BrowserSignInSettings(config.oidc, log);
  const open = [...probeOperations(db, () => document, () => lifecycle.draining), ...enrollOperations(pki), ...authOperations(browserSignIn)];
  document = openApiDocument([...open, ...authed], { version: CONTROL_PLANE_VERSION });

  const app = new Koa<State>();
  app.proxy = false;
  // Outermost: times every request, labelled with the status the error handler settled on.
  app.use(httpMetrics(metrics, [...open, ...authed, { method: 'get', path: METRICS_PATH }]));
  // Then, so it records that status too.
  app.use(audit(db, log));
  app.use(errors(log));
  // Before the shedder: scrapes are never shed (an overloaded control plane is when they matter).
  app.use(metricsEndpoint(metrics, config.metrics.token));
  shedder = new LoadShedder(config.shedding, db, log);
  app.use(shedder.middleware());
  // The web dashboard: static, public (it asks for a token itself), same origin as the API.
  app.use(serveUi(config.uiDir ?? DEFAULT_UI_DIR, log, browserSignIn));
  const publicRouter = new Router<State>();
  mountOperations(publicRouter, open, undefined); // probes, the document, enrollment (the join token in the body is the credential)
  app.use(publicRouter.routes());
  app.use(requireToken(db, adminToken, config.oidc && new OidcVerifier(config.oidc, db, log)));
  app.use(rateLimit(config.requestRate));
  const v1 = new Router<State>();
  mountOperations(v1, authed, policy);
  app.use(v1.routes());
  app.use(v1.allowedMethods({ throw: true }));
  const httpServer = http.createServer(app.callback());
  undo.push(() => httpServer.close());
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', (e) => reject(listenFailure(e, 'the REST API', `${config.bindAddress}:${config.httpPort}`, 'A4C_HTTP_PORT')));
    httpServer.listen(config.httpPort, config.bindAddress, () => resolve());
  });

  const grpcServer = new grpc.Server({
    // Notice dead agents (no FIN, e.g. a cut network) within ~15 s, and allow the
    // agents' own keepalive pings.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  grpcServer.addService(AgentServiceService, { connect: lifecycle.guardConnect(sessions.service.connect), tunnel: broker.handleTunnel, transfer: moves.relay.handleTransfer });
  lifecycle.serveHealth(grpcServer);
  // TLS with client certificates signed by the CA, unless explicitly insecure.
  let grpcCredentials = grpc.ServerCredentials.createInsecure();
  if (!config.grpcTls.insecure) {
    const names = [...config.grpcTls.sans, ...(['0.0.0.0', '::'].includes(config.bindAddress) ? [] : [config.bindAddress])];
    const server = issueServerCertificate(ca, names);
    grpcCredentials = grpc.ServerCredentials.createSsl(Buffer.from(ca.certPem), [{ cert_chain: Buffer.from(server.certPem), private_key: Buffer.from(server.keyPem) }], true);
  } else {
    log.warn('A4C_GRPC_INSECURE=true: the agent gRPC endpoint is plaintext and accepts any agent');
  }
  const grpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync(`${config.bindAddress}:${config.grpcPort}`, grpcCredentials, (err, port) =>
      err ? reject(listenFailure(err, 'the agents\' gRPC endpoint', `${config.bindAddress}:${config.grpcPort}`, 'A4C_GRPC_PORT')) : resolve(port),
    );
  });

  // Lag is measured from here on: start-up's synchronous work (the server certificate's
  // key, the OpenAPI document) is not overload, and counted as such it shed the first
  // requests after a start on a busy machine.
  shedder.start();
  widenHttp2Windows(grpcServer, TUNNEL_WINDOW_BYTES);
  const httpPort = (httpServer.address() as AddressInfo).port;
  log.info({ httpPort, grpcPort, bindAddress: config.bindAddress, embeddedDatabase: Boolean(embedded), grpcTls: !config.grpcTls.insecure }, 'control plane ready');

  let stopping: Promise<void> | undefined;
  return {
    httpPort,
    grpcPort,
    adminToken,
    databaseUrl,
    stop: () =>
      (stopping ??= (async () => {
        // First out of the load balancers (health NOT_SERVING, /readyz 503) and agents
        // handed to the other replicas, bounded by A4C_SHUTDOWN_GRACE_MS.
        // Also waits for the disconnects of streams that just ended to be recorded, or the
        // pool would be closed under them.
        await lifecycle.drain(() => sessions.sessionCount + sessions.pendingWrites);
        clearInterval(stuckSweep);
        clearInterval(lostSweep);
        await autostop.stop();
        await moves.stop();
        shedder?.stop();
        metrics.stop();
        clearInterval(leaseSweep);
        clearInterval(overlongSweep);
        clearInterval(pruneSweep);
        // Ends the event streams: their clients resume on another replica with Last-Event-ID.
        eventHub.stop();
        await webhookDispatcher.stop();
        await access.stop();
        await sessions.stop();
        await lifecycle.shutdownGrpc(grpcServer);
        // The REST API last: until here /readyz answered 503, for load balancers to notice.
        httpServer.close();
        httpServer.closeIdleConnections();
        await feed.stop();
        await db.end();
        await agentDb.end();
        await metricsDb.end();
        await embedded?.stop();
        log.info('control plane stopped');
      })()),
  };
}
