-- The tier's optional confinement, kept with each workspace like its memory, CPUs and
-- pids limit: what the workspace was created with, not whatever A4C_TIERS says later.
-- Existing workspaces get none, exactly what their containers were created with.
ALTER TABLE workspaces
  ADD COLUMN read_only_rootfs boolean NOT NULL DEFAULT false,
  -- Docker's --user (uid[:gid] or a name); NULL: the image's label, else its USER.
  ADD COLUMN run_as_user      text,
  ADD COLUMN run_as_non_root  boolean NOT NULL DEFAULT false;
