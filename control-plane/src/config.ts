import { homedir } from 'node:os';
import path from 'node:path';
import {
  ConfigError,
  envInt,
  envNumber,
  envOptional,
  envString,
  parseTiers,
  type Tier,
} from '@a4c/common';

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
  /** A build whose worker is silent this long goes back to the queue. */
  buildLeaseMs: number;
  /** Requeues before a build is FAILED. */
  buildMaxRetries: number;
  /** Longest ?wait a request may ask for. */
  maxWaitSeconds: number;
  dbPoolSize: number;
  /** Connections for agent streams (heartbeats, reports), apart from the API's. */
  dbAgentPoolSize: number;
  placement: {
    /** Share of each host's reported capacity kept back for the system (0.2 = 20 %). */
    headroom: number;
    /** Hosts at or above these usages get no new workspaces. */
    maxDiskPercent: number;
    maxMemoryPercent: number;
  };
  /** Quotas for users with no user or team override. */
  defaultQuota: QuotaLimits;
  /** The agent plane's TLS: the CA (supplied, or kept in dataDir/ca) and the server certificate's extra names. */
  grpcTls: {
    /** A4C_GRPC_INSECURE=true: plaintext gRPC, no client certificates (tests, local experiments). */
    insecure: boolean;
    ca: { certFile: string; keyFile: string } | undefined;
    sans: string[];
  };
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
    createTimeoutSeconds: envInt(env, 'A4C_CREATE_TIMEOUT_SECONDS', 600, 1, 86_400),
    buildLeaseMs: envInt(env, 'A4C_BUILD_LEASE_MS', 300_000, 500, 86_400_000),
    buildMaxRetries: envInt(env, 'A4C_BUILD_MAX_RETRIES', 3, 0, 100),
    dbPoolSize: envInt(env, 'A4C_DB_POOL_SIZE', 20, 2, 1000),
    dbAgentPoolSize: envInt(env, 'A4C_DB_AGENT_POOL_SIZE', 10, 2, 1000),
    placement: {
      headroom: envNumber(env, 'A4C_HEADROOM_PERCENT', 20, 0, 90) / 100,
      maxDiskPercent: envNumber(env, 'A4C_MAX_DISK_PERCENT', 80, 1, 100),
      maxMemoryPercent: envNumber(env, 'A4C_MAX_MEMORY_PERCENT', 90, 1, 100),
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
  A4C_HEARTBEAT_MS          heartbeat period agents are told to use (default 5000)
  A4C_HEARTBEAT_MISS_LIMIT  missed heartbeats before a host counts as disconnected (default 3)
  A4C_MAX_WAIT_SECONDS      longest ?wait= a request may ask for (default 300)
  A4C_CREATE_TIMEOUT_SECONDS  a workspace still coming up after this is FAILED (default 600)
  A4C_BUILD_LEASE_MS        a build whose worker is silent this long is requeued (default 300000)
  A4C_BUILD_MAX_RETRIES     requeues before a build is FAILED (default 3)
  A4C_DB_POOL_SIZE          PostgreSQL connections for the REST API (default 20)
  A4C_DB_AGENT_POOL_SIZE    PostgreSQL connections for agent streams, kept apart (default 10)
  A4C_HEADROOM_PERCENT      share of each host's capacity never reserved (default 20)
  A4C_MAX_DISK_PERCENT      hosts at or above this disk usage get nothing new (default 80)
  A4C_MAX_MEMORY_PERCENT    hosts at or above this memory usage get nothing new (default 90)
  A4C_QUOTA_MAX_WORKSPACES  default per-user workspace limit (default 5)
  A4C_QUOTA_MAX_DISK_GB     default per-user disk limit across workspaces (default 500)
  A4C_QUOTA_MAX_BUILDS      default per-user concurrent image builds (default 2)
  A4C_GRPC_TLS_SANS         extra names/IPs of the gRPC server certificate, comma-separated (127.0.0.1 and localhost always)
  A4C_CA_CERT               PEM file of a supplied agent-plane CA (with A4C_CA_KEY); unset: A4C_DATA_DIR/ca, created once
  A4C_CA_KEY                PEM file of that CA's private key (RSA)
  A4C_GRPC_INSECURE         true: plaintext gRPC without client certificates (tests only; default false)
  A4C_LOG_LEVEL             trace|debug|info|warn|error|silent (default info)`;
