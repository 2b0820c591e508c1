-- The activity log becomes an API (GET /v1/events) and a live stream (/v1/events/stream).
--
-- xid: the writing transaction's id. Readers deliver events ordered by (xid, id), and
-- only those whose transaction is older than the oldest one still running (see
-- control-plane/src/store/events.ts for why that makes a resumed stream exact).
-- user_id: whose thing the event is about (a workspace's or build's owner, the user
-- changed), so authorization is one indexed column. reason and changes: why, and each
-- changed field as {from, to}.
ALTER TABLE events
  ADD COLUMN xid      xid8  NOT NULL DEFAULT pg_current_xact_id(),
  ADD COLUMN user_id  text,
  ADD COLUMN build_id uuid,
  ADD COLUMN reason   text  NOT NULL DEFAULT '',
  ADD COLUMN changes  jsonb NOT NULL DEFAULT '{}';

-- Kinds are a documented, stable list from now on (docs/api.md): past tense, by what happened.
UPDATE events SET kind = CASE kind
    WHEN 'workspace.stop' THEN 'workspace.stopping'
    WHEN 'workspace.start' THEN 'workspace.starting'
    WHEN 'workspace.delete' THEN 'workspace.deleting'
    WHEN 'workspace.retry' THEN 'workspace.retried'
    WHEN 'agent.enrolled' THEN 'host.enrolled'
    ELSE kind END
 WHERE kind IN ('workspace.stop', 'workspace.start', 'workspace.delete', 'workspace.retry', 'agent.enrolled');
UPDATE events e SET user_id = w.user_id FROM workspaces w WHERE e.workspace_id = w.id;
UPDATE events SET build_id = (data->>'buildId')::uuid
 WHERE data->>'buildId' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
UPDATE events e SET user_id = b.user_id FROM image_builds b WHERE e.build_id = b.id AND e.user_id IS NULL;
UPDATE events SET user_id = data->>'userId' WHERE kind LIKE 'user.%' AND user_id IS NULL;

DROP INDEX events_workspace;
DROP INDEX events_host;
-- Every read walks one of these in (xid, id) order from a cursor.
CREATE INDEX events_order ON events (xid, id);
CREATE INDEX events_workspace ON events (workspace_id, xid, id) WHERE workspace_id IS NOT NULL;
CREATE INDEX events_host ON events (host_id, xid, id) WHERE host_id IS NOT NULL;
CREATE INDEX events_user ON events (user_id, xid, id) WHERE user_id IS NOT NULL;
CREATE INDEX events_build ON events (build_id, xid, id) WHERE build_id IS NOT NULL;
CREATE INDEX events_kind ON events (kind, xid, id);
-- ?since= and retention.
CREATE INDEX events_at ON events (at);

-- Followers on every replica hear of new events through PostgreSQL. Per statement, and
-- PostgreSQL folds identical notifications of one transaction into one, delivered at commit.
CREATE FUNCTION a4c_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('a4c_event', '');
  RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION a4c_event_notify();
