import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type Docker from 'dockerode';
import { LABEL_IMAGE_BUILD_ID, type Logger } from '@a4c/common';
import type { ImagesPruned, PrunedImage } from '@a4c/proto';
import { writeFileAtomic } from '../state/store.js';

export interface ImageGcOptions {
  /** Collect when the disk is at or above this percent... */
  highPercent: number;
  /** ...until it is below this one. */
  lowPercent: number;
  intervalMs: number;
  /** An image used (or, never seen used, created) more recently than this is kept. */
  minAgeSeconds: number;
  stateDir: string;
}

export interface ImageGcDeps {
  docker: Docker;
  /** The disk holding the Docker data root, in percent (stats/collector.ts). */
  diskPercent: () => Promise<number>;
  /** Image references the desired state names; undefined before the first desired state. */
  desiredImages: () => string[] | undefined;
  send: (m: ImagesPruned) => boolean;
  /** Builds running on this host: their images (intermediate or not yet tagged) are never pruned. */
  buildsInFlight?: () => string[];
  now?: () => number;
}

interface Candidate {
  id: string;
  refs: string[];
  size: number;
  lastUsed: number;
}

const statusOf = (e: unknown) => (e as { statusCode?: number }).statusCode;

/**
 * Image garbage collection, after kubelet's: when the host's disk is at or above the
 * high threshold, remove unused A4C-built images (label a4c.build.id; nothing else on
 * the engine is ours to remove), least recently used first, until the disk is below the
 * low threshold. Never an image any container on the engine was made from (running or
 * stopped, ours or not), nor one the desired state names, nor one used within the
 * minimum age, nor one of a build running here. "Last used" is when this agent last saw a container or the desired state
 * use it, kept in <stateDir>/image-usage.json; an image never seen used counts from its
 * creation. Nothing is collected before the first desired state (never act on ignorance).
 */
export class ImageGc {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ImagesPruned | undefined> | undefined;
  private lastUsed = new Map<string, number>();
  private loaded = false;
  lastRun: { at: number; diskPercent: number; pruned: number } | undefined;

  constructor(
    private readonly opts: ImageGcOptions,
    private readonly deps: ImageGcDeps,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.collect(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One collection (joined if one is running); resolves what it pruned, if anything. */
  collect(): Promise<ImagesPruned | undefined> {
    return (this.running ??= this.run()
      .catch((e: unknown) => {
        this.log.warn({ err: (e as Error).message }, 'image garbage collection failed');
        return undefined;
      })
      .finally(() => {
        this.running = undefined;
      }));
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  private async run(): Promise<ImagesPruned | undefined> {
    await this.load();
    const desired = this.deps.desiredImages();
    if (!desired) return undefined;
    const { docker } = this.deps;
    const inUse = await this.markUsed(desired);
    const before = await this.deps.diskPercent();
    this.lastRun = { at: this.now(), diskPercent: before, pruned: 0 };
    if (before < this.opts.highPercent) {
      await this.save();
      return undefined;
    }
    const minAgeMs = this.opts.minAgeSeconds * 1000;
    const building = new Set(this.deps.buildsInFlight?.() ?? []);
    const candidates: Candidate[] = (await docker.listImages())
      .filter((i) => {
        const buildId = i.Labels?.[LABEL_IMAGE_BUILD_ID];
        return buildId && !building.has(buildId) && !inUse.has(i.Id);
      })
      .map((i) => ({
        id: i.Id,
        refs: (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'),
        size: i.Size,
        // A recorded use is never before the image's creation; without one, its creation.
        lastUsed: this.lastUsed.get(i.Id) ?? i.Created * 1000,
      }))
      .filter((c) => this.now() - c.lastUsed >= minAgeMs)
      .sort((a, b) => a.lastUsed - b.lastUsed || a.id.localeCompare(b.id));
    const pruned: PrunedImage[] = [];
    let percent = before;
    for (const c of candidates) {
      if (percent < this.opts.lowPercent) break;
      if (await this.remove(c)) {
        pruned.push({ refs: c.refs, imageId: c.id, sizeBytes: Math.max(0, c.size), lastUsedUnixMs: c.lastUsed });
        this.lastUsed.delete(c.id);
        percent = await this.deps.diskPercent();
      }
    }
    await this.save();
    this.lastRun = { at: this.now(), diskPercent: percent, pruned: pruned.length };
    if (!pruned.length) {
      this.log.warn({ diskPercent: before, high: this.opts.highPercent, candidates: candidates.length }, 'disk past the image GC threshold, and no unused A4C image to prune');
      return undefined;
    }
    const report: ImagesPruned = { images: pruned, diskPercentBefore: before, diskPercentAfter: percent, highPercent: this.opts.highPercent, lowPercent: this.opts.lowPercent };
    this.log.info({ pruned: pruned.map((p) => p.refs[0] ?? p.imageId), before, after: percent }, 'image garbage collection pruned unused images');
    this.deps.send(report);
    return report;
  }

  /** Image ids used now (any container on the engine, the desired state), stamped as used now. */
  private async markUsed(desired: string[]): Promise<Set<string>> {
    const { docker } = this.deps;
    const ids = new Set((await docker.listContainers({ all: true })).map((c) => c.ImageID));
    for (const ref of new Set(desired)) {
      try {
        ids.add((await docker.getImage(ref).inspect()).Id);
      } catch (e) {
        if (statusOf(e) !== 404) throw e; // not on this host (yet): nothing to keep
      }
    }
    const now = this.now();
    for (const id of ids) this.lastUsed.set(id, now);
    return ids;
  }

  /**
   * Untags each reference, which deletes the image with its last tag; the engine itself
   * refuses (409) an image a container was made from meanwhile, and such an image is kept.
   */
  private async remove(c: Candidate): Promise<boolean> {
    const { docker } = this.deps;
    try {
      if (!c.refs.length) await docker.getImage(c.id).remove();
      for (const ref of c.refs) await docker.getImage(ref).remove();
      return true;
    } catch (e) {
      if (statusOf(e) === 409 || statusOf(e) === 404) {
        this.log.info({ imageId: c.id, refs: c.refs, err: (e as Error).message }, 'image not pruned: in use or gone');
        return false;
      }
      throw e;
    }
  }

  private file(): string {
    return path.join(this.opts.stateDir, 'image-usage.json');
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    try {
      const saved = JSON.parse(await readFile(this.file(), 'utf8')) as Record<string, number>;
      for (const [id, at] of Object.entries(saved)) if (typeof at === 'number') this.lastUsed.set(id, at);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err: (e as Error).message }, 'image usage record unreadable; starting afresh');
    }
  }

  private async save(): Promise<void> {
    await writeFileAtomic(this.file(), JSON.stringify(Object.fromEntries(this.lastUsed))).catch((e: unknown) =>
      this.log.warn({ err: (e as Error).message }, 'could not persist image usage'),
    );
  }
}
