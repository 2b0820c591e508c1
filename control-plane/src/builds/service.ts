import { A4cError, notFound, type Arch, type Build, type BuildLogLine, type BuildStatus, type Logger } from '@a4c/common';
import type { Quotas } from '../quotas/quotas.js';
import { inTx, type Db } from '../store/db.js';
import { searchBuilds, type BuildQuery } from '../store/builds.js';
import { appendEvent } from '../store/events.js';
import { cancelBuild, type SendToHost } from './hygiene.js';
import { insertBuild, toBuild, type BuildRow } from './queue.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const LOG_TAIL = 50;

export interface ScheduleInput {
  userId: string;
  imageName: string;
  project: string;
  arch: Arch;
  changeNumber: string;
}


/** The user-facing side of image builds; the agent side is in queue.ts and the agent sessions. */
export class BuildService {
  constructor(
    private readonly db: Db,
    private readonly quotas: Quotas,
    private readonly log: Logger,
    /** Reaches a build's worker now when this replica holds its stream (cancel). */
    private readonly sendToHost: SendToHost = () => false,
  ) {}

  /** Cancels a queued or running build (409 once it has finished). */
  cancel(id: string, actor: string): Promise<Build> {
    return cancelBuild(this.db, this.sendToHost, id, actor, this.log);
  }

  /** Queues a build, refusing it if the user already has their maximum of builds queued or running. */
  async schedule(input: ScheduleInput, actor: string): Promise<Build> {
    const row = await inTx(this.db, async (tx) => {
      await this.quotas.lockUser(tx, input.userId);
      const q = await this.quotas.view(tx, input.userId);
      if (q.usage.concurrentBuilds + 1 > q.limits.maxConcurrentBuilds) {
        throw new A4cError(
          'QUOTA_EXCEEDED',
          `user ${input.userId} has ${q.usage.concurrentBuilds} of ${q.limits.maxConcurrentBuilds} concurrent builds allowed (maxConcurrentBuilds)`,
          { limit: 'maxConcurrentBuilds', current: q.usage.concurrentBuilds, max: q.limits.maxConcurrentBuilds, suggestion: 'wait for a build to finish (a4c build list)' },
        );
      }
      const b = await insertBuild(tx, input);
      await appendEvent(tx, {
        kind: 'build.scheduled',
        actor,
        reason: `build of ${b.project} at ${b.change_number} for ${b.arch} queued`,
        buildId: b.id,
        userId: b.user_id,
        changes: { status: { from: null, to: b.status } },
        data: { buildId: b.id, imageTag: b.image_tag, project: b.project, arch: b.arch, changeNumber: b.change_number },
      });
      return b;
    });
    this.log.info({ buildId: row.id, userId: row.user_id, arch: row.arch, imageTag: row.image_tag }, 'build scheduled');
    return toBuild(row);
  }

  async get(id: string): Promise<Build> {
    const row = UUID.test(id) ? (await this.db.query<BuildRow>('SELECT * FROM image_builds WHERE id = $1', [id])).rows[0] : undefined;
    if (!row) throw notFound('image build', id, 'list builds with `a4c build list`');
    const { rows } = await this.db.query<{ line: string }>(
      'SELECT line FROM (SELECT seq, line FROM build_logs WHERE build_id = $1 ORDER BY seq DESC LIMIT $2) t ORDER BY seq',
      [id, LOG_TAIL],
    );
    return toBuild(row, rows.map((r) => r.line));
  }

  async list(f: BuildQuery): Promise<{ builds: Build[]; nextCursor: string | null }> {
    const { rows, nextCursor } = await searchBuilds(this.db, f);
    return { builds: rows.map((r) => toBuild(r)), nextCursor };
  }

  /** Log lines after a sequence number, for following a build as it runs. */
  async logs(id: string, after: number, limit: number): Promise<{ status: BuildStatus; lines: BuildLogLine[] }> {
    const b = await this.get(id);
    const { rows } = await this.db.query<{ seq: number; at: Date; line: string }>(
      'SELECT seq, at, line FROM build_logs WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [id, after, limit],
    );
    return { status: b.status, lines: rows.map((r) => ({ seq: r.seq, at: r.at.toISOString(), line: r.line })) };
  }
}
