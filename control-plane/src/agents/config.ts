import { envInt } from '@a4c/common';

/** Per-connection limits of both PostgreSQL pools (store/db.ts createPool). */
export interface DbTimeouts {
  /** A statement running longer is cancelled (statement_timeout). */
  statementMs: number;
  /** A statement waiting longer for a lock is cancelled (lock_timeout). */
  lockMs: number;
  /** A session idle inside a transaction this long is ended by the server (idle_in_transaction_session_timeout). */
  idleInTransactionMs: number;
}

/** The agent plane's bounds (docs/operations.md, "The agent plane"). */
export interface AgentPlaneConfig {
  /** A stream with no Hello this long after it opened is refused (DEADLINE_EXCEEDED). */
  helloTimeoutMs: number;
  /** Messages of one stream waiting to be handled before the stream is paused (read back-pressure). */
  inboxDepth: number;
  /** Heartbeats that arrive within this window are applied together in one transaction. */
  heartbeatBatchMs: number;
  /** Most heartbeats in one batch. */
  heartbeatBatchMax: number;
  /** After this many incremental desired states on a stream, the next one is complete (0: only when needed). */
  desiredCompleteEvery: number;
  /** The fleet's heartbeats should not exceed this rate: the period grows with the fleet (agents/heartbeat-period.ts); 0: never. */
  maxHeartbeatsPerSecond: number;
  /** Most Hellos recorded in one transaction (agents/hellos.ts). */
  helloBatchMax: number;
  /** Workspace status reports and acks that arrive within this window share one transaction (0: those that arrive while the previous one commits). */
  reportBatchMs: number;
  /** Most reports and acks in one batch. */
  reportBatchMax: number;
}

type Env = Record<string, string | undefined>;

export function loadDbTimeouts(env: Env): DbTimeouts {
  return {
    statementMs: envInt(env, 'A4C_DB_STATEMENT_TIMEOUT_MS', 30_000, 0, 3_600_000),
    lockMs: envInt(env, 'A4C_DB_LOCK_TIMEOUT_MS', 10_000, 0, 3_600_000),
    idleInTransactionMs: envInt(env, 'A4C_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS', 60_000, 0, 3_600_000),
  };
}

export function loadAgentPlaneConfig(env: Env): AgentPlaneConfig {
  return {
    helloTimeoutMs: envInt(env, 'A4C_AGENT_HELLO_TIMEOUT_MS', 10_000, 100, 600_000),
    inboxDepth: envInt(env, 'A4C_AGENT_INBOX_DEPTH', 64, 1, 100_000),
    heartbeatBatchMs: envInt(env, 'A4C_HEARTBEAT_BATCH_MS', 50, 0, 1000),
    heartbeatBatchMax: envInt(env, 'A4C_HEARTBEAT_BATCH_MAX', 1000, 1, 10_000),
    desiredCompleteEvery: envInt(env, 'A4C_DESIRED_COMPLETE_EVERY', 100, 0, 1_000_000),
    maxHeartbeatsPerSecond: envInt(env, 'A4C_MAX_HEARTBEATS_PER_SECOND', 1000, 0, 1_000_000),
    helloBatchMax: envInt(env, 'A4C_HELLO_BATCH_MAX', 1000, 1, 10_000),
    reportBatchMs: envInt(env, 'A4C_REPORT_BATCH_MS', 0, 0, 1000),
    reportBatchMax: envInt(env, 'A4C_REPORT_BATCH_MAX', 1000, 1, 10_000),
  };
}

export const AGENT_PLANE_CONFIG_HELP = `  A4C_DB_STATEMENT_TIMEOUT_MS  statements running longer are cancelled, both pools (default 30000; 0: none)
  A4C_DB_LOCK_TIMEOUT_MS    statements waiting longer for a lock are cancelled (default 10000; 0: none)
  A4C_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS  a connection idle inside a transaction this long is closed (default 60000; 0: none)
  A4C_AGENT_HELLO_TIMEOUT_MS  an agent stream without a Hello this long is refused (default 10000)
  A4C_AGENT_INBOX_DEPTH     an agent stream's unhandled messages before it is paused (default 64)
  A4C_HEARTBEAT_BATCH_MS    heartbeats arriving within this window share one transaction (default 50; 0: apply each at once)
  A4C_HEARTBEAT_BATCH_MAX   most heartbeats in one transaction (default 1000)
  A4C_DESIRED_COMPLETE_EVERY  after this many desired-state deltas on a stream the next is complete (default 100; 0: only when needed)
  A4C_MAX_HEARTBEATS_PER_SECOND  the fleet's target heartbeat rate: a new session's period is hosts (connected or saying Hello) / this, never below A4C_HEARTBEAT_MS (default 1000; 0: always A4C_HEARTBEAT_MS)
  A4C_HELLO_BATCH_MAX       most agent Hellos recorded in one transaction (default 1000)
  A4C_REPORT_BATCH_MS       workspace status reports and acks arriving within this window share one transaction (default 0: those arriving while the previous batch commits)
  A4C_REPORT_BATCH_MAX      most status reports and acks in one transaction (default 1000)`;
