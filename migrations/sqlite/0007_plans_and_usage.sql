-- Plans and usage. A tenant's plan (JSON, NULL: no limits) says which
-- connectors it may use, how many runs it may have running at once and how
-- many steps it may run a month. Usage counts what ran, by calendar month
-- (UTC, `YYYY-MM`): connector calls made and the time spent in them. Runs
-- are counted from the runs table. Each process writes its own shard of a
-- month's row, so that processes do not wait on one row's lock; a read sums
-- the shards.
ALTER TABLE tenants ADD COLUMN plan TEXT NULL;

CREATE TABLE usage (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    period     TEXT NOT NULL,
    shard      BIGINT NOT NULL,
    steps      BIGINT NOT NULL DEFAULT 0,
    wasm_us    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, period, shard)
);

CREATE INDEX runs_running_by_tenant ON runs (tenant_id) WHERE status = 'running' AND parent_id IS NULL;
