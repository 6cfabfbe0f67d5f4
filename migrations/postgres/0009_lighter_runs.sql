-- Every run, journal row and usage row of a tenant referenced the tenant's
-- row (and every run its workflow version's row) through a foreign key. A
-- foreign key check takes a share lock on the row it finds; with many
-- concurrent writers of one tenant, every insert then shares one row lock
-- with the others (a multixact per row version), which cost about a quarter
-- of a run start's time in Postgres (docs/BENCHMARKS.md, W5, 2026-12-05).
-- The store writes these rows only for a tenant it has found (an API key's,
-- a run's) and a version it has read; tenants and versions are never
-- deleted while they have runs (a tenant's rows move or go together).
-- The journal keeps its key to its run, which only that run's writers share.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_tenant_id_fkey;
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_tenant_id_workflow_hash_fkey;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_tenant_id_fkey;
ALTER TABLE usage DROP CONSTRAINT IF EXISTS usage_tenant_id_fkey;

-- Fewer index entries per run: nothing looks runs up by status alone (every
-- query by status has the tenant, or is the due-run index's), and most runs
-- have no parent, no retried run and no idempotency key, so those indexes
-- keep only the runs that have one (a lookup by value still uses them).
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_parent;
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
DROP INDEX IF EXISTS runs_retry_of;
CREATE INDEX runs_retry_of ON runs (retry_of) WHERE retry_of IS NOT NULL;
DROP INDEX IF EXISTS runs_idempotency;
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
