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

/// A connector's log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl LogLevel {
    /// The level as shown: `trace`, `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The level named `name`, as [`LogLevel::as_str`] spells it.
    pub fn named(name: &str) -> Option<LogLevel> {
        [LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error]
            .into_iter()
            .find(|level| level.as_str() == name)
    }
}

/// One line a connector logged during an attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// The message, with secret values redacted.
    pub message: String,
}

/// What a connector logged during an attempt, as journaled: the first
/// lines, up to the host's budget, and how many more there were.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logs {
    /// The lines kept, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LogLine>,
    /// How many more lines the attempt logged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u32,
}

impl Logs {
    /// Whether nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped == 0
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
        /// What the connector logged.
        #[serde(default, skip_serializing_if = "Logs::is_empty")]
        logs: Logs,
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
        /// What the connector logged.
        #[serde(default, skip_serializing_if = "Logs::is_empty")]
        logs: Logs,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_attempt_that_logged_nothing_is_journaled_as_before_logs_existed() {
        let before = r#"{"type":"step_completed","step":"a","attempt":1,"output":2}"#;
        let event: Event = serde_json::from_str(before).unwrap();
        let expected = Event::StepCompleted {
            step: "a".into(),
            iteration: None,
            attempt: 1,
            output: json!(2),
            logs: Logs::default(),
        };
        assert_eq!(event, expected);
        assert_eq!(serde_json::to_string(&event).unwrap(), before);
    }

    #[test]
    fn log_lines_are_journaled_with_the_attempt() {
        let logs = Logs { lines: vec![LogLine { level: LogLevel::Warn, message: "slow".into() }], dropped: 2 };
        let event = Event::StepFailed {
            step: "a".into(),
            iteration: None,
            attempt: 1,
            error: StepError::new(ErrorKind::Fatal, "no"),
            retry_at: None,
            logs,
        };
        let text = serde_json::to_value(&event).unwrap();
        assert_eq!(text["logs"], json!({ "lines": [{ "level": "warn", "message": "slow" }], "dropped": 2 }));
        assert_eq!(serde_json::from_value::<Event>(text).unwrap(), event);
        assert!(["trace", "debug", "info", "warn", "error"].iter().all(|name| LogLevel::named(name).is_some()));
    }
}
