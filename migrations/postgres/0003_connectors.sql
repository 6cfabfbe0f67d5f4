-- Installed connector components, by tenant and name@version. A name@version
-- never changes its digest: installing a different component under it is
-- refused, so runs that recorded the digest can always resume.
CREATE TABLE connectors (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    version       TEXT NOT NULL,
    digest        TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    component     BYTEA NOT NULL,
    installed_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
