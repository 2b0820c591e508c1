import type { Logger } from '@a4c/common';
import type { ImagesPruned } from '@a4c/proto';
import { inTx, type Db } from '../store/db.js';
import type { SessionGuard } from '../store/host-sessions.js';
import { appendEvent } from '../store/events.js';
import { formatBytes } from '@a4c/common';

const pct = (n: number) => (Number.isFinite(n) ? Math.round(n * 10) / 10 : null);

/** An agent's image garbage collection: one agent.image_pruned event per image it removed. */
export async function recordPrunedImages(db: Db, hostId: string, m: ImagesPruned, log: Logger, live?: SessionGuard): Promise<void> {
  const images = m.images.slice(0, 1000);
  if (!images.length) return;
  await inTx(db, async (tx) => {
    await live?.(tx);
    for (const i of images) {
      const refs = i.refs.slice(0, 20).map((r) => r.slice(0, 512));
      const name = refs[0] ?? i.imageId.slice(0, 80);
      await appendEvent(tx, {
        kind: 'agent.image_pruned',
        actor: `agent:${hostId}`,
        reason: `image garbage collection removed unused image ${name} (${formatBytes(i.sizeBytes)}): the disk was at ${pct(m.diskPercentBefore)} %, past the ${pct(m.highPercent)} % threshold`,
        hostId,
        data: {
          refs,
          imageId: i.imageId.slice(0, 128),
          sizeBytes: i.sizeBytes,
          lastUsedAt: i.lastUsedUnixMs > 0 ? new Date(i.lastUsedUnixMs).toISOString() : null,
          diskPercentBefore: pct(m.diskPercentBefore),
          diskPercentAfter: pct(m.diskPercentAfter),
          highPercent: pct(m.highPercent),
          lowPercent: pct(m.lowPercent),
        },
      });
    }
  });
  log.info({ images: images.map((i) => i.refs[0] ?? i.imageId), before: m.diskPercentBefore, after: m.diskPercentAfter }, 'images pruned');
}
