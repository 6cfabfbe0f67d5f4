-- The tenant registry: where each tenant's data (workflows, runs, journals,
-- connectors, usage) lives. NULL: in this, the shared database. Tenants,
-- their plans and API keys always stay here.
ALTER TABLE tenants ADD COLUMN database_url TEXT NULL;
-- Set while a tenant's data moves between databases: everything done for
-- the tenant is refused meanwhile (it is retried after the move).
ALTER TABLE tenants ADD COLUMN moving_since BIGINT NULL;
