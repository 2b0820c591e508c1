import type { Db } from '../../store/db.js';
import { listDeliveries } from '../../store/webhook-deliveries.js';
import type { WebhookService } from '../../webhooks/service.js';
import { op, type Operation } from '../operation.js';
import * as s from '../schemas.js';
import * as w from '../webhook-schemas.js';

const WEBHOOKS = 'Webhooks';

const WHO =
  "A user manages their own webhooks, which receive only events about the user's own workspaces, builds and account; " +
  "a lead reads (never changes) their team members'; admins manage everyone's and fleet-wide ones (every event). " +
  "Another user's webhook is a 404.";

/** Webhooks: who is told what happened, and how each delivery went. */
export function webhookOperations(d: { db: Db; webhooks: WebhookService }): Operation[] {
  return [
    op({
      method: 'post',
      path: '/v1/webhooks',
      operationId: 'createWebhook',
      summary: 'Create a webhook: events of the chosen kinds are POSTed to its URL, signed',
      description: `${WHO} The answer carries the signing secret, the only time it is shown.`,
      tag: WEBHOOKS,
      access: 'anyone',
      body: w.createWebhook,
      responses: { 201: { description: 'The webhook, with its secret', schema: w.createdWebhook } },
      errors: [404],
      handle: async (ctx, { body }) => {
        ctx.status = 201;
        ctx.body = await d.webhooks.create(ctx.state.principal, ctx.state.actor, body);
      },
    }),
    op({
      method: 'get',
      path: '/v1/webhooks',
      operationId: 'listWebhooks',
      summary: 'List webhooks',
      description: `${WHO} Without userId: the caller's own (admins: all); with it, that user's.`,
      tag: WEBHOOKS,
      access: 'anyone',
      query: w.listWebhooksQuery,
      responses: { 200: { description: 'Oldest first', schema: s.list('webhooks', w.webhook) } },
      errors: [404],
      handle: async (ctx, { query }) => {
        ctx.body = { webhooks: await d.webhooks.list(ctx.state.principal, query.userId) };
      },
    }),
    op({
      method: 'get',
      path: '/v1/webhooks/{id}',
      operationId: 'getWebhook',
      summary: 'Get a webhook',
      tag: WEBHOOKS,
      access: 'owner',
      params: w.webhookParams,
      responses: { 200: { description: 'The webhook (never its secret)', schema: w.webhook } },
      errors: [404],
      handle: async (ctx, { params }) => {
        ctx.body = await d.webhooks.get(ctx.state.principal, params.id);
      },
    }),
    op({
      method: 'patch',
      path: '/v1/webhooks/{id}',
      operationId: 'updateWebhook',
      summary: 'Change a webhook: url, kinds, description, secret, enabled',
      tag: WEBHOOKS,
      access: 'owner',
      params: w.webhookParams,
      body: w.updateWebhook,
      responses: { 200: { description: 'The webhook', schema: w.webhook } },
      errors: [403, 404],
      handle: async (ctx, { params, body }) => {
        ctx.body = await d.webhooks.update(ctx.state.principal, ctx.state.actor, params.id, body);
      },
    }),
    op({
      method: 'delete',
      path: '/v1/webhooks/{id}',
      operationId: 'deleteWebhook',
      summary: 'Delete a webhook and its deliveries',
      tag: WEBHOOKS,
      access: 'owner',
      params: w.webhookParams,
      responses: { 200: { description: 'The webhook as it was', schema: w.webhook } },
      errors: [403, 404],
      handle: async (ctx, { params }) => {
        ctx.body = await d.webhooks.delete(ctx.state.principal, ctx.state.actor, params.id);
      },
    }),
    op({
      method: 'get',
      path: '/v1/webhooks/{id}/deliveries',
      operationId: 'listWebhookDeliveries',
      summary: "A webhook's deliveries, newest first: status, attempts, last answer, next attempt",
      tag: WEBHOOKS,
      access: 'owner',
      params: w.webhookParams,
      query: w.deliveriesQuery,
      responses: { 200: { description: 'Newest first; pass the last id as before for the next page', schema: s.list('deliveries', w.delivery) } },
      errors: [404],
      handle: async (ctx, { params, query }) => {
        await d.webhooks.get(ctx.state.principal, params.id);
        ctx.body = { deliveries: await listDeliveries(d.db, params.id, { status: query.status, limit: query.limit ?? 50, before: query.before }) };
      },
    }),
    op({
      method: 'post',
      path: '/v1/webhooks/{id}/test',
      operationId: 'testWebhook',
      summary: 'Send a test ping (a webhook.ping event) to this webhook only',
      description: 'Delivered like any event: signed, retried, listed among the deliveries. 409 if the webhook is disabled.',
      tag: WEBHOOKS,
      access: 'owner',
      params: w.webhookParams,
      responses: { 202: { description: 'The ping is queued: follow it in the deliveries', schema: w.ping } },
      errors: [403, 404, 409],
      handle: async (ctx, { params }) => {
        ctx.status = 202;
        ctx.body = await d.webhooks.ping(ctx.state.principal, ctx.state.actor, params.id);
      },
    }),
  ];
}
