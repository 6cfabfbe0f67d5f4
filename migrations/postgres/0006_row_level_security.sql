-- Row-level security: the second layer of tenant isolation. The store's
-- connections work as the role weft_app, which owns no table, and set
-- `weft.tenant` before each statement: to a tenant id for what is done for a
-- tenant, or to `*` for what serves every tenant (workers' claims, group
-- commit, the operator's tenants and keys). Each tenant-owned table lets a
-- statement see and change only the rows of that tenant, also when its SQL
-- forgets the filter; with no setting it sees none. FORCE applies the
-- policies to the tables' owner as well. (Superusers and BYPASSRLS roles
-- pass over them, which is why the store does not work as the URL's user.)

-- The role is the cluster's, so databases that migrate at once may both try
-- to create it or grant it: whichever comes second finds it done.
DO $$
BEGIN
    CREATE ROLE weft_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'weft_app', 'MEMBER') THEN
        EXECUTE format('GRANT weft_app TO %I', current_user);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO weft_app', current_schema());
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO weft_app', current_schema());
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO weft_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO weft_app', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO weft_app', current_schema());
END $$;
-- The migrations' own record is read (by readiness checks), never written.
REVOKE INSERT, UPDATE, DELETE ON _sqlx_migrations FROM weft_app;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenants
    USING (id = current_setting('weft.tenant', true) OR current_setting('weft.tenant', true) = '*');

ALTER TABLE workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE workflows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON workflows
    USING (tenant_id = current_setting('weft.tenant', true) OR current_setting('weft.tenant', true) = '*');

ALTER TABLE runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON runs
    USING (tenant_id = current_setting('weft.tenant', true) OR current_setting('weft.tenant', true) = '*');

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON events
    USING (tenant_id = current_setting('weft.tenant', true) OR current_setting('weft.tenant', true) = '*');

ALTER TABLE connectors ENABLE ROW LEVEL SECURITY;
ALTER TABLE connectors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON connectors
    USING (tenant_id = current_setting('weft.tenant', true) OR current_setting('weft.tenant', true) = '*');

-- An operator key (no tenant) is seen only by what serves every tenant.
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON api_keys
    USING (tenant_id = current_setting('weft.tenant', true) OR current_setting('weft.tenant', true) = '*');
