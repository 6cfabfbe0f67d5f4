-- Fewer index entries per run: nothing looks runs up by status alone (every
-- query by status has the tenant, or is the due-run index's), and most runs
-- have no parent, no retried run and no idempotency key, so those indexes
-- keep only the runs that have one (a lookup by value still uses them).
-- (Postgres also drops the foreign keys to hot rows; SQLite takes no row
-- locks for them.)
DROP INDEX IF EXISTS runs_by_status;
DROP INDEX IF EXISTS runs_parent;
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
DROP INDEX IF EXISTS runs_retry_of;
CREATE INDEX runs_retry_of ON runs (retry_of) WHERE retry_of IS NOT NULL;
DROP INDEX IF EXISTS runs_idempotency;
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
