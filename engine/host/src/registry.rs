//! The registry of installed connectors. The built-ins (and whatever a local
//! process installs with [`Host::install`]) serve every tenant; a connector
//! installed with [`Host::install_for`] serves only its tenant. A component
//! is compiled once whoever installed it, keyed by its digest.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::bindings::ConnectorPre;
use crate::builtin::{PREBUILT, Prebuilt};
use crate::call::CallState;
use crate::manifest::{ConnectorInfo, Manifest};
use crate::{BUILTINS, Host, Result, digest_of};

/// Who may call an installed connector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    /// Every tenant: the built-ins, and connectors of a local process.
    Shared,
    /// One tenant.
    Tenant(String),
}

/// A loaded component: its manifest, its bytes, and (once compiled) its
/// linked form.
pub(crate) struct Loaded {
    pub info: ConnectorInfo,
    /// From the manifest, shared by every call's grants.
    pub secrets: Arc<[String]>,
    pub oauth: Arc<[String]>,
    pub egress: Arc<[String]>,
    bytes: Bytes,
    /// The build script's compiled form, for a built-in.
    precompiled: Option<&'static [u8]>,
    pre: OnceCell<ConnectorPre<CallState>>,
}

struct Entry {
    loaded: Arc<Loaded>,
    shared: bool,
    tenants: BTreeSet<String>,
    /// How many connectors were loaded before this one. Of two builds under
    /// one `name@version`, the later serves new runs.
    order: usize,
}

impl Entry {
    fn serves(&self, tenant: &str) -> bool {
        self.shared || self.tenants.contains(tenant)
    }

    fn add(&mut self, scope: &Scope) {
        match scope {
            Scope::Shared => self.shared = true,
            Scope::Tenant(tenant) => {
                self.tenants.insert(tenant.clone());
            }
        }
    }
}

/// The installed connectors, by digest.
#[derive(Default)]
pub(crate) struct Registry {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().expect("registry lock")
    }
}

/// Orders connector versions: semantic versions by semver (0.10.0 after
/// 0.9.0) and after any other version text, which is ordered as text.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let semantic = |v: &str| semver::Version::parse(v).ok();
    semantic(a).cmp(&semantic(b)).then_with(|| a.cmp(b))
}

impl Host {
    /// Installs the built-in connectors for every tenant. They were
    /// compiled when this crate was built, so nothing compiles here unless
    /// this engine cannot load that form (see `builtin::load_precompiled`).
    pub async fn install_builtins(&self) -> Result<Vec<ConnectorInfo>> {
        let mut infos = Vec::new();
        for ((_, bytes), built) in BUILTINS.iter().zip(PREBUILT) {
            infos.push(self.install_in(Scope::Shared, Bytes::from_static(bytes), Some(built)).await?);
        }
        Ok(infos)
    }

    /// Installs a component for every tenant: reads its manifest (from the
    /// cache when this digest was seen before, so nothing compiles) and makes
    /// it callable.
    pub async fn install(&self, bytes: Vec<u8>) -> Result<ConnectorInfo> {
        self.install_in(Scope::Shared, bytes.into(), None).await
    }

    /// Installs a component that only `tenant`'s runs may resolve and call.
    pub async fn install_for(&self, tenant: &str, bytes: Vec<u8>) -> Result<ConnectorInfo> {
        self.install_in(Scope::Tenant(tenant.to_string()), bytes.into(), None).await
    }

    /// A component's manifest and digest, without installing it: what
    /// installing it would add. It is compiled (or its manifest read from the
    /// cache) and asked to describe itself.
    pub async fn inspect_component(&self, bytes: &[u8]) -> Result<ConnectorInfo> {
        let digest = digest_of(bytes);
        let (manifest, _) = self.manifest_of(&digest, &Bytes::copy_from_slice(bytes), None).await?;
        Ok(ConnectorInfo { manifest, digest })
    }

    /// The manifest of the component with `digest`: from the cache, or by
    /// compiling the component and asking it (then with the compiled form).
    async fn manifest_of(
        &self,
        digest: &str,
        bytes: &Bytes,
        precompiled: Option<&'static [u8]>,
    ) -> Result<(Manifest, Option<ConnectorPre<CallState>>)> {
        let cached: Option<Manifest> =
            self.cache.as_ref().and_then(|c| c.manifest(digest)).and_then(|json| serde_json::from_str(&json).ok());
        if let Some(manifest) = cached {
            return Ok((manifest, None));
        }
        let compiled = self.compile(digest, bytes, precompiled).await?;
        let manifest = self.describe(&compiled).await?;
        if let Some(cache) = &self.cache {
            cache.put_manifest(digest, &serde_json::to_string(&manifest).expect("manifests serialize"));
        }
        Ok((manifest, Some(compiled)))
    }

    async fn install_in(&self, scope: Scope, bytes: Bytes, built: Option<&'static Prebuilt>) -> Result<ConnectorInfo> {
        let digest = built.map_or_else(|| digest_of(&bytes), |built| built.digest.to_string());
        let precompiled = built.map(|built| built.compiled);
        if let Some(entry) = self.registry.lock().get_mut(&digest) {
            entry.add(&scope);
            return Ok(entry.loaded.info.clone());
        }
        let pre = OnceCell::new();
        let (manifest, compiled) = self.manifest_of(&digest, &bytes, precompiled).await?;
        if let Some(compiled) = compiled {
            let _ = pre.set(compiled);
        }
        let mut entries = self.registry.lock();
        if let Some(entry) = entries.get_mut(&digest) {
            // Installed meanwhile by another caller.
            entry.add(&scope);
            return Ok(entry.loaded.info.clone());
        }
        let info = ConnectorInfo { manifest, digest: digest.clone() };
        let mut entry = Entry {
            loaded: Arc::new(Loaded {
                secrets: info.manifest.secrets.clone().into(),
                oauth: info.manifest.oauth.iter().map(|o| o.provider.clone()).collect(),
                egress: info.manifest.egress.clone().into(),
                info: info.clone(),
                bytes,
                precompiled,
                pre,
            }),
            shared: false,
            tenants: BTreeSet::new(),
            order: entries.len(),
        };
        entry.add(&scope);
        let overlaps = |other: &Entry| match &scope {
            Scope::Shared => true,
            Scope::Tenant(tenant) => other.serves(tenant),
        };
        for other in entries.values().filter(|e| e.loaded.info.key() == info.key() && overlaps(e)) {
            tracing::warn!(
                target: "weft::connectors",
                "{} is loaded twice: {} now serves new runs instead of {}; runs pinned to the other keep it",
                info.key(),
                info.digest,
                other.loaded.info.digest
            );
        }
        entries.insert(digest, entry);
        Ok(info)
    }

    /// Every connector build `tenant` may use, ordered by name, then by
    /// version as [`Host::resolve`] orders them, then by load order: the
    /// last build of a `name@version` is the one that serves it, and the
    /// last of a name the one an unversioned `uses` gets.
    pub fn connectors(&self, tenant: &str) -> Vec<ConnectorInfo> {
        let entries = self.registry.lock();
        let mut all: Vec<&Entry> = entries.values().filter(|e| e.serves(tenant)).collect();
        all.sort_by(|a, b| {
            let (a_info, b_info) = (&a.loaded.info.manifest, &b.loaded.info.manifest);
            a_info
                .name
                .cmp(&b_info.name)
                .then_with(|| version_order(&a_info.version, &b_info.version))
                .then(a.order.cmp(&b.order))
        });
        all.into_iter().map(|e| e.loaded.info.clone()).collect()
    }

    /// Whether `tenant` may call the connector with this digest.
    pub fn is_installed(&self, tenant: &str, digest: &str) -> bool {
        self.registry.lock().get(digest).is_some_and(|e| e.serves(tenant))
    }

    /// The connector with this name (and version, if given) that serves
    /// `tenant`. Without a version it is the highest one, by semver. Of two
    /// builds under one `name@version` (an installed one and a rebuild in
    /// `--connectors-dir`, say), it is the one loaded last.
    pub fn resolve(&self, tenant: &str, name: &str, version: Option<&str>) -> Option<ConnectorInfo> {
        self.resolved(tenant, name, version, ConnectorInfo::clone)
    }

    /// What a run is pinned to for the connector [`Host::resolve`] finds:
    /// its `name@version` and digest (without copying its manifest; this is
    /// on every run's start).
    pub fn pin(&self, tenant: &str, name: &str, version: Option<&str>) -> Option<(String, String)> {
        self.resolved(tenant, name, version, |info| (info.key(), info.digest.clone()))
    }

    /// `read` of the connector [`Host::resolve`] finds.
    fn resolved<T>(
        &self,
        tenant: &str,
        name: &str,
        version: Option<&str>,
        read: impl FnOnce(&ConnectorInfo) -> T,
    ) -> Option<T> {
        let entries = self.registry.lock();
        entries
            .values()
            .filter(|e| e.serves(tenant))
            .filter(|e| {
                e.loaded.info.manifest.name == name && version.is_none_or(|v| e.loaded.info.manifest.version == v)
            })
            .max_by(|a, b| {
                let (a_version, b_version) = (&a.loaded.info.manifest.version, &b.loaded.info.manifest.version);
                version_order(a_version, b_version).then(a.order.cmp(&b.order))
            })
            .map(|e| read(&e.loaded.info))
    }

    /// The loaded connector with this digest, if it serves `tenant`.
    pub(crate) fn loaded(&self, tenant: &str, digest: &str) -> Option<Arc<Loaded>> {
        self.registry.lock().get(digest).filter(|e| e.serves(tenant)).map(|e| e.loaded.clone())
    }

    /// The compiled, linked component for a connector (compiled on first use).
    pub(crate) async fn pre(&self, loaded: &Loaded) -> Result<ConnectorPre<CallState>> {
        loaded
            .pre
            .get_or_try_init(|| self.compile(&loaded.info.digest, &loaded.bytes, loaded.precompiled))
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering::{Equal, Greater, Less};

    use super::version_order;

    #[test]
    fn versions_order_by_semver_then_as_text() {
        assert_eq!(version_order("0.10.0", "0.9.0"), Greater);
        assert_eq!(version_order("1.0.0", "1.0.0-rc.1"), Greater);
        assert_eq!(version_order("2.0.0", "2.0.0"), Equal);
        assert_eq!(version_order("0.1.0", "nightly"), Greater);
        assert_eq!(version_order("a", "b"), Less);
    }
}
