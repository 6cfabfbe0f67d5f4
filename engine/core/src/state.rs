//! A run's state: the fold of its journal.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Value, json};
use weft_workflows::expr::ScopeValue;
use weft_workflows::{ConnectorId, Definition, ErrorKind, ErrorMode, OnError, StepKind};

use crate::effect::AttemptId;
use crate::event::{Event, Millis, StepError};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Not finished.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;

    /// Reads what [`RunStatus::as_str`] wrote.
    fn from_str(text: &str) -> Result<RunStatus, String> {
        [RunStatus::Running, RunStatus::Completed, RunStatus::Failed, RunStatus::Cancelled]
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown run status {text:?}"))
    }
}

/// One iteration of a step (a step without `foreach` has exactly one).
#[derive(Debug, Clone, PartialEq)]
pub enum Iteration {
    /// Not started.
    Idle,
    /// An attempt is under way.
    Running {
        /// Its number.
        attempt: u32,
        /// Its rendered input.
        input: Value,
        /// For waits and sleeps: when the timeout or timer fires.
        wake_at: Option<Millis>,
        /// The iteration's idempotency key, as journaled.
        key: String,
        /// For child workflow steps: the child run's id, as journaled.
        child: Option<String>,
    },
    /// Failed; the next attempt starts at `retry_at`.
    Backoff {
        /// The attempt that failed.
        attempt: u32,
        /// When the next one starts.
        retry_at: Millis,
    },
    /// Succeeded.
    Done(Value),
    /// Failed for good.
    Failed(StepError),
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq)]
pub enum StepPhase {
    /// Waiting for its dependencies (or, for handlers, for an error).
    Pending,
    /// Running its iterations.
    Active,
    /// All iterations succeeded.
    Completed(Value),
    /// Failed for good.
    Failed(StepError),
    /// Will not run.
    Skipped(String),
}

/// A step's state.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    /// Its phase.
    pub phase: StepPhase,
    /// For `foreach`, the items; otherwise none.
    pub items: Option<Vec<Value>>,
    /// One entry per item (one in all without `foreach`).
    iterations: Vec<Iteration>,
    /// Per item, how many of its attempts were cut short because the
    /// process driving them stopped; they do not count against
    /// `max_attempts`.
    pub interruptions: Vec<u32>,
    /// Counts and sets kept with `iterations`, so that an event and a
    /// decision cost the iterations under way, not all of them: a `foreach`
    /// over a million items is then linear in its size.
    tally: Tally,
    /// What templates read of the step, once it is needed.
    scope: Cache<ScopeValue>,
}

/// A value derived from the state on first use and kept with it until the
/// state changes. It takes no part in comparisons: a replayed state equals
/// the original whether or not either has filled it.
#[derive(Clone, Default)]
struct Cache<T>(OnceLock<T>);

impl<T> PartialEq for Cache<T> {
    fn eq(&self, _: &Cache<T>) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

impl<T: Clone> Cache<T> {
    fn get(&self, make: impl FnOnce() -> T) -> T {
        self.0.get_or_init(make).clone()
    }

    fn clear(&mut self) {
        self.0 = OnceLock::new();
    }
}

/// What [`StepState`] keeps of its iterations besides the list itself.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    /// How many iterations are done.
    done: usize,
    /// How many attempts are under way.
    running: usize,
    /// Iterations running or backing off.
    active: BTreeSet<usize>,
    /// Iterations that failed for good.
    failed: BTreeSet<usize>,
    /// No iteration below this one is idle.
    next_idle: usize,
}

impl StepState {
    fn new() -> StepState {
        StepState {
            phase: StepPhase::Pending,
            items: None,
            iterations: Vec::new(),
            interruptions: Vec::new(),
            tally: Tally::default(),
            scope: Cache::default(),
        }
    }

    /// The step as templates read it, `{ output, error }`: converted once
    /// for all the templates that read it until it changes.
    pub fn scope(&self) -> ScopeValue {
        self.scope.get(|| {
            let (output, error) = match &self.phase {
                StepPhase::Completed(output) => (ScopeValue::new(output), ScopeValue::new(&Value::Null)),
                StepPhase::Failed(error) => (
                    ScopeValue::new(&self.partial_output().unwrap_or(Value::Null)),
                    ScopeValue::new(&json!({ "kind": error.kind, "message": error.message })),
                ),
                _ => (ScopeValue::new(&Value::Null), ScopeValue::new(&Value::Null)),
            };
            ScopeValue::map([("output".to_string(), output), ("error".to_string(), error)])
        })
    }

    /// For a failed `foreach` step whose every item finished: the items'
    /// outputs in order, each failed item as `{"error": {"kind", "message"}}`.
    fn partial_output(&self) -> Option<Value> {
        if self.items.is_none() || self.tally.done + self.tally.failed.len() != self.iterations.len() {
            return None;
        }
        let outputs = self.iterations.iter().map(|it| match it {
            Iteration::Done(output) => output.clone(),
            Iteration::Failed(error) => json!({ "error": { "kind": error.kind, "message": error.message } }),
            _ => Value::Null,
        });
        Some(Value::Array(outputs.collect()))
    }

    /// How many attempts of `iteration` were interrupted.
    pub fn interrupted(&self, iteration: Option<u32>) -> u32 {
        self.interruptions.get(iteration.unwrap_or(0) as usize).copied().unwrap_or(0)
    }

    /// Its iterations, one per item (one in all without `foreach`).
    pub fn iterations(&self) -> &[Iteration] {
        &self.iterations
    }

    /// How many attempts are under way.
    pub fn running_count(&self) -> usize {
        self.tally.running
    }

    /// The iterations that are running or backing off, in order.
    pub fn active(&self) -> impl Iterator<Item = (usize, &Iteration)> + '_ {
        self.tally.active.iter().map(|&n| (n, &self.iterations[n]))
    }

    /// The iterations not started yet, in order.
    pub fn idle(&self) -> impl Iterator<Item = usize> + '_ {
        (self.tally.next_idle..self.iterations.len()).filter(|&n| self.iterations[n] == Iteration::Idle)
    }

    /// Starts over with `n` idle iterations.
    fn reset(&mut self, n: usize) {
        self.iterations = vec![Iteration::Idle; n];
        self.tally = Tally::default();
    }

    /// Puts iteration `n` in a new state; false when there is no such
    /// iteration.
    fn set(&mut self, n: usize, next: Iteration) -> bool {
        let Some(slot) = self.iterations.get_mut(n) else { return false };
        let tally = &mut self.tally;
        match slot {
            Iteration::Idle => {}
            Iteration::Running { .. } => {
                tally.running -= 1;
                tally.active.remove(&n);
            }
            Iteration::Backoff { .. } => {
                tally.active.remove(&n);
            }
            Iteration::Done(_) => tally.done -= 1,
            Iteration::Failed(_) => {
                tally.failed.remove(&n);
            }
        }
        match &next {
            Iteration::Idle => tally.next_idle = tally.next_idle.min(n),
            Iteration::Running { .. } => {
                tally.running += 1;
                tally.active.insert(n);
            }
            Iteration::Backoff { .. } => {
                tally.active.insert(n);
            }
            Iteration::Done(_) => tally.done += 1,
            Iteration::Failed(_) => {
                tally.failed.insert(n);
            }
        }
        *slot = next;
        while self.iterations.get(tally.next_idle).is_some_and(|it| *it != Iteration::Idle) {
            tally.next_idle += 1;
        }
        true
    }
}

/// The connector build a step of the run is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The build's `name@version`.
    pub id: ConnectorId,
    /// Its digest.
    pub digest: String,
}

/// A delivered signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Value,
    /// Whether a wait has taken it.
    pub consumed: bool,
}

/// The fold of a run's journal.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The run's id.
    pub run_id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The run input.
    pub input: Value,
    /// When the run times out.
    pub timeout_at: Option<Millis>,
    /// For each call step (by index), the build it is pinned to.
    pub pins: Vec<Option<Pin>>,
    /// Steps, in the definition's order.
    pub steps: Vec<StepState>,
    /// Signals delivered so far.
    pub signals: Vec<Signal>,
    /// Set by a cancel request.
    pub cancel_requested: Option<String>,
    /// The output, once completed.
    pub output: Option<Value>,
    /// The error, once failed.
    pub error: Option<StepError>,
    /// How many events have been applied.
    pub applied: u64,
    /// The run input as templates read it, once it is needed.
    input_scope: Cache<ScopeValue>,
}

impl RunState {
    /// The state before any event.
    pub fn new(run_id: impl Into<String>, definition: &Definition) -> Self {
        RunState {
            run_id: run_id.into(),
            status: RunStatus::Running,
            input: Value::Null,
            timeout_at: None,
            pins: vec![None; definition.workflow.steps.len()],
            steps: definition.workflow.steps.iter().map(|_| StepState::new()).collect(),
            signals: Vec::new(),
            cancel_requested: None,
            output: None,
            error: None,
            applied: 0,
            input_scope: Cache::default(),
        }
    }

    /// Folds a journal.
    pub fn replay<'e>(run_id: &str, definition: &Definition, events: impl IntoIterator<Item = &'e Event>) -> Self {
        let mut state = RunState::new(run_id, definition);
        for event in events {
            state.apply(definition, event);
        }
        state
    }

    /// Applies one event. Events that do not fit (a stale attempt, an
    /// unknown step) change nothing, so replay never panics.
    pub fn apply(&mut self, definition: &Definition, event: &Event) {
        self.applied += 1;
        let index = event.step().and_then(|id| definition.step_index(id));
        if let Some(i) = index {
            self.steps[i].scope.clear();
        }
        match event {
            Event::RunStarted { input, timeout_at, connectors, .. } => {
                self.input = input.clone();
                self.input_scope.clear();
                self.timeout_at = *timeout_at;
                self.pins = definition
                    .workflow
                    .steps
                    .iter()
                    .map(|step| {
                        let uses = step.call()?;
                        connectors.iter().find_map(|(id, digest)| {
                            let id: ConnectorId = id.parse().ok()?;
                            uses.matches(&id).then(|| Pin { id, digest: digest.clone() })
                        })
                    })
                    .collect();
            }
            Event::StepScheduled { items, .. } => {
                if let Some(step) = index.map(|i| &mut self.steps[i]) {
                    step.reset(items.as_ref().map_or(1, Vec::len));
                    step.items = items.clone();
                    step.phase = match items {
                        Some(items) if items.is_empty() => StepPhase::Completed(Value::Array(Vec::new())),
                        _ => StepPhase::Active,
                    };
                }
            }
            Event::StepReused { output, .. } => {
                if let Some(step) = index.map(|i| &mut self.steps[i]) {
                    step.reset(0);
                    step.phase = StepPhase::Completed(output.clone());
                }
            }
            Event::StepSkipped { reason, .. } => {
                if let Some(step) = index.map(|i| &mut self.steps[i]) {
                    step.phase = StepPhase::Skipped(reason.clone());
                }
            }
            Event::StepStarted { iteration, attempt, input, timeout_at, key, child, .. } => {
                if let Some(i) = index {
                    self.steps[i].set(
                        iteration.unwrap_or(0) as usize,
                        Iteration::Running {
                            attempt: *attempt,
                            input: input.clone(),
                            wake_at: *timeout_at,
                            key: key.clone(),
                            child: child.clone(),
                        },
                    );
                }
            }
            Event::TimerSet { fire_at, .. } => {
                if let Some(Iteration::Running { wake_at, .. }) =
                    index.and_then(|i| self.steps[i].iterations.get_mut(0))
                {
                    // Only the wake-up time changes, not the iteration's state.
                    *wake_at = Some(*fire_at);
                }
            }
            Event::TimerFired { .. } => {
                if let Some(i) = index {
                    self.finish_iteration(definition, i, None, Iteration::Done(Value::Null));
                }
            }
            Event::StepCompleted { iteration, output, .. } => {
                if let Some(i) = index {
                    if let StepKind::WaitForSignal(wait) = &definition.workflow.steps[i].kind
                        && let Some(signal) = self.signals.iter_mut().find(|s| !s.consumed && s.name == wait.name)
                    {
                        signal.consumed = true;
                    }
                    self.finish_iteration(definition, i, *iteration, Iteration::Done(output.clone()));
                }
            }
            Event::StepFailed { iteration, attempt, error, retry_at, .. } => {
                if let Some(i) = index {
                    if self.steps[i].phase == StepPhase::Pending {
                        // Failed before it could start (bad condition or foreach).
                        self.steps[i].phase = StepPhase::Active;
                        self.steps[i].reset(1);
                    }
                    let slot = iteration.unwrap_or(0) as usize;
                    // Only an iteration that exists is counted: a count kept
                    // for any number a journal names would let one event
                    // claim memory for billions.
                    if error.kind == ErrorKind::Interrupted && slot < self.steps[i].iterations.len() {
                        let counts = &mut self.steps[i].interruptions;
                        if counts.len() <= slot {
                            counts.resize(slot + 1, 0);
                        }
                        counts[slot] = counts[slot].saturating_add(1);
                    }
                    let next = match retry_at {
                        Some(at) => Iteration::Backoff { attempt: *attempt, retry_at: *at },
                        None => Iteration::Failed(error.clone()),
                    };
                    self.finish_iteration(definition, i, *iteration, next);
                }
            }
            Event::SignalReceived { name, payload } => {
                self.signals.push(Signal { name: name.clone(), payload: payload.clone(), consumed: false });
            }
            Event::CancelRequested { reason } => self.cancel_requested = Some(reason.clone()),
            Event::RunCompleted { output } => {
                self.status = RunStatus::Completed;
                self.output = Some(output.clone());
            }
            Event::RunFailed { error } => {
                self.status = RunStatus::Failed;
                self.error = Some(error.clone());
            }
            Event::RunCancelled { .. } => self.status = RunStatus::Cancelled,
        }
    }

    /// Records an iteration's new state and settles the step when every
    /// iteration is done or one failed for good (the first such, in order,
    /// is the step's error). A `foreach` step whose failure lets the run go
    /// on (`on_error` other than `fail`) settles only when every item has
    /// finished, so that the items that succeed keep their outputs.
    fn finish_iteration(&mut self, definition: &Definition, step: usize, iteration: Option<u32>, next: Iteration) {
        let state = &mut self.steps[step];
        if !state.set(iteration.unwrap_or(0) as usize, next) {
            return;
        }
        let every_item = state.items.is_some()
            && !matches!(definition.workflow.steps[step].on_error, OnError::Mode(ErrorMode::Fail));
        let finished = state.tally.done + state.tally.failed.len() == state.iterations.len();
        if let Some(&first) = state.tally.failed.first() {
            if let Iteration::Failed(error) = &state.iterations[first]
                && (finished || !every_item)
            {
                state.phase = StepPhase::Failed(error.clone());
            }
        } else if state.tally.done == state.iterations.len() {
            let mut outputs = state.iterations.iter().map(|it| match it {
                Iteration::Done(v) => v.clone(),
                _ => Value::Null,
            });
            state.phase = StepPhase::Completed(match state.items {
                Some(_) => Value::Array(outputs.collect()),
                None => outputs.next().unwrap_or(Value::Null),
            });
        }
    }

    /// The run input as templates read it, converted once per run.
    pub fn input_scope(&self) -> ScopeValue {
        self.input_scope.get(|| ScopeValue::new(&self.input))
    }

    /// The attempts under way, with their iterations' state.
    pub fn running(&self) -> impl Iterator<Item = (AttemptId, &Iteration)> {
        self.steps.iter().enumerate().flat_map(|(step, state)| {
            let foreach = state.items.is_some();
            state.active().filter_map(move |(n, it)| match it {
                Iteration::Running { attempt, .. } => {
                    Some((AttemptId { step, iteration: foreach.then_some(n as u32), attempt: *attempt }, it))
                }
                _ => None,
            })
        })
    }
}

/// What a run that is not over waits for, when nothing of it is under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Awaiting {
    /// A `wait_for_signal` step waits for a signal that has not arrived.
    Signal {
        /// The step.
        step: String,
        /// The signal's name.
        name: String,
        /// When the wait times out, if it does.
        timeout_at: Option<Millis>,
    },
    /// A `sleep` step sleeps until a time.
    Timer {
        /// The step.
        step: String,
        /// When it wakes.
        until: Millis,
    },
    /// A failed attempt is retried at a time.
    Retry {
        /// The step.
        step: String,
        /// The `foreach` iteration.
        iteration: Option<u32>,
        /// When the next attempt starts.
        at: Millis,
    },
}

impl Awaiting {
    /// When what is awaited comes by itself (a signal may never come).
    pub fn due_at(&self) -> Option<Millis> {
        match self {
            Awaiting::Signal { timeout_at, .. } => *timeout_at,
            Awaiting::Timer { until, .. } => Some(*until),
            Awaiting::Retry { at, .. } => Some(*at),
        }
    }
}

impl RunState {
    /// What the run waits for at `now`: `Some` when it is not over, nothing
    /// is ready to go on, and every step under way waits for a signal, a
    /// timer or a retry; `None` when a call or a child run is under way, when
    /// the run is over, or when [`decide`](crate::decide) has something to do
    /// (a signal arrived for a wait, a timer is due, a step can start).
    pub fn awaiting(&self, definition: &Definition, now: Millis) -> Option<Vec<Awaiting>> {
        if self.status.is_terminal() || !crate::decide(definition, self, now).events.is_empty() {
            return None;
        }
        let mut waits = Vec::new();
        for (i, state) in self.steps.iter().enumerate() {
            let step = &definition.workflow.steps[i];
            let foreach = state.items.is_some();
            for (n, iteration) in state.active() {
                let iteration_number = foreach.then_some(n as u32);
                match (iteration, &step.kind) {
                    (Iteration::Backoff { retry_at, .. }, _) => waits.push(Awaiting::Retry {
                        step: step.id.clone(),
                        iteration: iteration_number,
                        at: *retry_at,
                    }),
                    (Iteration::Running { wake_at, .. }, StepKind::WaitForSignal(wait)) => {
                        waits.push(Awaiting::Signal {
                            step: step.id.clone(),
                            name: wait.name.clone(),
                            timeout_at: *wake_at,
                        });
                    }
                    (Iteration::Running { wake_at: Some(until), .. }, StepKind::Sleep(_)) => {
                        waits.push(Awaiting::Timer { step: step.id.clone(), until: *until })
                    }
                    _ => return None,
                }
            }
        }
        (!waits.is_empty()).then_some(waits)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use weft_workflows::{Catalog, ConnectorSpec};

    use super::*;

    impl StepState {
        /// The tally counted afresh from the iterations.
        fn recount(&self) -> Tally {
            let mut tally = Tally { next_idle: self.iterations.len(), ..Tally::default() };
            for (n, it) in self.iterations.iter().enumerate() {
                match it {
                    Iteration::Idle => tally.next_idle = tally.next_idle.min(n),
                    Iteration::Running { .. } => {
                        tally.running += 1;
                        tally.active.insert(n);
                    }
                    Iteration::Backoff { .. } => {
                        tally.active.insert(n);
                    }
                    Iteration::Done(_) => tally.done += 1,
                    Iteration::Failed(_) => {
                        tally.failed.insert(n);
                    }
                }
            }
            tally
        }
    }

    /// One event of a `foreach` step of five items, in any order, stale or not.
    fn event() -> impl Strategy<Value = Event> {
        let step = || "each".to_string();
        let it = prop::option::of(0u32..7);
        prop_oneof![
            Just(Event::StepScheduled { step: step(), items: Some(vec![json!(1); 5]) }),
            (it.clone(), 1u32..3).prop_map(move |(iteration, attempt)| Event::StepStarted {
                step: step(),
                iteration,
                attempt,
                input: json!({}),
                key: "k".into(),
                timeout_at: None,
                child: None,
            }),
            it.clone().prop_map(move |iteration| Event::StepCompleted {
                step: step(),
                iteration,
                attempt: 1,
                output: json!(iteration),
                logs: Default::default(),
            }),
            (it, any::<bool>(), any::<bool>()).prop_map(move |(iteration, retry, interrupted)| Event::StepFailed {
                step: step(),
                iteration,
                attempt: 1,
                error: StepError::new(if interrupted { ErrorKind::Interrupted } else { ErrorKind::Fatal }, "no"),
                retry_at: retry.then_some(5),
                logs: Default::default(),
            }),
        ]
    }

    proptest! {
        /// However events arrive, the counts kept with the iterations are
        /// the counts of the iterations.
        #[test]
        fn the_tally_matches_the_iterations(events in prop::collection::vec(event(), 0..40)) {
            let action = weft_workflows::ActionSpec { name: "echo".into(), input_schema: json!({}), output_schema: json!({}) };
            let catalog = Catalog::new(vec![ConnectorSpec { name: "t".into(), version: "1".into(), actions: vec![action] }]);
            let workflow = json!({ "name": "w", "steps": [
                { "id": "each", "uses": "t/echo", "foreach": "input.items" }
            ] });
            let def = weft_workflows::load("w.json", &workflow.to_string(), &catalog).unwrap();
            let mut state = RunState::new("r", &def);
            for event in &events {
                state.apply(&def, event);
                let step = &state.steps[0];
                prop_assert_eq!(&step.tally, &step.recount(), "after {:?}", event);
            }
        }
    }
}
