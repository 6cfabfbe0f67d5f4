//! Driving one run to the end (or until it has to wait on something that
//! only another process can provide, such as a signal, which it polls for).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use serde_json::Value;
use tokio::task::JoinSet;
use tracing::Instrument;
use weft_core::{
    AttemptId, Call, ChildStart, Decision, Effect, Event, LogLevel, LogLine, Logs, RunState, RunStatus, StepError,
    on_outcome,
};
use weft_host::CallContext;
use weft_store::{Metered, RunRecord};
use weft_workflows::{Definition, ErrorKind};

use crate::{Engine, Error, Observer, Result, now_ms, step_error};

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The run id.
    pub run_id: String,
    /// `Completed`, `Failed` or `Cancelled`; `Running` when the engine
    /// parked the run ([`crate::EngineConfig::park_after`]).
    pub status: RunStatus,
    /// The output, when completed.
    pub output: Option<Value>,
    /// The error, when failed.
    pub error: Option<StepError>,
}

/// A run found, leased and loaded, ready to drive.
pub(crate) struct Opened {
    run: RunRecord,
    definition: Definition,
    events: Vec<weft_store::StoredEvent>,
}

/// The result of one connector call or child run, tagged with its attempt.
struct Finished {
    attempt: AttemptId,
    result: Result<Value, StepError>,
    /// What the connector logged, for a connector call.
    logs: Logs,
    /// A connector call that ran, and its time.
    metered: Metered,
}

/// A call's log lines as the journal keeps them.
fn journaled(logs: weft_host::CallLogs) -> Logs {
    let lines = logs.lines.into_iter().map(|line| LogLine {
        // The host names only the five levels `LogLevel` has.
        level: LogLevel::named(line.level).unwrap_or(LogLevel::Info),
        message: line.message,
    });
    Logs { lines: lines.collect(), dropped: u32::try_from(logs.dropped).unwrap_or(u32::MAX) }
}

/// The result of an attempt whose call panicked: a trap, so that the step's
/// policy decides what follows instead of the attempt hanging.
fn panicked(attempt: AttemptId, panic: &(dyn std::any::Any + Send)) -> Finished {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    let result = Err(StepError::new(ErrorKind::Trap, format!("the call panicked: {what}")));
    Finished { attempt, result, logs: Logs::default(), metered: Metered::default() }
}

/// The span of one attempt, inside its run's `run.drive` span (which names
/// the tenant and run).
fn attempt_span(step_id: &str, attempt: AttemptId) -> tracing::Span {
    tracing::debug_span!("step.attempt", step_id, iteration = attempt.iteration, attempt = attempt.attempt)
}

/// A connector call or child run, as spawned.
type BoxedCall = std::pin::Pin<Box<dyn Future<Output = Finished> + Send + 'static>>;

/// The in-memory side of a run being driven.
struct Drive<'a> {
    engine: &'a Engine,
    run: RunRecord,
    definition: Definition,
    state: RunState,
    /// Seq of the last journal event that `state` includes.
    known: i64,
    /// Events applied to `state` but not yet committed.
    staged: Vec<Event>,
    /// When the core next has something to do without a new event.
    wake_at: Option<weft_core::Millis>,
    /// Whether `state` took in events from elsewhere (a signal, a cancel)
    /// that the core has not advanced on yet: the run must not park then.
    unsettled: bool,
    observer: &'a mut dyn Observer,
    /// Connector calls and child runs under way in this process, each in a
    /// task of its own.
    in_flight: JoinSet<Finished>,
    /// The attempt of each task in `in_flight`, for a task that panics.
    tasks: HashMap<tokio::task::Id, AttemptId>,
    /// A call polled by the driver's own task: when a run has one call at a
    /// time (a chain of steps), nothing is handed between tasks.
    lone: Option<(AttemptId, BoxedCall)>,
    /// The connector calls whose results are staged, for the tenant's usage.
    metered: Metered,
}

/// Marks a run as driven by this engine for as long as it lives.
struct Driving<'a> {
    engine: &'a Engine,
    run: String,
}

impl<'a> Driving<'a> {
    fn enter(engine: &'a Engine, run: &str) -> Driving<'a> {
        *engine.driving.lock().expect("driving lock").entry(run.to_string()).or_default() += 1;
        Driving { engine, run: run.to_string() }
    }
}

impl Drop for Driving<'_> {
    fn drop(&mut self) {
        let mut driving = self.engine.driving.lock().expect("driving lock");
        if let Some(n) = driving.get_mut(&self.run) {
            *n -= 1;
            if *n == 0 {
                driving.remove(&self.run);
            }
        }
    }
}

impl Engine {
    /// Drives a run until it completes, fails or is cancelled (or, on an
    /// engine that parks, until it only waits: then the outcome's status
    /// is `Running` and a [`crate::Worker`] picks it up when due). Attempts that
    /// were under way when a previous driver died are recorded as
    /// interrupted and retried with the same idempotency key.
    pub async fn drive(&self, tenant: &str, run_id: &str, observer: &mut dyn Observer) -> Result<Outcome> {
        let opened = self.open(tenant, run_id).await?;
        self.drive_opened(opened, observer).await
    }

    /// Finds a run, takes its lease (unless it is over) and loads its
    /// definition and journal: everything [`Engine::drive`] asks of the
    /// store before it drives.
    pub(crate) async fn open(&self, tenant: &str, run_id: &str) -> Result<Opened> {
        let run = self.store.find_run(tenant, run_id).await?;
        let ours_for_a_while = run.lease_owner.as_deref() == Some(self.owner.as_str())
            && run.lease_until.unwrap_or(0) > now_ms() + self.config.lease_ttl.as_millis() as i64 / 2;
        if !run.status.is_terminal() && !ours_for_a_while {
            self.take_lease(tenant, &run.id).await?;
        }
        let loaded = async {
            let definition = self.definition(&run).await?;
            let events = self.store.load_events(&run.tenant, &run.id, 0).await?;
            Ok::<_, Error>((definition, events))
        };
        match loaded.await {
            Ok((definition, events)) => Ok(Opened { run, definition, events }),
            Err(e) => {
                if !run.status.is_terminal() {
                    self.release_lease(tenant, &run.id).await;
                }
                Err(e)
            }
        }
    }

    /// Drives an opened run to its end, then lets its lease go.
    pub(crate) async fn drive_opened(&self, opened: Opened, observer: &mut dyn Observer) -> Result<Outcome> {
        let Opened { run, definition, events } = opened;
        let (tenant, run_id) = (run.tenant.clone(), run.id.clone());
        let result = self.drive_loaded(run, definition, events, None, observer).await;
        // A finished run's last commit already cleared its lease.
        if !matches!(&result, Ok(outcome) if outcome.status.is_terminal()) {
            self.release_lease(&tenant, &run_id).await;
        }
        result
    }

    /// Drives a run whose definition and journal are already in hand. With
    /// `created`, the run was just created here and these are the effects its
    /// creating commit called for; without it, a previous driver stopped
    /// somewhere and the core says how to recover.
    pub(crate) async fn drive_loaded(
        &self,
        run: RunRecord,
        definition: Definition,
        events: Vec<weft_store::StoredEvent>,
        created: Option<Vec<Effect>>,
        observer: &mut dyn Observer,
    ) -> Result<Outcome> {
        let state = RunState::replay(&run.id, &definition, events.iter().map(|e| &e.event));
        for stored in &events {
            observer.event(&run.id, stored.seq, &stored.event);
        }
        let missing = || state.pins.iter().flatten().find(|pin| !self.host.is_installed(&run.tenant, &pin.digest));
        if missing().is_some() {
            // Installed through another process, perhaps.
            self.load_installed(&run.tenant).await?;
        }
        if let Some(pin) = missing() {
            return Err(Error::PinnedConnectorMissing {
                run: run.id.clone(),
                connector: pin.id.to_string(),
                digest: pin.digest.clone(),
            });
        }
        let known = events.last().map_or(0, |e| e.seq);
        let _driving = Driving::enter(self, &run.id);
        let mut drive = Drive {
            engine: self,
            run,
            definition,
            state,
            known,
            staged: Vec::new(),
            wake_at: None,
            unsettled: false,
            observer,
            in_flight: JoinSet::new(),
            tasks: HashMap::new(),
            lone: None,
            metered: Metered::default(),
        };
        let first = match created {
            Some(effects) => Decision { events: Vec::new(), effects },
            None => weft_core::recover(&drive.definition, &drive.state, now_ms()),
        };
        let span = tracing::info_span!("run.drive", tenant = %drive.run.tenant, run_id = %drive.run.id);
        drive.run_to_end(first).instrument(span).await
    }
}

impl Drive<'_> {
    /// Commits and performs decisions until the run ends. `first` is what to
    /// do before the core is asked anything (a recovery, a creation's calls).
    async fn run_to_end(&mut self, first: Decision) -> Result<Outcome> {
        self.stage(first.events);
        let mut effects = first.effects;
        let poll = self.engine.config.poll_interval;
        let renew_every = self.engine.config.lease_ttl / 3;
        let mut last_renew = Instant::now();
        loop {
            effects.extend(self.settle().await?);
            if self.state.status.is_terminal() {
                break;
            }
            self.perform(std::mem::take(&mut effects));
            if self.unsettled && self.engine.config.park_after.is_some() {
                // What came from elsewhere is decided on before anything
                // waits (or parks).
                continue;
            }
            if self.parks() {
                let (tenant, id, owner) = (&self.run.tenant, &self.run.id, &self.engine.owner);
                let until = self.wake_at.unwrap_or(weft_store::PARKED_UNTIL_SIGNALLED);
                if self.engine.store.park_run(tenant, id, owner, self.known, until).await? {
                    tracing::debug!(wake_at = until, "run.park");
                    crate::telemetry::parked();
                    return Ok(self.outcome());
                }
                // A signal or a cancel came in since the last look (or the
                // lease was lost): read it and go on.
                self.poll_foreign().await?;
                continue;
            }

            let wake = self.wake_at.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
            let wait = wake.map_or(poll, |w| w.min(poll));
            let (lone, in_flight) = (&mut self.lone, &mut self.in_flight);
            tokio::select! {
                finished = async {
                    let (attempt, call) = lone.as_mut().expect("a lone call");
                    AssertUnwindSafe(call).catch_unwind().await.unwrap_or_else(|panic| panicked(*attempt, &*panic))
                }, if lone.is_some() => {
                    self.lone = None;
                    self.finish(finished);
                }
                Some(joined) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    self.joined(joined);
                    // Whatever else has finished meanwhile goes into the
                    // same commit: a wide `foreach` then commits a batch of
                    // results at a time, not one.
                    while let Some(joined) = self.in_flight.try_join_next_with_id() {
                        self.joined(joined);
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    if wake.is_none_or(|w| w > wait) {
                        self.poll_foreign().await?;
                    }
                }
            }
            if last_renew.elapsed() >= renew_every {
                if let Err(e) = self.engine.take_lease(&self.run.tenant, &self.run.id).await {
                    // Another process may have ended the run (a cancel that
                    // found no live driver): then its journal says how.
                    self.poll_foreign().await?;
                    if self.state.status.is_terminal() {
                        break;
                    }
                    return Err(e);
                }
                last_renew = Instant::now();
            }
        }
        self.lone = None;
        self.in_flight.abort_all();
        Ok(self.outcome())
    }

    /// Where the run is: its end, or `Running` when it was parked.
    fn outcome(&self) -> Outcome {
        Outcome {
            run_id: self.run.id.clone(),
            status: self.state.status,
            output: self.state.output.clone(),
            error: self.state.error.clone(),
        }
    }

    /// Whether to park the run now: the engine parks, the run is top-level,
    /// nothing of it is under way, unwritten or unadvanced on, and what it
    /// waits for is a signal or a time at least `park_after` off.
    fn parks(&self) -> bool {
        let Some(min) = self.engine.config.park_after else { return false };
        let idle = self.lone.is_none() && self.in_flight.is_empty() && self.staged.is_empty() && !self.unsettled;
        idle && self.run.parent_id.is_none()
            && !self.state.status.is_terminal()
            && self.wake_at.is_none_or(|at| at - now_ms() >= min.as_millis() as i64)
    }

    /// Starts the calls and child runs that committed events started. A
    /// lone call (nothing else under way) is polled in the driver's task.
    fn perform(&mut self, effects: Vec<Effect>) {
        let mut calls = Vec::new();
        for effect in effects {
            match effect {
                Effect::Call(call) => {
                    let span = attempt_span(&call.step_id, call.attempt);
                    calls.push((call.attempt, Box::pin(self.call(call).instrument(span)) as BoxedCall))
                }
                Effect::StartChild(child) => {
                    let span = attempt_span(&child.step_id, child.attempt);
                    calls.push((child.attempt, Box::pin(self.child(child).instrument(span)) as BoxedCall))
                }
                // `settle` cancels children before it commits the end;
                // `wake_at` is kept as each decision comes.
                Effect::CancelChild { .. } | Effect::WakeAt(_) | Effect::Finish(_) => {}
            }
        }
        let alone = calls.len() == 1 && self.lone.is_none() && self.in_flight.is_empty();
        for (attempt, call) in calls {
            if alone {
                self.lone = Some((attempt, call));
            } else {
                let task = self.in_flight.spawn(call);
                self.tasks.insert(task.id(), attempt);
            }
        }
    }

    /// Advances the run as far as the core can, and commits that with
    /// whatever was staged (a result, a recovery) in one transaction: a step's
    /// completion and the start of the steps that need it are durable
    /// together, before those steps are called. Returns the effects to
    /// perform now that their events are durable.
    async fn settle(&mut self) -> Result<Vec<Effect>> {
        self.unsettled = false;
        let mut decision = {
            let _advance = tracing::debug_span!("run.advance").entered();
            weft_core::advance(&self.definition, &mut self.state, now_ms())
        };
        self.staged.append(&mut decision.events);
        if decision.finish().is_some_and(|status| status != RunStatus::Completed) {
            // Child runs end before their parent's end is durable: if this
            // process dies in between, the parent is still running and its
            // next driver ends them again.
            self.lone = None;
            self.in_flight.abort_all();
            while self.in_flight.join_next().await.is_some() {}
            self.tasks.clear();
            self.engine.cancel_children(&self.run.tenant, &decision.effects).await?;
        }
        self.wake_at = decision.wake_at();
        let batch = std::mem::take(&mut self.staged);
        self.append(batch).await?;
        if let Some(status) = decision.finish() {
            crate::telemetry::run_finished(&self.run.tenant, &self.run.workflow_name, status);
            self.engine.finished(&self.run.id);
        }
        Ok(decision.effects)
    }

    /// Stages what a task's end leads to: its attempt's result, or a trap
    /// when it panicked.
    fn joined(&mut self, joined: std::result::Result<(tokio::task::Id, Finished), tokio::task::JoinError>) {
        match joined {
            Ok((id, finished)) => {
                self.tasks.remove(&id);
                self.finish(finished);
            }
            Err(e) => {
                let attempt = self.tasks.remove(&e.id());
                if let (Some(attempt), Ok(panic)) = (attempt, e.try_into_panic()) {
                    self.finish(panicked(attempt, &*panic));
                }
            }
        }
    }

    /// Stages what a finished attempt leads to.
    fn finish(&mut self, finished: Finished) {
        let Finished { attempt, result, logs, metered } = finished;
        self.metered.steps += metered.steps;
        self.metered.wasm_us += metered.wasm_us;
        let events = on_outcome(&self.definition, &self.state, attempt, result, logs, now_ms());
        self.stage(events);
    }

    /// Applies events to the state; `settle` commits them.
    fn stage(&mut self, events: Vec<Event>) {
        for event in &events {
            self.state.apply(&self.definition, event);
        }
        self.staged.extend(events);
    }

    /// Writes events that `state` already includes. When someone else wrote
    /// in between (a signal, a cancel), the state is rebuilt from the journal
    /// so that it matches what a replay would see.
    /// The connector calls whose results are among them go into the
    /// tenant's usage in the same commit.
    async fn append(&mut self, events: Vec<Event>) -> Result<()> {
        let metered = std::mem::take(&mut self.metered);
        if events.is_empty() && metered.is_empty() {
            return Ok(());
        }
        let (tenant, id) = (&self.run.tenant, &self.run.id);
        let first = self.engine.store.append_metered(tenant, id, &events, now_ms(), metered).await?;
        if events.is_empty() {
            return Ok(());
        }
        if first != self.known + 1 {
            let foreign = self.engine.store.load_events(&self.run.tenant, &self.run.id, self.known).await?;
            for stored in foreign.iter().filter(|e| e.seq < first) {
                self.observer.event(&self.run.id, stored.seq, &stored.event);
            }
            self.reload().await?;
            self.unsettled = true;
        }
        for (n, event) in events.iter().enumerate() {
            self.observer.event(&self.run.id, first + n as i64, event);
        }
        self.known = first + events.len() as i64 - 1;
        Ok(())
    }

    /// Picks up events that other processes appended (signals, cancels).
    async fn poll_foreign(&mut self) -> Result<()> {
        let foreign = self.engine.store.load_events(&self.run.tenant, &self.run.id, self.known).await?;
        if foreign.is_empty() {
            return Ok(());
        }
        for stored in &foreign {
            self.state.apply(&self.definition, &stored.event);
            self.observer.event(&self.run.id, stored.seq, &stored.event);
        }
        self.known = foreign.last().map_or(self.known, |e| e.seq);
        Ok(())
    }

    async fn reload(&mut self) -> Result<()> {
        let events = self.engine.store.load_events(&self.run.tenant, &self.run.id, 0).await?;
        self.state = RunState::replay(&self.run.id, &self.definition, events.iter().map(|e| &e.event));
        Ok(())
    }

    /// The future that runs one attempt of a child workflow step: it creates
    /// the child run (or finds it, after a restart) and drives it to its end.
    fn child(&self, start: ChildStart) -> BoxedCall {
        let engine = self.engine.clone();
        let definition = self.definition.children.get(&start.step_id).cloned();
        let (tenant, parent) = (self.run.tenant.clone(), self.run.id.clone());
        let ChildStart { attempt, run_id: id, input, timeout, .. } = start;
        Box::pin(async move {
            let result = match definition {
                None => Err(StepError::new(ErrorKind::Fatal, "the step's child workflow is not in the definition")),
                Some(definition) => {
                    let child = engine.run_child(&tenant, &definition, &id, &parent, input);
                    match timeout {
                        None => child.await,
                        Some(limit) => match tokio::time::timeout(limit, child).await {
                            Ok(result) => result,
                            Err(_) => {
                                let limit = weft_workflows::Duration(limit);
                                let reason = format!("the parent's step did not finish within {limit}");
                                let _ = engine.cancel(&tenant, &id, &reason).await;
                                Err(StepError::new(
                                    ErrorKind::Timeout,
                                    format!("child run {id} did not finish within {limit}"),
                                ))
                            }
                        },
                    }
                }
            };
            Finished { attempt, result, logs: Logs::default(), metered: Metered::default() }
        })
    }

    /// The future that performs one connector call.
    fn call(&self, call: Call) -> impl Future<Output = Finished> + Send + 'static {
        let engine = self.engine.clone();
        let Call { attempt, step_id, uses, digest, input, idempotency_key, timeout } = call;
        let ctx = CallContext {
            tenant: self.run.tenant.clone(),
            run_id: self.run.id.clone(),
            step_id,
            attempt: attempt.attempt,
            idempotency_key,
        };
        async move {
            let refused =
                |error| Finished { attempt, result: Err(error), logs: Logs::default(), metered: Metered::default() };
            let Some(digest) = digest else {
                return refused(StepError::new(
                    ErrorKind::Fatal,
                    format!("step `{}` has no pinned connector", ctx.step_id),
                ));
            };
            let call = engine.call_connector(&digest, &ctx, &uses.connector, &uses.action, &input, timeout).await;
            let (invocation, metered) = match call {
                Ok(made) => made,
                Err(e @ Error::PlanLimit { .. }) => return refused(StepError::new(ErrorKind::Fatal, e.to_string())),
                Err(e) => {
                    let message = format!("the tenant's plan could not be read: {e}");
                    return refused(StepError::new(ErrorKind::Transient, message));
                }
            };
            Finished {
                attempt,
                result: invocation.result.map_err(step_error),
                logs: journaled(invocation.logs),
                metered,
            }
        }
    }
}
