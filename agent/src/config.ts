import { hostname } from 'node:os';
import path from 'node:path';
import { splitAddressList } from './session/addresses.js';
import { ConfigError, envInt, envNumber, envOptional, envString, ID_PATTERN, isArch, localArch, parseHostPort, type Arch } from '@a4c/common';

export interface AgentConfig {
  /** A4C_CONTROL_PLANE as given (for display). */
  controlPlane: string;
  /** Its entries: the control-plane replicas' gRPC addresses (session/addresses.ts). */
  controlPlanes: { host: string; port: number }[];
  hostId: string;
  arch: Arch;
  statusBind: string;
  statusPort: number;
  /** Unset: dockerode's defaults (DOCKER_HOST, else /var/run/docker.sock). */
  dockerHost: string | undefined;
  stateDir: string;
  /** Network mode of workspace containers (tests and private engines: none). */
  networkMode: string;
  /** Filesystem whose usage is reported as the host's disk; default: the Docker data root. */
  diskPath: string | undefined;
  reconcileIntervalMs: number;
  /** Workspaces brought up (pull, create, start) at once; as many again stopped or removed at once. */
  parallelism: number;
  stopTimeoutSeconds: number;
  maxRestarts: number;
  restartBackoffMs: number;
  /** Tries in all of a create or start that fails with a transient engine error (busy, timeout). */
  transientAttempts: number;
  /** First delay before such a try again; doubles each time. */
  transientBackoffMs: number;
  builds: {
    slots: number;
    pollMs: number;
    heartbeatMs: number;
    baseImage: string;
    syncCommand: string;
    /** host:port of an image registry built images are pushed to. */
    registry: string | undefined;
  };
  /** Used to enroll (get a client certificate) only when none is in stateDir/tls. */
  joinToken: string | undefined;
  /** REST base URL of the control plane, for enrollment. */
  controlPlaneUrl: string;
  /** A4C_GRPC_INSECURE=true: plaintext gRPC without a client certificate. */
  grpcInsecure: boolean;
  disk: {
    /** How often each workspace's writable layer and volume are measured. */
    measureIntervalMs: number;
    /** auto: cap writable layers with --storage-opt size where the driver can; off: never. */
    storageOpt: 'auto' | 'off';
  };
  imageGc: {
    highPercent: number;
    lowPercent: number;
    intervalMs: number;
    minAgeSeconds: number;
  };
  /**
   * Put before the names of the containers and volumes this agent makes, so several
   * agents can share one Docker Engine (tests, demos) without taking each other's
   * names. Empty on a real host: one agent per engine.
   */
  enginePrefix: string;
  /** What the host offers to workspaces; unset parts: all of it (as measured). */
  offer: { memoryMb?: number; cpus?: number; diskGb?: number };
}

type Env = Record<string, string | undefined>;

/** Records which project and change the image holds; a real one would fetch the source at that change. */
export const DEFAULT_SYNC_COMMAND =
  "mkdir -p /opt/a4c && printf 'project=%s\\nchange=%s\\narch=%s\\n' \"$A4C_PROJECT\" \"$A4C_CHANGE_NUMBER\" \"$A4C_ARCH\" > /opt/a4c/source && cat /opt/a4c/source";

function registry(env: Env): string | undefined {
  const r = envOptional(env, 'A4C_REGISTRY');
  if (r !== undefined && !/^[a-z0-9.-]+(:\d{1,5})?(\/[a-z0-9._-]+)*$/.test(r)) {
    throw new ConfigError('A4C_REGISTRY', `must be a registry host[:port][/path], e.g. registry.internal:5000, got ${JSON.stringify(r)}`);
  }
  return r;
}

function imageGc(env: Env): AgentConfig['imageGc'] {
  const highPercent = envNumber(env, 'A4C_IMAGE_GC_HIGH_PERCENT', 85, 0, 100);
  const lowPercent = envNumber(env, 'A4C_IMAGE_GC_LOW_PERCENT', 80, 0, 100);
  if (lowPercent >= highPercent) {
    throw new ConfigError('A4C_IMAGE_GC_LOW_PERCENT', `must be below A4C_IMAGE_GC_HIGH_PERCENT (${highPercent}), got ${lowPercent}`);
  }
  return {
    highPercent,
    lowPercent,
    intervalMs: envInt(env, 'A4C_IMAGE_GC_INTERVAL_MS', 300_000, 100, 86_400_000),
    minAgeSeconds: envInt(env, 'A4C_IMAGE_GC_MIN_AGE_SECONDS', 3600, 0, 365 * 86_400),
  };
}

function storageOpt(env: Env): 'auto' | 'off' {
  const v = envString(env, 'A4C_STORAGE_OPT', 'auto');
  if (v !== 'auto' && v !== 'off') throw new ConfigError('A4C_STORAGE_OPT', `must be auto or off, got ${JSON.stringify(v)}`);
  return v;
}

export function loadConfig(env: Env = process.env): AgentConfig {
  const controlPlane = envString(env, 'A4C_CONTROL_PLANE', '127.0.0.1:9090');
  const controlPlanes = splitAddressList(controlPlane).map((a) => parseHostPort('A4C_CONTROL_PLANE', a));
  if (!controlPlanes.length) throw new ConfigError('A4C_CONTROL_PLANE', 'must list at least one host:port');
  const hostId = envString(env, 'A4C_HOST_ID', hostname().toLowerCase());
  if (!ID_PATTERN.test(hostId)) throw new ConfigError('A4C_HOST_ID', `must be 1-63 lowercase letters, digits, ".", "_" or "-", got ${JSON.stringify(hostId)}`);
  const arch = envString(env, 'A4C_ARCH', localArch() ?? '');
  if (!isArch(arch)) throw new ConfigError('A4C_ARCH', `must be linux-x64, linux-arm64 or darwin-arm64, got ${JSON.stringify(arch)}`);
  const dockerHost = envOptional(env, 'DOCKER_HOST');
  if (dockerHost !== undefined && !/^(unix:\/\/\/.+|tcp:\/\/[^/]+)$/.test(dockerHost)) {
    throw new ConfigError('DOCKER_HOST', `must be unix:///path/to/docker.sock or tcp://host:port, got ${JSON.stringify(dockerHost)}`);
  }
  const controlPlaneUrl = envString(env, 'A4C_CONTROL_PLANE_URL', 'http://127.0.0.1:8080');
  if (!/^https?:\/\/[^/\s]+(\/\S*)?$/.test(controlPlaneUrl)) throw new ConfigError('A4C_CONTROL_PLANE_URL', `must be an http(s) URL, got ${JSON.stringify(controlPlaneUrl)}`);
  const insecure = envString(env, 'A4C_GRPC_INSECURE', 'false');
  if (insecure !== 'true' && insecure !== 'false') throw new ConfigError('A4C_GRPC_INSECURE', `must be true or false, got ${JSON.stringify(insecure)}`);
  const enginePrefix = envString(env, 'A4C_ENGINE_NAME_PREFIX', '');
  if (enginePrefix && !/^[a-z0-9][a-z0-9_.-]{0,39}$/.test(enginePrefix)) {
    throw new ConfigError('A4C_ENGINE_NAME_PREFIX', `must be up to 40 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit, got ${JSON.stringify(enginePrefix)}`);
  }
  return {
    controlPlane,
    controlPlanes,
    enginePrefix,
    joinToken: envOptional(env, 'A4C_JOIN_TOKEN'),
    controlPlaneUrl,
    grpcInsecure: insecure === 'true',
    hostId,
    arch,
    statusBind: envString(env, 'A4C_STATUS_BIND', '127.0.0.1'),
    statusPort: envInt(env, 'A4C_STATUS_PORT', 9100, 0, 65535),
    dockerHost,
    stateDir: path.resolve(envString(env, 'A4C_STATE_DIR', process.getuid?.() === 0 ? '/var/lib/a4c/agent' : '.a4c-agent')),
    networkMode: envString(env, 'A4C_NETWORK_MODE', 'bridge'),
    diskPath: envOptional(env, 'A4C_DISK_PATH'),
    reconcileIntervalMs: envInt(env, 'A4C_RECONCILE_INTERVAL_MS', 10_000, 100, 3_600_000),
    parallelism: envInt(env, 'A4C_PARALLELISM', 4, 1, 64),
    stopTimeoutSeconds: envInt(env, 'A4C_STOP_TIMEOUT_SECONDS', 10, 0, 600),
    maxRestarts: envInt(env, 'A4C_MAX_RESTARTS', 3, 0, 100),
    restartBackoffMs: envInt(env, 'A4C_RESTART_BACKOFF_MS', 1000, 10, 3_600_000),
    transientAttempts: envInt(env, 'A4C_TRANSIENT_ATTEMPTS', 4, 1, 20),
    transientBackoffMs: envInt(env, 'A4C_TRANSIENT_BACKOFF_MS', 1000, 10, 600_000),
    builds: {
      slots: envInt(env, 'A4C_BUILD_SLOTS', 1, 0, 64),
      pollMs: envInt(env, 'A4C_BUILD_POLL_MS', 2000, 50, 600_000),
      heartbeatMs: envInt(env, 'A4C_BUILD_HEARTBEAT_MS', 30_000, 50, 3_600_000),
      baseImage: envString(env, 'A4C_BUILD_BASE_IMAGE', 'a4c-base:latest'),
      syncCommand: envString(env, 'A4C_BUILD_SYNC_COMMAND', DEFAULT_SYNC_COMMAND),
      registry: registry(env),
    },
    disk: {
      measureIntervalMs: envInt(env, 'A4C_DISK_MEASURE_INTERVAL_MS', 60_000, 100, 86_400_000),
      storageOpt: storageOpt(env),
    },
    imageGc: imageGc(env),
    offer: {
      ...(envOptional(env, 'A4C_CAPACITY_MEMORY_MB') ? { memoryMb: envInt(env, 'A4C_CAPACITY_MEMORY_MB', 0, 1) } : {}),
      ...(envOptional(env, 'A4C_CAPACITY_CPUS') ? { cpus: envNumber(env, 'A4C_CAPACITY_CPUS', 0, 0.001, 100_000) } : {}),
      ...(envOptional(env, 'A4C_CAPACITY_DISK_GB') ? { diskGb: envNumber(env, 'A4C_CAPACITY_DISK_GB', 0, 0.001, 1e9) } : {}),
    },
  };
}

/** Printed by `a4c-agent --help`; keep in step with loadConfig. */
export const CONFIG_HELP = `Environment:
  A4C_CONTROL_PLANE          control plane gRPC address host:port, or several replicas' comma-separated (a DNS name with
                             several addresses is tried at each); on failure the next is used (default 127.0.0.1:9090)
  A4C_HOST_ID                this host's id (default the hostname)
  A4C_ARCH                   linux-x64 | linux-arm64 | darwin-arm64 (default: this machine's)
  A4C_STATUS_BIND            address of the status endpoints (default 127.0.0.1)
  A4C_STATUS_PORT            port of /healthz /readyz /status (default 9100)
  DOCKER_HOST                Docker Engine, e.g. unix:///var/run/docker.sock (the default)
  A4C_STATE_DIR              where the last desired state is kept (default /var/lib/a4c/agent as root)
  A4C_NETWORK_MODE           network mode of workspace containers (default bridge)
  A4C_DISK_PATH              filesystem reported as the host's disk (default: the Docker data root)
  A4C_RECONCILE_INTERVAL_MS  periodic reconcile sweep (default 10000)
  A4C_PARALLELISM            workspaces brought up at once, and as many stopped/removed (default 4)
  A4C_STOP_TIMEOUT_SECONDS   grace period when stopping a workspace (default 10)
  A4C_MAX_RESTARTS           restarts of a workspace that exits by itself before it is FAILED (default 3)
  A4C_RESTART_BACKOFF_MS     first restart delay, doubling each time (default 1000)
  A4C_TRANSIENT_ATTEMPTS     tries of a container create/start failing with a transient engine error (default 4)
  A4C_TRANSIENT_BACKOFF_MS   first delay before trying it again, doubling each time (default 1000)
  A4C_BUILD_SLOTS            image builds this host runs at once (default 1; 0: none)
  A4C_BUILD_POLL_MS          how often a free build slot asks for work (default 2000)
  A4C_BUILD_HEARTBEAT_MS     progress report period of a running build (default 30000)
  A4C_BUILD_BASE_IMAGE       FROM of the build template (default a4c-base:latest)
  A4C_BUILD_SYNC_COMMAND     source-sync step (default: record project and change in /opt/a4c/source)
  A4C_REGISTRY               image registry host:port built images are pushed to (default: none)
  A4C_DISK_MEASURE_INTERVAL_MS  how often each workspace's writable layer and volume are measured (default 60000)
  A4C_STORAGE_OPT            auto: cap writable layers with --storage-opt size where the driver can (overlay2 on xfs, pquota); off (default auto)
  A4C_IMAGE_GC_HIGH_PERCENT  image GC starts when the disk is at or above this (default 85)
  A4C_IMAGE_GC_LOW_PERCENT   ... and prunes until it is below this (default 80)
  A4C_IMAGE_GC_INTERVAL_MS   how often the disk is checked for image GC (default 300000)
  A4C_IMAGE_GC_MIN_AGE_SECONDS  images used or created more recently are kept (default 3600)
  A4C_CAPACITY_MEMORY_MB     memory this host offers to workspaces (default: all of it)
  A4C_CAPACITY_CPUS          CPUs this host offers (default: all of them)
  A4C_CAPACITY_DISK_GB       disk this host offers (default: the Docker data root's size)
  A4C_CONTROL_PLANE_URL      control plane REST API, for enrollment (default http://127.0.0.1:8080)
  A4C_JOIN_TOKEN             join token to enroll with when A4C_STATE_DIR/tls holds no certificate yet
  A4C_GRPC_INSECURE          true: plaintext gRPC without a client certificate (tests only; default false)
  A4C_ENGINE_NAME_PREFIX     prefix of container and volume names, for agents sharing one engine (default none)
  A4C_LOG_LEVEL              trace|debug|info|warn|error|silent (default info)`;
