-- Bulk creates insert hundreds of workspaces in one statement. The row trigger of
-- migration 080 ran one INSERT … ON CONFLICT into volumes per inserted row; inserts now
-- go through a statement trigger with a transition table: one INSERT per statement,
-- one row per (user, project, host), whatever the number of workspaces (as migration
-- 110 did for reservations). Updates keep the row trigger (a workspace retried,
-- approved, moved or started on a host).
DROP TRIGGER workspaces_volume ON workspaces;
CREATE TRIGGER workspaces_volume AFTER UPDATE OF status, host_id ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_track_volume();

CREATE FUNCTION a4c_track_volume_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- DISTINCT: ON CONFLICT DO UPDATE may touch a row only once per statement, and two
  -- new workspaces of a user's project can share a host.
  INSERT INTO volumes (user_id, host_id, project, name)
  SELECT DISTINCT user_id, host_id, project_name, 'a4c-home-' || user_id
    FROM inserted WHERE host_id IS NOT NULL AND status IN ('CREATING', 'STARTING')
  ON CONFLICT (user_id, project, host_id) DO UPDATE SET last_used_at = now();
  RETURN NULL;
END $$;

CREATE TRIGGER workspaces_volume_inserted AFTER INSERT ON workspaces
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION a4c_track_volume_inserted();
