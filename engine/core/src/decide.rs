//! The decisions: given a definition, a run's state and the time, which
//! events come next. Pure functions; the driver commits what they return and
//! performs the attempts that the committed events start.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use weft_workflows::{Definition, ErrorKind, ErrorMode, OnError, RetryPolicy, Step, expr};

use crate::event::{Event, Millis, StepError};
use crate::state::{Iteration, RunState, StepPhase};

/// How many `foreach` items run at once when the step does not say.
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// The idempotency key of a step iteration: stable across its attempts.
pub fn idempotency_key(run_id: &str, step_id: &str, iteration: Option<u32>) -> String {
    format!("{run_id}:{step_id}:{}", iteration.unwrap_or(0))
}

/// The id of the child run that an attempt of a child workflow step drives:
/// a UUID derived from the parent run, step, iteration and attempt, so that a
/// driver that restarts finds the child it had started.
pub fn child_run_id(run_id: &str, step_id: &str, iteration: Option<u32>, attempt: u32) -> String {
    let digest = Sha256::digest(format!("{run_id}/{step_id}/{}/{attempt}", iteration.unwrap_or(0)).as_bytes());
    let bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The template scope for a step: `input`, `run`, `steps`, and for `foreach`
/// iterations `item` and `index`.
pub fn scope(definition: &Definition, state: &RunState, iteration: Option<(u32, &Value)>) -> Value {
    scope_of(definition, state, 0..definition.workflow.steps.len(), iteration)
}

/// The scope for step `i`'s templates: only the steps it depends on, which
/// are all the steps its templates can read (validation makes every
/// reference a dependency), so a long workflow does not copy every earlier
/// output into each step's scope.
fn step_scope(definition: &Definition, state: &RunState, i: usize, iteration: Option<(u32, &Value)>) -> Value {
    scope_of(definition, state, definition.deps[i].iter().copied(), iteration)
}

fn scope_of(
    definition: &Definition,
    state: &RunState,
    visible: impl Iterator<Item = usize>,
    iteration: Option<(u32, &Value)>,
) -> Value {
    let mut steps = Map::new();
    for (step, st) in visible.map(|i| (&definition.workflow.steps[i], &state.steps[i])) {
        let (output, error) = match &st.phase {
            StepPhase::Completed(output) => (output.clone(), Value::Null),
            StepPhase::Failed(error) => (Value::Null, json!({ "kind": error.kind, "message": error.message })),
            _ => (Value::Null, Value::Null),
        };
        steps.insert(step.id.clone(), json!({ "output": output, "error": error }));
    }
    let mut scope = json!({ "input": state.input, "run": { "id": state.run_id }, "steps": steps });
    if let Some((index, item)) = iteration {
        scope["item"] = item.clone();
        scope["index"] = json!(index);
    }
    scope
}

/// The step whose errors `step` handles, if it is a handler.
fn handled_by(definition: &Definition, handler: usize) -> Option<usize> {
    let id = &definition.workflow.steps[handler].id;
    definition.workflow.steps.iter().position(|s| matches!(&s.on_error, OnError::Handler { handler } if handler == id))
}

/// Whether a step is over as far as its dependents and the run are
/// concerned: done, skipped, or failed in a way that lets the run go on.
fn settled(definition: &Definition, state: &RunState, i: usize) -> bool {
    match &state.steps[i].phase {
        StepPhase::Completed(_) | StepPhase::Skipped(_) => true,
        StepPhase::Failed(_) => match &definition.workflow.steps[i].on_error {
            OnError::Mode(ErrorMode::Continue) => true,
            OnError::Mode(ErrorMode::Fail) => false,
            OnError::Handler { handler } => {
                definition.step_index(handler).is_some_and(|h| matches!(state.steps[h].phase, StepPhase::Completed(_)))
            }
        },
        StepPhase::Pending | StepPhase::Active => false,
    }
}

/// The events that follow from the current state at `now`. Call it again
/// after applying what it returned, until it returns nothing.
pub fn next(definition: &Definition, state: &RunState, now: Millis) -> Vec<Event> {
    if state.status.is_terminal() {
        return Vec::new();
    }
    if let Some(reason) = &state.cancel_requested {
        return vec![Event::RunCancelled { reason: reason.clone() }];
    }
    if let Some(at) = state.timeout_at
        && now >= at
    {
        let timeout = definition.workflow.timeout.map(|t| t.to_string()).unwrap_or_default();
        return vec![Event::RunFailed {
            error: StepError::new(
                ErrorKind::Timeout,
                format!("the run did not finish within its timeout of {timeout}"),
            ),
        }];
    }
    let steps = &definition.workflow.steps;
    for (i, st) in state.steps.iter().enumerate() {
        if let StepPhase::Failed(error) = &st.phase
            && matches!(steps[i].on_error, OnError::Mode(ErrorMode::Fail))
        {
            return vec![Event::RunFailed {
                error: StepError {
                    message: format!("step `{}` failed: {}", steps[i].id, error.message),
                    ..error.clone()
                },
            }];
        }
    }

    let mut events = Vec::new();
    let mut taken_signals = 0usize;
    for (i, st) in state.steps.iter().enumerate() {
        if st.phase != StepPhase::Active {
            continue;
        }
        let step = &steps[i];
        let foreach = st.items.is_some();
        let limit = if foreach { step.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize } else { 1 };
        let mut busy = st.iterations.iter().filter(|it| matches!(it, Iteration::Running { .. })).count();
        for (n, it) in st.iterations.iter().enumerate() {
            let iteration = foreach.then_some(n as u32);
            match it {
                Iteration::Running { attempt, wake_at, .. } => {
                    if let Some(wait) = &step.wait_for_signal {
                        let mut free = state.signals.iter().filter(|s| !s.consumed && s.name == wait.name);
                        if let Some(signal) = free.nth(taken_signals) {
                            taken_signals += 1;
                            events.push(Event::StepCompleted {
                                step: step.id.clone(),
                                iteration,
                                attempt: *attempt,
                                output: signal.payload.clone(),
                            });
                        } else if wake_at.is_some_and(|t| now >= t) {
                            let timeout = wait.timeout.map(|t| t.to_string()).unwrap_or_default();
                            events.push(Event::StepFailed {
                                step: step.id.clone(),
                                iteration,
                                attempt: *attempt,
                                error: StepError::new(
                                    ErrorKind::Timeout,
                                    format!("no `{}` signal arrived within {timeout}", wait.name),
                                ),
                                retry_at: None,
                            });
                        }
                    } else if step.sleep.is_some() && wake_at.is_some_and(|t| now >= t) {
                        events.push(Event::TimerFired { step: step.id.clone() });
                    }
                }
                Iteration::Backoff { attempt, retry_at } if now >= *retry_at => {
                    events.extend(start(definition, state, i, iteration, attempt + 1, now));
                }
                Iteration::Idle if busy < limit => {
                    busy += 1;
                    events.extend(start(definition, state, i, iteration, 1, now));
                }
                _ => {}
            }
        }
    }

    let all_others_settled =
        |except: usize| (0..steps.len()).filter(|&j| j != except).all(|j| settled(definition, state, j));
    for (i, st) in state.steps.iter().enumerate() {
        if st.phase != StepPhase::Pending {
            continue;
        }
        let step = &steps[i];
        if let Some(handled) = handled_by(definition, i) {
            if matches!(state.steps[handled].phase, StepPhase::Failed(_)) {
                events.extend(schedule(definition, state, i));
            } else if all_others_settled(i) {
                events.push(Event::StepSkipped { step: step.id.clone(), reason: "no error to handle".into() });
            }
            continue;
        }
        if !definition.deps[i].iter().all(|&d| settled(definition, state, d)) {
            continue;
        }
        if let Some(&skipped) =
            definition.deps[i].iter().find(|&&d| matches!(state.steps[d].phase, StepPhase::Skipped(_)))
        {
            events.push(Event::StepSkipped {
                step: step.id.clone(),
                reason: format!("it needs `{}`, which was skipped", steps[skipped].id),
            });
            continue;
        }
        events.extend(schedule(definition, state, i));
    }

    if events.is_empty() && (0..steps.len()).all(|i| settled(definition, state, i)) {
        let scope = scope(definition, state, None);
        let output = match &definition.workflow.output {
            Some(template) => expr::render(template, &scope),
            None => Ok(state
                .steps
                .last()
                .and_then(|s| match &s.phase {
                    StepPhase::Completed(v) => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or(Value::Null)),
        };
        events.push(match output {
            Ok(output) => Event::RunCompleted { output },
            Err(e) => {
                Event::RunFailed { error: StepError::new(ErrorKind::InvalidInput, format!("the run output: {e}")) }
            }
        });
    }
    events
}

/// Decides whether a pending step runs: its condition and `foreach` items.
fn schedule(definition: &Definition, state: &RunState, i: usize) -> Vec<Event> {
    let step = &definition.workflow.steps[i];
    if step.condition.is_none() && step.foreach.is_none() {
        return vec![Event::StepScheduled { step: step.id.clone(), items: None }];
    }
    let scope = step_scope(definition, state, i, None);
    let fail = |message: String| Event::StepFailed {
        step: step.id.clone(),
        iteration: None,
        attempt: 0,
        error: StepError::new(ErrorKind::InvalidInput, message),
        retry_at: None,
    };
    if let Some(condition) = &step.condition {
        match expr::eval_condition(condition, &scope) {
            Ok(true) => {}
            Ok(false) => {
                return vec![Event::StepSkipped { step: step.id.clone(), reason: format!("`{condition}` is false") }];
            }
            Err(e) => return vec![fail(format!("`if`: {e}"))],
        }
    }
    let items = match &step.foreach {
        None => None,
        Some(foreach) => match expr::eval(foreach, &scope) {
            Ok(Value::Array(items)) => Some(items),
            Ok(other) => return vec![fail(format!("`foreach` must yield a list, got {other}"))],
            Err(e) => return vec![fail(format!("`foreach`: {e}"))],
        },
    };
    vec![Event::StepScheduled { step: step.id.clone(), items }]
}

/// Starts an attempt: renders the input and, for sleeps, sets the timer.
fn start(
    definition: &Definition,
    state: &RunState,
    i: usize,
    iteration: Option<u32>,
    attempt: u32,
    now: Millis,
) -> Vec<Event> {
    let step = &definition.workflow.steps[i];
    let key = idempotency_key(&state.run_id, &step.id, iteration);
    let item = iteration.and_then(|n| state.steps[i].items.as_ref()?.get(n as usize).map(|v| (n, v)));
    let child = step.workflow.as_ref().map(|_| child_run_id(&state.run_id, &step.id, iteration, attempt));
    let started = |input: Value, timeout_at: Option<Millis>| Event::StepStarted {
        step: step.id.clone(),
        iteration,
        attempt,
        input,
        key: key.clone(),
        timeout_at,
        child: child.clone(),
    };
    if let Some(duration) = step.sleep {
        return vec![
            started(Value::Null, None),
            Event::TimerSet { step: step.id.clone(), fire_at: now + duration.as_millis() as Millis },
        ];
    }
    if let Some(wait) = &step.wait_for_signal {
        let timeout_at = wait.timeout.map(|t| now + t.as_millis() as Millis);
        return vec![started(json!({ "signal": wait.name }), timeout_at)];
    }
    let (template, what) = match &step.workflow {
        Some(child) => (child.input.clone(), "workflow.input"),
        None => (step.with.clone(), "with"),
    };
    match expr::render(&template.unwrap_or_else(|| json!({})), &step_scope(definition, state, i, item)) {
        Ok(input) => vec![started(input, None)],
        Err(e) => vec![Event::StepFailed {
            step: step.id.clone(),
            iteration,
            attempt,
            error: StepError::new(ErrorKind::InvalidInput, format!("rendering `{what}`: {e}")),
            retry_at: None,
        }],
    }
}

/// The event that records an attempt's result, with the retry decision.
/// Returns nothing for a stale result (the attempt is no longer running).
pub fn on_outcome(
    definition: &Definition,
    state: &RunState,
    i: usize,
    iteration: Option<u32>,
    attempt: u32,
    outcome: Result<Value, StepError>,
    now: Millis,
) -> Vec<Event> {
    let running = state.steps[i].iterations.get(iteration.unwrap_or(0) as usize);
    if state.status.is_terminal() || !matches!(running, Some(Iteration::Running { attempt: a, .. }) if *a == attempt) {
        return Vec::new();
    }
    let step = &definition.workflow.steps[i];
    match outcome {
        Ok(output) => vec![Event::StepCompleted { step: step.id.clone(), iteration, attempt, output }],
        Err(error) => {
            let key = idempotency_key(&state.run_id, &step.id, iteration);
            let retry_at = retry_delay(step, &error, attempt, &key).map(|delay| now + delay);
            vec![Event::StepFailed { step: step.id.clone(), iteration, attempt, error, retry_at }]
        }
    }
}

/// Attempts that were running when the previous process stopped: each is
/// recorded as interrupted, and retried (with the same idempotency key) if
/// its policy allows. Sleeps, waits and child runs are durable and carry on.
pub fn recover(definition: &Definition, state: &RunState, now: Millis) -> Vec<Event> {
    if state.status.is_terminal() {
        return Vec::new();
    }
    let interrupted: Vec<(usize, Option<u32>, u32)> = state
        .running()
        .filter(|(i, ..)| definition.workflow.steps[*i].uses.is_some())
        .map(|(i, iteration, attempt, _)| (i, iteration, attempt))
        .collect();
    interrupted
        .into_iter()
        .flat_map(|(i, iteration, attempt)| {
            let error = StepError::new(ErrorKind::Interrupted, "the process stopped while this attempt was running");
            let mut events = on_outcome(definition, state, i, iteration, attempt, Err(error), now);
            for event in &mut events {
                if let Event::StepFailed { retry_at: Some(at), .. } = event {
                    *at = now;
                }
            }
            events
        })
        .collect()
}

/// The earliest time at which `next` will have something to do without any
/// new event: a timer, a retry, a wait's timeout or the run's timeout.
pub fn next_wake(state: &RunState) -> Option<Millis> {
    let iterations = state.steps.iter().flat_map(|s| s.iterations.iter()).filter_map(|it| match it {
        Iteration::Running { wake_at, .. } => *wake_at,
        Iteration::Backoff { retry_at, .. } => Some(*retry_at),
        _ => None,
    });
    iterations.chain(state.timeout_at).min()
}

/// How long to wait before the next attempt, or `None` when the step has
/// failed for good. Exponential backoff with "equal jitter": half the delay is
/// fixed and half is drawn from a hash of the key and attempt, so replays and
/// tests see the same numbers.
///
/// A child workflow step is not retried unless it has a `retry` policy: the
/// child's own steps already retried what they could.
pub fn retry_delay(step: &Step, error: &StepError, attempt: u32, key: &str) -> Option<Millis> {
    let policy = match &step.retry {
        Some(policy) => policy.clone(),
        None if step.workflow.is_some() => RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        None => RetryPolicy::default(),
    };
    let retryable = error.kind.retryable_by_default() && !policy.non_retryable.contains(&error.kind);
    if !retryable || attempt >= policy.max_attempts {
        return None;
    }
    let base = policy.initial_interval.as_millis() as f64 * policy.backoff.powi(attempt.saturating_sub(1) as i32);
    let capped = base.min(policy.max_interval.as_millis() as f64);
    let digest = Sha256::digest(format!("{key}#{attempt}").as_bytes());
    let unit = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    let delay = (capped / 2.0 + capped / 2.0 * unit).round() as Millis;
    let asked = error.retry_after_ms.unwrap_or(0) as Millis;
    Some(delay.max(asked))
}
