//! Manifests: what a connector says about itself through `describe`, read
//! once when it is installed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::ConnectorPre;
use crate::call::{CallState, Grants};
use crate::{Error, Host, Result};

/// A connector's manifest, with schemas parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Name, e.g. `http`.
    pub name: String,
    /// Version.
    pub version: String,
    /// One line for humans.
    pub description: String,
    /// Actions.
    pub actions: Vec<ActionInfo>,
    /// Secrets it needs.
    pub secrets: Vec<String>,
    /// OAuth providers it needs tokens for.
    #[serde(default)]
    pub oauth: Vec<OAuthNeed>,
    /// Hosts it may call.
    pub egress: Vec<String>,
}

/// An OAuth provider a connector needs, with the scopes it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthNeed {
    /// The provider, e.g. `github`.
    pub provider: String,
    /// The scopes.
    pub scopes: Vec<String>,
}

/// One action of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// Name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// JSON Schema of the input.
    pub input_schema: Value,
    /// JSON Schema of the output.
    pub output_schema: Value,
    /// Whether repeating it is harmless.
    pub idempotent: bool,
}

/// An installed connector: its manifest and the digest of its component.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorInfo {
    /// The manifest.
    pub manifest: Manifest,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
}

impl ConnectorInfo {
    /// `name@version`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.manifest.name, self.manifest.version)
    }
}

/// Why a connector's manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// `describe` ran past the call deadline.
    #[error("`describe` did not return in time")]
    Timeout,
    /// `describe` trapped.
    #[error("`describe` trapped")]
    Trap(#[source] wasmtime::Error),
    /// An action's schema is not JSON.
    #[error("action `{action}` has an {which} schema that is not JSON")]
    Schema {
        /// The action.
        action: String,
        /// `input` or `output`.
        which: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The name or version is empty.
    #[error("the name and version must not be empty")]
    Unnamed,
}

impl Host {
    /// Calls `describe` in a sandbox that may reach nothing, and parses what
    /// it returns.
    pub(crate) async fn describe(&self, pre: &ConnectorPre<CallState>) -> Result<Manifest> {
        let timeout = self.limits.timeout;
        let mut store = self.new_store(timeout, Grants::none("(describe)", self), Arc::new([]));
        let manifest = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_describe(&mut store).await
        };
        let manifest = tokio::time::timeout(timeout, manifest)
            .await
            .map_err(|_| ManifestError::Timeout)?
            .map_err(ManifestError::Trap)?;
        let schema = |action: &str, which: &'static str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|source| ManifestError::Schema {
                action: action.to_string(),
                which,
                source,
            })
        };
        let actions = manifest
            .actions
            .into_iter()
            .map(|a| {
                Ok(ActionInfo {
                    input_schema: schema(&a.name, "input", &a.input_schema)?,
                    output_schema: schema(&a.name, "output", &a.output_schema)?,
                    name: a.name,
                    description: a.description,
                    idempotent: a.idempotent,
                })
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        if manifest.name.is_empty() || manifest.version.is_empty() {
            return Err(Error::Manifest(ManifestError::Unnamed));
        }
        Ok(Manifest {
            name: manifest.name,
            version: manifest.version,
            description: manifest.description,
            actions,
            secrets: manifest.secrets,
            oauth: manifest.oauth.into_iter().map(|o| OAuthNeed { provider: o.provider, scopes: o.scopes }).collect(),
            egress: manifest.egress,
        })
    }
}
