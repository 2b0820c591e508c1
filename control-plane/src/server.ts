import http from 'node:http';
import type http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import Router from '@koa/router';
import Koa from 'koa';
import type { Logger } from '@a4c/common';
import { AgentServiceService } from '@a4c/proto';
import { AccessService } from './access/service.js';
import { TunnelBroker } from './access/broker.js';
import { AgentSessions } from './agents/sessions.js';
import { accessOperations } from './api/ops/access.js';
import { adminPkiOperations, enrollOperations } from './api/ops/agents.js';
import { audit, errors, requireToken, type State } from './api/http.js';
import { LoadShedder, rateLimit } from './api/limits.js';
import { OidcVerifier } from './auth/oidc.js';
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
import { migrate } from './store/migrate.js';
import { Quotas } from './quotas/quotas.js';
import { WorkspaceService } from './workspaces/service.js';
import type { Clock } from './drains/drainer.js';
import { startMoves } from './moves/start.js';
import { expireLeases } from './builds/queue.js';
import { BuildService } from './builds/service.js';
import { issueServerCertificate, loadOrCreateCa } from './pki/ca.js';
import { httpMetrics, METRICS_PATH, metricsEndpoint } from './metrics/http.js';
import { ControlPlaneMetrics } from './metrics/registry.js';
import { createMetricsPool } from './store/metrics.js';
import { DEFAULT_UI_DIR, serveUi } from './ui/serve.js';

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

/** What tests may inject: the clock drain deadlines go by. */
export interface ControlPlaneDeps {
  clock?: Clock;
}

export async function startControlPlane(config: ControlPlaneConfig, log: Logger, deps: ControlPlaneDeps = {}): Promise<ControlPlane> {
  const adminToken = await loadAdminToken(config.dataDir, config.adminToken);
  // The agent plane's CA: signs the gRPC server's certificate and, at enrollment, the agents'.
  const ca = await loadOrCreateCa(config.dataDir, config.grpcTls.ca);
  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(config.dataDir, config.embeddedPgPort, log);
    databaseUrl = embedded.url;
  }
  const db = createPool(databaseUrl, config.dbPoolSize);
  const agentDb = createPool(databaseUrl, config.dbAgentPoolSize);
  await migrate(db, log);
  const feed = new ChangeFeed(databaseUrl, log);
  await feed.start();
  const eventHub = new EventHub(db, feed, log, { bufferSize: 5000, pollMs: 1000, pendingPollMs: 50 });
  await eventHub.start();

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
  const quotas = new Quotas(db, config.defaultQuota, config.createRate);
  const workspaces = new WorkspaceService(
    db,
    feed,
    quotas,
    {
      tiers: config.tiers,
      defaultImage: config.defaultImage,
      hostnameDomain: config.hostnameDomain,
      placement: { liveWithinSeconds, ...config.placement },
    },
    (hostId) => sessions?.push(hostId),
    log,
    metrics,
  );
  sessions = new AgentSessions(
    agentDb,
    feed,
    workspaces,
    { heartbeatIntervalMs: config.heartbeatIntervalMs, liveWithinSeconds, resyncIntervalMs: 10_000, buildLeaseMs: config.buildLeaseMs, requireClientCertificates: !config.grpcTls.insecure },
    log,
    metrics,
  );
  const builds = new BuildService(db, quotas, log);
  sessions.start();
  const broker = new TunnelBroker(
    db,
    feed,
    (hostId, msg) => sessions?.sendTo(hostId, msg) ?? false,
    { ...config.access, advertiseAddress: config.access.advertiseGrpcAddress, requireClientCertificates: !config.grpcTls.insecure },
    log,
  );
  broker.start();
  const access = new AccessService(broker, log);
  const moves = startMoves(
    { db, feed, workspaces, sendToHost: (hostId, msg) => sessions?.sendTo(hostId, msg) ?? false, hostChanged: (hostId) => sessions?.push(hostId), clock: deps.clock },
    config,
    liveWithinSeconds,
    log,
  );

  // Workspaces stuck coming up (an agent that went silent mid-creation, a start that
  // never happened) fail with the step they were stuck at instead of hanging forever.
  const stuckSweep = setInterval(() => {
    workspaces.failStuck(config.createTimeoutSeconds).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'stuck-workspace sweep failed'));
  }, Math.min(10_000, Math.max(500, (config.createTimeoutSeconds * 1000) / 4)));
  stuckSweep.unref();
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

  // One table of operations makes both the routers and the OpenAPI document.
  const pki = { db, ca, disconnectHost: (hostId: string, reason: string) => sessions?.disconnect(hostId, reason) };
  const policy = new Policy(db);
  const authed = [
    ...v1Operations({
      db,
      workspaces,
      builds,
      quotas,
      policy,
      maxWaitSeconds: config.maxWaitSeconds,
      hostView: { liveWithinSeconds, headroom: config.placement.headroom },
      events: { hub: eventHub, heartbeatMs: config.events.heartbeatMs, streamMaxSeconds: config.events.streamMaxSeconds },
      log,
      moves: { mover: moves.mover, drainer: moves.drainer, drainParallelism: config.moves.drainParallelism },
    }),
    ...adminPkiOperations(pki),
    ...meOperations(),
    ...accessOperations({ db, workspaces, policy, access }),
  ];
  let document: unknown;
  const open = [...probeOperations(db, () => document), ...enrollOperations(pki)];
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
  app.use(serveUi(config.uiDir ?? DEFAULT_UI_DIR, log));
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
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
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
  grpcServer.addService(AgentServiceService, { ...sessions.service, tunnel: broker.handleTunnel, transfer: moves.relay.handleTransfer });
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
      err ? reject(err) : resolve(port),
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
        clearInterval(stuckSweep);
        await moves.stop();
        shedder?.stop();
        metrics.stop();
        clearInterval(leaseSweep);
        clearInterval(pruneSweep);
        // Ends the event streams: their clients resume on another replica with Last-Event-ID.
        eventHub.stop();
        httpServer.close();
        httpServer.closeIdleConnections();
        await access.stop();
        await sessions.stop();
        await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
        await feed.stop();
        await db.end();
        await agentDb.end();
        await metricsDb.end();
        await embedded?.stop();
        log.info('control plane stopped');
      })()),
  };
}
