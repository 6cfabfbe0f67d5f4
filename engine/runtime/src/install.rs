//! Connectors a tenant installs: kept in the store, and loaded by every
//! engine that serves the tenant when it first needs them, so a component
//! installed through one server process runs on every worker.

use weft_host::ConnectorInfo;
use weft_store::{Installed, NewConnector};

use crate::{Engine, Error, Result, now_ms};

impl Engine {
    /// Installs a component for `tenant`: it must load and describe itself;
    /// a different build under a `name@version` the tenant can already use
    /// (built in or installed) is refused; then it is kept in the store and
    /// loaded here. Installing the same component again changes nothing.
    pub async fn install_connector(&self, tenant: &str, bytes: Vec<u8>) -> Result<(ConnectorInfo, Installed)> {
        let info = self.host.inspect_component(&bytes).await.map_err(Error::Component)?;
        self.load_installed(tenant).await?;
        let taken = self.host.connectors(tenant).into_iter().find(|c| c.key() == info.key() && c.digest != info.digest);
        if let Some(taken) = taken {
            return Err(Error::Store(weft_store::Error::ConnectorConflict {
                key: info.key(),
                existing: taken.digest,
                offered: info.digest,
            }));
        }
        let manifest = serde_json::to_string(&info.manifest).expect("manifests serialize");
        let installed = self
            .store
            .install_connector(NewConnector {
                tenant,
                name: &info.manifest.name,
                version: &info.manifest.version,
                digest: &info.digest,
                manifest: &manifest,
                component: &bytes,
                installed_at: now_ms(),
            })
            .await?;
        self.host.install_for(tenant, bytes).await.map_err(Error::Component)?;
        Ok((info, installed))
    }

    /// Loads the components `tenant` installed that this engine has not
    /// loaded yet (another process installed them, or this one started
    /// before). One small query when there is nothing new.
    pub async fn load_installed(&self, tenant: &str) -> Result<()> {
        let digests = self.store.installed_digests(tenant).await?;
        if digests.iter().all(|d| self.host.is_installed(tenant, d)) {
            return Ok(());
        }
        for installed in self.store.installed_connectors(tenant).await? {
            if !self.host.is_installed(tenant, &installed.digest) {
                self.host.install_for(tenant, installed.component).await.map_err(Error::Component)?;
            }
        }
        Ok(())
    }
}
