-- Hosts: one row per agent host id, created by its first Hello.
CREATE TABLE hosts (
  id                 text PRIMARY KEY,
  arch               text NOT NULL,
  agent_version      text NOT NULL DEFAULT '',
  memory_bytes       bigint NOT NULL DEFAULT 0,
  cpus               double precision NOT NULL DEFAULT 0,
  disk_bytes         bigint NOT NULL DEFAULT 0,
  draining           boolean NOT NULL DEFAULT false,
  -- The live session, if any. connected is cleared when the stream ends; a replica
  -- that dies leaves it set, so readers also require a recent heartbeat.
  session_id         text,
  connected          boolean NOT NULL DEFAULT false,
  connected_at       timestamptz,
  last_heartbeat_at  timestamptz,
  stats              jsonb,
  -- Desired-state revision: bumped in the same transaction as every change to the
  -- set of workspaces this host must run. applied_revision is the agent's last ack.
  revision           bigint NOT NULL DEFAULT 0,
  applied_revision   bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Images each host reports holding; placement needs the workspace's image on the host.
CREATE TABLE host_images (
  host_id        text NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  ref            text NOT NULL,
  image_id       text NOT NULL,
  project        text,
  arch           text,
  change_number  text,
  created_at     timestamptz,
  PRIMARY KEY (host_id, ref)
);
CREATE INDEX host_images_ref ON host_images (ref);
CREATE INDEX host_images_project ON host_images (project, arch, created_at DESC) WHERE project IS NOT NULL;

CREATE TABLE workspaces (
  id                uuid PRIMARY KEY,
  user_id           text NOT NULL,
  name              text NOT NULL,
  project_name      text NOT NULL,
  arch              text NOT NULL,
  tier              text NOT NULL,
  image             text NOT NULL,
  change_number     text,
  status            text NOT NULL,
  host_id           text REFERENCES hosts(id),
  container_id      text,
  hostname          text,
  failed_step       text,
  error             text,
  -- The tier's resources when the workspace was created: changing a tier later does
  -- not resize running workspaces behind their owners' backs.
  memory_mb         integer NOT NULL,
  cpus              double precision NOT NULL,
  disk_gb           double precision NOT NULL,
  pids_limit        integer NOT NULL,
  -- Host revision at which this workspace's desired state last changed. Agent reports
  -- acting on an older revision are stale and ignored.
  desired_revision  bigint NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX workspaces_user_name ON workspaces (user_id, name) WHERE status <> 'DELETED';
CREATE INDEX workspaces_host ON workspaces (host_id) WHERE status <> 'DELETED';
CREATE INDEX workspaces_user ON workspaces (user_id, created_at);

-- The activity log: every state transition appends a row in the same transaction.
CREATE TABLE events (
  id            bigserial PRIMARY KEY,
  at            timestamptz NOT NULL DEFAULT now(),
  kind          text NOT NULL,
  actor         text NOT NULL,
  workspace_id  uuid,
  host_id       text,
  data          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_workspace ON events (workspace_id, id) WHERE workspace_id IS NOT NULL;
CREATE INDEX events_host ON events (host_id, id) WHERE host_id IS NOT NULL;
