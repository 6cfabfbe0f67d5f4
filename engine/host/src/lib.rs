//! Weft's wasmtime embedding: connectors are WebAssembly components that run
//! one action per call in a fresh, limited sandbox.
//!
//! - Components are compiled once and cached on disk (see [`Cache`]), and
//!   instantiated through `InstancePre` with the pooling allocator.
//! - Each call gets a wall-clock deadline (epoch interruption for CPU, a
//!   timer for I/O), a memory cap and an output cap. A trap fails the call
//!   with a clear error and never takes the engine down.
//! - The sandbox links WASI p2 with no preopened directories, no environment
//!   and no sockets; outbound HTTP goes through wasi:http.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_host::{CallContext, Host, HostConfig};
//! let host = Host::new(HostConfig::default())?;
//! host.install_builtins().await?;
//! let transform = host.resolve("transform", None).unwrap();
//! let out = host.invoke(&transform.digest, &CallContext::default(), "double", &serde_json::json!({"value": 2}), None).await?;
//! assert_eq!(out["value"], 4);
//! # Ok(()) }
//! ```

mod bench;
mod builtin;
mod cache;
mod imports;
mod log;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::Instrument;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};
use weft_workflows::ErrorKind;

pub use bench::CallTimes;
pub use builtin::{BUILTINS, guest_component};
pub use cache::Cache;
pub use imports::{AuditSink, BoxFuture, EnvSecrets, MemoryAudit, MemorySecrets, Reveal, SecretSource, TracingAudit};
pub use log::LogLine;

use imports::{Egress, Grants, Refusals};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../connectors-wit/wit",
        world: "connector",
        imports: {
            "weft:connector/secrets.[method]secret.reveal": async,
            "weft:connector/oauth.access-token": async,
        },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "weft:connector/secrets.secret": crate::imports::SecretHandle,
        },
    });
}

use bindings::weft::connector::types as wit;

/// Host errors: loading and compiling components.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be configured.
    #[error("configuring wasmtime: {0}")]
    Engine(String),
    /// The bytes are not a valid component, or do not compile.
    #[error("compiling the component: {0}")]
    Compile(String),
    /// The component does not fit the `weft:connector` world.
    #[error("the component is not a weft connector: {0}")]
    Link(String),
    /// `describe` trapped or returned nonsense.
    #[error("the connector's manifest is invalid: {0}")]
    Manifest(String),
    /// No connector with this digest is installed.
    #[error("no connector with digest {0} is installed")]
    UnknownDigest(String),
}

/// `Result` with the host's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call failed, as the engine's retry policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallError {
    /// The kind.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
    /// For rate limits: how long the upstream asked us to wait.
    pub retry_after_ms: Option<u64>,
}

impl CallError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallError { kind, message: message.into(), retry_after_ms: None }
    }
}

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call when the step sets none.
    pub timeout: Duration,
    /// Linear memory a call may grow to.
    pub memory_bytes: usize,
    /// Largest input (JSON text) a call accepts.
    pub max_input_bytes: usize,
    /// Largest output (JSON text) a call may return.
    pub max_output_bytes: usize,
    /// Largest body of one outgoing HTTP request.
    pub max_request_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            memory_bytes: 64 << 20,
            max_input_bytes: 4 << 20,
            max_output_bytes: 4 << 20,
            max_request_body_bytes: 16 << 20,
        }
    }
}

/// How to build a [`Host`].
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Where compiled components are cached; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
}

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

/// Who is calling: passed to the connector as its `context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// Tenant id.
    pub tenant: String,
    /// Run id.
    pub run_id: String,
    /// Step id.
    pub step_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// Idempotency key.
    pub idempotency_key: String,
}

/// What a call's store holds.
pub(crate) struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: StoreLimits,
    logs: Vec<LogLine>,
    grants: Grants,
    egress: Egress,
    refusals: Refusals,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

struct Loaded {
    info: ConnectorInfo,
    /// From the manifest, shared by every call's grants.
    secrets: Arc<[String]>,
    oauth: Arc<[String]>,
    egress: Arc<[String]>,
    bytes: Vec<u8>,
    pre: OnceCell<bindings::ConnectorPre<CallState>>,
    /// How many connectors were loaded before this one. Of two builds under
    /// one `name@version`, the later serves new runs.
    order: usize,
}

/// Orders connector versions: semantic versions by semver (0.10.0 after
/// 0.9.0) and after any other version text, which is ordered as text.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let semantic = |v: &str| semver::Version::parse(v).ok();
    semantic(a).cmp(&semantic(b)).then_with(|| a.cmp(b))
}

/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The connector runtime: one engine, one linker, the installed connectors.
pub struct Host {
    engine: Engine,
    linker: Linker<CallState>,
    cache: Option<Cache>,
    limits: Limits,
    connectors: Mutex<HashMap<String, Arc<Loaded>>>,
    ticker_stop: Arc<AtomicBool>,
    secrets: Arc<dyn SecretSource>,
    audit: Arc<dyn AuditSink>,
    routes: Arc<HashMap<String, http::uri::Uri>>,
    egress_policies: HashMap<String, Arc<[String]>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Host {
    /// An engine with the pooling allocator and epoch interruption, and a
    /// linker with WASI p2 (no files, no env), wasi:http and Weft's imports.
    pub fn new(config: HostConfig) -> Result<Host> {
        let limits = config.limits;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(256)
            .total_core_instances(1024)
            .total_memories(256)
            .total_tables(512)
            .max_memories_per_component(4)
            .max_core_instances_per_component(64)
            .max_tables_per_component(8)
            .max_memory_size(limits.memory_bytes.max(1 << 20))
            // Reset small memories and tables in place rather than with
            // madvise: each madvise costs a TLB shootdown on every core, which
            // dominated CPU time with many calls in flight.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            // Connectors are synchronous p2 components. Without the
            // component-model-async state, dropping a store does not build an
            // error (and a backtrace) per call.
            .concurrency_support(false)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| Error::Engine(e.to_string()))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| Error::Engine(e.to_string()))?;
        bindings::weft::connector::log::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        bindings::weft::connector::types::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        bindings::weft::connector::secrets::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;
        bindings::weft::connector::oauth::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| Error::Engine(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("weft-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Engine(e.to_string()))?;
        }
        let cache = config.cache_dir.map(|dir| Cache::new(dir, &engine));
        Ok(Host {
            engine,
            linker,
            cache,
            limits,
            connectors: Mutex::new(HashMap::new()),
            ticker_stop,
            secrets: Arc::new(MemorySecrets::new()),
            audit: Arc::new(TracingAudit),
            routes: Arc::new(HashMap::new()),
            egress_policies: HashMap::new(),
        })
    }

    /// Sends connectors' requests for `host` to `base` (e.g.
    /// `http://127.0.0.1:8080`) instead, keeping the path, query and `Host`
    /// header. The egress check still applies to `host`. This is how tests
    /// and local development put a stand-in server behind a provider's API.
    pub fn with_route(mut self, host: &str, base: &str) -> Result<Host> {
        let uri: http::uri::Uri = base.parse().map_err(|e| Error::Engine(format!("route base {base:?}: {e}")))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(Error::Engine(format!("route base {base:?} needs a scheme and a host")));
        }
        Arc::make_mut(&mut self.routes).insert(host.to_ascii_lowercase(), uri);
        Ok(self)
    }

    /// Limits `tenant`'s calls to `hosts`, on top of each connector's own
    /// egress list: a request leaves only when both allow its host. Patterns
    /// are exact names, `*.domain` or `*`. A tenant without a policy is bound
    /// by the manifests alone; an empty policy allows no host at all.
    pub fn with_egress_policy<S: AsRef<str>>(mut self, tenant: &str, hosts: &[S]) -> Host {
        let hosts: Arc<[String]> = hosts.iter().map(|h| h.as_ref().trim().to_ascii_lowercase()).collect();
        self.egress_policies.insert(tenant.to_string(), hosts);
        self
    }

    /// Where connectors' secrets come from (none are set by default).
    pub fn with_secrets(mut self, source: Arc<dyn SecretSource>) -> Host {
        self.secrets = source;
        self
    }

    /// Where secret reveals are recorded (`tracing` by default).
    pub fn with_audit(mut self, audit: Arc<dyn AuditSink>) -> Host {
        self.audit = audit;
        self
    }

    /// The limits calls run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Installs the built-in connectors.
    pub async fn install_builtins(&self) -> Result<Vec<ConnectorInfo>> {
        let mut infos = Vec::new();
        for (_, bytes) in BUILTINS {
            infos.push(self.install(bytes.to_vec()).await?);
        }
        Ok(infos)
    }

    /// Installs a component: reads its manifest (from the cache when this
    /// digest was seen before, so nothing compiles) and makes it callable.
    pub async fn install(&self, bytes: Vec<u8>) -> Result<ConnectorInfo> {
        let digest = digest_of(&bytes);
        if let Some(loaded) = self.connectors.lock().expect("connectors lock").get(&digest) {
            return Ok(loaded.info.clone());
        }
        let cached: Option<Manifest> =
            self.cache.as_ref().and_then(|c| c.manifest(&digest)).and_then(|json| serde_json::from_str(&json).ok());
        let pre = OnceCell::new();
        let manifest = match cached {
            Some(manifest) => manifest,
            None => {
                let compiled = self.compile(&digest, &bytes).await?;
                let manifest = self.describe(&compiled).await?;
                if let Some(cache) = &self.cache {
                    cache.put_manifest(&digest, &serde_json::to_string(&manifest).expect("manifests serialize"));
                }
                let _ = pre.set(compiled);
                manifest
            }
        };
        let mut connectors = self.connectors.lock().expect("connectors lock");
        if let Some(loaded) = connectors.get(&digest) {
            // Installed meanwhile by another caller.
            return Ok(loaded.info.clone());
        }
        let info = ConnectorInfo { manifest, digest: digest.clone() };
        for other in connectors.values().filter(|l| l.info.key() == info.key()) {
            tracing::warn!(
                target: "weft::connectors",
                "{} is loaded twice: {} now serves new runs instead of {}; runs pinned to the other keep it",
                info.key(),
                info.digest,
                other.info.digest
            );
        }
        let loaded = Arc::new(Loaded {
            secrets: info.manifest.secrets.clone().into(),
            oauth: info.manifest.oauth.iter().map(|o| o.provider.clone()).collect(),
            egress: info.manifest.egress.clone().into(),
            info: info.clone(),
            bytes,
            pre,
            order: connectors.len(),
        });
        connectors.insert(digest, loaded);
        Ok(info)
    }

    /// Every installed connector.
    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        let mut all: Vec<ConnectorInfo> =
            self.connectors.lock().expect("connectors lock").values().map(|l| l.info.clone()).collect();
        all.sort_by_key(ConnectorInfo::key);
        all
    }

    /// Whether a connector with this digest is installed.
    pub fn is_installed(&self, digest: &str) -> bool {
        self.connectors.lock().expect("connectors lock").contains_key(digest)
    }

    /// The installed connector with this name (and version, if given). Without
    /// a version it is the highest one, by semver. Of two builds under one
    /// `name@version` (an installed one and a rebuild in `--connectors-dir`,
    /// say), it is the one loaded last.
    pub fn resolve(&self, name: &str, version: Option<&str>) -> Option<ConnectorInfo> {
        let connectors = self.connectors.lock().expect("connectors lock");
        connectors
            .values()
            .filter(|l| l.info.manifest.name == name && version.is_none_or(|v| l.info.manifest.version == v))
            .max_by(|a, b| {
                version_order(&a.info.manifest.version, &b.info.manifest.version).then(a.order.cmp(&b.order))
            })
            .map(|l| l.info.clone())
    }

    /// The compiled, linked component for a connector (compiled on first use).
    async fn pre(&self, loaded: &Loaded) -> Result<bindings::ConnectorPre<CallState>> {
        loaded.pre.get_or_try_init(|| self.compile(&loaded.info.digest, &loaded.bytes)).await.cloned()
    }

    /// Compiles (or loads from the cache) and links a component.
    async fn compile(&self, digest: &str, bytes: &[u8]) -> Result<bindings::ConnectorPre<CallState>> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let digest = digest.to_string();
        let bytes = bytes.to_vec();
        let component = tokio::task::spawn_blocking(move || match &cache {
            Some(cache) => cache.component(&engine, &digest, &bytes),
            None => wasmtime::component::Component::new(&engine, &bytes).map_err(|e| Error::Compile(e.to_string())),
        })
        .await
        .map_err(|e| Error::Compile(e.to_string()))??;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| Error::Link(format!("{e:#}")))?;
        bindings::ConnectorPre::new(instance_pre).map_err(|e| Error::Link(format!("{e:#}")))
    }

    fn new_store(&self, deadline: Duration, grants: Grants, egress: Arc<[String]>) -> Store<CallState> {
        let refusals = Refusals::default();
        let policy = self.egress_policies.get(&grants.tenant).map(|hosts| (grants.tenant.clone(), hosts.clone()));
        let state = CallState {
            grants,
            egress: Egress {
                allowed: egress,
                policy,
                max_body: self.limits.max_request_body_bytes,
                refusals: refusals.clone(),
                routes: self.routes.clone(),
            },
            refusals,
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(self.limits.memory_bytes).trap_on_grow_failure(true).build(),
            logs: Vec::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // At every epoch tick the guest gives its thread back to tokio, so a
        // call that spins holds neither a worker thread nor its run's driver
        // (which must still see a cancel and renew its lease); past the
        // deadline it traps.
        let until = Instant::now() + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= until { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store
    }

    /// Grants for a call that may use no secret and no OAuth provider.
    fn no_grants(&self, connector: &str) -> Grants {
        Grants {
            connector: connector.into(),
            tenant: String::new(),
            run_id: String::new(),
            step_id: String::new(),
            secrets: Arc::new([]),
            oauth: Arc::new([]),
            source: self.secrets.clone(),
            audit: self.audit.clone(),
        }
    }

    async fn describe(&self, pre: &bindings::ConnectorPre<CallState>) -> Result<Manifest> {
        // `describe` may not reach anything.
        let mut store = self.new_store(self.limits.timeout, self.no_grants("(describe)"), Arc::new([]));
        let manifest = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_describe(&mut store).await
        };
        let manifest = tokio::time::timeout(self.limits.timeout, manifest)
            .await
            .map_err(|_| Error::Manifest("`describe` did not return in time".into()))?
            .map_err(|e| Error::Manifest(format!("`describe` trapped: {e:#}")))?;
        let schema = |action: &str, which: &str, text: &str| {
            serde_json::from_str::<Value>(text)
                .map_err(|e| Error::Manifest(format!("action `{action}` has an {which} schema that is not JSON: {e}")))
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
            .collect::<Result<Vec<_>>>()?;
        if manifest.name.is_empty() || manifest.version.is_empty() {
            return Err(Error::Manifest("the name and version must not be empty".into()));
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

    /// Calls `action` of the connector with `digest`. `timeout` overrides the
    /// default deadline. Every failure, including traps and limits, comes
    /// back as a [`CallError`].
    pub async fn invoke(
        &self,
        digest: &str,
        ctx: &CallContext,
        action: &str,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, CallError> {
        let loaded =
            self.connectors.lock().expect("connectors lock").get(digest).cloned().ok_or_else(|| {
                CallError::new(ErrorKind::Fatal, Error::UnknownDigest(digest.to_string()).to_string())
            })?;
        let name = loaded.info.key();
        let input_text = input.to_string();
        if input_text.len() > self.limits.max_input_bytes {
            return Err(CallError::new(
                ErrorKind::InvalidInput,
                format!(
                    "the input is {} bytes, over the request limit of {} bytes",
                    input_text.len(),
                    self.limits.max_input_bytes
                ),
            ));
        }
        let pre = self.pre(&loaded).await.map_err(|e| CallError::new(ErrorKind::Fatal, format!("{name}: {e}")))?;
        let deadline = timeout.unwrap_or(self.limits.timeout);
        let grants = Grants {
            connector: name.clone(),
            tenant: ctx.tenant.clone(),
            run_id: ctx.run_id.clone(),
            step_id: ctx.step_id.clone(),
            secrets: loaded.secrets.clone(),
            oauth: loaded.oauth.clone(),
            source: self.secrets.clone(),
            audit: self.audit.clone(),
        };
        let mut store = self.new_store(deadline, grants, loaded.egress.clone());
        let context = wit_context(ctx);
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.call_invoke(&mut store, &context, action, &input_text).await
        };
        let span = tracing::debug_span!(
            "connector.invoke",
            tenant = %ctx.tenant,
            run_id = %ctx.run_id,
            step_id = %ctx.step_id,
            attempt = ctx.attempt,
            connector = %name,
            action,
        );
        let outcome = tokio::time::timeout(deadline, call).instrument(span).await;
        let result = match outcome {
            Err(_) => return Err(deadline_error(&name, action, deadline)),
            Ok(Err(trap)) => return Err(self.classify_trap(&name, action, deadline, &trap)),
            Ok(Ok(result)) => result,
        };
        // A refused capability explains a failure better than the guest can.
        if let (Err(_), Some(refusal)) = (&result, store.data().refusals.first()) {
            return Err(CallError::new(ErrorKind::Fatal, refusal.describe(&name)));
        }
        match result {
            Ok(output) => {
                if output.len() > self.limits.max_output_bytes {
                    return Err(CallError::new(
                        ErrorKind::Fatal,
                        format!(
                            "{name} `{action}` returned {} bytes, over the output limit of {} bytes",
                            output.len(),
                            self.limits.max_output_bytes
                        ),
                    ));
                }
                serde_json::from_str(&output).map_err(|e| {
                    CallError::new(ErrorKind::Fatal, format!("{name} `{action}` returned output that is not JSON: {e}"))
                })
            }
            Err(error) => Err(match error {
                wit::Error::InvalidInput(m) => CallError::new(ErrorKind::InvalidInput, m),
                wit::Error::Unauthorized(m) => CallError::new(ErrorKind::Unauthorized, m),
                wit::Error::RateLimited(r) => {
                    CallError { kind: ErrorKind::RateLimited, message: r.message, retry_after_ms: r.retry_after_ms }
                }
                wit::Error::Transient(m) => CallError::new(ErrorKind::Transient, m),
                wit::Error::Fatal(m) => CallError::new(ErrorKind::Fatal, m),
            }),
        }
    }

    fn classify_trap(&self, name: &str, action: &str, deadline: Duration, error: &wasmtime::Error) -> CallError {
        let text = format!("{error:#}");
        if matches!(error.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) {
            return deadline_error(name, action, deadline);
        }
        if text.contains("forcing trap when growing memory") || text.contains("memory allocation failed") {
            return CallError::new(
                ErrorKind::Trap,
                format!("{name} `{action}` exceeded its memory limit of {} MiB", self.limits.memory_bytes >> 20),
            );
        }
        if text.contains("maximum concurrent") || text.contains("pooling allocator") {
            return CallError::new(
                ErrorKind::Transient,
                format!("{name} `{action}`: the host is at its instance limit: {text}"),
            );
        }
        let first = text.lines().next().unwrap_or("trap");
        CallError::new(ErrorKind::Trap, format!("{name} `{action}` trapped: {first}"))
    }
}

/// The guest's view of who is calling.
fn wit_context(ctx: &CallContext) -> wit::Context {
    wit::Context {
        tenant: ctx.tenant.clone(),
        run_id: ctx.run_id.clone(),
        step_id: ctx.step_id.clone(),
        attempt: ctx.attempt,
        idempotency_key: ctx.idempotency_key.clone(),
    }
}

/// `sha256:<hex>` of a component's bytes: how connectors are identified.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The error for a call that outran its deadline, whether the epoch or the
/// timer caught it.
fn deadline_error(name: &str, action: &str, deadline: Duration) -> CallError {
    CallError::new(ErrorKind::Timeout, format!("{name} `{action}` ran past its deadline of {}", humanize(deadline)))
}

fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
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
