/**
 * The statements of a placement batch (placement/batch.ts): each reads or writes one
 * table for every request of the batch at once (arrays through unnest), so a batch of
 * several hundred creates costs about ten statements, not twenty per create.
 */
import type { PlacementPolicy } from '../placement/placement.js';
import { HOST_FITS } from '../placement/placement.js';
import { countsForQuotaSql } from '../workspaces/states.js';
import type { Tx } from './db.js';
import type { WorkspaceRow } from './workspaces.js';

/**
 * Makes sure every user exists and locks their rows, in id order so that two batches
 * (two replicas) never wait on each other in a cycle. The single-create path locks
 * one user row the same way: quota checks and rate take turns per user.
 */
export async function lockUsers(tx: Tx, userIds: string[]): Promise<void> {
  await tx.query(
    `INSERT INTO users AS u (id) SELECT DISTINCT x FROM unnest($1::text[]) x ORDER BY x
     ON CONFLICT (id) DO UPDATE SET updated_at = u.updated_at`,
    [userIds],
  );
}

export interface UserQuotaRow {
  id: string;
  u_ws: number | null;
  u_disk: number | null;
  t_ws: number | null;
  t_disk: number | null;
  workspaces: number;
  disk_gb: number;
  /** Seconds the user's creation-rate "theoretical arrival time" is ahead of now (0 if behind). */
  ahead: number;
}

const COUNTED_SQL = countsForQuotaSql('w', '$2::timestamptz');

/** Per user: the workspace limits (user and team overrides), what counts now, and the creation-rate state. Call after lockUsers. */
export async function readUserQuotas(tx: Tx, userIds: string[], failedBefore: Date): Promise<UserQuotaRow[]> {
  const { rows } = await tx.query<UserQuotaRow>(
    `SELECT me.id,
            uq.max_workspaces AS u_ws, uq.max_disk_gb AS u_disk, tq.max_workspaces AS t_ws, tq.max_disk_gb AS t_disk,
            (SELECT count(*)::int FROM workspaces w WHERE w.user_id = me.id AND ${COUNTED_SQL}) AS workspaces,
            (SELECT COALESCE(sum(w.disk_gb), 0)::float8 FROM workspaces w WHERE w.user_id = me.id AND ${COUNTED_SQL}) AS disk_gb,
            EXTRACT(EPOCH FROM GREATEST(COALESCE(u.create_tat, clock_timestamp()), clock_timestamp()) - clock_timestamp())::float8 AS ahead
       FROM unnest($1::text[]) me(id)
       JOIN users u ON u.id = me.id
       LEFT JOIN user_quotas uq ON uq.user_id = me.id
       LEFT JOIN team_quotas tq ON tq.team_id = u.team_id`,
    [userIds, failedBefore],
  );
  return rows;
}

/** Moves each user's creation-rate state to now + ahead seconds (the creations the batch took). */
export async function writeCreationRates(tx: Tx, userIds: string[], ahead: number[]): Promise<void> {
  if (!userIds.length) return;
  await tx.query(
    `UPDATE users u SET create_tat = clock_timestamp() + make_interval(secs => v.ahead)
       FROM unnest($1::text[], $2::float8[]) v(id, ahead) WHERE u.id = v.id`,
    [userIds, ahead],
  );
}

/** Which of these (user, name) pairs are taken by a workspace that is not deleted. */
export async function takenNames(tx: Tx, userIds: string[], names: string[]): Promise<Set<string>> {
  const { rows } = await tx.query<{ user_id: string; name: string }>(
    `SELECT w.user_id, w.name FROM workspaces w JOIN unnest($1::text[], $2::text[]) p(u, n) ON w.user_id = p.u AND w.name = p.n
      WHERE w.status <> 'DELETED'`,
    [userIds, names],
  );
  return new Set(rows.map((r) => `${r.user_id}\u0000${r.name}`));
}

/** The newest image built for each (project, arch), as the single create picks it. */
export async function newestProjectImages(tx: Tx, projects: string[], arches: string[]): Promise<Map<string, string>> {
  const { rows } = await tx.query<{ project: string; arch: string; ref: string | null }>(
    `SELECT p.project, p.arch,
            (SELECT ref FROM (SELECT ref, created_at FROM host_images WHERE project = p.project AND arch = p.arch
                              UNION ALL
                              SELECT ref, created_at FROM registry_images WHERE project = p.project AND arch = p.arch) i
              ORDER BY created_at DESC NULLS LAST, ref DESC LIMIT 1) AS ref
       FROM unnest($1::text[], $2::text[]) p(project, arch)`,
    [projects, arches],
  );
  const out = new Map<string, string>();
  for (const r of rows) if (r.ref) out.set(`${r.project}\u0000${r.arch}`, r.ref);
  return out;
}

/** A host a batch may place on, locked by it, with what is still unreserved. */
export interface CandidateHost {
  id: string;
  revision: number;
  disk_percent: number;
  memory_percent: number;
  reserved_workspaces: number;
  free_memory_mb: number;
  free_millicpus: number;
  free_disk_mb: number;
}

/**
 * Locks up to `limit` hosts that fit the demand, in placement order (least disk, then
 * memory, then fewest workspaces), skipping hosts other placements hold: the same
 * filter as placement.ts's candidates, and the same reason it never over-commits (the
 * capacity check is in the WHERE of the locking statement, re-checked against the
 * newest version of a row locked after it changed). Returns their free capacity as
 * of the lock; the batch subtracts what it places from there. only: restrict to these
 * hosts (the ones holding a user's volume for the project); except: hosts the batch
 * already holds.
 */
export async function lockCandidateHosts(
  tx: Tx,
  d: { arch: string; image: string; memoryMb: number; millicpus: number; diskMb: number },
  p: PlacementPolicy,
  limit: number,
  hosts: { only?: string[]; except?: string[] },
): Promise<CandidateHost[]> {
  const { rows } = await tx.query<CandidateHost>(
    `SELECT h.id, h.revision, s.disk_percent, s.memory_percent, h.reserved_workspaces,
            (floor(h.memory_bytes / 1048576.0 * $6) - h.reserved_memory_mb)::float8 AS free_memory_mb,
            (floor(h.cpus * 1000 * $6) - h.reserved_millicpus)::float8 AS free_millicpus,
            (floor(h.disk_bytes / 1048576.0 * $6) - h.reserved_disk_mb)::float8 AS free_disk_mb
       FROM host_status s JOIN hosts h ON h.id = s.host_id
      WHERE ${HOST_FITS}
        AND ($11::text[] IS NULL OR h.id = ANY($11::text[]))
        AND NOT (h.id = ANY($12::text[]))
      ORDER BY s.disk_percent, s.memory_percent, h.reserved_workspaces, h.id
      LIMIT $10
      FOR UPDATE OF h SKIP LOCKED`,
    [d.arch, d.image, p.liveWithinSeconds, p.maxDiskPercent, p.maxMemoryPercent, 1 - p.headroom, d.memoryMb, d.millicpus, d.diskMb, limit, hosts.only ?? null, hosts.except ?? []],
  );
  return rows;
}

/** The hosts holding a volume of these (user, project) pairs. */
export async function volumeHosts(tx: Tx, userIds: string[], projects: string[]): Promise<{ user_id: string; project: string; host_id: string }[]> {
  const { rows } = await tx.query<{ user_id: string; project: string; host_id: string }>(
    `SELECT v.user_id, v.project, v.host_id FROM volumes v JOIN unnest($1::text[], $2::text[]) p(u, pr) ON v.user_id = p.u AND v.project = p.pr`,
    [userIds, projects],
  );
  return rows;
}

/** One revision step per host that got workspaces: the agent's next desired state holds all of them. */
export async function bumpRevisions(tx: Tx, hostIds: string[]): Promise<Map<string, number>> {
  const { rows } = await tx.query<{ id: string; revision: number }>(
    `UPDATE hosts h SET revision = h.revision + 1, updated_at = now() FROM unnest($1::text[]) x(id) WHERE h.id = x.id RETURNING h.id, h.revision`,
    [hostIds],
  );
  return new Map(rows.map((r) => [r.id, r.revision]));
}

export interface NewWorkspace {
  id: string;
  userId: string;
  name: string;
  projectName: string;
  arch: string;
  tier: string;
  image: string;
  changeNumber: string | null;
  status: 'CREATING' | 'PENDING_APPROVAL';
  hostId: string | null;
  hostname: string;
  memoryMb: number;
  cpus: number;
  diskGb: number;
  pidsLimit: number;
  desiredRevision: number;
  readOnlyRootFs: boolean;
  runAsUser: string | null;
  runAsNonRoot: boolean;
  /** null: the tier's (the column's default). */
  autostopAfterSeconds: number | null;
}

/** Inserts the batch's workspaces in one statement; the statement trigger (migration 110) adds their reservations to their hosts. */
export async function insertWorkspaces(tx: Tx, ws: NewWorkspace[]): Promise<WorkspaceRow[]> {
  const col = <K extends keyof NewWorkspace>(k: K) => ws.map((w) => w[k]);
  const { rows } = await tx.query<WorkspaceRow>(
    `INSERT INTO workspaces (id, user_id, name, project_name, arch, tier, image, change_number, status, host_id,
                             hostname, memory_mb, cpus, disk_gb, pids_limit, desired_revision,
                             read_only_rootfs, run_as_user, run_as_non_root, autostop_after_seconds)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                          $11::text[], $12::int[], $13::float8[], $14::float8[], $15::int[], $16::bigint[],
                          $17::bool[], $18::text[], $19::bool[], $20::int[])
     RETURNING *`,
    [
      col('id'), col('userId'), col('name'), col('projectName'), col('arch'), col('tier'), col('image'), col('changeNumber'), col('status'), col('hostId'),
      col('hostname'), col('memoryMb'), col('cpus'), col('diskGb'), col('pidsLimit'), col('desiredRevision'),
      col('readOnlyRootFs'), col('runAsUser'), col('runAsNonRoot'), col('autostopAfterSeconds'),
    ],
  );
  return rows;
}

export interface BulkEvent {
  kind: string;
  actor: string;
  reason: string;
  workspaceId: string;
  hostId: string | null;
  userId: string;
  changes: Record<string, unknown>;
  data: Record<string, unknown>;
}

/** Appends the batch's events in one statement (the events statement trigger NOTIFYs once). */
export async function appendEvents(tx: Tx, es: BulkEvent[]): Promise<void> {
  await tx.query(
    `INSERT INTO events (kind, actor, reason, workspace_id, host_id, user_id, changes, data)
     SELECT k, a, r, w, h, u, c::jsonb, d::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[]) t(k, a, r, w, h, u, c, d)`,
    [
      es.map((e) => e.kind),
      es.map((e) => e.actor),
      es.map((e) => e.reason),
      es.map((e) => e.workspaceId),
      es.map((e) => e.hostId),
      es.map((e) => e.userId),
      es.map((e) => JSON.stringify(e.changes)),
      es.map((e) => JSON.stringify(e.data)),
    ],
  );
}

/** NOTIFY on each (channel, payload) pair, delivered at commit. */
export async function notifyMany(tx: Tx, channels: string[], payloads: string[]): Promise<void> {
  if (!channels.length) return;
  await tx.query('SELECT count(pg_notify(c, p)) FROM unnest($1::text[], $2::text[]) t(c, p)', [channels, payloads]);
}
