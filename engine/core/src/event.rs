//! The journal's events. A run's state is the fold of its events, in order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_workflows::ErrorKind;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Why a step attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// The kind, which the retry policy reads.
    pub kind: ErrorKind,
    /// What happened, for humans. Never holds secret values.
    pub message: String,
    /// For `rate_limited`: how long the upstream asked us to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl StepError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError { kind, message: message.into(), retry_after_ms: None }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What a retry run retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryOf {
    /// The retried run's id.
    pub run: String,
    /// The step it runs again from (with every step that depends on it);
    /// none to run again only what did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One entry of a run's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run exists, pinned to a workflow version and connector digests.
    RunStarted {
        /// The workflow's name.
        workflow: String,
        /// The content hash of the definition the run is pinned to.
        workflow_hash: String,
        /// The run input.
        input: Value,
        /// Connector name@version -> sha256 digest, for every connector the run uses.
        connectors: BTreeMap<String, String>,
        /// When the run times out, if the workflow has a timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<Millis>,
        /// For a retry: the run it retries, and from which step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<RetryOf>,
    },
    /// A step's output was taken from the run this one retries: the step
    /// is complete and does not run.
    StepReused {
        /// The step id.
        step: String,
        /// Its output in the retried run.
        output: Value,
    },
    /// A step's dependencies are done and its condition holds.
    StepScheduled {
        /// The step id.
        step: String,
        /// For `foreach` steps, the items, fixed once here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        items: Option<Vec<Value>>,
    },
    /// A step will not run.
    StepSkipped {
        /// The step id.
        step: String,
        /// Why.
        reason: String,
    },
    /// An attempt began. The input is the rendered one the connector receives.
    StepStarted {
        /// The step id.
        step: String,
        /// The `foreach` iteration, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iteration: Option<u32>,
        /// 1 for the first attempt.
        attempt: u32,
        /// The rendered input.
        input: Value,
        /// The idempotency key: the same for every attempt of this iteration.
        key: String,
        /// For `wait_for_signal`: when the wait times out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<Millis>,
        /// For child workflow steps: the id of the child run this attempt
        /// drives (derived from the run, step, iteration and attempt, so a
        /// restarted driver finds the same child).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<String>,
    },
    /// A durable sleep began.
    TimerSet {
        /// The step id.
        step: String,
        /// When it fires.
        fire_at: Millis,
    },
    /// A durable sleep ended; the sleep step is complete.
    TimerFired {
        /// The step id.
        step: String,
    },
    /// An attempt succeeded.
    StepCompleted {
        /// The step id.
        step: String,
        /// The `foreach` iteration, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iteration: Option<u32>,
        /// The attempt that succeeded.
        attempt: u32,
        /// Its output.
        output: Value,
    },
    /// An attempt failed. `retry_at` says when the next attempt starts; none
    /// means the step failed for good.
    StepFailed {
        /// The step id.
        step: String,
        /// The `foreach` iteration, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        iteration: Option<u32>,
        /// The attempt that failed (0 when the step failed before any attempt).
        attempt: u32,
        /// What went wrong.
        error: StepError,
        /// When to try again, if the policy allows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<Millis>,
    },
    /// A signal was delivered to the run.
    SignalReceived {
        /// The signal's name.
        name: String,
        /// Its payload.
        payload: Value,
    },
    /// Someone asked to cancel the run.
    CancelRequested {
        /// Why, if they said.
        reason: String,
    },
    /// The run finished with an output.
    RunCompleted {
        /// The run's output.
        output: Value,
    },
    /// The run failed.
    RunFailed {
        /// Why.
        error: StepError,
    },
    /// The run was cancelled.
    RunCancelled {
        /// Why.
        reason: String,
    },
}

impl Event {
    /// The event's type name, as stored and shown.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::StepReused { .. } => "step_reused",
            Event::StepScheduled { .. } => "step_scheduled",
            Event::StepSkipped { .. } => "step_skipped",
            Event::StepStarted { .. } => "step_started",
            Event::TimerSet { .. } => "timer_set",
            Event::TimerFired { .. } => "timer_fired",
            Event::StepCompleted { .. } => "step_completed",
            Event::StepFailed { .. } => "step_failed",
            Event::SignalReceived { .. } => "signal_received",
            Event::CancelRequested { .. } => "cancel_requested",
            Event::RunCompleted { .. } => "run_completed",
            Event::RunFailed { .. } => "run_failed",
            Event::RunCancelled { .. } => "run_cancelled",
        }
    }

    /// The step this event concerns, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepScheduled { step, .. }
            | Event::StepReused { step, .. }
            | Event::StepSkipped { step, .. }
            | Event::StepStarted { step, .. }
            | Event::TimerSet { step, .. }
            | Event::TimerFired { step }
            | Event::StepCompleted { step, .. }
            | Event::StepFailed { step, .. } => Some(step),
            _ => None,
        }
    }
}
