import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { A4cEvent, EventFilter, Me } from './model.js';
import { EventFollower, type StreamState } from './stream.js';

export interface Session {
  me: Me;
  signOut(reason?: string): void;
}
export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside a signed-in page');
  return s;
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** Loads again; keeps the data shown meanwhile. */
  reload(): void;
}

/**
 * Runs a load when its keys change and on reload(); the previous answer stays on screen
 * while the next one comes, and a stale answer never overwrites a newer one.
 */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, keys: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({ data: undefined, error: undefined, loading: true });
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const abort = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    loadRef.current(abort.signal).then(
      (data) => !abort.signal.aborted && setState({ data, error: undefined, loading: false }),
      (error: unknown) => !abort.signal.aborted && setState((s) => ({ data: s.data, error, loading: false })),
    );
    return () => abort.abort();
  }, [...keys, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Calls fn every ms while the page is visible (and once when it becomes visible again). */
export function useInterval(fn: () => void, ms: number | null): void {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    if (ms === null) return;
    const id = setInterval(() => document.visibilityState === 'visible' && ref.current(), ms);
    const onVisible = () => document.visibilityState === 'visible' && ref.current();
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      clearInterval(id);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [ms]);
}

/** Re-renders every few seconds so that "3 minutes ago" stays true. */
export function useNow(ms = 5000): number {
  const [now, setNow] = useState(Date.now());
  useInterval(() => setNow(Date.now()), ms);
  return now;
}

/**
 * Follows the activity log with the given filter. The state says whether it is live,
 * reconnecting, or unavailable on this control plane (then callers poll instead).
 */
export function useEventStream(filter: Omit<EventFilter, 'after' | 'limit'> | null, onEvent: (e: A4cEvent) => void, from?: string): StreamState {
  const [state, setState] = useState<StreamState>({ kind: 'connecting' });
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const session = useContext(SessionContext);
  const key = JSON.stringify(filter);
  useEffect(() => {
    if (!filter) return;
    const f = new EventFollower(filter, {
      onEvent: (e) => handler.current(e),
      onState: setState,
      onUnauthorized: () => session?.signOut('Your token was refused; sign in again.'),
    }, from);
    f.start();
    return () => f.stop();
  }, [key, from]);
  return state;
}

