-- Liveness and stats move to their own row per host. Heartbeats update host_status
-- only, so they never wait behind placements, which lock the hosts row; a burst of
-- creates can no longer make a healthy host look dead. Placement reads typed columns
-- (not the stats JSON).
CREATE TABLE host_status (
  host_id            text PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
  -- A copy of hosts.arch, so one index serves placement's filter and order.
  arch               text NOT NULL,
  session_id         text,
  connected          boolean NOT NULL DEFAULT false,
  connected_at       timestamptz,
  last_heartbeat_at  timestamptz,
  stats              jsonb,
  disk_percent       double precision NOT NULL DEFAULT 100,
  memory_percent     double precision NOT NULL DEFAULT 100,
  docker_ready       boolean NOT NULL DEFAULT false
);
INSERT INTO host_status (host_id, arch, session_id, connected, connected_at, last_heartbeat_at, stats, disk_percent, memory_percent, docker_ready)
SELECT id, arch, session_id, connected, connected_at, last_heartbeat_at, stats,
       COALESCE((stats->>'diskPercent')::float8, 100), COALESCE((stats->>'memoryPercent')::float8, 100),
       COALESCE((stats->>'dockerReady')::boolean, false)
  FROM hosts;
ALTER TABLE hosts
  DROP COLUMN session_id, DROP COLUMN connected, DROP COLUMN connected_at, DROP COLUMN last_heartbeat_at, DROP COLUMN stats,
  -- What the workspaces placed here reserve (their tiers), kept by the trigger below.
  ADD COLUMN reserved_memory_mb  bigint NOT NULL DEFAULT 0,
  ADD COLUMN reserved_millicpus  bigint NOT NULL DEFAULT 0,
  ADD COLUMN reserved_disk_mb    bigint NOT NULL DEFAULT 0,
  ADD COLUMN reserved_workspaces integer NOT NULL DEFAULT 0;
CREATE INDEX hosts_arch ON hosts (arch);
-- Placement walks this index in its order (least disk, then memory) and stops at the
-- first host that fits: the cost grows with the hosts it skips, not with the fleet.
CREATE INDEX host_status_placement ON host_status (arch, disk_percent, memory_percent);

-- A workspace holds a reservation on its host while it is placed and not finished.
CREATE FUNCTION a4c_reserves(status text, host text) RETURNS boolean
  LANGUAGE sql IMMUTABLE AS
$$ SELECT host IS NOT NULL AND status NOT IN ('DELETED', 'FAILED', 'REJECTED', 'PENDING_APPROVAL') $$;

-- Keeps hosts.reserved_* equal to the sum over the workspaces that reserve, whatever
-- code changes a workspace. It runs in the changing transaction, which already holds
-- the host row's lock when it placed the workspace (see placement.ts).
CREATE FUNCTION a4c_track_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  was boolean := TG_OP <> 'INSERT' AND a4c_reserves(OLD.status, OLD.host_id);
  now_ boolean := TG_OP <> 'DELETE' AND a4c_reserves(NEW.status, NEW.host_id);
BEGIN
  IF was AND now_ AND NEW.host_id = OLD.host_id AND NEW.memory_mb = OLD.memory_mb
     AND NEW.cpus = OLD.cpus AND NEW.disk_gb = OLD.disk_gb THEN
    RETURN NULL;
  END IF;
  IF was THEN
    UPDATE hosts SET reserved_memory_mb = reserved_memory_mb - OLD.memory_mb,
                     reserved_millicpus = reserved_millicpus - round(OLD.cpus * 1000),
                     reserved_disk_mb = reserved_disk_mb - round(OLD.disk_gb * 1024),
                     reserved_workspaces = reserved_workspaces - 1
     WHERE id = OLD.host_id;
  END IF;
  IF now_ THEN
    UPDATE hosts SET reserved_memory_mb = reserved_memory_mb + NEW.memory_mb,
                     reserved_millicpus = reserved_millicpus + round(NEW.cpus * 1000),
                     reserved_disk_mb = reserved_disk_mb + round(NEW.disk_gb * 1024),
                     reserved_workspaces = reserved_workspaces + 1
     WHERE id = NEW.host_id;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER workspaces_reservation AFTER INSERT OR UPDATE OR DELETE ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_track_reservation();

UPDATE hosts h SET reserved_memory_mb = s.mem, reserved_millicpus = s.mcpu, reserved_disk_mb = s.disk, reserved_workspaces = s.n
  FROM (SELECT host_id, sum(memory_mb) AS mem, sum(round(cpus * 1000)) AS mcpu, sum(round(disk_gb * 1024)) AS disk, count(*) AS n
          FROM workspaces WHERE a4c_reserves(status, host_id) GROUP BY host_id) s
 WHERE h.id = s.host_id;

-- Users exist from their first request; an admin puts them in a team.
CREATE TABLE users (
  id          text PRIMARY KEY,
  team_id     text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO users (id) SELECT DISTINCT user_id FROM workspaces ON CONFLICT DO NOTHING;

-- Quotas: a NULL limit means "inherit" (user → team → the control plane's default).
CREATE TABLE team_quotas (
  team_id                text PRIMARY KEY,
  max_workspaces         integer,
  max_disk_gb            double precision,
  max_concurrent_builds  integer,
  updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE user_quotas (
  user_id                text PRIMARY KEY,
  max_workspaces         integer,
  max_disk_gb            double precision,
  max_concurrent_builds  integer,
  updated_at             timestamptz NOT NULL DEFAULT now()
);
