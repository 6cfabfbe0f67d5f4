//! Workflow versions as a tenant lists them: immutable, by content hash,
//! deprecated but never deleted (runs stay pinned to theirs).

use crate::db::Scope;
use crate::sql::{self, WorkflowRow};
use crate::{Result, Store};

/// A stored workflow version, without its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowVersion {
    /// Its content hash.
    pub hash: String,
    /// The workflow's name.
    pub name: String,
    /// First stored at (ms).
    pub created_at: i64,
    /// Deprecated at (ms): new runs should not use it.
    pub deprecated_at: Option<i64>,
}

impl From<WorkflowRow> for WorkflowVersion {
    fn from(row: WorkflowRow) -> WorkflowVersion {
        WorkflowVersion { hash: row.hash, name: row.name, created_at: row.created_at, deprecated_at: row.deprecated_at }
    }
}

impl Store {
    /// The tenant's version with this hash, if stored.
    pub async fn workflow_version(&self, tenant: &str, hash: &str) -> Result<Option<WorkflowVersion>> {
        let row = sqlx::query_as::<_, WorkflowRow>(sql::SELECT_WORKFLOW_SUMMARY)
            .bind(tenant)
            .bind(hash)
            .fetch_optional(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(row.map(WorkflowVersion::from))
    }

    /// The tenant's versions, newest first, of the workflow `name` if given.
    pub async fn workflow_versions(
        &self,
        tenant: &str,
        name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WorkflowVersion>> {
        let rows = sqlx::query_as::<_, WorkflowRow>(sql::LIST_WORKFLOWS)
            .bind(tenant)
            .bind(name)
            .bind(limit)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(rows.into_iter().map(WorkflowVersion::from).collect())
    }

    /// Marks a version deprecated at `at`; returns whether it exists.
    pub async fn deprecate_workflow(&self, tenant: &str, hash: &str, at: i64) -> Result<bool> {
        let found = sqlx::query(sql::DEPRECATE_WORKFLOW)
            .bind(tenant)
            .bind(hash)
            .bind(at)
            .execute(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(found.rows_affected() == 1)
    }
}
