//! The workflow document: what a workflow file deserializes into.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::catalog::ConnectorRef;

/// A workflow definition: a trigger, an optional input schema, and steps that
/// form a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Editors' pointer to this JSON Schema; ignored by the engine.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The workflow's name, shown in run listings.
    pub name: String,
    /// What the workflow does, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What starts a run. Defaults to `{"manual": {}}`.
    #[serde(default)]
    pub trigger: Trigger,
    /// A JSON Schema that the run input must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The steps. Order matters only for display and for the default output.
    pub steps: Vec<Step>,
    /// A template for the run's output. Defaults to the output of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The whole run fails when it takes longer than this (e.g. `"1h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// What starts a run. Only `manual` runs are started by the CLI today; the
/// others are parsed and validated so that servers can wire them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Started by `weft run` or the API.
    Manual {},
    /// Started by an HTTP request to a webhook path.
    Webhook {
        /// The path under the server's webhook prefix, e.g. `/orders`.
        path: String,
    },
    /// Started on a cron schedule.
    Schedule {
        /// A five-field cron expression, e.g. `"0 9 * * 1-5"`.
        cron: String,
        /// IANA time zone; UTC when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Started by a named event published to the server.
    Event {
        /// The event name, e.g. `order.created`.
        name: String,
    },
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::Manual {}
    }
}

/// One step of a workflow: what it does ([`StepKind`]) and how it is run.
/// It reads and writes the same JSON (and hashes the same) as the file form,
/// where the kind is one of `uses`, `sleep`, `wait_for_signal` or `workflow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StepDocument", into = "StepDocument")]
pub struct Step {
    /// Unique within the workflow; letters, digits and `_`, not starting with
    /// a digit, so that `steps.<id>.output` works in expressions.
    pub id: String,
    /// A display name.
    pub name: Option<String>,
    /// What the step does.
    pub kind: StepKind,
    /// Steps that must finish first (templates add the steps they read).
    pub needs: Vec<String>,
    /// An expression; when it is false the step is skipped.
    pub condition: Option<String>,
    /// How failed attempts are retried.
    pub retry: Option<RetryPolicy>,
    /// Each attempt fails with error kind `timeout` after this long.
    pub timeout: Option<Duration>,
    /// An expression that yields a list: the step runs once per item.
    pub foreach: Option<String>,
    /// With `foreach`: how many items run at once.
    pub concurrency: Option<u32>,
    /// What happens when the step fails for good.
    pub on_error: OnError,
}

/// What a step does. Code that handles steps matches on this, so a new kind
/// makes the compiler point at every place that must learn it.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Call a connector action with an input (templated).
    Call {
        /// Which connector action.
        uses: ConnectorRef,
        /// The action's input, before rendering.
        with: Option<Value>,
    },
    /// Sleep durably for this long.
    Sleep(Duration),
    /// Wait for a named signal.
    WaitForSignal(WaitForSignal),
    /// Run a child workflow.
    Workflow(ChildWorkflow),
}

impl StepKind {
    /// The member that states this kind in a workflow file.
    pub fn member(&self) -> &'static str {
        match self {
            StepKind::Call { .. } => "uses",
            StepKind::Sleep(_) => "sleep",
            StepKind::WaitForSignal(_) => "wait_for_signal",
            StepKind::Workflow(_) => "workflow",
        }
    }
}

impl Step {
    /// The connector action this step calls, if it is a call.
    pub fn call(&self) -> Option<&ConnectorRef> {
        match &self.kind {
            StepKind::Call { uses, .. } => Some(uses),
            _ => None,
        }
    }

    /// The template of the input this step renders for each attempt, with the
    /// member that holds it: `with` for calls, `workflow.input` for child
    /// workflows. Sleeps and waits take no input.
    pub fn input_template(&self) -> Option<(&Value, &'static str)> {
        match &self.kind {
            StepKind::Call { with, .. } => with.as_ref().map(|w| (w, "with")),
            StepKind::Workflow(child) => child.input.as_ref().map(|i| (i, "workflow.input")),
            StepKind::Sleep(_) | StepKind::WaitForSignal(_) => None,
        }
    }
}

impl TryFrom<StepDocument> for Step {
    type Error = String;

    /// Validation reports these problems with their positions before any
    /// conversion; this refuses what gets past it anyway (a stored form
    /// edited by hand, say).
    fn try_from(doc: StepDocument) -> Result<Step, String> {
        let kind = match (doc.uses, doc.sleep, doc.wait_for_signal, doc.workflow) {
            (Some(uses), None, None, None) => StepKind::Call { uses: uses.parse()?, with: doc.with },
            (None, Some(sleep), None, None) if doc.with.is_none() => StepKind::Sleep(sleep),
            (None, None, Some(wait), None) if doc.with.is_none() => StepKind::WaitForSignal(wait),
            (None, None, None, Some(child)) if doc.with.is_none() => StepKind::Workflow(child),
            _ => {
                return Err(format!(
                    "step `{}` must have exactly one of `uses`, `sleep`, `wait_for_signal` or `workflow` \
                     (and `with` only with `uses`)",
                    doc.id
                ));
            }
        };
        Ok(Step {
            id: doc.id,
            name: doc.name,
            kind,
            needs: doc.needs,
            condition: doc.condition,
            retry: doc.retry,
            timeout: doc.timeout,
            foreach: doc.foreach,
            concurrency: doc.concurrency,
            on_error: doc.on_error,
        })
    }
}

impl From<Step> for StepDocument {
    fn from(step: Step) -> StepDocument {
        let (mut uses, mut with, mut sleep, mut wait_for_signal, mut workflow) = (None, None, None, None, None);
        match step.kind {
            StepKind::Call { uses: r, with: w } => (uses, with) = (Some(r.to_string()), w),
            StepKind::Sleep(d) => sleep = Some(d),
            StepKind::WaitForSignal(w) => wait_for_signal = Some(w),
            StepKind::Workflow(c) => workflow = Some(c),
        }
        StepDocument {
            id: step.id,
            name: step.name,
            uses,
            with,
            sleep,
            wait_for_signal,
            workflow,
            needs: step.needs,
            condition: step.condition,
            retry: step.retry,
            timeout: step.timeout,
            foreach: step.foreach,
            concurrency: step.concurrency,
            on_error: step.on_error,
        }
    }
}

/// The schema of a step is the schema of its file form.
impl JsonSchema for Step {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        StepDocument::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        StepDocument::json_schema(generator)
    }
}

/// A step as a workflow file writes it: the kinds are four optional
/// members, of which validation requires exactly one. [`Step`] is the typed
/// form the engine reads; this one fixes the file format and the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
#[schemars(
    description = "One step of a workflow. A step does exactly one of: call a connector\naction (`uses`), `sleep`, `wait_for_signal`, or run a child `workflow`."
)]
pub(crate) struct StepDocument {
    /// Unique within the workflow; letters, digits and `_`, not starting with
    /// a digit, so that `steps.<id>.output` works in expressions.
    pub(crate) id: String,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    /// The connector action to call: `connector/action` or
    /// `connector@version/action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uses: Option<String>,
    /// The action's input. Strings may hold `{{ expression }}` templates over
    /// `input`, `steps.<id>.output`, `item`, `index` and `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) with: Option<Value>,
    /// Sleep durably for this long (e.g. `"30s"`), surviving restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sleep: Option<Duration>,
    /// Wait until a named signal is delivered to the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wait_for_signal: Option<WaitForSignal>,
    /// Run another workflow as a child of this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) workflow: Option<ChildWorkflow>,
    /// Steps that must finish first. Steps referenced in templates are added
    /// implicitly; steps with no path between them run in parallel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) needs: Vec<String>,
    /// An expression; when it is false the step is skipped (and so are the
    /// steps that need it).
    #[serde(rename = "if", default, skip_serializing_if = "Option::is_none")]
    pub(crate) condition: Option<String>,
    /// How failed attempts are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry: Option<RetryPolicy>,
    /// Each attempt fails with error kind `timeout` after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<Duration>,
    /// An expression that yields a list: the step runs once per item, with
    /// `item` and `index` in scope, and its output is the list of outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) foreach: Option<String>,
    /// With `foreach`: how many items run at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) concurrency: Option<u32>,
    /// What happens when the step fails for good.
    #[serde(default)]
    pub(crate) on_error: OnError,
}

/// Wait for a signal (`weft signal RUN NAME JSON`); its payload becomes the
/// step's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitForSignal {
    /// The signal's name.
    pub name: String,
    /// Fail with error kind `timeout` when no signal arrives in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// A child workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildWorkflow {
    /// Path of the child workflow file, relative to this file.
    pub path: String,
    /// The child's input (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// Retry policy: exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3).
    #[serde(default = "defaults::max_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// Wait before the second attempt (default `"1s"`).
    #[serde(default = "defaults::initial_interval")]
    pub initial_interval: Duration,
    /// Each wait is the previous one times this (default 2).
    #[serde(default = "defaults::backoff")]
    #[schemars(range(min = 1.0))]
    pub backoff: f64,
    /// No wait is longer than this (default `"60s"`).
    #[serde(default = "defaults::max_interval")]
    pub max_interval: Duration,
    /// Error kinds that are never retried, on top of the kinds that never are
    /// (`invalid_input`, `unauthorized`, `fatal`, `trap`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<ErrorKind>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: defaults::max_attempts(),
            initial_interval: defaults::initial_interval(),
            backoff: defaults::backoff(),
            max_interval: defaults::max_interval(),
            non_retryable: Vec::new(),
        }
    }
}

mod defaults {
    use super::Duration;
    pub fn max_attempts() -> u32 {
        3
    }
    pub fn initial_interval() -> Duration {
        Duration::from_millis(1000)
    }
    pub fn backoff() -> f64 {
        2.0
    }
    pub fn max_interval() -> Duration {
        Duration::from_millis(60_000)
    }
}

/// The kinds of step error. Connectors return the first five; the engine adds
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input does not fit the action.
    InvalidInput,
    /// Credentials were refused.
    Unauthorized,
    /// The upstream asked to slow down.
    RateLimited,
    /// A passing failure.
    Transient,
    /// A permanent failure.
    Fatal,
    /// The attempt (or the wait) ran out of time.
    Timeout,
    /// The connector trapped or hit a sandbox limit.
    Trap,
    /// The process stopped while the attempt was running.
    Interrupted,
}

impl ErrorKind {
    /// Whether the engine retries this kind unless the policy says otherwise.
    pub fn retryable_by_default(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Interrupted)
    }

    /// The kind's name as written in workflow files.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Trap => "trap",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a step fails for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OnError {
    /// `"fail"` (the default) fails the run; `"continue"` lets dependents run
    /// with `steps.<id>.output` null and `steps.<id>.error` set.
    Mode(ErrorMode),
    /// `{"handler": "step_id"}` runs that step (which may read
    /// `steps.<id>.error`), then continues as with `"continue"`; if the
    /// handler fails, the run fails.
    Handler {
        /// The handler step's id.
        handler: String,
    },
}

impl Default for OnError {
    fn default() -> Self {
        OnError::Mode(ErrorMode::Fail)
    }
}

/// The two plain error modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorMode {
    /// Fail the run.
    Fail,
    /// Carry on; dependents run.
    Continue,
}

/// A duration written as text: `"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// The duration in whole milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0.as_millis().min(u64::MAX as u128) as u64
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))?;
        if duration > crate::limits::MAX_DURATION {
            return Err(serde::de::Error::custom(format!(
                "the duration {text:?} is longer than the limit of {}",
                crate::limits::MAX_DURATION_TEXT
            )));
        }
        Ok(Duration(duration))
    }
}

/// The pattern that the schema gives editors; `humantime` decides.
pub(crate) const DURATION_PATTERN: &str =
    r"^\s*(\d+\s*(ns|us|ms|s|sec|secs|m|min|mins|h|hr|hrs|hours?|d|days?|w|weeks?)\s*)+$";

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as \"250ms\", \"30s\", \"5m\" or \"1h 30m\".",
            "pattern": DURATION_PATTERN,
        })
    }
}
