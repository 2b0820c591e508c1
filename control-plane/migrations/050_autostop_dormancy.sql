-- Idle autostop and dormancy (control-plane/src/workspaces/autostop.ts).
--
-- autostop_after_seconds: the workspace's own idle period; NULL follows its tier's
-- (A4C_TIERS autostopAfterSeconds, read live from the configuration), 0 never stops it.
-- *_warned_at: when the last warning of each kind was recorded. A warning counts for a
-- due time if it was recorded within the warning lead before it, so a new idle period
-- (new activity, a longer period) needs a new warning and none is ever sent twice.
-- cpu_*: the agent's latest per-workspace CPU sample (100 = one core) and the time of
-- the last sample above A4C_AUTOSTOP_CPU_PERCENT, which counts as activity.
ALTER TABLE workspaces
  ADD COLUMN autostop_after_seconds integer CHECK (autostop_after_seconds >= 0),
  ADD COLUMN autostop_warned_at     timestamptz,
  ADD COLUMN dormant_at             timestamptz,
  ADD COLUMN dormant_warned_at      timestamptz,
  ADD COLUMN delete_warned_at       timestamptz,
  ADD COLUMN cpu_percent            real,
  ADD COLUMN cpu_sampled_at         timestamptz,
  ADD COLUMN cpu_busy_at            timestamptz;

-- Dormancy belongs to a stopped workspace: leaving STOPPED (started, deleted, by any
-- path) clears it and its pending warnings, so a later stop starts a fresh count.
CREATE FUNCTION a4c_clear_dormancy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status AND OLD.status = 'STOPPED' THEN
    NEW.dormant_at := NULL;
    NEW.dormant_warned_at := NULL;
    NEW.delete_warned_at := NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER workspaces_clear_dormancy BEFORE UPDATE OF status ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_clear_dormancy();

-- The sweep reads only running and stopped workspaces.
CREATE INDEX workspaces_autostop_candidates ON workspaces (status) WHERE status IN ('RUNNING', 'STOPPED');
