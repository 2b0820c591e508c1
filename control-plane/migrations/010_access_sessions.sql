-- Sessions into workspaces (exec, shell, port-forward, SSH): the audit of who got in,
-- and the live count that session limits are checked against on every replica.
ALTER TABLE workspaces ADD COLUMN last_activity_at timestamptz;

CREATE TABLE access_sessions (
  id            uuid PRIMARY KEY,          -- also the tunnel id the agent attaches with
  workspace_id  uuid NOT NULL REFERENCES workspaces(id),
  host_id       text NOT NULL,
  actor         text NOT NULL,             -- the principal who opened it
  kind          text NOT NULL CHECK (kind IN ('exec', 'shell', 'port-forward', 'ssh')),
  command       jsonb,                     -- exec: the argv
  tty           boolean NOT NULL DEFAULT false,
  port          integer,                   -- port-forward: the port inside the workspace
  terminal      jsonb,                     -- exec with a TTY: {"cols", "rows", "env"} at the start
  replica       text NOT NULL,             -- the gRPC address the agent dials back ('' = its own)
  opened_at     timestamptz NOT NULL DEFAULT now(),
  attached_at   timestamptz,
  -- Refreshed by the replica holding the session while it lives: a replica that died
  -- leaves ended_at NULL, and a stale seen_at keeps its sessions from counting.
  seen_at       timestamptz NOT NULL DEFAULT now(),
  ended_at      timestamptz,
  exit_code     integer,
  end_reason    text,
  bytes_in      bigint NOT NULL DEFAULT 0, -- from the user into the workspace
  bytes_out     bigint NOT NULL DEFAULT 0  -- from the workspace to the user
);
CREATE INDEX access_sessions_open_workspace ON access_sessions (workspace_id) WHERE ended_at IS NULL;
CREATE INDEX access_sessions_open_actor ON access_sessions (actor) WHERE ended_at IS NULL;
CREATE INDEX access_sessions_workspace ON access_sessions (workspace_id, opened_at DESC);
