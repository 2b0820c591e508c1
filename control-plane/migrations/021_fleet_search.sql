-- Fleet search: GET /v1/workspaces filters and ?q=, GET /v1/image-schedules ?hostId= and ?q=.
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it,
-- and the embedded PostgreSQL ships it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- The text ?q= searches (store/fleet.ts): names, project, hostname, host, failed step, error.
-- Only the hostname's first label: the domain is the same for every workspace, and its
-- trigrams, in every row, would make every search read the whole index (the service
-- strips the domain from q too).
CREATE FUNCTION a4c_ws_text(name text, project text, hostname text, host text, step text, err text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN lower(coalesce(name, '') || ' ' || coalesce(project, '') || ' ' || split_part(coalesce(hostname, ''), '.', 1) || ' ' ||
               coalesce(host, '') || ' ' || coalesce(step, '') || ' ' || coalesce(err, ''));
CREATE INDEX workspaces_text ON workspaces
  USING gin (a4c_ws_text(name, project_name, hostname, host_id, failed_step, error) gin_trgm_ops);
-- Statistics of the text itself, so the planner knows how many rows a q matches: a rare
-- one is found through the index above, a common one by walking the listing's order.
CREATE STATISTICS workspaces_text_stats ON (a4c_ws_text(name, project_name, hostname, host_id, failed_step, error)) FROM workspaces;

-- One index per documented filter, in the listing's order (created_at, id), so a page is
-- a short walk of one index whatever the fleet's size. Listings leave DELETED out unless
-- asked, hence the partial indexes; status= uses workspaces_status, which has them all.
CREATE INDEX workspaces_created ON workspaces (created_at, id);
CREATE INDEX workspaces_live_created ON workspaces (created_at, id) WHERE status <> 'DELETED';
CREATE INDEX workspaces_live_updated ON workspaces (updated_at, id) WHERE status <> 'DELETED';
CREATE INDEX workspaces_status ON workspaces (status, created_at, id);
CREATE INDEX workspaces_live_host ON workspaces (host_id, created_at, id) WHERE status <> 'DELETED';
CREATE INDEX workspaces_live_project ON workspaces (project_name, created_at, id) WHERE status <> 'DELETED';
CREATE INDEX workspaces_live_tier ON workspaces (tier, created_at, id) WHERE status <> 'DELETED';
CREATE INDEX users_team ON users (team_id) WHERE team_id IS NOT NULL;

-- Builds: by worker host, and text in the error and in the log lines.
CREATE INDEX image_builds_created ON image_builds (created_at, id);
CREATE INDEX image_builds_worker_host ON image_builds (worker_host_id, created_at, id) WHERE worker_host_id IS NOT NULL;
CREATE INDEX image_builds_error_text ON image_builds USING gin (lower(error) gin_trgm_ops) WHERE error IS NOT NULL;
CREATE INDEX build_logs_text ON build_logs USING gin (lower(line) gin_trgm_ops);
