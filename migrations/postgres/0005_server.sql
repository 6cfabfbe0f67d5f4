-- What the server adds: API keys, idempotent run starts, runs that wait in
-- the database instead of in a process, and deprecated workflow versions.

-- An API key is `weft_<id>_<secret>`: the id is shown and looked up, the
-- secret is kept only as its SHA-256. A key without a tenant is an
-- operator's (it manages tenants and keys).
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NULL,
    revoked_at    BIGINT NULL
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

-- A repeated start with the same key returns the first run.
ALTER TABLE runs ADD COLUMN idempotency_key TEXT NULL;
CREATE UNIQUE INDEX runs_idempotency ON runs (tenant_id, idempotency_key);

-- When a top-level run that nobody drives is next due (ms). A run that
-- waits (a sleep, a signal) is parked here with no process holding it; a
-- worker claims it once this time has come and its lease is free. 0: due
-- now (a new run, or one whose driver died). A run waiting only for a
-- signal is parked at the largest BIGINT until the signal comes.
ALTER TABLE runs ADD COLUMN wake_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_due ON runs (wake_at) WHERE status = 'running' AND parent_id IS NULL;

ALTER TABLE workflows ADD COLUMN deprecated_at BIGINT NULL;
