import { A4cError, type Logger, type Tier } from '@a4c/common';
import type { Principal } from '../auth/principals.js';
import type { Clock } from '../clock.js';
import type { AutostopConfig } from '../config.js';
import type { EventKind } from '../events/kinds.js';
import { notifyWorkspace } from '../events/notify.js';
import {
  decideLocked,
  findDecisions,
  markDormant,
  markWarned,
  recordCpuSamples,
  type AutostopAction,
  type AutostopDecision,
  type AutostopPolicy,
} from '../store/autostop.js';
import { inTx, type Db, type Tx } from '../store/db.js';
import { appendEvent } from '../store/events.js';
import type { WorkspaceService } from './service.js';

/** Decisions acted on per sweep at most; the rest wait for the next sweep. */
const SWEEP_LIMIT = 500;
const ACTOR = 'control-plane';

const iso = (d: Date | number) => new Date(d).toISOString();

/**
 * Idle autostop and dormancy. Every replica sweeps on A4C_AUTOSTOP_SWEEP_MS: one query
 * finds what is due across the fleet (store/autostop.ts), then each decision is made
 * again and acted on in its own transaction under the workspace's row lock, so several
 * replicas never warn or stop twice. Stops and deletions go through the workspace
 * service's normal transitions. Time is the injected clock's.
 */
export class Autostop {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;
  readonly tierPeriods: Record<string, number>;

  constructor(
    private readonly db: Db,
    private readonly workspaces: WorkspaceService,
    tiers: Map<string, Tier>,
    readonly config: AutostopConfig,
    readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.tierPeriods = Object.fromEntries([...tiers.values()].filter((t) => t.autostopAfterSeconds).map((t) => [t.name, t.autostopAfterSeconds as number]));
  }

  policy(): AutostopPolicy {
    const c = this.config;
    return {
      now: new Date(this.clock.now()),
      tierPeriods: this.tierPeriods,
      warningSeconds: c.warningSeconds,
      dormantAfterSeconds: c.dormantAfterSeconds,
      deleteDormantAfterSeconds: c.deleteDormantAfterSeconds,
      dormantWarningSeconds: c.dormantWarningSeconds,
    };
  }

  start(): void {
    this.timer = setInterval(() => void this.sweep().catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'autostop sweep failed')), this.config.sweepMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sweeping?.catch(() => undefined);
  }

  /** One pass; returns how many decisions were acted on. Passes never overlap on a replica. */
  sweep(): Promise<number> {
    return (this.sweeping ??= this.pass().finally(() => {
      this.sweeping = undefined;
    }));
  }

  private async pass(): Promise<number> {
    const decisions = await findDecisions(this.db, this.policy(), SWEEP_LIMIT);
    let done = 0;
    for (const d of decisions) {
      try {
        if (await this.act(d)) done++;
      } catch (e) {
        this.log.warn({ workspaceId: d.id, action: d.action, err: (e as Error).message }, 'autostop decision failed');
      }
    }
    if (done) this.log.info({ decisions: done }, 'autostop sweep acted');
    return done;
  }

  private async act(found: AutostopDecision): Promise<boolean> {
    const action = found.action;
    if (action === 'stop' || action === 'delete') {
      let acted = false;
      const kind: EventKind = action === 'stop' ? 'workspace.autostopped' : 'workspace.dormant_deleted';
      const guard = {
        reason: action === 'stop' ? `autostop: ${this.idleText(found)}` : `dormant since ${iso(found.dormant_at ?? 0)}: deleted (A4C_DELETE_DORMANT_AFTER_SECONDS)`,
        still: async (tx: Tx) => {
          const d = await decideLocked(tx, this.policy(), found.id, true);
          if (d?.action !== action) return false;
          await appendEvent(tx, { kind, actor: ACTOR, reason: this.actText(d), workspaceId: d.id, hostId: d.host_id, data: this.data(d) });
          acted = true;
          return true;
        },
      };
      if (action === 'stop') await this.workspaces.stop(found.id, ACTOR, guard);
      else await this.workspaces.delete(found.id, ACTOR, guard);
      if (acted) this.log.info({ workspaceId: found.id, action }, action === 'stop' ? 'idle workspace stopped' : 'dormant workspace deleted');
      return acted;
    }
    return inTx(this.db, async (tx) => {
      const policy = this.policy();
      const d = await decideLocked(tx, policy, found.id, false);
      if (d?.action !== action) return false;
      if (action === 'dormant') await markDormant(tx, d.id, policy.now);
      else await markWarned(tx, d.id, action as 'warn' | 'dormant_warning' | 'delete_warning', policy.now);
      await appendEvent(tx, {
        kind: EVENT_OF[action],
        actor: ACTOR,
        reason: this.actText(d),
        workspaceId: d.id,
        hostId: d.host_id,
        changes: action === 'dormant' ? { dormantAt: { from: null, to: iso(policy.now) } } : {},
        data: this.data(d),
      });
      await notifyWorkspace(tx, d.id);
      return true;
    });
  }

  private idleText(d: AutostopDecision): string {
    const cpu = this.config.cpuPercent !== undefined ? `, CPU below ${this.config.cpuPercent}% of a core` : '';
    return `idle since ${iso(d.idle_since)} (no open session, no session traffic${cpu}); its autostopAfterSeconds is ${d.period}`;
  }

  private actText(d: AutostopDecision): string {
    switch (d.action) {
      case 'warn':
        return `${this.idleText(d)}: it will be stopped at ${iso(d.act_at)} unless it is used (open a session, or raise autostopAfterSeconds with a4c ws autostop)`;
      case 'stop':
        return `stopped for idleness: ${this.idleText(d)}; start it again with a4c ws start`;
      case 'dormant_warning':
        return `stopped and unused since ${iso(d.unused_since)}: it will be marked dormant at ${iso(d.act_at)} unless it is started`;
      case 'dormant':
        return `stopped and unused since ${iso(d.unused_since)} (A4C_DORMANT_AFTER_SECONDS ${this.config.dormantAfterSeconds}): dormant; starting it clears that`;
      case 'delete_warning':
        return `dormant since ${iso(d.dormant_at ?? 0)}: it will be deleted at ${iso(d.act_at)} unless it is started (the user's volume stays)`;
      case 'delete':
        return `dormant since ${iso(d.dormant_at ?? 0)} (A4C_DELETE_DORMANT_AFTER_SECONDS ${this.config.deleteDormantAfterSeconds}): deleted; the user's volume stays`;
    }
  }

  private data(d: AutostopDecision): Record<string, unknown> {
    if (d.action === 'warn' || d.action === 'stop') {
      return { idleSince: iso(d.idle_since), autostopAfterSeconds: d.period, stopAt: iso(d.act_at), cpuThresholdPercent: this.config.cpuPercent ?? null };
    }
    if (d.action === 'dormant_warning' || d.action === 'dormant') {
      return { unusedSince: iso(d.unused_since), dormantAfterSeconds: this.config.dormantAfterSeconds, dormantAt: iso(d.act_at) };
    }
    return { dormantAt: iso(d.dormant_at ?? 0), deleteDormantAfterSeconds: this.config.deleteDormantAfterSeconds ?? null, deleteAt: iso(d.act_at) };
  }

  /** An agent's CPU samples, timed by the clock (only kept when a threshold is set). */
  async recordCpu(db: Db, hostId: string, samples: { workspaceId: string; cpuPercent: number }[]): Promise<void> {
    if (this.config.cpuPercent === undefined) return;
    await recordCpuSamples(db, hostId, samples, new Date(this.clock.now()), this.config.cpuPercent);
  }

  /** The agents' CPU sampling period; 0 (do not sample) when CPU does not count. */
  get cpuSampleMs(): number {
    return this.config.cpuPercent === undefined ? 0 : this.config.cpuSampleMs;
  }

  /**
   * A user may shorten their workspace's idle period; only an admin may lengthen it past
   * the tier's or turn autostop off where the tier has it: the tier is how an operator
   * gets idle hosts' memory back.
   */
  checkOverride(p: Principal, tier: string, seconds: number | null): void {
    const tierPeriod = this.tierPeriods[tier] ?? 0;
    if (p.role === 'admin' || tierPeriod === 0) return;
    const wanted = seconds ?? 0;
    if (wanted === 0 || wanted > tierPeriod) {
      throw new A4cError(
        'PERMISSION_DENIED',
        `autostopAfterSeconds: tier ${tier} stops idle workspaces after ${tierPeriod} s; only an admin may set a longer period or turn autostop off`,
        { field: 'autostopAfterSeconds', suggestion: `choose at most ${tierPeriod}, or ask an admin` },
      );
    }
  }
}

const EVENT_OF: Record<Exclude<AutostopAction, 'stop' | 'delete'>, EventKind> = {
  warn: 'workspace.autostop_warning',
  dormant_warning: 'workspace.dormant_warning',
  dormant: 'workspace.dormant',
  delete_warning: 'workspace.dormant_delete_warning',
};
