/**
 * The heartbeat period a new agent session is told in its Welcome, as Nomad scales its
 * heartbeat TTL (nomad/heartbeat.go, helper.RateScaledInterval): the fleet's heartbeats
 * should arrive at no more than maxPerSecond in total, so the period is the number of
 * hosts heartbeating (connected, and those whose Hello waits to be recorded) divided by
 * that rate, never below the configured minimum (A4C_HEARTBEAT_MS). maxPerSecond 0: the
 * minimum, whatever the fleet.
 *
 * A session keeps its period for its life (the Welcome is sent once), and its liveness
 * window (period × miss limit) is stored with it (host_status.live_within_seconds), so
 * every liveness check judges it by its own period: a longer period never makes a host
 * look dead. A fleet that grows over time ends with a total rate somewhat above
 * maxPerSecond (the first sessions got shorter periods); it settles as sessions renew.
 */
export function heartbeatPeriodMs(connectedHosts: number, minMs: number, maxPerSecond: number): number {
  if (!(maxPerSecond > 0)) return minMs;
  return Math.min(MAX_PERIOD_MS, Math.max(minMs, Math.ceil((connectedHosts / maxPerSecond) * 1000)));
}

/** A host is never told to stay silent longer than this (the longest A4C_HEARTBEAT_MS accepts). */
export const MAX_PERIOD_MS = 600_000;
