//! Weft's server: the `/v1` HTTP API over the engine, with API keys and
//! tenants, and a worker that drives runs. Runs that wait (a sleep, a
//! signal) are parked in the database and hold no task; the worker claims
//! each when it is due.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_server::{Server, ServerConfig};
//! let config = ServerConfig::new("sqlite://.weft/server.db");
//! let server = Server::start(config).await?;
//! if let Some(key) = server.bootstrap().await? {
//!     println!("operator key (shown once): {key}");
//! }
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod error;
mod limits;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aide::axum::ApiRouter;
use aide::openapi::{Info, OpenApi};
use axum::Router;
use weft_runtime::{Assembly, Engine, Worker, WorkerConfig};

use crate::auth::{Keys, Role};

pub use error::{ApiError, ApiResult};
pub use limits::RateLimits;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be built (the database, a connector).
    #[error(transparent)]
    Assembly(#[from] weft_runtime::AssemblyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    /// Listening or serving failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// How a server is set up.
#[derive(Clone)]
pub struct ServerConfig {
    /// How the engine is built: the database, connectors, limits.
    pub assembly: Assembly,
    /// Whether this process also drives runs (a worker), as `weft server`
    /// does by default.
    pub worker: Option<WorkerConfig>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests per second per API key and per tenant.
    pub rate_limits: RateLimits,
}

impl ServerConfig {
    /// A server on the database at `url` with a worker, parking runs that
    /// wait longer than two seconds.
    pub fn new(database_url: impl Into<String>) -> ServerConfig {
        let mut assembly = Assembly::new(database_url, weft_store::DEFAULT_TENANT);
        assembly.engine.park_after = Some(Duration::from_secs(2));
        ServerConfig {
            assembly,
            worker: Some(WorkerConfig::default()),
            max_body_bytes: 4 * 1024 * 1024,
            rate_limits: RateLimits::default(),
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    worker: Option<Worker>,
    keys: Keys,
    limiters: limits::Limiters,
}

impl AppState {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The keys checked lately.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The rate limiters.
    pub(crate) fn limiters(&self) -> &limits::Limiters {
        &self.inner.limiters
    }

    /// This process's worker, if it has one.
    pub(crate) fn worker(&self) -> Option<&Worker> {
        self.inner.worker.as_ref()
    }

    /// Hands a run this process created to its worker, or, without one,
    /// lets its lease go so that a worker elsewhere claims it.
    pub(crate) async fn drive(&self, tenant: &str, run_id: &str) {
        match &self.inner.worker {
            Some(worker) => worker.adopt(tenant, run_id).await,
            None => self.engine().release_lease(tenant, run_id).await,
        }
    }
}

/// A server, started: its engine, and its worker if it has one.
pub struct Server {
    state: AppState,
    config: ServerConfig,
}

impl Server {
    /// Opens the database (migrating it) and builds the engine.
    pub async fn start(config: ServerConfig) -> Result<Server, Error> {
        routes::metrics::handle();
        let engine = config.assembly.engine().await?;
        let worker = config.worker.clone().map(|c| Worker::new(engine.clone(), c));
        let limiters = limits::Limiters::new(config.rate_limits);
        let state = AppState { inner: Arc::new(Shared { engine, worker, keys: Keys::default(), limiters }) };
        Ok(Server { state, config })
    }

    /// The database URL it serves.
    pub fn url(&self) -> &str {
        &self.config.assembly.database_url
    }

    /// The shared state, for tests that call the router directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The worker, when this server has one ([`Server::serve`] runs its
    /// claim loop; a test that only calls the router runs it itself).
    pub fn worker(&self) -> Option<&Worker> {
        self.state.inner.worker.as_ref()
    }

    /// Makes the first super-admin key when the database has no live key,
    /// and returns it (it is shown once: only its hash is stored).
    pub async fn bootstrap(&self) -> Result<Option<String>, Error> {
        let store = self.state.engine().store();
        if store.has_live_api_keys().await? {
            return Ok(None);
        }
        Ok(Some(self.admin_key("bootstrap").await?))
    }

    /// Makes a new super-admin key named `name` and returns it.
    pub async fn admin_key(&self, name: &str) -> Result<String, Error> {
        let key = auth::new_key(None, name, Role::SuperAdmin, weft_runtime::now_ms());
        self.state.engine().store().create_api_key(&key.stored).await?;
        Ok(key.secret)
    }

    /// The router, with `/v1/openapi.json` built from its routes.
    pub fn router(&self) -> Router {
        router(self.state.clone(), self.config.max_body_bytes)
    }

    /// Serves the API on `listener` and runs the worker, until `shutdown`
    /// resolves; then stops taking requests and runs, and waits for those
    /// under way (the worker up to its grace period).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (stop, _) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let worker = self.state.inner.worker.clone().map(|worker| {
            let stopped = stopped(stop.subscribe());
            tokio::spawn(async move { worker.run(stopped).await })
        });
        let app = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let http = axum::serve(listener, app).with_graceful_shutdown(stopped(stop.subscribe()));
        let stop_on = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (served, ()) = tokio::join!(async { http.await }, stop_on);
        if let Some(worker) = worker {
            worker.await.ok();
        }
        self.state.engine().store().close().await;
        Ok(served?)
    }
}

/// The whole API: the documented `/v1` routes, the document itself at
/// `/v1/openapi.json`, and the health probes.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let mut api = OpenApi {
        info: Info {
            title: "Weft".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: Some("Durable workflows: workflow versions, runs, connectors, tenants and API keys.".into()),
            ..Info::default()
        },
        ..OpenApi::default()
    };
    let documented = ApiRouter::new()
        .merge(routes::tenants::routes())
        .merge(routes::keys::routes())
        .merge(routes::workflows::routes())
        .merge(routes::runs::routes())
        .merge(routes::connectors::routes())
        .merge(routes::health::routes())
        .merge(routes::metrics::routes())
        .finish_api_with(&mut api, routes::document);
    let document: Arc<str> = serde_json::to_string(&api).expect("the OpenAPI document serializes").into();
    documented
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document.to_string()) }
            }),
        )
        .fallback(routes::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(routes::request_id))
        .with_state(state)
}
