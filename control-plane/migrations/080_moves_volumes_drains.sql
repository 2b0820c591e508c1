-- Files that follow the user (issue 12): volumes as first-class objects, workspace
-- moves between hosts, and drains with a deadline.

-- The image a moved workspace's container is created from: the source container
-- committed (its writable layer on top of `image`) and loaded on the new host. NULL:
-- `image` itself. `image` keeps what the user asked for.
ALTER TABLE workspaces ADD COLUMN run_image text;

-- A user's volume on a host (Docker volume a4c-home-<user>), per project whose
-- workspaces used it there. Recorded when a workspace of the project is placed or
-- moved there; size_bytes as the agent measured it (NULL until measured).
CREATE TABLE volumes (
  user_id       text NOT NULL,
  host_id       text NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  project       text NOT NULL,
  name          text NOT NULL,
  size_bytes    bigint,
  measured_at   timestamptz,
  last_used_at  timestamptz NOT NULL DEFAULT now(),
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, project, host_id)
);
CREATE INDEX volumes_host ON volumes (host_id);
INSERT INTO volumes (user_id, host_id, project, name, last_used_at)
SELECT user_id, host_id, project_name, 'a4c-home-' || user_id, max(updated_at)
  FROM workspaces WHERE host_id IS NOT NULL AND status NOT IN ('REJECTED', 'PENDING_APPROVAL')
 GROUP BY user_id, host_id, project_name
ON CONFLICT DO NOTHING;

-- Drains with a deadline: at most one open drain per host.
CREATE TABLE host_drains (
  id             uuid PRIMARY KEY,
  host_id        text NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  actor          text NOT NULL,
  migrate        boolean NOT NULL,
  parallelism    integer NOT NULL,
  deadline_at    timestamptz,
  -- ACTIVE until everything is off the host (DONE), the deadline passed and what was
  -- left was stopped (DEADLINE_REACHED), or the host was activated (CANCELLED).
  status         text NOT NULL DEFAULT 'ACTIVE',
  -- Moves are counted from workspace_moves (drain_id); this, at the deadline.
  force_stopped  integer NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz
);
CREATE UNIQUE INDEX host_drains_open ON host_drains (host_id) WHERE status = 'ACTIVE';

-- A move of a workspace from one host to another. While it copies, the destination
-- holds the workspace's resources (hold_*, added to the host's reserved_* in the
-- transaction that started the move); the switch moves the workspace's own
-- reservation (the trigger) and releases the hold in one transaction, and a failed
-- move releases the hold.
CREATE TABLE workspace_moves (
  id              uuid PRIMARY KEY,
  workspace_id    uuid NOT NULL REFERENCES workspaces(id),
  from_host_id    text NOT NULL,
  to_host_id      text NOT NULL,
  actor           text NOT NULL,
  drain_id        uuid REFERENCES host_drains(id),
  -- STOPPING, COPYING, VERIFYING, STARTING, then SUCCEEDED or FAILED.
  status          text NOT NULL,
  error           text,
  was_running     boolean NOT NULL,
  image_ref       text NOT NULL,
  bytes_done      bigint NOT NULL DEFAULT 0,
  image_bytes     bigint,
  image_sha256    text,
  volume_bytes    bigint,
  volume_sha256   text,
  hold_memory_mb  bigint NOT NULL,
  hold_millicpus  bigint NOT NULL,
  hold_disk_mb    bigint NOT NULL,
  held            boolean NOT NULL DEFAULT true,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz
);
CREATE UNIQUE INDEX workspace_moves_open ON workspace_moves (workspace_id) WHERE status NOT IN ('SUCCEEDED', 'FAILED');
CREATE INDEX workspace_moves_drain ON workspace_moves (drain_id) WHERE drain_id IS NOT NULL;

-- A workspace placed (created, retried, approved) or started on a host uses the user's
-- volume there: recorded whatever code made the change, as reservations are.
CREATE FUNCTION a4c_track_volume() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.host_id IS NOT NULL AND NEW.status IN ('CREATING', 'STARTING') THEN
    INSERT INTO volumes (user_id, host_id, project, name) VALUES (NEW.user_id, NEW.host_id, NEW.project_name, 'a4c-home-' || NEW.user_id)
    ON CONFLICT (user_id, project, host_id) DO UPDATE SET last_used_at = now();
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER workspaces_volume AFTER INSERT OR UPDATE OF status, host_id ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_track_volume();
