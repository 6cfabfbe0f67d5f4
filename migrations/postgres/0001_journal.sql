-- Tenants own everything; local runs use the 'default' tenant.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES ('default', 'Default', 0);

-- Immutable workflow versions, by content hash. Runs pin one.
CREATE TABLE workflows (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    hash        TEXT NOT NULL,
    name        TEXT NOT NULL,
    definition  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hash)
);

-- One row per run: a summary of its journal, plus the driver's lease.
CREATE TABLE runs (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    workflow_name  TEXT NOT NULL,
    workflow_hash  TEXT NOT NULL,
    status         TEXT NOT NULL,
    input          TEXT NOT NULL,
    output         TEXT,
    error          TEXT,
    last_seq       BIGINT NOT NULL,
    lease_owner    TEXT,
    lease_until    BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, workflow_hash) REFERENCES workflows (tenant_id, hash)
);
CREATE INDEX runs_by_tenant_created ON runs (tenant_id, created_at);
CREATE INDEX runs_by_status ON runs (status);

-- The append-only journal. A run's state is the fold of its events by seq.
CREATE TABLE events (
    run_id      TEXT NOT NULL REFERENCES runs (id),
    seq         BIGINT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    kind        TEXT NOT NULL,
    step        TEXT,
    body        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
