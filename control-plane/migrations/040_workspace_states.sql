-- The workspace state table (control-plane/src/workspaces/states.ts) in the SQL that
-- cannot read it; test/states.test.ts checks these functions against the table for
-- every status.
--
-- A stopped workspace frees its CPU and memory and keeps its disk (its container and
-- writable layer stay on the host); DELETING keeps only the disk until its container
-- is gone; LOST (its host was removed or unhealthy too long) holds nothing.

CREATE FUNCTION a4c_reserves_compute(status text, host text) RETURNS boolean
  LANGUAGE sql IMMUTABLE AS
$$ SELECT host IS NOT NULL AND status IN ('CREATING', 'RUNNING', 'STOPPING', 'STARTING') $$;

CREATE FUNCTION a4c_reserves_disk(status text, host text) RETURNS boolean
  LANGUAGE sql IMMUTABLE AS
$$ SELECT host IS NOT NULL AND status IN ('CREATING', 'RUNNING', 'STOPPING', 'STOPPED', 'STARTING', 'DELETING') $$;

-- Holds anything on its host: what hosts.reserved_workspaces counts.
CREATE OR REPLACE FUNCTION a4c_reserves(status text, host text) RETURNS boolean
  LANGUAGE sql IMMUTABLE AS
$$ SELECT a4c_reserves_compute(status, host) OR a4c_reserves_disk(status, host) $$;

-- Keeps hosts.reserved_* equal to the sums over the workspaces that reserve each part.
CREATE OR REPLACE FUNCTION a4c_track_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  was_c boolean := TG_OP <> 'INSERT' AND a4c_reserves_compute(OLD.status, OLD.host_id);
  was_d boolean := TG_OP <> 'INSERT' AND a4c_reserves_disk(OLD.status, OLD.host_id);
  now_c boolean := TG_OP <> 'DELETE' AND a4c_reserves_compute(NEW.status, NEW.host_id);
  now_d boolean := TG_OP <> 'DELETE' AND a4c_reserves_disk(NEW.status, NEW.host_id);
BEGIN
  IF NOT (was_c OR was_d OR now_c OR now_d) THEN
    RETURN NULL;
  END IF;
  IF was_c = now_c AND was_d = now_d AND NEW.host_id = OLD.host_id AND NEW.memory_mb = OLD.memory_mb
     AND NEW.cpus = OLD.cpus AND NEW.disk_gb = OLD.disk_gb THEN
    RETURN NULL;
  END IF;
  IF was_c OR was_d THEN
    UPDATE hosts SET reserved_memory_mb = reserved_memory_mb - CASE WHEN was_c THEN OLD.memory_mb ELSE 0 END,
                     reserved_millicpus = reserved_millicpus - CASE WHEN was_c THEN round(OLD.cpus * 1000) ELSE 0 END,
                     reserved_disk_mb = reserved_disk_mb - CASE WHEN was_d THEN round(OLD.disk_gb * 1024) ELSE 0 END,
                     reserved_workspaces = reserved_workspaces - 1
     WHERE id = OLD.host_id;
  END IF;
  IF now_c OR now_d THEN
    UPDATE hosts SET reserved_memory_mb = reserved_memory_mb + CASE WHEN now_c THEN NEW.memory_mb ELSE 0 END,
                     reserved_millicpus = reserved_millicpus + CASE WHEN now_c THEN round(NEW.cpus * 1000) ELSE 0 END,
                     reserved_disk_mb = reserved_disk_mb + CASE WHEN now_d THEN round(NEW.disk_gb * 1024) ELSE 0 END,
                     reserved_workspaces = reserved_workspaces + 1
     WHERE id = NEW.host_id;
  END IF;
  RETURN NULL;
END $$;

UPDATE hosts h
   SET reserved_memory_mb = s.mem, reserved_millicpus = s.mcpu, reserved_disk_mb = s.disk, reserved_workspaces = s.n
  FROM (SELECT h2.id,
               COALESCE(sum(w.memory_mb) FILTER (WHERE a4c_reserves_compute(w.status, w.host_id)), 0) AS mem,
               COALESCE(sum(round(w.cpus * 1000)) FILTER (WHERE a4c_reserves_compute(w.status, w.host_id)), 0) AS mcpu,
               COALESCE(sum(round(w.disk_gb * 1024)) FILTER (WHERE a4c_reserves_disk(w.status, w.host_id)), 0) AS disk,
               count(w.id) FILTER (WHERE a4c_reserves(w.status, w.host_id)) AS n
          FROM hosts h2 LEFT JOIN workspaces w ON w.host_id = h2.id
         GROUP BY h2.id) s
 WHERE h.id = s.id;

-- Hosts that are gone. unhealthy_since: when a control plane's lost-host sweep first
-- saw the host without a live session (its injected clock), cleared when it is live
-- again; past A4C_HOST_LOST_AFTER_SECONDS its workspaces become LOST. Measured from the
-- sweep's own observation, so an outage of the control plane itself (no heartbeats
-- recorded) never counts against the hosts. lost_at: when that happened (NULL again
-- once the host is live).
ALTER TABLE host_status
  ADD COLUMN unhealthy_since timestamptz,
  ADD COLUMN lost_at timestamptz;

