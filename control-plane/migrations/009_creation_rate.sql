-- The per-user workspace-creation rate (GCRA): the theoretical arrival time of the
-- user's next creation. Kept on the user's row, which creation already locks, so the
-- limit holds across control-plane replicas and a refused or rolled-back creation
-- costs nothing.
ALTER TABLE users ADD COLUMN create_tat timestamptz;
