import { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Logger } from '@a4c/common';
import type { Tx } from '../store/db.js';

/**
 * Changes reach every replica through PostgreSQL LISTEN/NOTIFY, never through process
 * memory alone: a workspace created on replica A must reach the agent whose stream
 * replica B holds. NOTIFY inside a transaction is delivered on commit, so listeners
 * never see a change that was rolled back.
 */
export const CHANNEL_HOST = 'a4c_host';
export const CHANNEL_WORKSPACE = 'a4c_workspace';
/** Sent by a trigger on events (migration 020): the activity log grew. */
export const CHANNEL_EVENT = 'a4c_event';
/** A session into a workspace waits for its host's agent to open a tunnel: the id of its access_sessions row. */
export const CHANNEL_TUNNEL = 'a4c_tunnel';
/** One side of a workspace move waits for an agent whose stream another replica may hold: JSON {hostId, open}. */
export const CHANNEL_TRANSFER = 'a4c_transfer';
/** Agent sessions a newer session of the same host replaced: "<hostId> <old sessionId>", so the replica holding the old stream closes it. */
export const CHANNEL_SESSION = 'a4c_session';

export async function notifyHost(tx: Tx, hostId: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [CHANNEL_HOST, hostId]);
}

/** One notification per superseded session, in one statement. */
export async function notifySuperseded(tx: Tx, superseded: Array<{ hostId: string; sessionId: string }>): Promise<void> {
  if (!superseded.length) return;
  await tx.query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", [CHANNEL_SESSION, superseded.map((s) => `${s.hostId} ${s.sessionId}`)]);
}

export async function notifyTunnel(tx: Tx, sessionId: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [CHANNEL_TUNNEL, sessionId]);
}

export async function notifyWorkspace(tx: Tx, workspaceId: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [CHANNEL_WORKSPACE, workspaceId]);
}

/**
 * One dedicated connection LISTENing on every channel; emits 'host', 'workspace', 'tunnel', 'transfer' and 'session'
 * with the id, 'event' when the activity log grew, and 'reconnected' after a lost connection (listeners then re-read
 * whatever they wait on, since notifications sent meanwhile are lost).
 */
export class ChangeFeed extends EventEmitter {
  private client: pg.Client | undefined;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
  }

  async start(): Promise<void> {
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('notification', (n) => {
      if (n.channel === CHANNEL_EVENT) this.emit('event');
      if (!n.payload) return;
      if (n.channel === CHANNEL_HOST) this.emit('host', n.payload);
      else if (n.channel === CHANNEL_WORKSPACE) this.emit('workspace', n.payload);
      else if (n.channel === CHANNEL_TUNNEL) this.emit('tunnel', n.payload);
      else if (n.channel === CHANNEL_TRANSFER) this.emit('transfer', n.payload);
      else if (n.channel === CHANNEL_SESSION) this.emit('session', n.payload);
    });
    client.on('error', (e) => {
      this.log.warn({ err: e.message }, 'change feed connection lost');
      void client.end().catch(() => undefined);
      this.scheduleReconnect();
    });
    await client.connect();
    await client.query(`LISTEN ${CHANNEL_HOST}; LISTEN ${CHANNEL_WORKSPACE}; LISTEN ${CHANNEL_TUNNEL}; LISTEN ${CHANNEL_TRANSFER}; LISTEN ${CHANNEL_SESSION}; LISTEN ${CHANNEL_EVENT}`);
    this.client = client;
  }

  private scheduleReconnect(delay = 500): void {
    if (this.closed) return;
    this.client = undefined;
    setTimeout(() => {
      if (this.closed) return;
      this.connect().then(
        () => this.emit('reconnected'),
        () => this.scheduleReconnect(Math.min(delay * 2, 10_000)),
      );
    }, delay).unref();
  }

  async stop(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => undefined);
  }
}
