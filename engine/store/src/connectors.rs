//! The connector registry: installed components by tenant and `name@version`.

use crate::db::Scope;
use crate::sql::{self, ConnectorRow};
use crate::{Error, Result, Store};

/// A connector component to install.
#[derive(Debug, Clone, Copy)]
pub struct NewConnector<'a> {
    /// The tenant that installs it.
    pub tenant: &'a str,
    /// From its manifest.
    pub name: &'a str,
    /// From its manifest.
    pub version: &'a str,
    /// `sha256:<hex>` of `component`.
    pub digest: &'a str,
    /// The manifest as JSON.
    pub manifest: &'a str,
    /// The component's bytes.
    pub component: &'a [u8],
    /// When it is installed (ms).
    pub installed_at: i64,
}

/// What installing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The component is now installed.
    New,
    /// This very component was already installed under its name@version.
    Already,
}

/// An installed component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledConnector {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The component's bytes.
    pub component: Vec<u8>,
    /// Milliseconds since the epoch.
    pub installed_at: i64,
}

impl Store {
    /// Installs a component under its `name@version`. The same component again
    /// is a no-op; a different one under the same name@version is refused
    /// with [`Error::ConnectorConflict`].
    pub async fn install_connector(&self, c: NewConnector<'_>) -> Result<Installed> {
        let inserted = sqlx::query(sql::INSERT_CONNECTOR)
            .bind(c.tenant)
            .bind(c.name)
            .bind(c.version)
            .bind(c.digest)
            .bind(c.manifest)
            .bind(c.component)
            .bind(c.installed_at)
            .execute(&mut self.shard(c.tenant).await?.db.conn(Scope::Tenant(c.tenant)).await?)
            .await?
            .rows_affected();
        if inserted == 1 {
            return Ok(Installed::New);
        }
        let existing: String = sqlx::query_scalar(sql::SELECT_CONNECTOR_DIGEST)
            .bind(c.tenant)
            .bind(c.name)
            .bind(c.version)
            .fetch_one(&mut self.shard(c.tenant).await?.db.conn(Scope::Tenant(c.tenant)).await?)
            .await?;
        if existing == c.digest {
            Ok(Installed::Already)
        } else {
            Err(Error::ConnectorConflict {
                key: format!("{}@{}", c.name, c.version),
                existing,
                offered: c.digest.into(),
            })
        }
    }

    /// Every component the tenant installed, oldest first.
    pub async fn installed_connectors(&self, tenant: &str) -> Result<Vec<InstalledConnector>> {
        let rows = sqlx::query_as::<_, ConnectorRow>(sql::SELECT_CONNECTORS)
            .bind(tenant)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|ConnectorRow { name, version, digest, component, installed_at }| InstalledConnector {
                name,
                version,
                digest,
                component,
                installed_at,
            })
            .collect())
    }

    /// The digests of every component the tenant installed: a cheap check
    /// of whether a process has loaded them all.
    pub async fn installed_digests(&self, tenant: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql::SELECT_CONNECTOR_DIGESTS)
            .bind(tenant)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?)
    }
}
