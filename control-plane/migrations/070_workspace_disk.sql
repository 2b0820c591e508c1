-- What each workspace holds on disk, as its host's agent last measured it (writable
-- layer + the user's volume), against its tier's disk (workspaces.disk_gb). One row per
-- workspace, rewritten on every measuring pass: kept apart from workspaces so a pass
-- never fires the reservation and status triggers of the hot workspace rows.
CREATE TABLE workspace_disk (
  workspace_id          uuid PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
  host_id               text NOT NULL,
  writable_bytes        bigint NOT NULL,
  volume_bytes          bigint NOT NULL,
  layer_limit_enforced  boolean NOT NULL DEFAULT false,
  measured_at           timestamptz NOT NULL,
  -- The 90 % warning was sent for the current crossing; cleared when use falls below it,
  -- so the next crossing warns again (once per crossing).
  warned                boolean NOT NULL DEFAULT false,
  updated_at            timestamptz NOT NULL DEFAULT now()
);
