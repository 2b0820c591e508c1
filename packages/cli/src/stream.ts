import type { ActivityEvent } from '@a4c/common';
import { createParser } from 'eventsource-parser';
import { CliError } from './client.js';

export type StreamedEvent = ActivityEvent;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows GET /v1/events/stream (Server-Sent Events over fetch, the token in the
 * Authorization header) until the signal aborts. When the stream ends or the
 * connection drops, it reconnects with the last event's cursor as Last-Event-ID, so
 * nothing is missed or shown twice. An answer that is not the stream (401, 404) ends it
 * with that error.
 */
export async function followEvents(
  baseUrl: string,
  token: string,
  query: string,
  onEvent: (e: StreamedEvent) => void,
  signal: AbortSignal,
  onReconnect: (why: string) => void,
): Promise<void> {
  let last: string | undefined;
  let delay = 500;
  while (!signal.aborted) {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
    if (last) headers['last-event-id'] = last;
    let res: Response;
    try {
      res = await fetch(`${baseUrl.replace(/\/$/, '')}/v1/events/stream${query}`, { headers, signal });
    } catch (e) {
      if (signal.aborted) return;
      onReconnect(`cannot reach the control plane (${(e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message})`);
      await sleep(delay);
      delay = Math.min(delay * 2, 10_000);
      continue;
    }
    if (!res.ok || !res.body) {
      const body = (await res.json().catch(() => ({}))) as { error?: string; message?: string; suggestion?: string };
      if (res.status >= 500) {
        onReconnect(`${res.status} ${body.message ?? ''}`.trim());
        await sleep(delay);
        delay = Math.min(delay * 2, 10_000);
        continue;
      }
      throw new CliError(`${body.error ?? res.status}: ${body.message ?? 'the event stream was refused'}`, body.suggestion, 1);
    }
    delay = 500;
    const parser = createParser({
      onEvent: (m) => {
        if (m.id) last = m.id;
        onEvent(JSON.parse(m.data) as StreamedEvent);
      },
    });
    try {
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(value);
      }
    } catch (e) {
      if (signal.aborted) return;
      onReconnect(`the stream broke (${(e as Error).message})`);
      continue;
    }
    if (!signal.aborted) onReconnect('the control plane ended the stream');
  }
}
