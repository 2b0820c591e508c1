import { createParser } from 'eventsource-parser';
import { waitFor } from './net.js';

export interface StreamedEvent {
  id: string;
  event: string;
  data: { id: number; cursor: string; kind: string; workspaceId: string | null; hostId: string | null; userId: string | null; [k: string]: unknown };
  /** When it arrived (Date.now()). */
  receivedAt: number;
}

/**
 * A follower of /v1/events/stream as the web dashboard will be one: fetch() with an
 * Authorization header (no EventSource, no token in the URL), reading the body as it
 * arrives and parsing it with an independent SSE parser.
 */
export class SseFollower {
  readonly events: StreamedEvent[] = [];
  readonly comments: string[] = [];
  status = 0;
  headers: Headers | undefined;
  ended = false;
  error: unknown;
  private readonly abort = new AbortController();
  private done: Promise<void> | undefined;

  constructor(
    private readonly url: string,
    private readonly token: string,
    private readonly lastEventId?: string,
  ) {}

  /** Resolves once the response head arrived. */
  async open(): Promise<this> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' };
    if (this.lastEventId) headers['last-event-id'] = this.lastEventId;
    const res = await fetch(this.url, { headers, signal: this.abort.signal });
    this.status = res.status;
    this.headers = res.headers;
    if (!res.ok || !res.body) {
      this.ended = true;
      this.error = await res.text();
      return this;
    }
    const parser = createParser({
      onEvent: (m) => this.events.push({ id: m.id ?? '', event: m.event ?? 'message', data: JSON.parse(m.data) as StreamedEvent['data'], receivedAt: Date.now() }),
      onComment: (c) => this.comments.push(c),
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    this.done = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
      } catch (e) {
        if (!this.abort.signal.aborted) this.error = e;
      } finally {
        this.ended = true;
      }
    })();
    return this;
  }

  get lastId(): string | undefined {
    return this.events[this.events.length - 1]?.id;
  }

  waitFor(what: string, pred: (e: StreamedEvent) => boolean, timeoutMs = 10_000): Promise<StreamedEvent> {
    return waitFor(what, () => this.events.find(pred), timeoutMs, 10);
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}
