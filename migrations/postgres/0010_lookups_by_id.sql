-- A lookup of one run names its id and its tenant (`id = $1 AND tenant_id =
-- $2`). Until the table has statistics, Postgres rates the primary key and
-- the tenant's index (tenant_id, created_at) the same for it, and a prepared
-- statement's generic plan, made once per connection while the table is
-- small, could take the tenant's index and keep it until the next ANALYZE:
-- every lookup then read all of the tenant's runs. W5 showed it as one pass
-- in three at 40% of the others' throughput (docs/BENCHMARKS.md, W5,
-- 2026-12-05). The tenant's index is now partial on a condition that every
-- run meets and that only the queries meant for it state, so a lookup by id
-- has the primary key alone to use.
-- Rebuilding the index holds writes to `runs` until it is built.
DROP INDEX IF EXISTS runs_by_tenant_created;
CREATE INDEX runs_by_tenant_created ON runs (tenant_id, created_at) WHERE created_at >= 0;
