-- Placement batches insert hundreds of workspaces in one statement. The row trigger
-- (migration 040) ran one UPDATE of hosts per inserted row; inserts now go through a
-- statement trigger with a transition table: one UPDATE per statement, one row change
-- per host, whatever the number of workspaces. Updates and deletes keep the row
-- trigger (a4c_track_reservation, which compares OLD and NEW of each row).
-- hosts.reserved_* stay exactly the sums over the reserving workspaces
-- (test/states.test.ts checks it for every status).
DROP TRIGGER workspaces_reservation ON workspaces;
CREATE TRIGGER workspaces_reservation AFTER UPDATE OR DELETE ON workspaces
  FOR EACH ROW EXECUTE FUNCTION a4c_track_reservation();

CREATE FUNCTION a4c_track_reservation_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE hosts h
     SET reserved_memory_mb = h.reserved_memory_mb + s.mem,
         reserved_millicpus = h.reserved_millicpus + s.mcpu,
         reserved_disk_mb = h.reserved_disk_mb + s.disk,
         reserved_workspaces = h.reserved_workspaces + s.n
    FROM (SELECT host_id,
                 COALESCE(sum(memory_mb) FILTER (WHERE a4c_reserves_compute(status, host_id)), 0) AS mem,
                 COALESCE(sum(round(cpus * 1000)) FILTER (WHERE a4c_reserves_compute(status, host_id)), 0) AS mcpu,
                 COALESCE(sum(round(disk_gb * 1024)) FILTER (WHERE a4c_reserves_disk(status, host_id)), 0) AS disk,
                 count(*) AS n
            FROM inserted WHERE a4c_reserves(status, host_id) GROUP BY host_id) s
   WHERE h.id = s.host_id;
  RETURN NULL;
END $$;

CREATE TRIGGER workspaces_reservation_inserted AFTER INSERT ON workspaces
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION a4c_track_reservation_inserted();
