//! Weft's run driver. It starts runs, and drives each one: it folds the
//! journal, asks `weft-core` what comes next, commits those events, performs
//! the connector calls they start, and commits the results. A step's output
//! is committed before any step that depends on it starts.
//!
//! One process drives a run at a time, under a lease in the store; a process
//! that dies leaves its lease to expire (or, on the same machine, to be taken
//! over at once), and `resume` picks the run up where its journal ends.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use weft_runtime::{Engine, EngineConfig};
//! let store = weft_store::Store::connect("sqlite://.weft/weft.db").await?;
//! let host = Arc::new(weft_host::Host::new(Default::default())?);
//! host.install_builtins().await?;
//! let engine = Engine::new(store, host, EngineConfig::default());
//! let text = r#"{"name":"hi","steps":[{"id":"a","uses":"transform/echo","with":{"hi":"{{ input.name }}"}}]}"#;
//! let tenant = weft_store::DEFAULT_TENANT; // the local tenant
//! let def = weft_workflows::load("hi.json", text, &engine.catalog(tenant))?;
//! let run = engine.start(tenant, &def, serde_json::json!({"name": "Ada"})).await?;
//! let outcome = engine.drive(tenant, &run, &mut ()).await?;
//! println!("{:?}", outcome.output);
//! # Ok(()) }
//! ```

mod assemble;
mod children;
mod driver;
mod gateway;
mod install;
mod lease;
mod plans;
mod standing;
pub mod telemetry;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weft_core::{Effect, Event, RunState, RunStatus, StepError};
use weft_host::Host;
use weft_store::{NewRun, RunRecord, Store};
use weft_workflows::{ActionSpec, Catalog, ConnectorSpec, Definition, Step, limits};

pub use assemble::{Assembly, AssemblyError};
pub use driver::Outcome;
pub use gateway::{DirectCall, DirectOutcome};
pub use standing::{Inspection, Standing, inspect, standing};
pub use worker::{Slot, Worker, WorkerConfig};

/// Runtime errors. A step failing is not one of these: it is recorded in the
/// run's journal and reported in the [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] weft_store::Error),
    /// The run input does not fit the workflow's input schema.
    #[error("the run input does not fit the workflow's `input` schema:\n  {}", .0.join("\n  "))]
    InvalidInput(Vec<String>),
    /// A run input or signal payload over the limits on values.
    #[error(transparent)]
    Limit(#[from] weft_workflows::limits::LimitError),
    /// The tenant's plan does not allow this (a connector it leaves out,
    /// the month's steps used up).
    #[error("{message}")]
    PlanLimit {
        /// The plan's limit: `connectors` or `steps_per_month`.
        limit: &'static str,
        /// What was refused, naming the limit.
        message: String,
    },
    /// A stored definition no longer loads.
    #[error("the stored workflow {hash} cannot be loaded: {message}")]
    Definition {
        /// Its hash.
        hash: String,
        /// Why.
        message: String,
    },
    /// A run is pinned to a connector build that is not installed.
    #[error("run {run} is pinned to connector {connector} ({digest}), which is not installed in this weft")]
    PinnedConnectorMissing {
        /// The run.
        run: String,
        /// `name@version`.
        connector: String,
        /// Its digest.
        digest: String,
    },
    /// A workflow uses a connector that is not installed.
    #[error("connector `{0}` is not installed")]
    UnknownConnector(String),
    /// The connector has no action of that name.
    #[error("{connector} has no action `{action}`; its actions: {}", .actions.join(", "))]
    UnknownAction {
        /// `name@version`.
        connector: String,
        /// The name given.
        action: String,
        /// The names it has.
        actions: Vec<String>,
    },
    /// An input that does not fit the action's input schema.
    #[error("the input does not fit the action's input schema:\n  {}", .0.join("\n  "))]
    InvalidActionInput(Vec<String>),
    /// A component offered for installing does not load or describe itself.
    #[error("the component cannot be installed: {0}")]
    Component(#[source] weft_host::Error),
    /// Another live process drives the run.
    #[error("run {run} is being driven by {owner} (its lease {}); wait for it or stop that process", lease_left(*until))]
    LeaseHeld {
        /// The run.
        run: String,
        /// Who holds it.
        owner: String,
        /// Until when (ms).
        until: i64,
    },
    /// No step of the run's workflow waits for a signal of this name.
    #[error("run {run} waits for no signal named `{name}`; {}", waited_for(expected))]
    UnknownSignal {
        /// The run.
        run: String,
        /// The name given.
        name: String,
        /// The names its workflow's steps wait for.
        expected: Vec<String>,
    },
    /// A run that has not finished cannot be retried.
    #[error("run {run} has not finished; cancel it (`weft cancel {run}`) or resume it before retrying it")]
    NotFinished {
        /// The run.
        run: String,
    },
    /// A retry that cannot be made as asked.
    #[error("run {run} cannot be retried: {source}")]
    Retry {
        /// The run.
        run: String,
        /// Why.
        source: weft_core::RetryError,
    },
    /// The run is over, so it takes no signals or cancellation.
    #[error("run {run} has already {status}")]
    Finished {
        /// The run.
        run: String,
        /// Its status.
        status: RunStatus,
    },
}

/// The signal names a workflow waits for, for an error message.
fn waited_for(names: &[String]) -> String {
    match names {
        [] => "its workflow waits for no signals".to_string(),
        names => {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("its workflow waits for {}", names.join(", "))
        }
    }
}

/// How long a lease that ends at `until` (ms) still holds, for people.
fn lease_left(until: i64) -> String {
    let left = until - now_ms();
    if left <= 0 {
        return "has just run out".to_string();
    }
    // Whole seconds: a lease is renewed every few seconds.
    let left = Duration::from_secs((left as u64).div_ceil(1000));
    format!("holds for another {}", humantime::format_duration(left))
}

/// `Result` with the runtime's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sees each event as it is committed, e.g. to draw progress.
pub trait Observer: Send {
    /// Called once per committed event, in journal order.
    fn event(&mut self, run_id: &str, seq: i64, event: &Event);
}

impl Observer for () {
    fn event(&mut self, _: &str, _: i64, _: &Event) {}
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
    /// How often a driver looks for signals and cancellations from other
    /// processes while it waits.
    pub poll_interval: Duration,
    /// Park a top-level run that only waits, when its next wake-up is at
    /// least this far off (or it waits for a signal): its driver gives up
    /// the lease and returns, and a [`Worker`] claims the run when it is
    /// due. `None` (the CLI's choice) keeps waiting runs in their driver.
    pub park_after: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { lease_ttl: Duration::from_secs(15), poll_interval: Duration::from_millis(200), park_after: None }
    }
}

/// Starts and drives runs.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    host: Arc<Host>,
    config: EngineConfig,
    owner: String,
    /// Workflow versions (tenant, hash) this engine has already stored
    /// (they are immutable).
    stored: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
    /// Workflow versions this engine has read from the store, parsed and
    /// checked, by (tenant, hash): a run's start and each of its drives need
    /// its definition, and a version never changes.
    loaded: Arc<std::sync::Mutex<HashMap<(String, String), Definition>>>,
    /// Runs this engine is driving now. It holds their leases, so a cancel
    /// here must leave the ending to their drivers.
    /// (How many drivers, should two drive one run.)
    driving: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    /// Child runs being found or created now (see `run_child`).
    opening: Arc<tokio::sync::Semaphore>,
    /// Each tenant's plan and month's steps, as last read.
    quotas: Arc<plans::Quotas>,
    /// Runs someone in this process waits to see finish (see
    /// [`Engine::wait_finished`]).
    watched: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Notify>>>>,
}

impl Engine {
    /// An engine over a store and a host with its connectors installed.
    pub fn new(store: Store, host: Arc<Host>, config: EngineConfig) -> Engine {
        Engine {
            store,
            host,
            config,
            owner: lease::owner_id(),
            stored: Default::default(),
            loaded: Default::default(),
            driving: Default::default(),
            opening: Arc::new(tokio::sync::Semaphore::new(children::CHILDREN_OPENED_AT_ONCE)),
            quotas: Default::default(),
            watched: Default::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The wasm host, with its connectors.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// What validation needs to know about the connectors `tenant` can use.
    pub fn catalog(&self, tenant: &str) -> Catalog {
        catalog(&self.host, tenant)
    }

    /// Creates a run of `definition` with `input`, pinned to the workflow's
    /// content hash and to the digests of the connectors it uses. The run is
    /// leased to this process; call [`Engine::drive`] next.
    pub async fn start(&self, tenant: &str, definition: &Definition, input: Value) -> Result<String> {
        Ok(self.create(tenant, definition, input, Origin::New, None, Begin::Bare).await?.0.id)
    }

    /// Creates a run as [`Engine::start`] does, once per idempotency `key`:
    /// when the tenant already has a run started with `key`, that run is
    /// returned instead, with `false`. A new run is leased to this process
    /// (drive it, or let its lease go for a worker to claim), except, on an
    /// engine that parks, one whose first steps only wait: it is written
    /// parked (its record has no lease owner), for a worker to claim when due.
    pub async fn start_once(
        &self,
        tenant: &str,
        definition: &Definition,
        input: Value,
        key: Option<&str>,
    ) -> Result<(RunRecord, bool)> {
        let begin = if self.config.park_after.is_some() { Begin::ParkedIfWaiting } else { Begin::Bare };
        let (run, created, _) = self.start_keyed(tenant, definition, input, key, begin).await?;
        Ok((run, created))
    }

    /// [`Engine::start_once`] for a caller that drives the new run at once:
    /// its first steps start in the commit that creates it, and the
    /// [`Started`] handed back holds what driving it needs (no read of what
    /// was just written). A run whose first steps only wait is written
    /// parked, as `start_once` writes it, and comes with no `Started`.
    pub async fn start_to_drive(
        &self,
        tenant: &str,
        definition: &Definition,
        input: Value,
        key: Option<&str>,
    ) -> Result<(RunRecord, bool, Option<Started>)> {
        self.start_keyed(tenant, definition, input, key, Begin::StartedOrParked).await
    }

    async fn start_keyed(
        &self,
        tenant: &str,
        definition: &Definition,
        input: Value,
        key: Option<&str>,
        begin: Begin,
    ) -> Result<(RunRecord, bool, Option<Started>)> {
        if let Some(key) = key
            && let Some(run) = self.store.run_by_idempotency_key(tenant, key).await?
        {
            return Ok((run, false, None));
        }
        match self.create(tenant, definition, input, Origin::New, key, begin).await {
            Ok((run, events, effects)) => {
                let started = (begin == Begin::StartedOrParked && run.lease_owner.is_some()).then(|| Started {
                    run: run.clone(),
                    definition: definition.clone(),
                    events,
                    effects,
                });
                Ok((run, true, started))
            }
            // Another request with the same key won the race.
            Err(Error::Store(weft_store::Error::IdempotencyKeyUsed(key))) => {
                let run = self.store.run_by_idempotency_key(tenant, &key).await?;
                run.map(|run| (run, false, None)).ok_or(Error::Store(weft_store::Error::IdempotencyKeyUsed(key)))
            }
            Err(e) => Err(e),
        }
    }

    /// Drives a run that [`Engine::start_to_drive`] created, from what it
    /// handed back, then lets its lease go unless it finished.
    pub async fn drive_started(&self, started: Started, observer: &mut dyn Observer) -> Result<Outcome> {
        let Started { run, definition, events, effects } = started;
        self.drive_created(run, &definition, events, effects, observer).await
    }

    /// Starts a run and drives it to the end in this process, without reading
    /// back what `start` just wrote.
    pub async fn run(
        &self,
        tenant: &str,
        definition: &Definition,
        input: Value,
        observer: &mut dyn Observer,
    ) -> Result<Outcome> {
        let (run, events, effects) = self.create(tenant, definition, input, Origin::New, None, Begin::Started).await?;
        self.drive_created(run, definition, events, effects, observer).await
    }

    /// Retries `run`, which has finished, and drives the retry to the end in
    /// this process. The retry is a new run of the same workflow version,
    /// input and connector builds; it reuses the outputs of the steps that
    /// completed, except `from` (when given) and every step that depends on
    /// it, which run again with the steps that did not complete. `definition`
    /// is the run's own ([`Engine::definition`]). Each run names the other:
    /// the retry's journal starts with the run it retries, and
    /// [`Store::retries`] lists a run's retries.
    pub async fn retry(
        &self,
        run: &RunRecord,
        definition: &Definition,
        from: Option<&str>,
        observer: &mut dyn Observer,
    ) -> Result<Outcome> {
        let (origin, input) = self.retry_origin(run, definition, from).await?;
        let (created, events, effects) =
            self.create(&run.tenant, definition, input, origin, None, Begin::Started).await?;
        self.drive_created(created, definition, events, effects, observer).await
    }

    /// Creates a retry of `run` as [`Engine::retry`] does, without driving
    /// it: the new run is leased to this process (drive it, or let its lease
    /// go for a worker to claim).
    pub async fn start_retry(&self, run: &RunRecord, definition: &Definition, from: Option<&str>) -> Result<RunRecord> {
        let (origin, input) = self.retry_origin(run, definition, from).await?;
        Ok(self.create(&run.tenant, definition, input, origin, None, Begin::Bare).await?.0)
    }

    /// What a retry of `run` starts from: the builds it was pinned to, the
    /// outputs it reuses, and its input.
    async fn retry_origin(
        &self,
        run: &RunRecord,
        definition: &Definition,
        from: Option<&str>,
    ) -> Result<(Origin<'static>, Value)> {
        if !run.status.is_terminal() {
            return Err(Error::NotFinished { run: run.id.clone() });
        }
        let events = self.store.load_events(&run.tenant, &run.id, 0).await?;
        let state = RunState::replay(&run.id, definition, events.iter().map(|e| &e.event));
        let reused = weft_core::reused(definition, &state, from)
            .map_err(|source| Error::Retry { run: run.id.clone(), source })?;
        let connectors = events
            .iter()
            .find_map(|e| match &e.event {
                Event::RunStarted { connectors, .. } => Some(connectors.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let origin = Origin::Retry {
            of: weft_core::RetryOf { run: run.id.clone(), from: from.map(str::to_string) },
            connectors,
            reused,
        };
        Ok((origin, state.input))
    }

    /// Drives a run that `create` just returned (with its first steps
    /// started, and `effects` to perform them), then gives its lease back
    /// unless it finished (a finished run's last commit cleared it).
    async fn drive_created(
        &self,
        run: RunRecord,
        definition: &Definition,
        events: Vec<weft_store::StoredEvent>,
        effects: Vec<Effect>,
        observer: &mut dyn Observer,
    ) -> Result<Outcome> {
        let (tenant, id) = (run.tenant.clone(), run.id.clone());
        let result = self.drive_loaded(run, definition.clone(), events, Some(effects), observer).await;
        if !matches!(&result, Ok(outcome) if outcome.status.is_terminal()) {
            self.release_lease(&tenant, &id).await;
        }
        result
    }

    /// Creates a run of `origin` (with a new id, or the child run's);
    /// returns its row and journal as written. `begin` says whether the
    /// steps that can start at once start in the same commit (see [`Begin`]).
    /// With an idempotency `key`, a second run with the same key is refused
    /// by the store.
    async fn create(
        &self,
        tenant: &str,
        definition: &Definition,
        input: Value,
        origin: Origin<'_>,
        key: Option<&str>,
        begin: Begin,
    ) -> Result<(RunRecord, Vec<weft_store::StoredEvent>, Vec<Effect>)> {
        limits::check_value(&input, "the run input", limits::MAX_VALUE_BYTES)?;
        weft_workflows::check_input(&definition.workflow, &input).map_err(Error::InvalidInput)?;
        let refuse_deprecated = matches!(origin, Origin::New);
        let (id, parent) = match &origin {
            Origin::Child { id, parent } => (Some(*id), Some(*parent)),
            Origin::New | Origin::Retry { .. } => (None, None),
        };
        // A retry keeps the builds of the run it retries.
        let (retry_of, connectors, reused) = match origin {
            Origin::Retry { of, connectors, reused } => (Some(of), connectors, reused),
            Origin::New | Origin::Child { .. } => {
                let pins = match self.pins(tenant, definition) {
                    Err(Error::UnknownConnector(_)) => {
                        // Installed through another process, perhaps.
                        self.load_installed(tenant).await?;
                        self.pins(tenant, definition)?
                    }
                    pins => pins?,
                };
                (None, pins, Vec::new())
            }
        };
        let admission = self.admit_run(tenant, &connectors, parent.is_none()).await?;
        self.put_definition(tenant, definition).await?;
        let run_id = id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
        let now = now_ms();
        let retried = retry_of.as_ref().map(|r| r.run.clone());
        let started = Event::RunStarted {
            workflow: definition.workflow.name.clone(),
            workflow_hash: definition.hash.clone(),
            input: input.clone(),
            connectors,
            timeout_at: definition.workflow.timeout.map(|t| weft_core::later(now, t.as_millis())),
            retry_of,
        };
        let mut events = vec![started];
        events.extend(reused);
        let mut effects = Vec::new();
        // With nothing to drive (a first sleep, a first wait), the run is
        // written parked: no process holds it until it is due.
        let mut parked_until = None;
        if begin != Begin::Bare {
            let mut state = RunState::replay(&run_id, definition, events.iter());
            let decision = weft_core::advance(definition, &mut state, now);
            let waits_only = decision.effects.iter().all(|e| matches!(e, Effect::WakeAt(_)));
            let until = decision.wake_at().unwrap_or(weft_store::PARKED_UNTIL_SIGNALLED);
            let far = self.config.park_after.is_some_and(|min| until - now >= min.as_millis() as i64);
            let parks = waits_only && far && parent.is_none() && !state.status.is_terminal();
            if begin != Begin::ParkedIfWaiting || parks {
                events.extend(decision.events);
                effects = decision.effects;
                parked_until = (begin != Begin::Started && parks).then_some(until);
            }
        }
        let lease = match parked_until {
            Some(_) => None,
            None => Some((self.owner.as_str(), now + self.config.lease_ttl.as_millis() as i64)),
        };
        let new = NewRun {
            id: &run_id,
            tenant,
            workflow_name: &definition.workflow.name,
            workflow_hash: &definition.hash,
            input: &input,
            lease,
            parent,
            retry_of: retried.as_deref(),
            idempotency_key: key,
            wake_at: parked_until.unwrap_or(0),
            at: now,
            refuse_deprecated,
        };
        self.store.create_run_capped(new, &events, admission.max_running).await?;
        telemetry::run_started(tenant, &definition.workflow.name);
        let record = RunRecord {
            id: run_id.clone(),
            tenant: tenant.to_string(),
            workflow_name: definition.workflow.name.clone(),
            workflow_hash: definition.hash.clone(),
            status: RunStatus::Running,
            input: input.to_string(),
            output: None,
            error: None,
            last_seq: events.len() as i64,
            lease_owner: lease.map(|(owner, _)| owner.to_string()),
            lease_until: lease.map(|(_, until)| until),
            created_at: now,
            updated_at: now,
            parent_id: parent.map(str::to_string),
            retry_of: retried.clone(),
            idempotency_key: key.map(str::to_string),
            wake_at: parked_until.unwrap_or(0),
        };
        let stored =
            events.into_iter().zip(1..).map(|(event, seq)| weft_store::StoredEvent { seq, at: now, event }).collect();
        Ok((record, stored, effects))
    }

    /// The connector builds `definition`'s steps resolve to for `tenant` now:
    /// `name@version` to digest.
    fn pins(&self, tenant: &str, definition: &Definition) -> Result<BTreeMap<String, String>> {
        let mut connectors = BTreeMap::new();
        for uses in definition.workflow.steps.iter().filter_map(Step::call) {
            let (key, digest) = self
                .host
                .pin(tenant, &uses.connector, uses.version.as_deref())
                .ok_or_else(|| Error::UnknownConnector(uses.connector.clone()))?;
            connectors.insert(key, digest);
        }
        Ok(connectors)
    }

    /// Stores a definition and its children's under their hashes, unless this
    /// engine already has (versions are immutable).
    async fn put_definition(&self, tenant: &str, definition: &Definition) -> Result<()> {
        let mut pending = vec![definition];
        while let Some(definition) = pending.pop() {
            pending.extend(definition.children.values());
            let key = (tenant.to_string(), definition.hash.clone());
            if self.stored.lock().expect("stored lock").contains(&key) {
                continue;
            }
            let text = definition.stored_form().to_string();
            self.store.put_workflow(tenant, &definition.hash, &definition.workflow.name, &text, now_ms()).await?;
            self.stored.lock().expect("stored lock").insert(key);
        }
        Ok(())
    }

    /// Stores a workflow version (and its child workflows') for `tenant`
    /// unless it is stored; returns whether it was new.
    pub async fn save(&self, tenant: &str, definition: &Definition) -> Result<bool> {
        let new = self.store.workflow_version(tenant, &definition.hash).await?.is_none();
        self.put_definition(tenant, definition).await?;
        Ok(new)
    }

    /// The tenant's stored version `hash`, with its children; `None` when
    /// the tenant has no such version.
    pub async fn version(&self, tenant: &str, hash: &str) -> Result<Option<Definition>> {
        if let Some(definition) = self.cached_definition(tenant, hash) {
            return Ok(Some(definition));
        }
        if self.store.workflow_version(tenant, hash).await?.is_none() {
            return Ok(None);
        }
        self.load_definition(tenant, hash).await.map(Some)
    }

    /// The definition a run is pinned to.
    pub async fn definition(&self, run: &RunRecord) -> Result<Definition> {
        match self.cached_definition(&run.tenant, &run.workflow_hash) {
            Some(definition) => Ok(definition),
            None => self.load_definition(&run.tenant, &run.workflow_hash).await,
        }
    }

    /// A version this engine has loaded before (versions never change).
    fn cached_definition(&self, tenant: &str, hash: &str) -> Option<Definition> {
        let loaded = self.loaded.lock().expect("loaded lock");
        loaded.get(&(tenant.to_string(), hash.to_string())).cloned()
    }

    /// Reads, parses and checks a stored version, and keeps it. The cache
    /// holds the versions in use: past [`LOADED_VERSIONS`] it starts again.
    async fn load_definition(&self, tenant: &str, hash: &str) -> Result<Definition> {
        let definition = stored_definition(&self.store, tenant, hash).await?;
        let mut loaded = self.loaded.lock().expect("loaded lock");
        if loaded.len() >= LOADED_VERSIONS {
            loaded.clear();
        }
        loaded.insert((tenant.to_string(), hash.to_string()), definition.clone());
        Ok(definition)
    }

    /// A run's journal folded into its state, with the definition.
    pub async fn state(&self, run: &RunRecord) -> Result<(Definition, RunState, Vec<weft_store::StoredEvent>)> {
        let definition = self.definition(run).await?;
        let events = self.store.load_events(&run.tenant, &run.id, 0).await?;
        let state = RunState::replay(&run.id, &definition, events.iter().map(|e| &e.event));
        Ok((definition, state, events))
    }

    /// Delivers a signal to a run. A run that is not waiting for it yet
    /// keeps it until a `wait_for_signal` step asks.
    pub async fn signal(&self, tenant: &str, run_id: &str, name: &str, payload: Value) -> Result<RunRecord> {
        limits::check_value(&payload, "the signal's payload", limits::MAX_VALUE_BYTES)?;
        let run = self.store.find_run(tenant, run_id).await?;
        if run.status.is_terminal() {
            return Err(Error::Finished { run: run.id, status: run.status });
        }
        let definition = self.definition(&run).await?;
        let mut expected: Vec<String> = definition
            .workflow
            .steps
            .iter()
            .filter_map(|step| match &step.kind {
                weft_workflows::StepKind::WaitForSignal(wait) => Some(wait.name.clone()),
                _ => None,
            })
            .collect();
        if !expected.iter().any(|n| n == name) {
            expected.sort();
            expected.dedup();
            return Err(Error::UnknownSignal { run: run.id, name: name.to_string(), expected });
        }
        let signal = [Event::SignalReceived { name: name.to_string(), payload }];
        self.store.append(tenant, &run.id, &signal, now_ms()).await?;
        // A parked run is due now; one being driven sees the signal at its
        // next poll (and cannot park past it: its journal grew).
        self.store.wake_run(tenant, &run.id, now_ms()).await?;
        Ok(run)
    }

    /// Cancels a run. If no live process drives it, the cancellation is
    /// completed here; otherwise its driver completes it within a poll.
    pub async fn cancel(&self, tenant: &str, run_id: &str, reason: &str) -> Result<RunRecord> {
        self.cancel_as(tenant, run_id, reason, false).await
    }

    /// [`Engine::cancel`]; `own_lease`: this engine's lease on the run is
    /// its caller's to use (a parent's driver cancelling its children).
    pub(crate) async fn cancel_as(
        &self,
        tenant: &str,
        run_id: &str,
        reason: &str,
        own_lease: bool,
    ) -> Result<RunRecord> {
        let run = self.store.find_run(tenant, run_id).await?;
        if run.status.is_terminal() {
            return Err(Error::Finished { run: run.id, status: run.status });
        }
        let request = [Event::CancelRequested { reason: reason.to_string() }];
        self.store.append(tenant, &run.id, &request, now_ms()).await?;
        // A parked run is due now (a driver that has just parked it may
        // still count as driving it here), so that whoever claims it ends it.
        self.store.wake_run(tenant, &run.id, now_ms()).await?;
        // This engine's own lease does not mean nobody drives the run: one of
        // its drivers may (or a worker task that has just claimed it and is
        // loading it), and ending the run under it would race it.
        let driven_here = self.driving.lock().expect("driving lock").contains_key(&run.id);
        let leased = match own_lease {
            true => self.take_lease(tenant, &run.id).await,
            false => self.take_idle_lease(tenant, &run.id).await,
        };
        if !driven_here && leased.is_ok() {
            let (definition, state, _) = self.state(&run).await?;
            let now = now_ms();
            let decision = weft_core::decide(&definition, &state, now);
            self.cancel_children(tenant, &decision.effects).await?;
            self.store.append(tenant, &run.id, &decision.events, now).await?;
            if let Some(status) = decision.finish() {
                telemetry::run_finished(tenant, &run.workflow_name, status);
                self.finished(&run.id);
            }
        }
        Ok(self.store.find_run(tenant, &run.id).await?)
    }

    /// The tenant's run `run_id` (or the one run whose id starts with it),
    /// once it has finished or `within` has passed, whichever is first. A
    /// run that this process drives is seen the moment it ends; one driven
    /// elsewhere, within [`WATCH_POLL`]. The run is read once, and again
    /// on each of those wake-ups: the watch is set before the first read,
    /// so an end between the two is not missed.
    pub async fn wait_finished(&self, tenant: &str, run_id: &str, within: Duration) -> Result<RunRecord> {
        let deadline = tokio::time::Instant::now() + within;
        match self.watch_until(tenant, run_id, deadline).await? {
            // Asked for by a prefix: watch the run itself.
            run if run.id != run_id && !run.status.is_terminal() => self.watch_until(tenant, &run.id, deadline).await,
            run => Ok(run),
        }
    }

    /// [`Engine::wait_finished`] with the watch set under `run_id`; a run
    /// found under another id (by a prefix) is answered as first read.
    async fn watch_until(&self, tenant: &str, run_id: &str, deadline: tokio::time::Instant) -> Result<RunRecord> {
        let notify = self.watched.lock().expect("watched lock").entry(run_id.to_string()).or_default().clone();
        let result = async {
            loop {
                let ended = notify.notified();
                let mut ended = std::pin::pin!(ended);
                ended.as_mut().enable();
                let run = self.store.find_run(tenant, run_id).await?;
                let now = tokio::time::Instant::now();
                if run.id != run_id || run.status.is_terminal() || now >= deadline {
                    return Ok(run);
                }
                let _ = tokio::time::timeout(WATCH_POLL.min(deadline - now), ended).await;
            }
        }
        .await;
        let mut watched = self.watched.lock().expect("watched lock");
        // The map's and ours: nobody else waits for it.
        if Arc::strong_count(&notify) <= 2 {
            watched.remove(run_id);
        }
        result
    }

    /// Tells whoever waits in this process that a run has finished.
    pub(crate) fn finished(&self, run_id: &str) {
        let watched = self.watched.lock().expect("watched lock");
        if let Some(notify) = watched.get(run_id) {
            notify.notify_waiters();
        }
    }

    /// Runs that have not finished, for `resume`.
    pub async fn unfinished(&self, tenant: &str) -> Result<Vec<RunRecord>> {
        Ok(self.store.unfinished_runs(tenant).await?)
    }
}

/// How far a new run gets in the commit that creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    /// Only its start: whoever drives it starts its first steps.
    Bare,
    /// Its first steps start too; the caller performs the effects.
    Started,
    /// When its first steps only wait (long enough to park), they start
    /// and the run is written parked; otherwise as `Bare`.
    ParkedIfWaiting,
    /// Its first steps start; when they only wait (long enough to park), the
    /// run is written parked, otherwise the caller performs the effects.
    StartedOrParked,
}

/// A run just created by [`Engine::start_to_drive`], with its first steps
/// started: what [`Engine::drive_started`] needs to drive it.
pub struct Started {
    run: RunRecord,
    definition: Definition,
    events: Vec<weft_store::StoredEvent>,
    effects: Vec<Effect>,
}

impl Started {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run.id
    }

    /// Its tenant.
    pub fn tenant(&self) -> &str {
        &self.run.tenant
    }
}

/// How often [`Engine::wait_finished`] reads a run that another process may
/// be driving.
pub const WATCH_POLL: Duration = Duration::from_millis(100);

/// How many parsed workflow versions an engine keeps.
const LOADED_VERSIONS: usize = 1_024;

/// Where a new run comes from.
enum Origin<'a> {
    /// Started by a caller.
    New,
    /// A child workflow run, with the id its parent's step derived.
    Child {
        /// Its id.
        id: &'a str,
        /// The parent run.
        parent: &'a str,
    },
    /// A retry of another run, pinned to its connector builds, with the
    /// outputs it reuses.
    Retry {
        /// The run it retries.
        of: weft_core::RetryOf,
        /// The retried run's connector builds.
        connectors: BTreeMap<String, String>,
        /// The [`Event::StepReused`] events.
        reused: Vec<Event>,
    },
}

/// Milliseconds since the Unix epoch, now: the engine's clock. The core and
/// the store read none; the times they record come from here.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The definition a run is pinned to, read from the store with its child
/// workflows (no wasm host needed: inspecting a run does not start one).
pub async fn definition(store: &Store, run: &RunRecord) -> Result<Definition> {
    stored_definition(store, &run.tenant, &run.workflow_hash).await
}

/// The definition stored under `hash`, with its children.
fn stored_definition<'a>(
    store: &'a Store,
    tenant: &'a str,
    hash: &'a str,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Definition>> + Send + 'a>> {
    Box::pin(async move {
        let failure = |message: String| Error::Definition { hash: hash.to_string(), message };
        let text =
            store.get_workflow(tenant, hash).await?.ok_or_else(|| failure("it is missing from the store".into()))?;
        let stored = weft_workflows::Stored::parse(&text).map_err(|e| failure(e.to_string()))?;
        let mut children = BTreeMap::new();
        for (step, child) in &stored.children {
            children.insert(step.clone(), stored_definition(store, tenant, child).await?);
        }
        let definition = Definition::with_children(stored.workflow, children);
        if definition.hash != hash {
            return Err(failure(format!("its content hashes to {}", definition.hash)));
        }
        Ok(definition)
    })
}

/// The validation catalog for the connectors `tenant` can use on `host`.
pub fn catalog(host: &Host, tenant: &str) -> Catalog {
    Catalog::new(
        host.connectors(tenant)
            .into_iter()
            .map(|c| ConnectorSpec {
                name: c.manifest.name,
                version: c.manifest.version,
                actions: c
                    .manifest
                    .actions
                    .into_iter()
                    .map(|a| ActionSpec { name: a.name, input_schema: a.input_schema, output_schema: a.output_schema })
                    .collect(),
            })
            .collect(),
    )
}

/// A host call error as a journal error.
pub(crate) fn step_error(e: weft_host::CallError) -> StepError {
    StepError { kind: e.kind, message: e.message, retry_after_ms: e.retry_after_ms }
}
