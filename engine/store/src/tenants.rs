//! Tenants, and the API keys that act for them (or for the operator).

use crate::db::Scope;
use crate::sql::{self, ApiKeyRow, TenantRow};
use crate::{Error, Result, Store};

/// A tenant (workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id, as it appears in every row it owns.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Created at (ms).
    pub created_at: i64,
}

/// An API key as stored: never its secret, only the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's id, the visible part of the key.
    pub id: String,
    /// The tenant it acts for; `None` for an operator key.
    pub tenant: Option<String>,
    /// A name for people.
    pub name: String,
    /// Its role (the server gives the names meaning).
    pub role: String,
    /// The secret's hash (hex SHA-256).
    pub secret_hash: String,
    /// Created at (ms).
    pub created_at: i64,
    /// Last used at (ms).
    pub last_used_at: Option<i64>,
    /// Revoked at (ms); a revoked key is refused.
    pub revoked_at: Option<i64>,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Tenant {
        Tenant { id: row.id, name: row.name, created_at: row.created_at }
    }
}

impl From<ApiKeyRow> for ApiKey {
    fn from(row: ApiKeyRow) -> ApiKey {
        ApiKey {
            id: row.id,
            tenant: row.tenant_id,
            name: row.name,
            role: row.role,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

impl Store {
    /// Creates a tenant; [`Error::TenantExists`] when the id is taken.
    pub async fn create_tenant(&self, id: &str, name: &str, at: i64) -> Result<Tenant> {
        let inserted = sqlx::query(sql::INSERT_TENANT)
            .bind(id)
            .bind(name)
            .bind(at)
            .execute(&mut self.db.conn(Scope::All).await?)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(Error::TenantExists(id.to_string()));
        }
        Ok(Tenant { id: id.to_string(), name: name.to_string(), created_at: at })
    }

    /// The tenant with this id, if any.
    pub async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query_as::<_, TenantRow>(sql::SELECT_TENANT)
            .bind(id)
            .fetch_optional(&mut self.db.conn(Scope::All).await?)
            .await?;
        Ok(row.map(Tenant::from))
    }

    /// Every tenant, oldest first.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows =
            sqlx::query_as::<_, TenantRow>(sql::SELECT_TENANTS).fetch_all(&mut self.db.conn(Scope::All).await?).await?;
        Ok(rows.into_iter().map(Tenant::from).collect())
    }

    /// Stores a new API key.
    pub async fn create_api_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query(sql::INSERT_API_KEY)
            .bind(&key.id)
            .bind(key.tenant.as_deref())
            .bind(&key.name)
            .bind(&key.role)
            .bind(&key.secret_hash)
            .bind(key.created_at)
            .execute(&mut self.db.conn(Scope::from(key.tenant.as_deref())).await?)
            .await?;
        Ok(())
    }

    /// The key with this id, revoked or not.
    pub async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query_as::<_, ApiKeyRow>(sql::SELECT_API_KEY)
            .bind(id)
            .fetch_optional(&mut self.db.conn(Scope::All).await?)
            .await?;
        Ok(row.map(ApiKey::from))
    }

    /// The keys of a tenant (`None`: the operator keys), oldest first.
    pub async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query_as::<_, ApiKeyRow>(sql::SELECT_API_KEYS)
            .bind(tenant)
            .fetch_all(&mut self.db.conn(Scope::from(tenant)).await?)
            .await?;
        Ok(rows.into_iter().map(ApiKey::from).collect())
    }

    /// Whether any key that is not revoked exists (a server's first start
    /// makes the operator's key when none does).
    pub async fn has_live_api_keys(&self) -> Result<bool> {
        let n: i64 =
            sqlx::query_scalar(sql::COUNT_LIVE_API_KEYS).fetch_one(&mut self.db.conn(Scope::All).await?).await?;
        Ok(n > 0)
    }

    /// Revokes a key of `tenant` (`None`: an operator key) at `at`. Returns
    /// whether it was found (revoking a revoked key keeps its first time).
    pub async fn revoke_api_key(&self, tenant: Option<&str>, id: &str, at: i64) -> Result<bool> {
        let found = sqlx::query(sql::REVOKE_API_KEY)
            .bind(id)
            .bind(tenant)
            .bind(at)
            .execute(&mut self.db.conn(Scope::from(tenant)).await?)
            .await?
            .rows_affected();
        Ok(found == 1)
    }

    /// Records that a key was used at `at`.
    pub async fn touch_api_key(&self, id: &str, at: i64) -> Result<()> {
        sqlx::query(sql::TOUCH_API_KEY).bind(id).bind(at).execute(&mut self.db.conn(Scope::All).await?).await?;
        Ok(())
    }
}
