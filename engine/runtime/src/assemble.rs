//! Building an engine from configuration: the one place where the store, the
//! host with its connectors (built-in, installed, and from a directory), the
//! tenant's egress policy and the secret source come together. The CLI calls
//! it; a server calls it too.

use std::path::PathBuf;
use std::sync::Arc;

use weft_host::{Host, HostConfig, Limits, MemorySecrets, SecretSource};
use weft_store::Store;

use crate::{Engine, EngineConfig};

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    /// The host could not be configured, or a built-in did not load.
    #[error(transparent)]
    Host(#[from] weft_host::Error),
    /// A connector installed in the store does not load.
    #[error("loading the installed connector {connector}")]
    Installed {
        /// `name@version`.
        connector: String,
        /// Why.
        #[source]
        source: weft_host::Error,
    },
    /// The connectors directory, or a component in it, cannot be read.
    #[error("reading {}", path.display())]
    Read {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A component in the connectors directory does not load.
    #[error("installing {}", path.display())]
    Install {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: weft_host::Error,
    },
}

/// What an engine is built from.
#[derive(Clone)]
pub struct Assembly {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Where compiled components are cached; none compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
    /// The tenant whose installed connectors and egress policy are loaded.
    pub tenant: String,
    /// The hosts the tenant's connectors may reach, on top of their
    /// manifests; none leaves the manifests alone to decide.
    pub allow_hosts: Option<Vec<String>>,
    /// A directory of `.wasm` components to load after the installed ones
    /// (so that a rebuild there serves new runs).
    pub connectors_dir: Option<PathBuf>,
    /// Where connectors' secrets come from.
    pub secrets: Arc<dyn SecretSource>,
    /// Leases and polling.
    pub engine: EngineConfig,
}

impl Assembly {
    /// An assembly of the store at `database_url` for `tenant`, with no
    /// cache, default limits, no policy, no directory and no secrets.
    pub fn new(database_url: impl Into<String>, tenant: impl Into<String>) -> Assembly {
        Assembly {
            database_url: database_url.into(),
            cache_dir: None,
            limits: Limits::default(),
            tenant: tenant.into(),
            allow_hosts: None,
            connectors_dir: None,
            secrets: Arc::new(MemorySecrets::new()),
            engine: EngineConfig::default(),
        }
    }

    /// Opens (and migrates) the store.
    pub async fn store(&self) -> Result<Store, AssemblyError> {
        Ok(Store::connect(&self.database_url).await?)
    }

    /// A host with the built-in connectors (for every tenant), and for this
    /// assembly's tenant those it installed in `store` (when there is one)
    /// and those of the connectors directory, loaded in that order.
    pub async fn host(&self, store: Option<&Store>) -> Result<Host, AssemblyError> {
        let mut host = Host::new(HostConfig { cache_dir: self.cache_dir.clone(), limits: self.limits })?
            .with_secrets(self.secrets.clone());
        if let Some(hosts) = &self.allow_hosts {
            host = host.with_egress_policy(&self.tenant, hosts);
        }
        host.install_builtins().await?;
        if let Some(store) = store {
            for installed in store.installed_connectors(&self.tenant).await? {
                let connector = weft_workflows::ConnectorId::new(installed.name, installed.version).to_string();
                host.install_for(&self.tenant, installed.component)
                    .await
                    .map_err(|source| AssemblyError::Installed { connector, source })?;
            }
        }
        if let Some(dir) = &self.connectors_dir {
            let read = |path: &PathBuf| {
                let path = path.clone();
                move |source| AssemblyError::Read { path, source }
            };
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(read(dir))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(&path).map_err(read(&path))?;
                host.install_for(&self.tenant, bytes)
                    .await
                    .map_err(|source| AssemblyError::Install { path, source })?;
            }
        }
        Ok(host)
    }

    /// The store, a host on it, and an engine on both.
    pub async fn engine(&self) -> Result<Engine, AssemblyError> {
        let store = self.store().await?;
        let host = self.host(Some(&store)).await?;
        Ok(Engine::new(store, Arc::new(host), self.engine.clone()))
    }
}
