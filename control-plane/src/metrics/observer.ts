/**
 * What the domain code tells the metrics about as it happens: events only one replica
 * sees (the one whose transaction made the change), counted per replica; Prometheus
 * sums them over replicas. Fleet-wide state (workspaces by status, hosts, the build
 * queue) is not reported here: every replica reads it from PostgreSQL when scraped.
 *
 * Outcomes (created, built) are reported after their transaction committed; placement
 * attempts as they happen, whatever becomes of the request. A plain interface, so the domain code does not depend on the metrics library.
 */
export interface Observer {
  /** A workspace's creation ended: RUNNING `seconds` after it was requested (or approved, or retried), or FAILED on the way. */
  workspaceCreated(result: 'success' | 'failed', seconds?: number): void;
  /** An image build ended with this result (a late result of a lost claim is not one). */
  imageBuilt(result: 'success' | 'failed'): void;
  /** A placement attempt found hosts that fit, every one locked by a concurrent placement. */
  placementConflict(): void;
  /** A placement attempt is repeated after a conflict. */
  placementRetry(): void;
  /** A placement ended: a host was reserved, nothing fits, or contention outlasted the patience. */
  placement(result: 'placed' | 'no_capacity' | 'busy'): void;
}

export const NO_OBSERVER: Observer = {
  workspaceCreated: () => undefined,
  imageBuilt: () => undefined,
  placementConflict: () => undefined,
  placementRetry: () => undefined,
  placement: () => undefined,
};
