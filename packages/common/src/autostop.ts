/**
 * Why a running workspace is not stopped yet (GET /v1/workspaces/{id} keptAliveBecause),
 * so that autostop never surprises its owner. Each entry has a sentence for people.
 */
export type KeepAliveReason =
  /** Open exec/shell/port-forward/ssh sessions of one kind by one principal. */
  | { reason: 'open-sessions'; kind: string; actor: string; count: number; message: string }
  /** The latest CPU sample is at or above A4C_AUTOSTOP_CPU_PERCENT (100 = one core). */
  | { reason: 'cpu'; cpuPercent: number; thresholdPercent: number; sampledAt: string; message: string }
  /** The idle period counts from this moment: a session's traffic or end, busy CPU, or the start. */
  | { reason: 'recent-activity'; source: 'session' | 'cpu' | 'started'; at: string; message: string };

/** The autostop and dormancy fields of a workspace, as GET /v1/workspaces/{id} shows them. */
export interface AutostopView {
  /** The idle period in force (the workspace's own, else its tier's); null: never stopped for idleness. */
  autostopAfterSeconds: number | null;
  /** When it is stopped if nothing keeps it alive from now on; null: never (or it is not running). */
  autostopAt: string | null;
  keptAliveBecause: KeepAliveReason[];
  /** Stopped and unused long enough to be marked dormant; null: not dormant. */
  dormantAt: string | null;
  /** A dormant workspace is deleted then (A4C_DELETE_DORMANT_AFTER_SECONDS); null: never. */
  deleteAt: string | null;
}
