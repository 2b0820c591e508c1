-- Images pushed to a registry by the agent that built them: every host of the arch can
-- pull them, so placement does not need the image on the host already.
CREATE TABLE registry_images (
  ref            text PRIMARY KEY,   -- the local tag, e.g. web:CL-1-linux-x64
  pull_ref       text NOT NULL,      -- where to pull it, e.g. registry.internal:5000/web:CL-1-linux-x64
  project        text NOT NULL,
  arch           text NOT NULL,
  change_number  text NOT NULL,
  build_id       uuid,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX registry_images_project ON registry_images (project, arch, created_at DESC);
