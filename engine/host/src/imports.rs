//! The host side of a call's capabilities: secrets (`weft:connector/secrets`),
//! OAuth tokens (`weft:connector/oauth`) and the egress gate in front of
//! wasi:http. Each is limited to what the connector's manifest declares.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpHooks;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode as HttpErrorCode;

use crate::CallState;
use crate::bindings::weft::connector::{oauth, secrets, types::Error as WitError};

/// A boxed future, as [`SecretSource`] returns it.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    ) -> BoxFuture<'a, Result<Option<String>, String>>;

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
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
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
    ) -> BoxFuture<'a, Result<Option<String>, String>> {
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

/// What a call may reach: from the manifest, plus who is calling.
pub(crate) struct Grants {
    pub connector: String,
    pub tenant: String,
    pub run_id: String,
    pub step_id: String,
    pub secrets: Arc<[String]>,
    pub oauth: Arc<[String]>,
    pub source: Arc<dyn SecretSource>,
    pub audit: Arc<dyn AuditSink>,
}

/// The guest-side handle of a secret: its name only.
pub struct SecretHandle {
    name: String,
}

/// A capability the host refused during a call. When the call then fails, the
/// step's error names the limit instead of whatever the guest made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Egress { host: String, allowed: Vec<String> },
    TenantPolicy { host: String, tenant: String, allowed: Vec<String> },
    RequestBody(usize),
    Secret(String),
    OAuth(String),
}

/// The first capability refused during a call, shared by the call's imports
/// and its HTTP gate (a streamed body is cut off on another task).
#[derive(Debug, Clone, Default)]
pub(crate) struct Refusals(Arc<Mutex<Option<Refusal>>>);

impl Refusals {
    /// Records a refusal; the first one stands.
    pub(crate) fn record(&self, refusal: Refusal) {
        self.0.lock().expect("refusals lock").get_or_insert(refusal);
    }

    /// The first refusal, if any.
    pub(crate) fn first(&self) -> Option<Refusal> {
        self.0.lock().expect("refusals lock").clone()
    }
}

impl Refusal {
    pub(crate) fn describe(&self, connector: &str) -> String {
        match self {
            Refusal::Egress { host, allowed } => format!(
                "egress refused: {connector} may not connect to `{host}`; its manifest allows {}",
                if allowed.is_empty() { "no hosts".to_string() } else { format!("only {}", allowed.join(", ")) }
            ),
            Refusal::TenantPolicy { host, tenant, allowed } => format!(
                "egress refused: tenant `{tenant}`'s policy does not allow `{host}` (asked for by {connector}); it allows {}",
                if allowed.is_empty() { "no hosts".to_string() } else { format!("only {}", allowed.join(", ")) }
            ),
            Refusal::RequestBody(limit) => {
                format!("request body refused: {connector} sent more than the limit of {limit} bytes")
            }
            Refusal::Secret(name) => {
                format!("secret refused: {connector} asked for `{name}`, which its manifest does not declare")
            }
            Refusal::OAuth(provider) => {
                format!("OAuth refused: {connector} asked for `{provider}`, which its manifest does not declare")
            }
        }
    }
}

impl CallState {
    /// Records a refused capability and returns the guest's error for it.
    fn refuse(&mut self, refusal: Refusal) -> WitError {
        let message = refusal.describe(&self.grants.connector);
        self.refusals.record(refusal);
        WitError::Fatal(message)
    }
}

impl secrets::Host for CallState {
    fn get(&mut self, name: String) -> Result<Resource<SecretHandle>, WitError> {
        if !self.grants.secrets.contains(&name) {
            return Err(self.refuse(Refusal::Secret(name)));
        }
        self.table
            .push(SecretHandle { name })
            .map_err(|e| WitError::Fatal(format!("the host cannot hold another secret handle: {e}")))
    }
}

impl secrets::HostSecret for CallState {
    fn name(&mut self, secret: Resource<SecretHandle>) -> String {
        self.table.get(&secret).map(|s| s.name.clone()).unwrap_or_default()
    }

    async fn reveal(&mut self, secret: Resource<SecretHandle>) -> Result<String, WitError> {
        let name = match self.table.get(&secret) {
            Ok(handle) => handle.name.clone(),
            Err(e) => return Err(WitError::Fatal(format!("not a secret handle: {e}"))),
        };
        let g = &self.grants;
        let value = g
            .source
            .fetch(&g.tenant, &g.connector, &name)
            .await
            .map_err(|e| WitError::Transient(format!("the secret store failed to read `{name}`: {e}")))?;
        let Some(value) = value else {
            let hint = g.source.how_to_set(&g.connector, &name).map(|h| format!("; {h}")).unwrap_or_default();
            return Err(WitError::Unauthorized(format!(
                "secret `{name}` is not set for tenant `{}` (connector {}){hint}",
                g.tenant, g.connector
            )));
        };
        g.audit.reveal(&Reveal {
            tenant: g.tenant.clone(),
            run_id: g.run_id.clone(),
            step_id: g.step_id.clone(),
            connector: g.connector.clone(),
            secret: name,
        });
        Ok(value)
    }

    fn drop(&mut self, secret: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(secret)?;
        Ok(())
    }
}

impl oauth::Host for CallState {
    async fn access_token(&mut self, provider: String) -> Result<String, WitError> {
        if !self.grants.oauth.contains(&provider) {
            return Err(self.refuse(Refusal::OAuth(provider)));
        }
        Err(WitError::Unauthorized(format!(
            "OAuth is not configured on this Weft host, so there is no `{provider}` token for tenant `{}`",
            self.grants.tenant
        )))
    }
}

/// The gate in front of wasi:http: a request leaves only when its host is in
/// the connector's egress list.
pub(crate) struct Egress {
    pub allowed: Arc<[String]>,
    /// The tenant's own allow-list, when it has one; a host must pass both.
    pub policy: Option<(String, Arc<[String]>)>,
    /// The largest request body that may leave.
    pub max_body: usize,
    /// Where a refused host or body is recorded (the call's own).
    pub refusals: Refusals,
    /// Hosts whose requests go to another server (see `Host::with_route`).
    pub routes: Arc<HashMap<String, http::uri::Uri>>,
}

/// Whether `host` matches one of `patterns`: an exact name, `*.domain` (any
/// subdomain, not the domain itself) or `*` (any host). Case-insensitive; a
/// trailing dot is ignored.
pub(crate) fn host_allowed(patterns: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    patterns.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        if pattern == "*" {
            return true;
        }
        match pattern.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pattern,
        }
    })
}

impl Egress {
    /// The refusal for `host`, if the manifest or the tenant's policy forbids it.
    pub(crate) fn check(&self, host: &str) -> Option<Refusal> {
        if !host_allowed(&self.allowed, host) {
            return Some(Refusal::Egress { host: host.to_string(), allowed: self.allowed.to_vec() });
        }
        match &self.policy {
            Some((tenant, policy)) if !host_allowed(policy, host) => {
                Some(Refusal::TenantPolicy { host: host.to_string(), tenant: tenant.clone(), allowed: policy.to_vec() })
            }
            _ => None,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Egress {
    /// Names the way a connection failed, where wasmtime's default calls
    /// every failure a protocol error.
    fn p2_error_from_hyper(&mut self, err: &hyper::Error) -> HttpErrorCode {
        tracing::warn!(target: "weft::egress", error = ?err, "an outgoing request failed");
        let io = std::error::Error::source(err).and_then(|e| e.downcast_ref::<std::io::Error>());
        let reset = io.is_some_and(|e| {
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        });
        if err.is_timeout() {
            HttpErrorCode::ConnectionReadTimeout
        } else if reset || err.is_incomplete_message() || err.is_closed() {
            HttpErrorCode::ConnectionTerminated
        } else {
            HttpErrorCode::HttpProtocolError
        }
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let host = request.uri().host().unwrap_or_default().to_string();
        if let Some(refusal) = self.check(&host) {
            tracing::warn!(target: "weft::egress", %host, "request refused before it left");
            self.refusals.record(refusal);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            self.refusals.record(Refusal::RequestBody(self.max_body));
            return Box::new(async move { Err(wasmtime_wasi_http::Error::HttpRequestBodySize(declared)) });
        }
        let mut request = request;
        if let Some(base) = self.routes.get(&host.to_ascii_lowercase()) {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = base.scheme().cloned();
            parts.authority = base.authority().cloned();
            match http::uri::Uri::from_parts(parts) {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => {
                    tracing::warn!(target: "weft::egress", %host, error = %e, "cannot route the request");
                    return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
                }
            }
        }
        // A streamed body is cut off where it passes the limit.
        let (max, refusals) = (self.max_body, self.refusals.clone());
        let request = request.map(|body| {
            use http_body_util::BodyExt;
            http_body_util::Limited::new(body, max)
                .map_err(move |e| match e.downcast::<wasmtime_wasi_http::Error>() {
                    Ok(inner) => *inner,
                    Err(_) => {
                        refusals.record(Refusal::RequestBody(max));
                        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max as u64))
                    }
                })
                .boxed_unsync()
        });
        wasmtime_wasi_http::default_hooks().send_request(request, options, fut)
    }
}
