import { SETTLED_STATUSES, type Workspace } from '@a4c/common';
import type { ChangeFeed } from '../events/notify.js';

/**
 * Resolves once the workspace is settled (RUNNING, STOPPED, DELETED, FAILED) or the
 * time is up, and returns it as it is then. Woken by the change feed; a slow poll
 * covers a feed that reconnected and missed a notification.
 */
export async function waitSettled(feed: ChangeFeed, get: (id: string) => Promise<Workspace>, id: string, seconds: number): Promise<Workspace> {
  const settled = (w: Workspace) => SETTLED_STATUSES.includes(w.status);
  let ws = await get(id);
  if (seconds <= 0 || settled(ws)) return ws;
  const deadline = Date.now() + seconds * 1000;
  return await new Promise<Workspace>((resolve) => {
    let checking = false;
    let again = false;
    const finish = (w: Workspace) => {
      feed.off('workspace', onChange);
      feed.off('reconnected', check);
      clearInterval(poll);
      clearTimeout(timer);
      resolve(w);
    };
    const check = () => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      get(id).then(
        (w) => {
          ws = w;
          checking = false;
          if (settled(w)) finish(w);
          else if (again) {
            again = false;
            check();
          }
        },
        () => {
          checking = false;
        },
      );
    };
    const onChange = (changed: string) => {
      if (changed === id) check();
    };
    feed.on('workspace', onChange);
    feed.on('reconnected', check);
    const poll = setInterval(check, 2000);
    const timer = setTimeout(() => finish(ws), Math.max(0, deadline - Date.now()));
    check();
  });
}
