-- Build hygiene: image_builds.status may now also be CANCELLED (a user or an admin
-- cancelled it: POST /v1/image-schedules/{id}/cancel). The maximum-duration sweep looks
-- at running builds by when they were claimed.
CREATE INDEX image_builds_running_since ON image_builds (claimed_at) WHERE status = 'IN_PROGRESS';
