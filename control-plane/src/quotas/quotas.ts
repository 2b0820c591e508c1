import { A4cError } from '@a4c/common';
import { systemClock, type Clock } from '../clock.js';
import type { QuotaLimits } from '../config.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { countsForQuotaSql } from '../workspaces/states.js';

export type QuotaSource = 'user' | 'team' | 'default';
export type QuotaKey = keyof QuotaLimits;

export interface QuotaOverride {
  maxWorkspaces: number | null;
  maxDiskGb: number | null;
  maxConcurrentBuilds: number | null;
}

export interface UserQuotaView {
  userId: string;
  teamId: string | null;
  limits: QuotaLimits;
  /** Where each limit comes from: the user's override, the team's default, or the control plane's. */
  source: Record<QuotaKey, QuotaSource>;
  /** The user's own overrides (null: inherited). */
  overrides: QuotaOverride;
  usage: { workspaces: number; diskGb: number; concurrentBuilds: number };
}

const COLUMNS: Record<QuotaKey, string> = {
  maxWorkspaces: 'max_workspaces',
  maxDiskGb: 'max_disk_gb',
  maxConcurrentBuilds: 'max_concurrent_builds',
};

/**
 * Which workspaces count against quotas: the state table's quota rule (from the request
 * until deleted, rejected or lost; a FAILED one only until $2, its grace's end).
 */
const COUNTED_SQL = countsForQuotaSql('w', '$2::timestamptz');

interface QuotaRow {
  team_id: string | null;
  u_ws: number | null;
  u_disk: number | null;
  u_builds: number | null;
  t_ws: number | null;
  t_disk: number | null;
  t_builds: number | null;
  workspaces: number;
  disk_gb: number;
  builds: number;
}

const ALIAS: Record<QuotaKey, 'ws' | 'disk' | 'builds'> = { maxWorkspaces: 'ws', maxDiskGb: 'disk', maxConcurrentBuilds: 'builds' };

export class Quotas {
  constructor(
    private readonly db: Db,
    private readonly defaults: QuotaLimits,
    private readonly createRate: { perMinute: number; burst: number } = { perMinute: 0, burst: 1 },
    /** A FAILED workspace stops counting this long after it failed. */
    private readonly failedGrace: { seconds: number; clock: Clock } = { seconds: 86_400, clock: systemClock },
  ) {}

  /** What a placement batch (placement/batch.ts) checks, the same rules as checkWorkspace and takeCreation. */
  get rules(): { defaults: QuotaLimits; createRate: { perMinute: number; burst: number }; failedGrace: { seconds: number; clock: Clock } } {
    return { defaults: this.defaults, createRate: this.createRate, failedGrace: this.failedGrace };
  }

  /** Makes sure the user exists and locks their row: quota checks of one user take turns. */
  async lockUser(tx: Tx, userId: string): Promise<void> {
    await tx.query('INSERT INTO users AS u (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET updated_at = u.updated_at', [userId]);
  }

  /** except: a workspace left out of the usage (one being retried, checked as if new). */
  async view(db: Db | Tx, userId: string, except: string | null = null): Promise<UserQuotaView> {
    const { rows } = await db.query<QuotaRow>(
      `SELECT u.team_id,
              uq.max_workspaces AS u_ws, uq.max_disk_gb AS u_disk, uq.max_concurrent_builds AS u_builds,
              tq.max_workspaces AS t_ws, tq.max_disk_gb AS t_disk, tq.max_concurrent_builds AS t_builds,
              (SELECT count(*)::int FROM workspaces w WHERE w.user_id = $1 AND w.id IS DISTINCT FROM $3::uuid AND ${COUNTED_SQL}) AS workspaces,
              (SELECT COALESCE(sum(w.disk_gb), 0)::float8 FROM workspaces w WHERE w.user_id = $1 AND w.id IS DISTINCT FROM $3::uuid AND ${COUNTED_SQL}) AS disk_gb,
              (SELECT count(*)::int FROM image_builds b WHERE b.user_id = $1 AND b.status IN ('SCHEDULED', 'IN_PROGRESS')) AS builds
         FROM (SELECT $1::text AS id) me
         LEFT JOIN users u ON u.id = me.id
         LEFT JOIN user_quotas uq ON uq.user_id = me.id
         LEFT JOIN team_quotas tq ON tq.team_id = u.team_id`,
      [userId, new Date(this.failedGrace.clock.now().getTime() - this.failedGrace.seconds * 1000), except],
    );
    const r = rows[0] as QuotaRow;
    const limits = {} as QuotaLimits;
    const source = {} as Record<QuotaKey, QuotaSource>;
    const overrides = {} as QuotaOverride;
    for (const key of Object.keys(COLUMNS) as QuotaKey[]) {
      const u = r[`u_${ALIAS[key]}`];
      const t = r[`t_${ALIAS[key]}`];
      overrides[key] = u;
      limits[key] = u ?? t ?? this.defaults[key];
      source[key] = u !== null ? 'user' : t !== null ? 'team' : 'default';
    }
    return {
      userId,
      teamId: r.team_id,
      limits,
      source,
      overrides,
      usage: { workspaces: r.workspaces, diskGb: r.disk_gb, concurrentBuilds: r.builds },
    };
  }

  /**
   * Refuses a new workspace that would take the user past a limit. Call after lockUser
   * in the transaction that inserts the workspace: the lock makes check and insert one
   * step, so ten concurrent requests from a user with room for two yield two.
   */
  async checkWorkspace(tx: Tx, userId: string, diskGb: number, except: string | null = null): Promise<void> {
    const q = await this.view(tx, userId, except);
    if (q.usage.workspaces + 1 > q.limits.maxWorkspaces) {
      throw exceeded(userId, 'maxWorkspaces', q.usage.workspaces, q.limits.maxWorkspaces, 'workspaces', 'delete a workspace you no longer use (a4c ws rm ID)');
    }
    if (q.usage.diskGb + diskGb > q.limits.maxDiskGb) {
      throw exceeded(userId, 'maxDiskGb', q.usage.diskGb, q.limits.maxDiskGb, 'GB of workspace disk', `choose a smaller tier or delete a workspace; this one needs ${diskGb} GB`);
    }
  }

  /**
   * The per-user creation rate, as a generic cell rate algorithm: creations are spaced
   * 60/perMinute seconds apart on average, and a user who has been quiet may make
   * `burst` at once. Call after lockUser, in the creating transaction: the state lives
   * on the user's row, so the limit holds across replicas, and a creation that is
   * refused later (no capacity) rolls back and costs nothing.
   */
  async takeCreation(tx: Tx, userId: string): Promise<void> {
    const { perMinute, burst } = this.createRate;
    if (perMinute <= 0) return;
    const interval = 60 / perMinute;
    const tolerance = (burst - 1) * interval;
    const { rows } = await tx.query<{ ahead: number }>(
      'SELECT EXTRACT(EPOCH FROM GREATEST(COALESCE(create_tat, clock_timestamp()), clock_timestamp()) - clock_timestamp())::float8 AS ahead FROM users WHERE id = $1',
      [userId],
    );
    const ahead = rows[0]?.ahead ?? 0;
    if (ahead > tolerance + 1e-3) throw rateLimited(userId, perMinute, burst, Math.ceil(ahead - tolerance));
    await tx.query(
      'UPDATE users SET create_tat = GREATEST(COALESCE(create_tat, clock_timestamp()), clock_timestamp()) + make_interval(secs => $2) WHERE id = $1',
      [userId, interval],
    );
  }

  async setUser(userId: string, o: Partial<QuotaOverride>, actor: string): Promise<UserQuotaView> {
    await inTx(this.db, async (tx) => {
      await tx.query('INSERT INTO users (id) VALUES ($1) ON CONFLICT DO NOTHING', [userId]);
      const changes = await this.upsert(tx, 'user_quotas', 'user_id', userId, o);
      if (Object.keys(changes).length) {
        await appendEvent(tx, { kind: 'user.quota_updated', actor, reason: `quota overrides set by ${actor}`, userId, changes, data: { userId } });
      }
    });
    return this.view(this.db, userId);
  }

  async team(teamId: string): Promise<{ teamId: string; limits: QuotaLimits; overrides: QuotaOverride; members: number }> {
    const { rows } = await this.db.query<{ max_workspaces: number | null; max_disk_gb: number | null; max_concurrent_builds: number | null; members: number }>(
      `SELECT tq.max_workspaces, tq.max_disk_gb, tq.max_concurrent_builds,
              (SELECT count(*)::int FROM users u WHERE u.team_id = $1) AS members
         FROM (SELECT $1::text AS id) t LEFT JOIN team_quotas tq ON tq.team_id = t.id`,
      [teamId],
    );
    const r = rows[0];
    const overrides: QuotaOverride = {
      maxWorkspaces: r?.max_workspaces ?? null,
      maxDiskGb: r?.max_disk_gb ?? null,
      maxConcurrentBuilds: r?.max_concurrent_builds ?? null,
    };
    return {
      teamId,
      limits: {
        maxWorkspaces: overrides.maxWorkspaces ?? this.defaults.maxWorkspaces,
        maxDiskGb: overrides.maxDiskGb ?? this.defaults.maxDiskGb,
        maxConcurrentBuilds: overrides.maxConcurrentBuilds ?? this.defaults.maxConcurrentBuilds,
      },
      overrides,
      members: r?.members ?? 0,
    };
  }

  async setTeam(teamId: string, o: Partial<QuotaOverride>, actor: string): Promise<ReturnType<Quotas['team']>> {
    await inTx(this.db, async (tx) => {
      const changes = await this.upsert(tx, 'team_quotas', 'team_id', teamId, o);
      if (Object.keys(changes).length) {
        await appendEvent(tx, { kind: 'team.quota_updated', actor, reason: `team default quota set by ${actor}`, changes, data: { teamId } });
      }
    });
    return this.team(teamId);
  }

  /** Only the fields present change; null clears an override back to "inherit". Returns what changed. */
  private async upsert(tx: Tx, table: 'user_quotas' | 'team_quotas', key: string, id: string, o: Partial<QuotaOverride>): Promise<ReturnType<typeof changesOf>> {
    const keys = (Object.keys(COLUMNS) as QuotaKey[]).filter((k) => o[k] !== undefined);
    await tx.query(`INSERT INTO ${table} (${key}) VALUES ($1) ON CONFLICT DO NOTHING`, [id]);
    const { rows } = await tx.query<Record<string, number | null>>(`SELECT * FROM ${table} WHERE ${key} = $1 FOR UPDATE`, [id]);
    const before = Object.fromEntries(keys.map((k) => [k, rows[0]?.[COLUMNS[k]] ?? null]));
    if (!keys.length) return {};
    const sets = keys.map((k, i) => `${COLUMNS[k]} = $${i + 2}`).join(', ');
    await tx.query(`UPDATE ${table} SET ${sets}, updated_at = now() WHERE ${key} = $1`, [id, ...keys.map((k) => o[k])]);
    return changesOf(before, Object.fromEntries(keys.map((k) => [k, o[k] ?? null])));
  }
}

export function rateLimited(userId: string, perMinute: number, burst: number, wait: number): A4cError {
  return new A4cError('RATE_LIMITED', `user ${userId} creates workspaces too fast: at most ${perMinute} per minute after a burst of ${burst}`, {
    limit: 'workspaceCreatesPerMinute',
    retryAfterSeconds: wait,
    suggestion: `try again in ${wait} s, or reuse a stopped workspace (a4c ws start ID)`,
  });
}

export function exceeded(userId: string, limit: QuotaKey, current: number, max: number, unit: string, suggestion: string): A4cError {
  return new A4cError('QUOTA_EXCEEDED', `user ${userId} has ${round(current)} of ${round(max)} ${unit} allowed (${limit})`, {
    limit,
    current: round(current),
    max: round(max),
    suggestion,
  });
}

const round = (n: number) => Math.round(n * 100) / 100;
