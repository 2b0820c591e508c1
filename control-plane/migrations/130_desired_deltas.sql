-- Incremental desired state (control-plane/src/agents/desired-push.ts): a delta for a
-- host is read from the database, not diffed in memory. workspaces.desired_revision is
-- the host revision at which the workspace's desired state last changed, set by every
-- transition that bumps the host's revision, leaving the desired set included, so the
-- workspaces that changed on host H since revision S are
--   WHERE host_id = H AND desired_revision > S
-- (this index; not partial: a row DELETED since still names its removal).
CREATE INDEX workspaces_host_desired_revision ON workspaces (host_id, desired_revision);

-- What that query cannot see: a workspace whose host_id moved away from H (a move, a
-- retry of a FAILED or LOST workspace on another host) or whose row went. For those,
-- H's floor is raised past its current revision: an agent whose set is older than the
-- floor gets a complete desired state instead of a delta. Its own table, not a column
-- of hosts: raising it must not take the old host's row lock (a retry already holds the
-- new host's).
CREATE TABLE host_desired_floors (
  host_id text PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
  -- A set at a revision below this cannot be brought up to date by a delta.
  floor   bigint NOT NULL
);

CREATE FUNCTION a4c_desired_floor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.host_id IS NOT NULL AND (TG_OP = 'DELETE' OR NEW.host_id IS DISTINCT FROM OLD.host_id) THEN
    -- +1: whether this transaction bumps the old host's revision before or after this
    -- row changes, no set read before it commits is at or above the floor.
    INSERT INTO host_desired_floors (host_id, floor)
      SELECT OLD.host_id, h.revision + 1 FROM hosts h WHERE h.id = OLD.host_id
      ON CONFLICT (host_id) DO UPDATE SET floor = GREATEST(host_desired_floors.floor, EXCLUDED.floor);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER workspaces_desired_floor AFTER UPDATE OF host_id OR DELETE ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_desired_floor();
