//! A run's state: the fold of its journal.

use serde_json::Value;
use weft_workflows::{ConnectorId, Definition, ErrorKind, StepKind};

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
    pub iterations: Vec<Iteration>,
    /// Per item, how many of its attempts were cut short because the
    /// process driving them stopped; they do not count against
    /// `max_attempts`.
    pub interruptions: Vec<u32>,
}

impl StepState {
    /// How many attempts of `iteration` were interrupted.
    pub fn interrupted(&self, iteration: Option<u32>) -> u32 {
        self.interruptions.get(iteration.unwrap_or(0) as usize).copied().unwrap_or(0)
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
            steps: definition
                .workflow
                .steps
                .iter()
                .map(|_| StepState {
                    phase: StepPhase::Pending,
                    items: None,
                    iterations: Vec::new(),
                    interruptions: Vec::new(),
                })
                .collect(),
            signals: Vec::new(),
            cancel_requested: None,
            output: None,
            error: None,
            applied: 0,
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
        match event {
            Event::RunStarted { input, timeout_at, connectors, .. } => {
                self.input = input.clone();
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
                    step.iterations = vec![Iteration::Idle; items.as_ref().map_or(1, Vec::len)];
                    step.items = items.clone();
                    step.phase = match items {
                        Some(items) if items.is_empty() => StepPhase::Completed(Value::Array(Vec::new())),
                        _ => StepPhase::Active,
                    };
                }
            }
            Event::StepSkipped { reason, .. } => {
                if let Some(step) = index.map(|i| &mut self.steps[i]) {
                    step.phase = StepPhase::Skipped(reason.clone());
                }
            }
            Event::StepStarted { iteration, attempt, input, timeout_at, key, child, .. } => {
                if let Some(slot) = index.and_then(|i| self.iteration_mut(i, *iteration)) {
                    *slot = Iteration::Running {
                        attempt: *attempt,
                        input: input.clone(),
                        wake_at: *timeout_at,
                        key: key.clone(),
                        child: child.clone(),
                    };
                }
            }
            Event::TimerSet { fire_at, .. } => {
                if let Some(Iteration::Running { wake_at, .. }) = index.and_then(|i| self.iteration_mut(i, None)) {
                    *wake_at = Some(*fire_at);
                }
            }
            Event::TimerFired { .. } => {
                if let Some(i) = index {
                    self.finish_iteration(i, None, Iteration::Done(Value::Null));
                }
            }
            Event::StepCompleted { iteration, output, .. } => {
                if let Some(i) = index {
                    if let StepKind::WaitForSignal(wait) = &definition.workflow.steps[i].kind
                        && let Some(signal) = self.signals.iter_mut().find(|s| !s.consumed && s.name == wait.name)
                    {
                        signal.consumed = true;
                    }
                    self.finish_iteration(i, *iteration, Iteration::Done(output.clone()));
                }
            }
            Event::StepFailed { iteration, attempt, error, retry_at, .. } => {
                if let Some(i) = index {
                    if self.steps[i].phase == StepPhase::Pending {
                        // Failed before it could start (bad condition or foreach).
                        self.steps[i].phase = StepPhase::Active;
                        self.steps[i].iterations = vec![Iteration::Idle];
                    }
                    if error.kind == ErrorKind::Interrupted {
                        let slot = iteration.unwrap_or(0) as usize;
                        let counts = &mut self.steps[i].interruptions;
                        if counts.len() <= slot {
                            counts.resize(slot + 1, 0);
                        }
                        counts[slot] += 1;
                    }
                    let next = match retry_at {
                        Some(at) => Iteration::Backoff { attempt: *attempt, retry_at: *at },
                        None => Iteration::Failed(error.clone()),
                    };
                    self.finish_iteration(i, *iteration, next);
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

    fn iteration_mut(&mut self, step: usize, iteration: Option<u32>) -> Option<&mut Iteration> {
        self.steps[step].iterations.get_mut(iteration.unwrap_or(0) as usize)
    }

    /// Records an iteration's new state and settles the step when every
    /// iteration is done or one failed for good.
    fn finish_iteration(&mut self, step: usize, iteration: Option<u32>, next: Iteration) {
        let Some(slot) = self.iteration_mut(step, iteration) else { return };
        *slot = next;
        let state = &mut self.steps[step];
        if let Some(error) = state.iterations.iter().find_map(|it| match it {
            Iteration::Failed(e) => Some(e.clone()),
            _ => None,
        }) {
            state.phase = StepPhase::Failed(error);
        } else if state.iterations.iter().all(|it| matches!(it, Iteration::Done(_))) {
            let outputs: Vec<Value> = state
                .iterations
                .iter()
                .map(|it| match it {
                    Iteration::Done(v) => v.clone(),
                    _ => Value::Null,
                })
                .collect();
            state.phase = StepPhase::Completed(match state.items {
                Some(_) => Value::Array(outputs),
                None => outputs.into_iter().next().unwrap_or(Value::Null),
            });
        }
    }

    /// The attempts under way, with their iterations' state.
    pub fn running(&self) -> impl Iterator<Item = (AttemptId, &Iteration)> {
        self.steps.iter().enumerate().flat_map(|(step, state)| {
            let foreach = state.items.is_some();
            state.iterations.iter().enumerate().filter_map(move |(n, it)| match it {
                Iteration::Running { attempt, .. } => {
                    Some((AttemptId { step, iteration: foreach.then_some(n as u32), attempt: *attempt }, it))
                }
                _ => None,
            })
        })
    }
}
