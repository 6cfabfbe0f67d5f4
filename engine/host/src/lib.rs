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
//! - The built-ins serve every tenant; a connector installed for a tenant
//!   serves only that tenant, and so does its egress policy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_host::{CallContext, Host, HostConfig};
//! let host = Host::new(HostConfig::default())?;
//! host.install_builtins().await?;
//! let ctx = CallContext { tenant: "acme".into(), ..CallContext::default() };
//! let transform = host.resolve(&ctx.tenant, "transform", None).unwrap();
//! let out = host.invoke(&transform.digest, &ctx, "double", &serde_json::json!({"value": 2}), None).await?;
//! assert_eq!(out["value"], 4);
//! # Ok(()) }
//! ```
//!
//! The modules follow the host's parts: [`engine_config`] and the linker
//! (`engine`), the registry of installed connectors (`registry`), one call
//! (`call`, with its `limits`), `manifest`s, and one module per import a
//! connector sees: `secrets`, `oauth`, `egress` (in front of wasi:http) and
//! `log`.

mod builtin;
mod cache;
mod call;
mod config;
mod egress;
mod engine;
mod limits;
mod log;
mod manifest;
mod oauth;
mod outgoing;
mod redact;
mod refusal;
mod registry;
mod secrets;
mod template;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use builtin::{BUILTINS, guest_component};
pub use cache::Cache;
pub use call::{CallContext, CallError, Invocation};
pub use engine::engine_config;
pub use limits::Limits;
pub use log::{CallLogs, LogLine, MAX_KEPT_BYTES, MAX_KEPT_LINES};
pub use manifest::{ActionInfo, ConnectorInfo, Manifest, ManifestError, OAuthNeed};
pub use oauth::{MemoryTokens, NoTokens, TokenSource};
pub use outgoing::AddressPolicy;
pub use redact::REDACTED;
pub use secrets::{
    AuditSink, BoxFuture, EnvSecrets, MemoryAudit, MemorySecrets, Reveal, SecretSource, SourceError, TracingAudit,
};
pub use template::{TEMPLATE_MEMORY_BYTES, TEMPLATE_WASM_FUEL, TemplateSandbox};

use call::CallState;
use engine::EpochTicker;
use registry::Registry;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../connectors-wit/wit",
        world: "connector",
        // Every import may trap: the outer error is kept for host failures
        // and limits, the inner one is what the connector sees.
        imports: {
            "weft:connector/secrets.[method]secret.reveal": async | trappable,
            "weft:connector/oauth.access-token": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "weft:connector/secrets.secret": crate::secrets::SecretHandle,
        },
    });
}

/// Host errors: configuring the engine, loading and compiling components.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine or its linker could not be configured.
    #[error("configuring wasmtime")]
    Engine(#[source] wasmtime::Error),
    /// The thread that enforces deadlines could not start.
    #[error("starting the epoch thread")]
    Thread(#[source] std::io::Error),
    /// A route's base is not a URL with a scheme and a host.
    #[error("route base {base:?} needs a scheme and a host")]
    Route {
        /// The base as given.
        base: String,
        /// Why it did not parse, if it did not.
        #[source]
        source: Option<http::uri::InvalidUri>,
    },
    /// The bytes are not a WebAssembly component at all.
    #[error("{0}")]
    NotAComponent(&'static str),
    /// The bytes are not a valid component, or do not compile.
    #[error("compiling the component")]
    Compile(#[source] wasmtime::Error),
    /// The component does not fit the `weft:connector` world.
    #[error("the component is not a weft connector")]
    Link(#[source] wasmtime::Error),
    /// `describe` trapped or returned nonsense.
    #[error("the connector's manifest is invalid")]
    Manifest(#[from] ManifestError),
    /// No connector with this digest is installed for the tenant.
    #[error("no connector with digest {digest} is installed for tenant `{tenant}`")]
    UnknownDigest {
        /// The digest asked for.
        digest: String,
        /// The tenant asking.
        tenant: String,
    },
}

/// `Result` with the host's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to build a [`Host`].
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Where compiled components are cached; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
}

/// The connector runtime: one engine, one linker, the installed connectors.
pub struct Host {
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<CallState>,
    cache: Option<Cache>,
    limits: Limits,
    registry: Registry,
    secrets: Arc<dyn SecretSource>,
    tokens: Arc<dyn TokenSource>,
    audit: Arc<dyn AuditSink>,
    routes: Arc<HashMap<String, http::uri::Uri>>,
    egress_policies: HashMap<String, Arc<[String]>>,
    addresses: AddressPolicy,
    _ticker: EpochTicker,
}

impl Host {
    /// An engine with the pooling allocator and epoch interruption, and a
    /// linker with WASI p2 (no files, no env), wasi:http and Weft's imports.
    /// The first host of a process also installs the [`TemplateSandbox`],
    /// so that no template a workflow holds is evaluated unbounded in the
    /// process that runs connectors.
    pub fn new(config: HostConfig) -> Result<Host> {
        TemplateSandbox::install(config.cache_dir.clone())?;
        let limits = config.limits;
        let engine = wasmtime::Engine::new(&engine_config(&limits)).map_err(Error::Engine)?;
        let linker = engine::linker(&engine)?;
        let ticker = EpochTicker::start(&engine)?;
        let cache = config.cache_dir.map(|dir| Cache::new(dir, &engine));
        Ok(Host {
            engine,
            linker,
            cache,
            limits,
            registry: Registry::default(),
            secrets: Arc::new(MemorySecrets::new()),
            tokens: Arc::new(NoTokens),
            audit: Arc::new(TracingAudit),
            routes: Arc::new(HashMap::new()),
            egress_policies: HashMap::new(),
            addresses: AddressPolicy::default(),
            _ticker: ticker,
        })
    }

    /// Sends connectors' requests for `host` to `base` (e.g.
    /// `http://127.0.0.1:8080`) instead, keeping the path, query and `Host`
    /// header. The egress check still applies to `host`. This is how tests
    /// and local development put a stand-in server behind a provider's API.
    pub fn with_route(mut self, host: &str, base: &str) -> Result<Host> {
        let uri: http::uri::Uri = base.parse().map_err(|e| Error::Route { base: base.to_string(), source: Some(e) })?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(Error::Route { base: base.to_string(), source: None });
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

    /// Which addresses connectors may connect to, checked on the addresses
    /// a host name resolves to when the connection opens (link-local and
    /// metadata addresses are always refused; see [`AddressPolicy`]).
    /// Requests sent elsewhere by [`Host::with_route`] are not checked.
    pub fn with_address_policy(mut self, policy: AddressPolicy) -> Host {
        self.addresses = policy;
        self
    }

    /// Where connectors' secrets come from (none are set by default).
    pub fn with_secrets(mut self, source: Arc<dyn SecretSource>) -> Host {
        self.secrets = source;
        self
    }

    /// Where connectors' OAuth access tokens come from (none by default).
    pub fn with_tokens(mut self, source: Arc<dyn TokenSource>) -> Host {
        self.tokens = source;
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

    /// Compiles (or loads from the cache, or from the build script's
    /// `precompiled` form) and links a component.
    async fn compile(
        &self,
        digest: &str,
        bytes: &bytes::Bytes,
        precompiled: Option<&'static [u8]>,
    ) -> Result<bindings::ConnectorPre<CallState>> {
        if let Some(what) = not_a_component(bytes) {
            return Err(Error::NotAComponent(what));
        }
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let digest = digest.to_string();
        let bytes = bytes.clone();
        // Loading takes milliseconds even precompiled: off the async threads.
        let component = tokio::task::spawn_blocking(move || {
            cache::load_or_compile(&engine, cache.as_ref(), &digest, &bytes, precompiled)
        })
        .await
        .map_err(|e| Error::Compile(wasmtime::Error::new(e)))??;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(Error::Link)?;
        bindings::ConnectorPre::new(instance_pre).map_err(Error::Link)
    }
}

/// What the bytes are, when they are plainly not a component: a file that
/// is not WebAssembly, or a core module. (wasmtime would parse the first as
/// the text format and report a syntax error at 1:1.)
fn not_a_component(bytes: &[u8]) -> Option<&'static str> {
    if !bytes.starts_with(b"\0asm") {
        return Some(
            "the file is not a WebAssembly component (it does not start with WebAssembly's magic bytes `\\0asm`)",
        );
    }
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => Some(
            "the file is a WebAssembly core module, not a component: connectors are components, built for \
             wasm32-wasip2 (`weft connector build`)",
        ),
        _ => None,
    }
}

/// `sha256:<hex>` of a component's bytes: how connectors are identified.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
