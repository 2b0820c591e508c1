import { ConfigError, envInt, envOptional } from '@a4c/common';

type Env = Record<string, string | undefined>;

/** Settings of running several replicas: the CA kept in PostgreSQL, and stopping one. */
export interface ReplicaConfig {
  /** A4C_CA_ENCRYPTION_KEY: 32 bytes sealing the CA key in PostgreSQL (AES-256-GCM); unset: stored as is. */
  caEncryptionKey: Buffer | undefined;
  /** A4C_SHUTDOWN_GRACE_MS: how long a stopping replica waits for agents and tunnels before forcing. */
  shutdownGraceMs: number;
}

export function loadReplicaConfig(env: Env): ReplicaConfig {
  const raw = envOptional(env, 'A4C_CA_ENCRYPTION_KEY')?.trim();
  let caEncryptionKey: Buffer | undefined;
  if (raw !== undefined) {
    if (/^[0-9a-fA-F]{64}$/.test(raw)) caEncryptionKey = Buffer.from(raw, 'hex');
    else if (/^[A-Za-z0-9+/]{43}=$/.test(raw)) caEncryptionKey = Buffer.from(raw, 'base64');
    else throw new ConfigError('A4C_CA_ENCRYPTION_KEY', 'must be 32 random bytes as 64 hex digits or 44 base64 characters (`openssl rand -hex 32` makes one)');
  }
  return { caEncryptionKey, shutdownGraceMs: envInt(env, 'A4C_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000) };
}

export const REPLICA_CONFIG_HELP = `  A4C_CA_ENCRYPTION_KEY     32 bytes (64 hex digits, \`openssl rand -hex 32\`) encrypting the agent-plane CA key kept in PostgreSQL
                            (AES-256-GCM); every replica needs the same; unset: the key is stored unencrypted
  A4C_SHUTDOWN_GRACE_MS     on SIGTERM, how long to wait for agents to move to other replicas and tunnels to end before
                            forcing them closed (default 10000)`;
