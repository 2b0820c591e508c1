-- Creation attempts ("clean before retry") and where a creation got to.
ALTER TABLE workspaces
  ADD COLUMN attempt integer NOT NULL DEFAULT 0,
  -- The creation step the agent last reported (image, create, start, ready), so a
  -- workspace stuck in CREATING can say where it got stuck.
  ADD COLUMN current_step text,
  ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION a4c_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status THEN
    NEW.status_changed_at := now();
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER workspaces_status_changed BEFORE UPDATE ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_status_changed();

-- The stuck-creation sweep looks only at workspaces on their way up.
CREATE INDEX workspaces_coming_up ON workspaces (status_changed_at) WHERE status IN ('CREATING', 'STARTING');
