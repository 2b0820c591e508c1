/**
 * Follows GET /v1/events/stream. A browser's EventSource cannot send an Authorization
 * header, so the stream is read with fetch() and parsed with eventsource-parser. When
 * the connection drops it reconnects with backoff, sending Last-Event-ID so that no
 * event is missed or repeated, and says so through its state.
 */
import { createParser } from 'eventsource-parser';
import { authHeaders, errorFromResponse, isMissingRoute, qs } from './api.js';
import { normalizeEvent, setEventsApi, type A4cEvent, type EventFilter, type RawEvent } from './model.js';

export type StreamState =
  | { kind: 'connecting' }
  | { kind: 'live' }
  | { kind: 'reconnecting'; reason: string; retryAt: number }
  /** This control plane has no events stream (an older version): the caller polls. */
  | { kind: 'unavailable' }
  | { kind: 'stopped' };

export interface FollowHandlers {
  onEvent(e: A4cEvent): void;
  onState(s: StreamState): void;
  /** The server refused the token: stop and sign out. */
  onUnauthorized?(): void;
}

/** The server sends a heartbeat comment every 15 s: silence for this long means a dead connection. */
const SILENCE_MS = 45_000;
const MAX_BACKOFF_MS = 15_000;

export class EventFollower {
  private abort: AbortController | undefined;
  private stopped = false;
  private lastEventId: string | undefined;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly filter: Omit<EventFilter, 'after' | 'limit'>,
    private readonly handlers: FollowHandlers,
    lastEventId?: string,
  ) {
    this.lastEventId = lastEventId;
  }

  start(): void {
    this.stopped = false;
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.abort?.abort();
    this.handlers.onState({ kind: 'stopped' });
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      // While reconnecting, the state keeps saying so until the stream is back.
      if (this.attempt === 0) this.handlers.onState({ kind: 'connecting' });
      let reason: string;
      try {
        reason = await this.connectOnce();
      } catch (e) {
        if (this.stopped) return;
        reason = (e as Error).message || 'the connection failed';
      }
      if (this.stopped) return;
      if (reason === 'unavailable' || reason === 'unauthorized') return;
      // Reconnect with exponential backoff and jitter, saying so meanwhile.
      const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt++;
      this.handlers.onState({ kind: 'reconnecting', reason, retryAt: Date.now() + delay });
      await new Promise<void>((resolve) => (this.timer = setTimeout(resolve, delay)));
    }
  }

  /** One connection; resolves with why it ended. */
  private async connectOnce(): Promise<string> {
    const abort = new AbortController();
    this.abort = abort;
    const headers: Record<string, string> = { accept: 'text/event-stream', ...authHeaders() };
    if (this.lastEventId) headers['last-event-id'] = this.lastEventId;
    const res = await fetch(`/v1/events/stream${qs({ ...this.filter })}`, { headers, signal: abort.signal, credentials: 'omit', cache: 'no-store' });
    if (!res.ok) {
      const err = await errorFromResponse(res);
      if (isMissingRoute(err)) {
        setEventsApi(false);
        this.handlers.onState({ kind: 'unavailable' });
        return 'unavailable';
      }
      if (res.status === 401) {
        this.handlers.onUnauthorized?.();
        return 'unauthorized';
      }
      return `${err.message}${err.suggestion ? ` (${err.suggestion})` : ''}`;
    }
    if (!res.body) return 'the stream had no body';
    setEventsApi(true);
    this.attempt = 0;
    this.handlers.onState({ kind: 'live' });
    const parser = createParser({
      onEvent: (m) => {
        if (m.id) this.lastEventId = m.id;
        let raw: RawEvent;
        try {
          raw = JSON.parse(m.data) as RawEvent;
        } catch {
          return; // not an event of ours
        }
        const e = normalizeEvent({ ...raw, id: raw.cursor ?? raw.id ?? m.id, kind: raw.kind ?? m.event });
        if (m.id) e.id = m.id;
        this.handlers.onEvent(e);
      },
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let watchdog = setTimeout(() => abort.abort(), SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        clearTimeout(watchdog);
        if (done) return 'the control plane closed the stream';
        watchdog = setTimeout(() => abort.abort(), SILENCE_MS);
        parser.feed(value);
      }
    } catch (e) {
      if (this.stopped) return 'stopped';
      return abort.signal.aborted ? 'no heartbeat from the control plane' : (e as Error).message || 'the connection was lost';
    } finally {
      clearTimeout(watchdog);
    }
  }
}
