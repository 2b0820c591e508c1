-- Image builds: a queue in which no build runs twice (see builds/queue.ts).
CREATE TABLE image_builds (
  id              uuid PRIMARY KEY,
  user_id         text NOT NULL,
  image_name      text NOT NULL,
  project         text NOT NULL,
  arch            text NOT NULL,
  change_number   text NOT NULL,
  image_tag       text NOT NULL,
  status          text NOT NULL,            -- SCHEDULED, IN_PROGRESS, COMPLETED, FAILED
  worker_host_id  text,                     -- the host holding (or that held) the claim
  claim_id        uuid,                     -- changes with every claim; results must carry it
  attempts        integer NOT NULL DEFAULT 0,  -- claims made
  retry_count     integer NOT NULL DEFAULT 0,  -- requeues after a silent lease
  progress        integer NOT NULL DEFAULT 0,
  image_id        text,
  error           text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  claimed_at      timestamptz,
  heartbeat_at    timestamptz,
  finished_at     timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The queue, oldest first per arch.
CREATE INDEX image_builds_queue ON image_builds (arch, created_at, id) WHERE status = 'SCHEDULED';
CREATE INDEX image_builds_in_progress ON image_builds (heartbeat_at) WHERE status = 'IN_PROGRESS';
CREATE INDEX image_builds_worker ON image_builds (worker_host_id) WHERE status = 'IN_PROGRESS';
CREATE INDEX image_builds_user ON image_builds (user_id, created_at);
CREATE INDEX image_builds_project ON image_builds (project, arch, created_at);

CREATE TABLE build_logs (
  build_id  uuid NOT NULL REFERENCES image_builds(id) ON DELETE CASCADE,
  seq       bigserial,
  at        timestamptz NOT NULL DEFAULT now(),
  line      text NOT NULL,
  PRIMARY KEY (build_id, seq)
);
