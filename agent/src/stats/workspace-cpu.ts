import type { Logger } from '@a4c/common';
import type { WorkspaceCpu } from '@a4c/proto';
import type { ContainerRuntime } from '../runtime/runtime.js';

/** Containers read at once: a host with many workspaces must not flood its engine. */
const CONCURRENCY = 4;

/**
 * Samples the CPU use of this host's running workspaces on the period the control plane
 * asks for in its Welcome (0: not at all), for idle autostop. Each sample is the
 * average over the time since the previous reading of the same container (100 = one
 * core), from the engine's cumulative CPU counter: one cheap one-shot stats call per
 * running container per period, never one per heartbeat. The next heartbeat carries a
 * new sample once; between samples heartbeats carry none.
 */
export class WorkspaceCpuSampler {
  private periodMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly last = new Map<string, { usageNs: number; atMs: number }>();
  private fresh: WorkspaceCpu[] | undefined;

  constructor(
    private readonly runtime: ContainerRuntime,
    private readonly log: Logger,
  ) {}

  /** The period from the control plane's Welcome; a change restarts the timer. */
  setPeriod(ms: number): void {
    if (ms === this.periodMs) return;
    this.periodMs = ms;
    clearInterval(this.timer);
    this.timer = undefined;
    this.last.clear();
    this.fresh = undefined;
    if (ms > 0) {
      this.timer = setInterval(() => void this.sample(), ms);
      this.timer.unref();
      void this.sample();
    }
  }

  /** The samples taken since the last call, once. */
  take(): WorkspaceCpu[] {
    const out = this.fresh ?? [];
    this.fresh = undefined;
    return out;
  }

  stop(): void {
    this.setPeriod(0);
  }

  private sample(): Promise<void> {
    return (this.running ??= this.pass()
      .catch((e: unknown) => this.log.debug({ err: (e as Error).message }, 'workspace CPU sampling failed'))
      .finally(() => {
        this.running = undefined;
      }));
  }

  private async pass(): Promise<void> {
    const running = (await this.runtime.listOwned()).filter((c) => c.state === 'running');
    const out: WorkspaceCpu[] = [];
    const seen = new Set<string>();
    const queue = [...running];
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        seen.add(c.id);
        const now = await this.runtime.cpuUsage(c.id).catch(() => undefined);
        if (!now) continue;
        const prev = this.last.get(c.id);
        this.last.set(c.id, now);
        const dt = prev ? now.atMs - prev.atMs : 0;
        if (prev && dt > 0 && now.usageNs >= prev.usageNs) {
          out.push({ workspaceId: c.workspaceId, cpuPercent: ((now.usageNs - prev.usageNs) / 1e6 / dt) * 100 });
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    for (const id of this.last.keys()) if (!seen.has(id)) this.last.delete(id);
    if (this.periodMs > 0 && out.length) this.fresh = [...(this.fresh ?? []).filter((f) => !out.some((o) => o.workspaceId === f.workspaceId)), ...out];
  }
}
