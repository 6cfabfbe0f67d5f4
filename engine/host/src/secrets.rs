//! The `weft:connector/secrets` import, the sources secret values come
//! from, and the audit trail of every reveal. A connector may name only the
//! secrets its manifest declares, and a value is fetched only when revealed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::bindings::weft::connector::{secrets, types::Error as WitError};
use crate::call::CallState;
use crate::refusal::Refusal;

/// A boxed future, as [`SecretSource`] returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A failure of a secret source itself (unreachable, refused), with its
/// cause kept as the error's source.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    secrets::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

/// Where secret values come from. The host asks only for secrets that the
/// calling connector declared, and only when the connector reveals one.
pub trait SecretSource: Send + Sync + 'static {
    /// The value of `name` for `connector` in `tenant`, or `None` when it is
    /// not set. An `Err` is a failure of the source itself (unreachable,
    /// refused) and fails the call as transient.
    fn fetch<'a>(
        &'a self,
        tenant: &'a str,
        connector: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SourceError>>;

    /// How a user sets `name` for `connector` in this source, if it can say:
    /// added to the error when the secret is not set.
    fn how_to_set(&self, connector: &str, name: &str) -> Option<String> {
        let _ = (connector, name);
        None
    }
}

/// Secrets held in memory, the same for every tenant and connector: for
/// local runs and `weft connector test`.
#[derive(Debug, Clone, Default)]
pub struct MemorySecrets {
    values: HashMap<String, String>,
}

impl MemorySecrets {
    /// No secrets.
    pub fn new() -> MemorySecrets {
        MemorySecrets::default()
    }

    /// Adds or replaces one secret.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> MemorySecrets {
        self.values.insert(name.into(), value.into());
        self
    }
}

impl SecretSource for MemorySecrets {
    fn fetch<'a>(
        &'a self,
        _tenant: &'a str,
        _connector: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SourceError>> {
        Box::pin(async move { Ok(self.values.get(name).cloned()) })
    }
}

/// Secrets from environment variables, for local runs: the secret `name` of
/// connector `c` is `WEFT_SECRET_<C>_<NAME>` (see [`EnvSecrets::variable`]),
/// the same for every tenant. The variables are read once, when it is made.
#[derive(Clone, Default)]
pub struct EnvSecrets {
    values: HashMap<String, String>,
}

impl std::fmt::Debug for EnvSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("EnvSecrets").field("variables", &names).finish()
    }
}

impl EnvSecrets {
    const PREFIX: &'static str = "WEFT_SECRET_";

    /// The `WEFT_SECRET_*` variables of this process.
    pub fn from_env() -> EnvSecrets {
        EnvSecrets::from_vars(
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// The `WEFT_SECRET_*` entries of `vars`.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> EnvSecrets {
        EnvSecrets { values: vars.into_iter().filter(|(k, _)| k.starts_with(Self::PREFIX)).collect() }
    }

    /// The variable that holds secret `name` of `connector` (`name@version`
    /// or a bare name): `WEFT_SECRET_`, then the connector's name and the
    /// secret's, upper-cased, joined by `_`, with any character other than a
    /// letter or digit as `_`.
    ///
    /// ```
    /// use weft_host::EnvSecrets;
    /// assert_eq!(EnvSecrets::variable("slack@0.1.0", "bot_token"), "WEFT_SECRET_SLACK_BOT_TOKEN");
    /// assert_eq!(EnvSecrets::variable("google_sheets", "api-key"), "WEFT_SECRET_GOOGLE_SHEETS_API_KEY");
    /// ```
    pub fn variable(connector: &str, name: &str) -> String {
        let connector = connector.split('@').next().unwrap_or(connector);
        let upper = |s: &str| -> String {
            s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
        };
        format!("{}{}_{}", Self::PREFIX, upper(connector), upper(name))
    }
}

impl SecretSource for EnvSecrets {
    fn fetch<'a>(
        &'a self,
        _tenant: &'a str,
        connector: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, SourceError>> {
        Box::pin(async move { Ok(self.values.get(&EnvSecrets::variable(connector, name)).cloned()) })
    }

    fn how_to_set(&self, connector: &str, name: &str) -> Option<String> {
        Some(format!("set the environment variable {}", EnvSecrets::variable(connector, name)))
    }
}

/// One reveal of a secret, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    /// The tenant whose secret it was.
    pub tenant: String,
    /// The run and step that revealed it.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// `name@version` of the connector.
    pub connector: String,
    /// The secret's name (never its value).
    pub secret: String,
}

/// Receives every secret reveal. The default writes a `tracing` event with
/// target `weft::audit`; servers add a durable trail.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one reveal.
    fn reveal(&self, reveal: &Reveal);
}

/// The audit sink that only writes `tracing` events.
#[derive(Debug, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn reveal(&self, r: &Reveal) {
        tracing::info!(target: "weft::audit", tenant = %r.tenant, run_id = %r.run_id, step_id = %r.step_id,
            connector = %r.connector, secret = %r.secret, "secret revealed");
    }
}

/// An audit sink that keeps reveals in memory, for tests and `weft connector test`.
#[derive(Debug, Default, Clone)]
pub struct MemoryAudit {
    reveals: Arc<Mutex<Vec<Reveal>>>,
}

impl MemoryAudit {
    /// Every reveal so far.
    pub fn reveals(&self) -> Vec<Reveal> {
        self.reveals.lock().expect("audit lock").clone()
    }
}

impl AuditSink for MemoryAudit {
    fn reveal(&self, reveal: &Reveal) {
        TracingAudit.reveal(reveal);
        self.reveals.lock().expect("audit lock").push(reveal.clone());
    }
}

/// The guest-side handle of a secret: its name only.
pub struct SecretHandle {
    name: String,
}

impl secrets::Host for CallState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<Resource<SecretHandle>, WitError>> {
        // `*` in a manifest: any secret stored for this connector, named
        // by the user (the `http` connector's credentials).
        if !self.grants.secrets.iter().any(|declared| declared == "*" || *declared == name) {
            return Ok(Err(self.refuse(Refusal::Secret(name))));
        }
        // A table that cannot hold another handle is the host's limit, not
        // the connector's error: it traps.
        Ok(Ok(self.table.push(SecretHandle { name })?))
    }
}

impl secrets::HostSecret for CallState {
    fn name(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&secret)?.name.clone())
    }

    async fn reveal(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<Result<String, WitError>> {
        let name = self.table.get(&secret)?.name.clone();
        let g = &self.grants;
        let value = match g.source.fetch(&g.tenant, &g.connector, &name).await {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(target: "weft::secrets", tenant = %g.tenant, connector = %g.connector, secret = %name,
                    error = %chain(e.as_ref()), "the secret source failed");
                return Ok(Err(WitError::Transient(format!(
                    "the secret store failed to read `{name}`: {}",
                    chain(e.as_ref())
                ))));
            }
        };
        let Some(value) = value else {
            let hint = g.source.how_to_set(&g.connector, &name).map(|h| format!("; {h}")).unwrap_or_default();
            return Ok(Err(WitError::Unauthorized(format!(
                "secret `{name}` is not set for tenant `{}` (connector {}){hint}",
                g.tenant, g.connector
            ))));
        };
        g.audit.reveal(&Reveal {
            tenant: g.tenant.clone(),
            run_id: g.run_id.clone(),
            step_id: g.step_id.clone(),
            connector: g.connector.clone(),
            secret: name,
        });
        self.redactor.add(&value);
        Ok(Ok(value))
    }

    fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(secret)?;
        Ok(())
    }
}

/// An error and its sources, joined by `: `, for the guest's message.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
