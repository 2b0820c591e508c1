import { randomUUID } from 'node:crypto';
import { A4cError, notFound, type CreatedWebhook, type Webhook } from '@a4c/common';
import type { Policy, Principal } from '../auth/principals.js';
import { inTx, type Db } from '../store/db.js';
import { appendEvent, changesOf } from '../store/events.js';
import { pingDeliveryId } from '../store/webhook-deliveries.js';
import { deleteWebhook, getWebhook, insertWebhook, listWebhooks, toWebhook, updateWebhook, type WebhookPatch, type WebhookRow } from '../store/webhooks.js';
import { newSecret, secretPrefix } from './signature.js';

export interface WebhookInput {
  url: string;
  events: string[];
  secret?: string | undefined;
  description?: string | undefined;
  enabled?: boolean | undefined;
  /** Whose events; absent: the caller's own (a user) or fleet-wide (an admin). */
  userId?: string | undefined;
}

const LIST_HINT = 'list your webhooks with `a4c webhooks list`';

/**
 * Webhooks as people manage them. Who may do what (as for workspaces, Policy):
 *  - a user creates, reads, changes and deletes webhooks for their own events only;
 *  - a lead also reads (never changes: 403) their team members' webhooks;
 *  - an admin does everything for anyone, and creates fleet-wide webhooks (every event);
 *  - others' webhooks do not exist for a user (404), like everything else of theirs.
 * Every change appends its event in its transaction, like every other state change.
 */
export class WebhookService {
  constructor(
    private readonly db: Db,
    private readonly policy: Policy,
  ) {}

  async create(p: Principal, actor: string, input: WebhookInput): Promise<CreatedWebhook> {
    let owner: string | null;
    if (p.role === 'admin') owner = input.userId ?? null;
    else {
      // A user's webhook receives only the user's own events; asking for someone else's is asking for what does not exist.
      if (input.userId !== undefined && input.userId !== p.id) throw notFound('user', input.userId, 'a webhook receives its owner\'s events: leave userId out');
      owner = p.id;
    }
    const secret = input.secret ?? newSecret();
    return inTx(this.db, async (tx) => {
      const row = await insertWebhook(tx, {
        id: randomUUID(),
        userId: owner,
        url: input.url,
        events: input.events,
        secret,
        description: input.description ?? '',
        enabled: input.enabled ?? true,
        createdBy: actor,
      });
      if (!row) throw notFound('user', owner ?? '', 'create the user first (POST /v1/users)');
      await appendEvent(tx, {
        kind: 'webhook.created',
        actor,
        reason: `webhook to ${row.url} for ${row.events.join(', ')}${owner ? '' : ' (fleet-wide)'}`,
        userId: owner,
        data: { webhookId: row.id, url: row.url, events: row.events, enabled: row.enabled },
      });
      return { ...toWebhook(row), secret };
    });
  }

  /** The caller's own; with userId, that user's (their lead and admins); admins without it: all. */
  async list(p: Principal, userId: string | undefined): Promise<Webhook[]> {
    if (userId !== undefined) await this.policy.read(p, userId);
    const rows = await listWebhooks(this.db, userId ?? (p.role === 'admin' ? undefined : p.id));
    return rows.map(toWebhook);
  }

  async get(p: Principal, id: string): Promise<Webhook> {
    return toWebhook(await this.visible(p, await getWebhook(this.db, id), id, 'read'));
  }

  async update(p: Principal, actor: string, id: string, patch: WebhookPatch): Promise<Webhook> {
    return inTx(this.db, async (tx) => {
      const before = await this.visible(p, await getWebhook(tx, id, true), id, 'write');
      const after = await updateWebhook(tx, id, patch);
      const view = (r: WebhookRow) => ({ url: r.url, events: r.events, description: r.description, enabled: r.enabled, secretPrefix: secretPrefix(r.secret) });
      const changes = changesOf(view(before), view(after));
      if (patch.secret !== undefined && before.secret !== after.secret) changes.secret = { from: 'replaced', to: 'replaced' };
      if (Object.keys(changes).length) {
        await appendEvent(tx, {
          kind: 'webhook.updated',
          actor,
          reason: `webhook changed: ${Object.keys(changes).join(', ')}`,
          userId: after.user_id,
          changes,
          data: { webhookId: id, url: after.url },
        });
      }
      return toWebhook(after);
    });
  }

  async delete(p: Principal, actor: string, id: string): Promise<Webhook> {
    return inTx(this.db, async (tx) => {
      const row = await this.visible(p, await getWebhook(tx, id, true), id, 'write');
      await deleteWebhook(tx, id);
      await appendEvent(tx, {
        kind: 'webhook.deleted',
        actor,
        reason: `webhook to ${row.url} deleted`,
        userId: row.user_id,
        data: { webhookId: id, url: row.url },
      });
      return toWebhook(row);
    });
  }

  /**
   * A test ping: a webhook.ping event naming this webhook, which the trigger delivers to
   * it alone, through the same outbox, signing and retries as every other event.
   */
  async ping(p: Principal, actor: string, id: string): Promise<{ deliveryId: string; eventId: number }> {
    return inTx(this.db, async (tx) => {
      const row = await this.visible(p, await getWebhook(tx, id, true), id, 'write');
      if (!row.enabled) throw new A4cError('CONFLICT', 'the webhook is disabled: nothing is delivered to it', { suggestion: `enable it first: a4c webhooks update ${id} --enable` });
      await appendEvent(tx, {
        kind: 'webhook.ping',
        actor,
        reason: 'test ping asked for',
        userId: row.user_id,
        data: { webhookId: id, url: row.url },
      });
      const made = await pingDeliveryId(tx, id);
      if (!made) throw new Error('the ping event made no delivery (is migration 060 applied?)');
      return made;
    });
  }

  /**
   * The webhook if p may read it (the owner, the owner's lead, an admin) or change it
   * (the owner, an admin); 404 for whoever may not read it, 403 for a lead changing it.
   * Fleet-wide webhooks are admins' only.
   */
  async visible(p: Principal, row: WebhookRow | undefined, id: string, mode: 'read' | 'write'): Promise<WebhookRow> {
    if (!row) throw notFound('webhook', id, LIST_HINT);
    if (p.role === 'admin' || row.user_id === p.id) return row;
    if (row.user_id === null) throw notFound('webhook', id, LIST_HINT);
    await this.policy.read(p, row.user_id, 'webhook', id);
    if (mode === 'write') throw new A4cError('PERMISSION_DENIED', "a lead reads their team members' webhooks but does not change them", { suggestion: `ask ${row.user_id} or an admin` });
    return row;
  }
}
