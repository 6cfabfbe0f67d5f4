-- The journal's foreign key to its run cost a check per event row: five
-- per run of one step, 4% of all CPU (Postgres and server together) in W5
-- on 2026-12-05 (docs/BENCHMARKS.md). Every writer inserts a run's events
-- in the statement or transaction that inserts the run or updates its row
-- (taking its row lock): a run start's events only with its run
-- (`WHERE EXISTS` the inserted row), an append's only for the runs whose seqs
-- it reserved. Runs are deleted only with their tenant, journal first.
-- SQLite keeps the key; its check is a lookup in the same process.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_run_id_fkey;
