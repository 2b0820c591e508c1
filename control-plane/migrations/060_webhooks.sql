-- Webhooks: people are told what happened to their workspaces and builds.
--
-- The activity log (events, migrations 001/020) is already the outbox: every state
-- change appends its event in the transaction that makes the change. A trigger on
-- events fans each new event out to webhook_deliveries, one row per enabled webhook
-- that wants it, in that same transaction. So a delivery exists if and only if its
-- change committed, with no second write path for the code making changes (and the
-- kinds other features add reach webhooks with no more work). Why a trigger and not a
-- per-webhook cursor over the log: see control-plane/src/webhooks/dispatcher.ts.

-- user_id NULL: fleet-wide (admins'), every event; else only events whose user_id is
-- that user (their workspaces, builds and account), as the activity log shows them.
-- events: kinds, or prefixes ending in * ('*' alone: every kind).
CREATE TABLE webhooks (
  id                    uuid PRIMARY KEY,
  user_id               text,
  url                   text NOT NULL,
  events                text[] NOT NULL,
  secret                text NOT NULL,
  description           text NOT NULL DEFAULT '',
  enabled               boolean NOT NULL DEFAULT true,
  disabled_reason       text,
  consecutive_failures  integer NOT NULL DEFAULT 0,
  created_by            text NOT NULL,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_user ON webhooks (user_id, created_at, id);

-- One event to one webhook. PENDING until a receiver answers 2xx (SUCCEEDED) or the
-- retry policy gives up (FAILED). A claim moves next_attempt_at past the request's
-- timeout (a lease): a replica that dies mid-request leaves it to be claimed again.
-- Deleted with its event (retention) or its webhook.
CREATE TABLE webhook_deliveries (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
  event_id         bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
  status           text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  last_attempt_at  timestamptz,
  last_status      integer,
  last_error       text,
  history          jsonb NOT NULL DEFAULT '[]',
  created_at       timestamptz NOT NULL DEFAULT now(),
  completed_at     timestamptz
);
-- Claims walk each enabled webhook's due deliveries, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- A test ping (kind webhook.ping) goes to the webhook it names only, whatever that one
-- subscribes to. Everything else goes to every enabled webhook whose owner and kinds match.
-- Per statement, over the statement's new rows: one set-based insert however many events
-- a statement writes, and next to nothing while there are no webhooks.
CREATE FUNCTION a4c_webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO webhook_deliveries (webhook_id, event_id)
  SELECT w.id, e.id FROM new_events e JOIN webhooks w ON
    CASE WHEN e.kind = 'webhook.ping' THEN w.id::text = e.data->>'webhookId'
    ELSE w.enabled
         AND (w.user_id IS NULL OR w.user_id = e.user_id)
         AND EXISTS (SELECT 1 FROM unnest(w.events) p
                      WHERE p = e.kind OR (right(p, 1) = '*' AND starts_with(e.kind, left(p, -1))))
    END
  ORDER BY e.id;
  RETURN NULL;
END $$;
CREATE TRIGGER events_webhooks AFTER INSERT ON events REFERENCING NEW TABLE AS new_events
  FOR EACH STATEMENT EXECUTE FUNCTION a4c_webhook_fanout();
