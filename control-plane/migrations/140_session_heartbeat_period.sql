-- Each agent session's heartbeat period, as its Welcome told it (it grows with the
-- fleet: agents/heartbeat-period.ts), and the liveness window that follows from it
-- (period × A4C_HEARTBEAT_MISS_LIMIT). Every liveness check (placement, the lost-host
-- sweep, host and workspace views, metrics, the Hello's "already connected" refusal)
-- uses GREATEST(<the configured window>, live_within_seconds), so a host told to beat
-- less often is never taken for dead because of it. NULL (rows of older control
-- planes): the configured window alone.
ALTER TABLE host_status
  ADD COLUMN heartbeat_interval_ms integer,
  ADD COLUMN live_within_seconds double precision;
