import { homedir } from 'node:os';
import path from 'node:path';
import {
  ConfigError,
  envBool,
  envInt,
  envNumber,
  envOptional,
  envString,
  parseTiers,
  type Tier,
} from '@a4c/common';
import { AGENT_PLANE_CONFIG_HELP, loadAgentPlaneConfig, loadDbTimeouts, type AgentPlaneConfig, type DbTimeouts } from './agents/config.js';
import { loadWebhookConfig, WEBHOOK_CONFIG_HELP, type WebhookConfig } from './webhooks/config.js';
import { loadReplicaConfig, REPLICA_CONFIG_HELP, type ReplicaConfig } from './replicas/config.js';

export interface ControlPlaneConfig {
  /** Where the admin token and (without DATABASE_URL) the embedded PostgreSQL live. */
  dataDir: string;
  /** Unset: start an embedded PostgreSQL under dataDir. */
  databaseUrl: string | undefined;
  embeddedPgPort: number;
  bindAddress: string;
  httpPort: number;
  grpcPort: number;
  adminToken: string | undefined;
  tiers: Map<string, Tier>;
  defaultImage: string;
  /** Workspace hostnames are <name>-<user>.<domain>. */
  hostnameDomain: string;
  heartbeatIntervalMs: number;
  /** A host whose last heartbeat is older than this many periods is not connected. */
  heartbeatMissLimit: number;
  /** A workspace CREATING or STARTING for longer than this becomes FAILED. */
  createTimeoutSeconds: number;
  /** A host unhealthy (no live session) this long, as the lost-host sweep measures it: its workspaces become LOST. */
  hostLostAfterSeconds: number;
  /** A FAILED workspace stops counting against its owner's quota this long after it failed. */
  failedQuotaGraceSeconds: number;
  /** A build whose worker is silent this long goes back to the queue. */
  buildLeaseMs: number;
  /** Requeues before a build is FAILED. */
  buildMaxRetries: number;
  /** A build running (claimed) longer than this is FAILED and its worker told to stop it, heartbeat or not. */
  buildMaxSeconds: number;
  /** A workspace using this share of its tier's disk gets a warning event (once per crossing). */
  diskWarnPercent: number;
  /** Longest ?wait a request may ask for. */
  maxWaitSeconds: number;
  /** Most workspaces one POST /v1/workspace-batches may create. */
  workspaceBatchMax: number;
  dbPoolSize: number;
  /** Connections for agent streams (heartbeats, reports), apart from the API's. */
  dbAgentPoolSize: number;
  placement: {
    /** Share of each host's reported capacity kept back for the system (0.2 = 20 %). */
    headroom: number;
    /** Hosts at or above these usages get no new workspaces. */
    maxDiskPercent: number;
    maxMemoryPercent: number;
    /** Creates placed in batches (placement/queue.ts); off: one transaction per create, the path before batching. */
    batch: { maxBatch: number; inFlight: number } | undefined;
  };
  /** Quotas for users with no user or team override. */
  defaultQuota: QuotaLimits;
  /** Per-credential request rate (per replica); perSecond 0: off. */
  requestRate: { perSecond: number; burst: number };
  /** Per-user workspace creations (across replicas, in PostgreSQL); perMinute 0: off. */
  createRate: { perMinute: number; burst: number };
  /** Fast 503s when saturated; 0 turns a bound off. */
  shedding: { targetMs: number; intervalMs: number; maxEventLoopLagMs: number };
  /** The agent plane's TLS: the CA (supplied, or kept in dataDir/ca) and the server certificate's extra names. */
  grpcTls: {
    /** A4C_GRPC_INSECURE=true: plaintext gRPC, no client certificates (tests, local experiments). */
    insecure: boolean;
    ca: { certFile: string; keyFile: string } | undefined;
    sans: string[];
  };
  /** Single sign-on: JWTs from this OpenID Connect issuer are accepted besides API tokens. Unset: off. */
  oidc: OidcConfig | undefined;
  /** The activity log: how long it is kept, and its live streams. */
  events: {
    /** Events older than this many days are deleted; 0 keeps them forever. */
    retentionDays: number;
    /** Rows deleted per statement when pruning. */
    pruneBatch: number;
    heartbeatMs: number;
    streamMaxSeconds: number;
  };
  /** The built web dashboard (ui/dist); unset: the one beside this control plane. */
  uiDir: string | undefined;
  /** Sessions into workspaces (exec, shell, port-forward, SSH). */
  access: {
    /** Live sessions per workspace and per user; 0: unlimited. */
    maxPerWorkspace: number;
    maxPerUser: number;
    /** A session with no bytes either way for this long is closed; 0: never. */
    idleTimeoutMs: number;
    /** How long a user waits for the host's agent to open the tunnel. */
    attachTimeoutMs: number;
    /**
     * This replica's gRPC address as the agents can dial it (host:port). Empty: agents
     * dial the address they already use, which is right for one replica (or several
     * behind one address only if the balancer pins an agent to one replica).
     */
    advertiseGrpcAddress: string;
  };
  /** Idle autostop and dormancy (workspaces/autostop.ts). */
  autostop: AutostopConfig;
  /** GET /metrics: open, or only with this bearer token; fleet gauges read from PostgreSQL at most once per cacheMs. */
  metrics: { token: string | undefined; cacheMs: number };
  /** Webhook delivery: retries, timeouts, concurrency (webhooks/config.ts). */
  webhooks: WebhookConfig;
  /** Several replicas: the shared CA's encryption key, the shutdown grace period. */
  replicas: ReplicaConfig;
  /** Statement, lock and idle-in-transaction timeouts of both pools (agents/config.ts). */
  dbTimeouts: DbTimeouts;
  /** Hello deadline, inbox depth, heartbeat batching and scaling (agents/config.ts). */
  agentPlane: AgentPlaneConfig;
  /** Workspace moves and host drains (moves/, drains/). */
  moves: {
    /** How long a moved workspace may take to stop at the source, and to start at the destination. */
    settleSeconds: number;
    /** Moves at once per drain unless the drain says otherwise. */
    drainParallelism: number;
    /** How often open drains are worked on. */
    drainTickMs: number;
    /** An unfinished move untouched this long failed with its control plane: the workspace runs again at the source. */
    staleSeconds: number;
    /** Tests only: flip the byte at this offset of every volume stream in transit (a forced checksum mismatch). */
    testCorruptVolumeOffset: number | undefined;
  };
}

export interface AutostopConfig {
  /** How often each replica looks for workspaces to warn, stop, mark dormant or delete. */
  sweepMs: number;
  /** A warning event this long before an autostop (at most half the idle period). */
  warningSeconds: number;
  /** A workspace whose CPU (100 = one core) stays at or above this counts as active; undefined: CPU does not count. */
  cpuPercent: number | undefined;
  /** How often agents sample each workspace's CPU (only when cpuPercent is set). */
  cpuSampleMs: number;
  /** A stopped workspace unused this long is marked dormant; 0: never. */
  dormantAfterSeconds: number;
  /** A dormant workspace is deleted after this long; undefined: never. */
  deleteDormantAfterSeconds: number | undefined;
  /** Warnings this long before marking dormant and before deleting (at most half the period). */
  dormantWarningSeconds: number;
}

export interface OidcConfig {
  /** Compared exactly with the token's `iss`. */
  issuer: string;
  /** Must be among the token's `aud`: the client id A4C has at the identity provider. */
  audience: string;
  /** Where the issuer publishes its public signing keys (its discovery document's `jwks_uri`). */
  jwksUrl: string;
  /** The claim whose value is the A4C user id. */
  userClaim: string;
  /** Accepted signature algorithms: asymmetric only. */
  algorithms: string[];
  /** Slack for `exp` and `nbf` against clock skew. */
  clockToleranceSeconds: number;
  /** Shortest time between two key-set fetches caused by tokens naming an unknown key. */
  jwksCooldownSeconds: number;
  /** The dashboard's sign-in: authorization code with PKCE, as a public client in the browser. */
  browser: OidcBrowserConfig;
}

export interface OidcBrowserConfig {
  /** The dashboard's client id at the identity provider; its ID tokens carry it as `aud`. */
  clientId: string;
  /** Unset: the issuer's discovery document's `authorization_endpoint`. */
  authorizationUrl: string | undefined;
  /** Unset: the discovery document's `token_endpoint`. */
  tokenUrl: string | undefined;
  /** Asked for at sign-in; always includes `openid`. */
  scopes: string[];
}

export interface QuotaLimits {
  maxWorkspaces: number;
  maxDiskGb: number;
  maxConcurrentBuilds: number;
}

type Env = Record<string, string | undefined>;

function defaultDataDir(): string {
  return process.getuid?.() === 0 ? '/var/lib/a4c/control-plane' : path.join(homedir(), '.local/share/a4c/control-plane');
}

export function loadConfig(env: Env = process.env): ControlPlaneConfig {
  const domain = envString(env, 'A4C_HOSTNAME_DOMAIN', 'ws.a4c.internal');
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(domain)) {
    throw new ConfigError('A4C_HOSTNAME_DOMAIN', `must be a DNS name, got ${JSON.stringify(domain)}`);
  }
  const token = envOptional(env, 'A4C_ADMIN_TOKEN');
  if (token !== undefined && token.length < 16) throw new ConfigError('A4C_ADMIN_TOKEN', 'must be at least 16 characters');
  const caCert = envOptional(env, 'A4C_CA_CERT');
  const caKey = envOptional(env, 'A4C_CA_KEY');
  if (Boolean(caCert) !== Boolean(caKey)) throw new ConfigError(caCert ? 'A4C_CA_KEY' : 'A4C_CA_CERT', 'A4C_CA_CERT and A4C_CA_KEY are set together or not at all');
  const insecure = envString(env, 'A4C_GRPC_INSECURE', 'false');
  if (insecure !== 'true' && insecure !== 'false') throw new ConfigError('A4C_GRPC_INSECURE', `must be true or false, got ${JSON.stringify(insecure)}`);
  const sans = (envOptional(env, 'A4C_GRPC_TLS_SANS') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const san of sans) {
    if (!/^[A-Za-z0-9.:-]{1,253}$/.test(san)) throw new ConfigError('A4C_GRPC_TLS_SANS', `must be comma-separated DNS names or IP addresses, got ${JSON.stringify(san)}`);
  }
  const dbPoolSize = envInt(env, 'A4C_DB_POOL_SIZE', 20, 2, 1000);
  const uiDir = envOptional(env, 'A4C_UI_DIR');
  const metricsToken = envOptional(env, 'A4C_METRICS_TOKEN');
  if (metricsToken !== undefined && !/^[\x21-\x7e]{16,256}$/.test(metricsToken)) {
    throw new ConfigError('A4C_METRICS_TOKEN', 'must be 16 to 256 printable characters without spaces');
  }
  return {
    dataDir: path.resolve(envString(env, 'A4C_DATA_DIR', defaultDataDir())),
    databaseUrl: envOptional(env, 'DATABASE_URL'),
    embeddedPgPort: envInt(env, 'A4C_EMBEDDED_PG_PORT', 54329, 1, 65535),
    bindAddress: envString(env, 'A4C_BIND_ADDRESS', '127.0.0.1'),
    httpPort: envInt(env, 'A4C_HTTP_PORT', 8080, 0, 65535),
    grpcPort: envInt(env, 'A4C_GRPC_PORT', 9090, 0, 65535),
    adminToken: token,
    tiers: parseTiers(envOptional(env, 'A4C_TIERS')),
    defaultImage: envString(env, 'A4C_DEFAULT_IMAGE', 'a4c-base:latest'),
    hostnameDomain: domain,
    heartbeatIntervalMs: envInt(env, 'A4C_HEARTBEAT_MS', 5000, 100, 600_000),
    heartbeatMissLimit: envInt(env, 'A4C_HEARTBEAT_MISS_LIMIT', 3, 1, 100),
    maxWaitSeconds: envInt(env, 'A4C_MAX_WAIT_SECONDS', 300, 0, 3600),
    workspaceBatchMax: envInt(env, 'A4C_WORKSPACE_BATCH_MAX', 500, 1, 10_000),
    createTimeoutSeconds: envInt(env, 'A4C_CREATE_TIMEOUT_SECONDS', 600, 1, 86_400),
    hostLostAfterSeconds: envInt(env, 'A4C_HOST_LOST_AFTER_SECONDS', 600, 1, 30 * 86_400),
    failedQuotaGraceSeconds: envInt(env, 'A4C_FAILED_QUOTA_GRACE_SECONDS', 86_400, 0, 365 * 86_400),
    buildLeaseMs: envInt(env, 'A4C_BUILD_LEASE_MS', 300_000, 500, 86_400_000),
    buildMaxRetries: envInt(env, 'A4C_BUILD_MAX_RETRIES', 3, 0, 100),
    buildMaxSeconds: envInt(env, 'A4C_BUILD_MAX_SECONDS', 7200, 1, 7 * 86_400),
    diskWarnPercent: envInt(env, 'A4C_DISK_WARN_PERCENT', 90, 1, 100),
    dbPoolSize,
    dbAgentPoolSize: envInt(env, 'A4C_DB_AGENT_POOL_SIZE', 10, 2, 1000),
    placement: {
      headroom: envNumber(env, 'A4C_HEADROOM_PERCENT', 20, 0, 90) / 100,
      maxDiskPercent: envNumber(env, 'A4C_MAX_DISK_PERCENT', 80, 1, 100),
      maxMemoryPercent: envNumber(env, 'A4C_MAX_MEMORY_PERCENT', 90, 1, 100),
      batch: envBool(env, 'A4C_PLACEMENT_BATCH', true)
        ? { maxBatch: envInt(env, 'A4C_PLACEMENT_BATCH_MAX', 512, 1, 10_000), inFlight: envInt(env, 'A4C_PLACEMENT_BATCHES_IN_FLIGHT', 1, 1, 16) }
        : undefined,
    },
    requestRate: {
      perSecond: envNumber(env, 'A4C_RATE_LIMIT_RPS', 20, 0, 1e6),
      burst: envInt(env, 'A4C_RATE_LIMIT_BURST', 40, 1, 1e6),
    },
    createRate: {
      perMinute: envNumber(env, 'A4C_CREATE_RATE_PER_MINUTE', 1, 0, 1e6),
      burst: envInt(env, 'A4C_CREATE_RATE_BURST', 3, 1, 1e6),
    },
    shedding: {
      targetMs: envInt(env, 'A4C_SHED_TARGET_MS', 500, 0, 600_000),
      intervalMs: envInt(env, 'A4C_SHED_INTERVAL_MS', 2000, 10, 600_000),
      maxEventLoopLagMs: envInt(env, 'A4C_SHED_EVENT_LOOP_LAG_MS', 200, 0, 600_000),
    },
    defaultQuota: {
      maxWorkspaces: envInt(env, 'A4C_QUOTA_MAX_WORKSPACES', 5, 0, 100_000),
      maxDiskGb: envNumber(env, 'A4C_QUOTA_MAX_DISK_GB', 500, 0, 1e9),
      maxConcurrentBuilds: envInt(env, 'A4C_QUOTA_MAX_BUILDS', 2, 0, 10_000),
    },
    grpcTls: {
      insecure: insecure === 'true',
      ca: caCert && caKey ? { certFile: path.resolve(caCert), keyFile: path.resolve(caKey) } : undefined,
      sans,
    },
    oidc: loadOidc(env),
    events: {
      retentionDays: envInt(env, 'A4C_EVENT_RETENTION_DAYS', 90, 0, 36_500),
      pruneBatch: envInt(env, 'A4C_EVENT_PRUNE_BATCH', 5000, 1, 1_000_000),
      heartbeatMs: envInt(env, 'A4C_EVENT_HEARTBEAT_MS', 15_000, 100, 600_000),
      streamMaxSeconds: envInt(env, 'A4C_EVENT_STREAM_MAX_SECONDS', 3600, 1, 86_400),
    },
    uiDir: uiDir ? path.resolve(uiDir) : undefined,
    access: {
      maxPerWorkspace: envInt(env, 'A4C_SESSIONS_PER_WORKSPACE', 10, 0, 10_000),
      maxPerUser: envInt(env, 'A4C_SESSIONS_PER_USER', 20, 0, 10_000),
      idleTimeoutMs: envInt(env, 'A4C_SESSION_IDLE_TIMEOUT_SECONDS', 3600, 0, 7 * 86_400) * 1000,
      attachTimeoutMs: envInt(env, 'A4C_TUNNEL_ATTACH_TIMEOUT_MS', 10_000, 500, 120_000),
      advertiseGrpcAddress: envString(env, 'A4C_ADVERTISE_GRPC_ADDRESS', ''),
    },
    metrics: { token: metricsToken, cacheMs: envInt(env, 'A4C_METRICS_CACHE_MS', 2000, 0, 60_000) },
    webhooks: loadWebhookConfig(env),
    replicas: loadReplicaConfig(env),
    dbTimeouts: loadDbTimeouts(env),
    agentPlane: loadAgentPlaneConfig(env),
    autostop: loadAutostop(env),
    moves: {
      settleSeconds: envInt(env, 'A4C_MOVE_SETTLE_SECONDS', 120, 1, 3600),
      drainParallelism: envInt(env, 'A4C_DRAIN_PARALLELISM', 1, 1, 64),
      drainTickMs: envInt(env, 'A4C_DRAIN_TICK_MS', 2000, 50, 600_000),
      staleSeconds: envInt(env, 'A4C_MOVE_STALE_SECONDS', 600, 10, 86_400),
      testCorruptVolumeOffset: envOptional(env, 'A4C_TEST_MOVE_CORRUPT_OFFSET') === undefined ? undefined : envInt(env, 'A4C_TEST_MOVE_CORRUPT_OFFSET', 0, 0),
    },
  };
}

function loadAutostop(env: Env): AutostopConfig {
  const cpu = envOptional(env, 'A4C_AUTOSTOP_CPU_PERCENT');
  const del = envOptional(env, 'A4C_DELETE_DORMANT_AFTER_SECONDS');
  const dormantAfterSeconds = envInt(env, 'A4C_DORMANT_AFTER_SECONDS', 7 * 86_400, 0, 10 * 365 * 86_400);
  if (dormantAfterSeconds > 0 && dormantAfterSeconds < 60) throw new ConfigError('A4C_DORMANT_AFTER_SECONDS', 'must be 0 (never) or at least 60');
  const deleteDormantAfterSeconds = del === undefined ? undefined : envInt(env, 'A4C_DELETE_DORMANT_AFTER_SECONDS', 0, 60, 10 * 365 * 86_400);
  if (deleteDormantAfterSeconds !== undefined && dormantAfterSeconds === 0) {
    throw new ConfigError('A4C_DELETE_DORMANT_AFTER_SECONDS', 'needs dormancy: A4C_DORMANT_AFTER_SECONDS is 0, so no workspace ever becomes dormant');
  }
  return {
    sweepMs: envInt(env, 'A4C_AUTOSTOP_SWEEP_MS', 30_000, 100, 3_600_000),
    warningSeconds: envInt(env, 'A4C_AUTOSTOP_WARNING_SECONDS', 300, 0, 7 * 86_400),
    cpuPercent: cpu === undefined ? undefined : envNumber(env, 'A4C_AUTOSTOP_CPU_PERCENT', 0, 0.1, 100 * 1024),
    cpuSampleMs: envInt(env, 'A4C_AUTOSTOP_CPU_SAMPLE_MS', 30_000, 200, 3_600_000),
    dormantAfterSeconds,
    deleteDormantAfterSeconds,
    dormantWarningSeconds: envInt(env, 'A4C_DORMANT_WARNING_SECONDS', 86_400, 0, 30 * 86_400),
  };
}

/**
 * Only asymmetric algorithms: the key set publishes public keys, and a shared-secret
 * (HS*) or unsigned ("none") token proves nothing about the issuer.
 */
export const OIDC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

const LOOPBACK_HOSTS = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** https, or plain http to this machine only (a local identity provider in development). */
function secureUrl(name: string, raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.test(url.hostname))) {
    throw new ConfigError(name, `must be an https URL (plain http only for localhost/127.0.0.1/[::1]), got ${JSON.stringify(raw)}`);
  }
  if (url.username || url.password || url.hash) throw new ConfigError(name, 'must not contain credentials or a #fragment');
  return raw;
}

function loadOidc(env: Env): OidcConfig | undefined {
  // Parsed even when single sign-on is off, so a bad value is caught before it matters.
  const userClaim = envString(env, 'A4C_OIDC_USER_CLAIM', 'sub');
  if (!/^[\x21-\x7e]{1,256}$/.test(userClaim)) throw new ConfigError('A4C_OIDC_USER_CLAIM', `must be a claim name (printable ASCII, no spaces), got ${JSON.stringify(userClaim)}`);
  const algorithms = envString(env, 'A4C_OIDC_ALGORITHMS', 'RS256,ES256').split(',').map((a) => a.trim()).filter(Boolean);
  if (algorithms.length === 0) throw new ConfigError('A4C_OIDC_ALGORITHMS', 'must name at least one algorithm');
  for (const a of algorithms) {
    if (!OIDC_ALGORITHMS.includes(a)) {
      const why = /^(none|HS\d+)$/i.test(a) ? 'unsigned and shared-secret tokens are never accepted' : 'it is not an asymmetric JWS algorithm';
      throw new ConfigError('A4C_OIDC_ALGORITHMS', `must be a comma-separated list of ${OIDC_ALGORITHMS.join(', ')}; ${JSON.stringify(a)} is refused: ${why}`);
    }
  }
  const clockToleranceSeconds = envInt(env, 'A4C_OIDC_CLOCK_TOLERANCE_SECONDS', 30, 0, 300);
  const jwksCooldownSeconds = envInt(env, 'A4C_OIDC_JWKS_COOLDOWN_SECONDS', 30, 0, 3600);

  const issuer = envOptional(env, 'A4C_OIDC_ISSUER');
  const audience = envOptional(env, 'A4C_OIDC_AUDIENCE');
  const jwksUrl = envOptional(env, 'A4C_OIDC_JWKS_URL');
  if (!issuer && !audience && !jwksUrl) return undefined;
  const together = 'A4C_OIDC_ISSUER, A4C_OIDC_AUDIENCE and A4C_OIDC_JWKS_URL are set together or not at all';
  if (!issuer) throw new ConfigError('A4C_OIDC_ISSUER', `is unset: ${together}`);
  if (!audience) throw new ConfigError('A4C_OIDC_AUDIENCE', `is unset: ${together} (the audience is the client id A4C has at the identity provider)`);
  if (!jwksUrl) throw new ConfigError('A4C_OIDC_JWKS_URL', `is unset: ${together} (it is the "jwks_uri" of ${issuer.replace(/\/$/, '')}/.well-known/openid-configuration)`);
  if (audience.length > 256 || /\s/.test(audience)) throw new ConfigError('A4C_OIDC_AUDIENCE', `must be one audience value without spaces, got ${JSON.stringify(audience)}`);
  return {
    issuer: secureUrl('A4C_OIDC_ISSUER', issuer),
    audience,
    jwksUrl: secureUrl('A4C_OIDC_JWKS_URL', jwksUrl),
    userClaim,
    algorithms,
    clockToleranceSeconds,
    jwksCooldownSeconds,
    browser: loadOidcBrowser(env, audience),
  };
}

function loadOidcBrowser(env: Env, audience: string): OidcBrowserConfig {
  const clientId = envString(env, 'A4C_OIDC_CLIENT_ID', audience);
  if (!/^[\x21-\x7e]{1,256}$/.test(clientId)) throw new ConfigError('A4C_OIDC_CLIENT_ID', `must be a client id (printable ASCII, no spaces), got ${JSON.stringify(clientId)}`);
  const authorizationUrl = envOptional(env, 'A4C_OIDC_AUTHORIZATION_URL');
  const tokenUrl = envOptional(env, 'A4C_OIDC_TOKEN_URL');
  const scopes = envString(env, 'A4C_OIDC_SCOPES', 'openid profile email').split(/\s+/).filter(Boolean);
  for (const scope of scopes) {
    if (!/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/.test(scope)) throw new ConfigError('A4C_OIDC_SCOPES', `must be scope names separated by spaces, got ${JSON.stringify(scope)}`);
  }
  if (!scopes.includes('openid')) throw new ConfigError('A4C_OIDC_SCOPES', `must include "openid" (without it there is no ID token to sign in with), got ${JSON.stringify(scopes.join(' '))}`);
  return {
    clientId,
    authorizationUrl: authorizationUrl && secureUrl('A4C_OIDC_AUTHORIZATION_URL', authorizationUrl),
    tokenUrl: tokenUrl && secureUrl('A4C_OIDC_TOKEN_URL', tokenUrl),
    scopes,
  };
}

/** Printed by `a4c-control-plane --help`; keep in step with loadConfig. */
export const CONFIG_HELP = `Environment:
  DATABASE_URL              PostgreSQL URL; unset: embedded PostgreSQL under A4C_DATA_DIR
  A4C_DATA_DIR              data directory (default /var/lib/a4c/control-plane as root)
  A4C_EMBEDDED_PG_PORT      port of the embedded PostgreSQL (default 54329, loopback)
  A4C_BIND_ADDRESS          address the HTTP and gRPC servers bind (default 127.0.0.1)
  A4C_HTTP_PORT             REST API port (default 8080)
  A4C_GRPC_PORT             agent gRPC port (default 9090)
  A4C_ADMIN_TOKEN           admin bearer token; unset: generated once, kept in A4C_DATA_DIR/admin-token
  A4C_TIERS                 extra tiers as JSON, e.g. {"tiny":{"memoryMb":64,"cpus":0.25,"diskGb":1}}
  A4C_DEFAULT_IMAGE         image for projects with no built image (default a4c-base:latest)
  A4C_HOSTNAME_DOMAIN       workspace hostnames are <name>-<user>.<domain> (default ws.a4c.internal)
  A4C_HEARTBEAT_MS          least heartbeat period agents are told to use; grows with the fleet (default 5000)
  A4C_HEARTBEAT_MISS_LIMIT  missed heartbeats before a host counts as disconnected (default 3)
  A4C_MAX_WAIT_SECONDS      longest ?wait= a request may ask for (default 300)
  A4C_CREATE_TIMEOUT_SECONDS  a workspace still coming up after this is FAILED (default 600)
  A4C_HOST_LOST_AFTER_SECONDS  a host without a live agent session this long: its workspaces become LOST (default 600)
  A4C_FAILED_QUOTA_GRACE_SECONDS  a FAILED workspace stops counting against quota this long after it failed (default 86400)
  A4C_BUILD_LEASE_MS        a build whose worker is silent this long is requeued (default 300000)
  A4C_BUILD_MAX_RETRIES     requeues before a build is FAILED (default 3)
  A4C_BUILD_MAX_SECONDS     a build running longer is FAILED and its agent told to stop it (default 7200)
  A4C_DISK_WARN_PERCENT     share of its tier's disk at which a workspace is warned (default 90; past 100 it is stopped)
  A4C_DB_POOL_SIZE          PostgreSQL connections for the REST API (default 20)
  A4C_DB_AGENT_POOL_SIZE    PostgreSQL connections for agent streams, kept apart (default 10)
  A4C_HEADROOM_PERCENT      share of each host's capacity never reserved (default 20)
  A4C_MAX_DISK_PERCENT      hosts at or above this disk usage get nothing new (default 80)
  A4C_MAX_MEMORY_PERCENT    hosts at or above this memory usage get nothing new (default 90)
  A4C_PLACEMENT_BATCH       place concurrent creates in batches, one transaction each (default true; false: one each)
  A4C_PLACEMENT_BATCH_MAX   most creates in one placement batch (default 512)
  A4C_PLACEMENT_BATCHES_IN_FLIGHT  placement batches in their transactions at once (default 1)
  A4C_WORKSPACE_BATCH_MAX   most workspaces one POST /v1/workspace-batches creates (default 500)
  A4C_QUOTA_MAX_WORKSPACES  default per-user workspace limit (default 5)
  A4C_QUOTA_MAX_DISK_GB     default per-user disk limit across workspaces (default 500)
  A4C_QUOTA_MAX_BUILDS      default per-user concurrent image builds (default 2)
  A4C_RATE_LIMIT_RPS        requests per second per token, per replica; 0: off (default 20)
  A4C_RATE_LIMIT_BURST      requests a token may send at once (default 40)
  A4C_CREATE_RATE_PER_MINUTE  workspace creations per user per minute, across replicas; 0: off (default 1)
  A4C_CREATE_RATE_BURST     creations a user may make at once before the rate applies (default 3)
  A4C_SHED_TARGET_MS        answer 503 at once while requests have waited over this for a database connection
                            for a whole interval (CoDel); 0: never (default 500)
  A4C_SHED_INTERVAL_MS      how long queueing or lag must last before shedding (default 2000)
  A4C_SHED_EVENT_LOOP_LAG_MS  answer 503 at once while the event loop's median lag over the interval exceeds this; 0: never (default 200)
  A4C_GRPC_TLS_SANS         extra names/IPs of the gRPC server certificate, comma-separated (127.0.0.1 and localhost always)
  A4C_CA_CERT               PEM file of a supplied agent-plane CA (with A4C_CA_KEY); unset: the CA kept in PostgreSQL
                            (created by the first replica, or imported from an existing A4C_DATA_DIR/ca)
  A4C_CA_KEY                PEM file of that CA's private key (RSA)
${REPLICA_CONFIG_HELP}
  A4C_GRPC_INSECURE         true: plaintext gRPC without client certificates (tests only; default false)
  A4C_OIDC_ISSUER           single sign-on: accept JWTs whose iss is exactly this (with A4C_OIDC_AUDIENCE and A4C_OIDC_JWKS_URL); unset: off
  A4C_OIDC_AUDIENCE         the aud those JWTs must carry (A4C's client id at the identity provider)
  A4C_OIDC_JWKS_URL         the issuer's public keys (jwks_uri of <issuer>/.well-known/openid-configuration); https
  A4C_OIDC_USER_CLAIM       claim holding the A4C user id (default sub)
  A4C_OIDC_ALGORITHMS       accepted signature algorithms, comma-separated, asymmetric only (default RS256,ES256)
  A4C_OIDC_CLOCK_TOLERANCE_SECONDS  slack for exp/nbf against clock skew (default 30)
  A4C_OIDC_JWKS_COOLDOWN_SECONDS    least time between key-set fetches caused by unknown key ids (default 30)
  A4C_OIDC_CLIENT_ID        the dashboard's client id for "Sign in with SSO" (public client, PKCE; default A4C_OIDC_AUDIENCE)
  A4C_OIDC_AUTHORIZATION_URL  the provider's authorization endpoint; unset: from <issuer>/.well-known/openid-configuration
  A4C_OIDC_TOKEN_URL        the provider's token endpoint; unset: from the discovery document
  A4C_OIDC_SCOPES           scopes the dashboard asks for, space-separated, with openid (default "openid profile email")
  A4C_EVENT_RETENTION_DAYS  activity-log events older than this are pruned, in batches; 0: kept forever (default 90)
  A4C_EVENT_PRUNE_BATCH     events deleted per statement when pruning (default 5000)
  A4C_EVENT_HEARTBEAT_MS    comment line on /v1/events/stream this often (default 15000)
  A4C_EVENT_STREAM_MAX_SECONDS  an event stream ends after this; the client resumes with Last-Event-ID and its credential is checked again (default 3600)
  A4C_UI_DIR                the built web dashboard served at /ui/ (default ui/dist beside the control plane, made by npm run build)
  A4C_METRICS_TOKEN         bearer token GET /metrics requires (16+ characters); unset: /metrics is open like the probes
  A4C_METRICS_CACHE_MS      fleet gauges are read from PostgreSQL at most once per this many ms (default 2000)
  A4C_SESSIONS_PER_WORKSPACE  open exec/shell/port-forward/ssh sessions per workspace, all replicas (default 10; 0: no limit)
  A4C_SESSIONS_PER_USER     open sessions per user, all replicas (default 20; 0: no limit)
  A4C_SESSION_IDLE_TIMEOUT_SECONDS  a session with no byte either way for this long is closed (default 3600; 0: never)
  A4C_TUNNEL_ATTACH_TIMEOUT_MS      how long a user waits for the host's agent to open its tunnel (default 10000)
  A4C_ADVERTISE_GRPC_ADDRESS        this replica's gRPC host:port as agents can dial it (several replicas); unset: the address agents use
${WEBHOOK_CONFIG_HELP}
${AGENT_PLANE_CONFIG_HELP}
  A4C_AUTOSTOP_SWEEP_MS     how often idle workspaces are looked for (default 30000)
  A4C_AUTOSTOP_WARNING_SECONDS  warning event this long before an idle workspace is stopped, at most half its period (default 300)
  A4C_AUTOSTOP_CPU_PERCENT  a workspace using at least this much CPU (100 = one core) counts as active; unset: CPU does not count
  A4C_AUTOSTOP_CPU_SAMPLE_MS  how often agents sample each workspace's CPU when the threshold is set (default 30000)
  A4C_DORMANT_AFTER_SECONDS a stopped workspace unused this long is marked dormant (default 604800, 7 days; 0: never)
  A4C_DELETE_DORMANT_AFTER_SECONDS  a dormant workspace is deleted this long after it became dormant (volume kept); unset: never
  A4C_DORMANT_WARNING_SECONDS  warning event this long before marking dormant or deleting, at most half the period (default 86400)
  A4C_MOVE_SETTLE_SECONDS   a moved workspace may take this long to stop at the source, and to start at the destination (default 120)
  A4C_MOVE_STALE_SECONDS    an unfinished move untouched this long (its replica died) fails; the workspace runs again at the source (default 600)
  A4C_DRAIN_PARALLELISM     moves at once per drain --migrate unless the drain says otherwise (default 1)
  A4C_DRAIN_TICK_MS         how often open drains are worked on: moves started, deadlines checked (default 2000)
  A4C_TEST_MOVE_CORRUPT_OFFSET  tests only: flip the byte at this offset of every moved volume stream (a forced checksum mismatch); unset: off
  A4C_LOG_LEVEL             trace|debug|info|warn|error|silent (default info)`;
