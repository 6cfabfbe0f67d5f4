//! The decisions: given a definition, a run's state and the time, which
//! events come next and which effects they call for. Pure functions; the
//! driver commits the events, then performs the effects.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use weft_workflows::expr::{Scope, ScopeValue};
use weft_workflows::{Definition, ErrorKind, ErrorMode, OnError, RetryPolicy, Step, StepKind, expr};

use crate::effect::{AttemptId, Call, ChildStart, Decision, Effect};
use crate::event::{Event, Logs, Millis, StepError};
use crate::state::{Iteration, RunState, RunStatus, StepPhase};

/// How many `foreach` items run at once when the step does not say.
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// How many times one step iteration may be interrupted (its process
/// stopped mid-attempt) before it fails; interruptions do not use up
/// `max_attempts`.
pub const MAX_INTERRUPTIONS: u32 = 10;

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
pub fn scope(definition: &Definition, state: &RunState, iteration: Option<(u32, &Value)>) -> Scope {
    scope_of(definition, state, 0..definition.workflow.steps.len(), iteration)
}

/// The scope for step `i`'s templates: only the steps it depends on, which
/// are all the steps its templates can read (validation makes every
/// reference a dependency), so a long workflow does not copy every earlier
/// output into each step's scope.
fn step_scope(definition: &Definition, state: &RunState, i: usize, iteration: Option<(u32, &Value)>) -> Scope {
    scope_of(definition, state, definition.deps[i].iter().copied(), iteration)
}

/// A scope shares the run input and the steps' results (each converted for
/// templates once), so building one per `foreach` item copies only the item.
fn scope_of(
    definition: &Definition,
    state: &RunState,
    visible: impl Iterator<Item = usize>,
    iteration: Option<(u32, &Value)>,
) -> Scope {
    let steps = ScopeValue::map(visible.map(|i| (definition.workflow.steps[i].id.clone(), state.steps[i].scope())));
    let scope = Scope::new()
        .with("input", state.input_scope())
        .with("run", ScopeValue::new(&json!({ "id": state.run_id })))
        .with("steps", steps);
    match iteration {
        Some((index, item)) => scope.with("item", ScopeValue::new(item)).with("index", ScopeValue::new(&json!(index))),
        None => scope,
    }
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

/// Applies what [`decide`] says to `state` until it says nothing more, and
/// returns all of it: the events to commit, in order, and the effects to
/// perform once they are durable, ending with when to wake up next.
pub fn advance(definition: &Definition, state: &mut RunState, now: Millis) -> Decision {
    let mut all = Decision::default();
    loop {
        let decision = decide(definition, state, now);
        if decision.is_empty() {
            break;
        }
        for event in &decision.events {
            state.apply(definition, event);
        }
        all.extend(decision);
    }
    if let Some(at) = next_wake(state).filter(|_| !state.status.is_terminal()) {
        all.effects.push(Effect::WakeAt(at));
    }
    all
}

/// The events that follow from the current state at `now`, and the effects
/// they call for. Call it again after applying the events, until it returns
/// nothing ([`advance`] does).
pub fn decide(definition: &Definition, state: &RunState, now: Millis) -> Decision {
    if state.status.is_terminal() {
        return Decision::default();
    }
    if let Some(reason) = &state.cancel_requested {
        return end(state, Event::RunCancelled { reason: reason.clone() });
    }
    if let Some(at) = state.timeout_at
        && now >= at
    {
        let timeout = definition.workflow.timeout.map(|t| t.to_string()).unwrap_or_default();
        let message = format!("the run did not finish within its timeout of {timeout}");
        return end(state, Event::RunFailed { error: StepError::new(ErrorKind::Timeout, message) });
    }
    let steps = &definition.workflow.steps;
    for (i, st) in state.steps.iter().enumerate() {
        if let StepPhase::Failed(error) = &st.phase
            && matches!(steps[i].on_error, OnError::Mode(ErrorMode::Fail))
        {
            let message = format!("step `{}` failed: {}", steps[i].id, error.message);
            return end(state, Event::RunFailed { error: StepError { message, ..error.clone() } });
        }
    }

    let mut decision = Decision::default();
    let mut taken_signals = 0usize;
    for (i, st) in state.steps.iter().enumerate() {
        if st.phase != StepPhase::Active {
            continue;
        }
        let step = &steps[i];
        let foreach = st.items.is_some();
        let limit = if foreach { step.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize } else { 1 };
        // The iterations under way, and as many idle ones as the limit
        // leaves room for, in order: never all of a large `foreach`.
        let room = limit.saturating_sub(st.running_count());
        let mut active = st.active().peekable();
        let mut idle = st.idle().take(room).peekable();
        let idle_it = Iteration::Idle;
        let mut busy = st.running_count();
        loop {
            let (n, it) = match (active.peek(), idle.peek()) {
                (Some(&(a, _)), Some(&b)) if b < a => (idle.next().expect("peeked"), &idle_it),
                (Some(_), _) => active.next().expect("peeked"),
                (None, Some(_)) => (idle.next().expect("peeked"), &idle_it),
                (None, None) => break,
            };
            let iteration = foreach.then_some(n as u32);
            match it {
                Iteration::Running { attempt, wake_at, .. } => {
                    let due = wake_at.is_some_and(|t| now >= t);
                    match &step.kind {
                        StepKind::WaitForSignal(wait) => {
                            let mut free = state.signals.iter().filter(|s| !s.consumed && s.name == wait.name);
                            if let Some(signal) = free.nth(taken_signals) {
                                taken_signals += 1;
                                decision.events.push(Event::StepCompleted {
                                    step: step.id.clone(),
                                    iteration,
                                    attempt: *attempt,
                                    output: signal.payload.clone(),
                                    logs: Logs::default(),
                                });
                            } else if due {
                                let timeout = wait.timeout.map(|t| t.to_string()).unwrap_or_default();
                                decision.events.push(Event::StepFailed {
                                    step: step.id.clone(),
                                    iteration,
                                    attempt: *attempt,
                                    error: StepError::new(
                                        ErrorKind::Timeout,
                                        format!("no `{}` signal arrived within {timeout}", wait.name),
                                    ),
                                    retry_at: None,
                                    logs: Logs::default(),
                                });
                            }
                        }
                        StepKind::Sleep(_) if due => decision.events.push(Event::TimerFired { step: step.id.clone() }),
                        // Calls and child runs end with their outcome.
                        StepKind::Sleep(_) | StepKind::Call { .. } | StepKind::Workflow(_) => {}
                    }
                }
                Iteration::Backoff { attempt, retry_at } if now >= *retry_at => {
                    let attempt = AttemptId { step: i, iteration, attempt: attempt.saturating_add(1) };
                    decision.extend(start(definition, state, attempt, now));
                }
                Iteration::Idle if busy < limit => {
                    busy += 1;
                    decision.extend(start(definition, state, AttemptId { step: i, iteration, attempt: 1 }, now));
                }
                _ => {}
            }
        }
    }

    let events = &mut decision.events;
    let all_others_settled =
        |except: usize| (0..steps.len()).filter(|&j| j != except).all(|j| settled(definition, state, j));
    for (i, st) in state.steps.iter().enumerate() {
        if st.phase != StepPhase::Pending {
            continue;
        }
        let step = &steps[i];
        if let Some(handled) = definition.handled_by(i) {
            if matches!(state.steps[handled].phase, StepPhase::Failed(_)) {
                events.push(schedule(definition, state, i));
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
        events.push(schedule(definition, state, i));
    }

    if decision.is_empty() && (0..steps.len()).all(|i| settled(definition, state, i)) {
        let scope = scope(definition, state, None);
        let output = match &definition.workflow.output {
            Some(template) => expr::render_in(template, &scope),
            None => Ok(state
                .steps
                .last()
                .and_then(|s| match &s.phase {
                    StepPhase::Completed(v) => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or(Value::Null)),
        };
        return end(
            state,
            match output {
                Ok(output) => Event::RunCompleted { output },
                Err(e) => {
                    Event::RunFailed { error: StepError::new(ErrorKind::InvalidInput, format!("the run output: {e}")) }
                }
            },
        );
    }
    decision
}

/// The decision that ends the run with `event`: child runs still under way
/// are cancelled first, then the run finishes.
fn end(state: &RunState, event: Event) -> Decision {
    let status = match &event {
        Event::RunCompleted { .. } => RunStatus::Completed,
        Event::RunFailed { .. } => RunStatus::Failed,
        _ => RunStatus::Cancelled,
    };
    let reason = format!("its parent run {} {}", state.run_id, status.as_str());
    let mut effects: Vec<Effect> = state
        .running()
        .filter_map(|(_, it)| match it {
            Iteration::Running { child: Some(child), .. } => {
                Some(Effect::CancelChild { run_id: child.clone(), reason: reason.clone() })
            }
            _ => None,
        })
        .collect();
    effects.push(Effect::Finish(status));
    Decision { events: vec![event], effects }
}

/// Decides whether a pending step runs: its condition and `foreach` items.
fn schedule(definition: &Definition, state: &RunState, i: usize) -> Event {
    let step = &definition.workflow.steps[i];
    if step.condition.is_none() && step.foreach.is_none() {
        return Event::StepScheduled { step: step.id.clone(), items: None };
    }
    let scope = step_scope(definition, state, i, None);
    let fail = |message: String| Event::StepFailed {
        step: step.id.clone(),
        iteration: None,
        attempt: 0,
        error: StepError::new(ErrorKind::InvalidInput, message),
        retry_at: None,
        logs: Logs::default(),
    };
    if let Some(condition) = &step.condition {
        match expr::eval_condition_in(condition, &scope) {
            Ok(true) => {}
            Ok(false) => {
                return Event::StepSkipped { step: step.id.clone(), reason: format!("`{condition}` is false") };
            }
            Err(e) => return fail(format!("`if`: {e}")),
        }
    }
    let items = match &step.foreach {
        None => None,
        Some(foreach) => match expr::eval_in(foreach, &scope) {
            Ok(Value::Array(items)) => Some(items),
            Ok(other) => return fail(format!("`foreach` must yield a list, got {other}")),
            Err(e) => return fail(format!("`foreach`: {e}")),
        },
    };
    Event::StepScheduled { step: step.id.clone(), items }
}

/// Starts an attempt: renders the input, and says what performs it: a timer
/// for sleeps, a call for connector actions, a child run for child
/// workflows (waits need nothing but a signal).
fn start(definition: &Definition, state: &RunState, id: AttemptId, now: Millis) -> Decision {
    let AttemptId { step: i, iteration, attempt } = id;
    let step = &definition.workflow.steps[i];
    let key = idempotency_key(&state.run_id, &step.id, iteration);
    let item = iteration.and_then(|n| state.steps[i].items.as_ref()?.get(n as usize).map(|v| (n, v)));
    let started = |input: Value, timeout_at: Option<Millis>, child: Option<String>| Event::StepStarted {
        step: step.id.clone(),
        iteration,
        attempt,
        input,
        key: key.clone(),
        timeout_at,
        child,
    };
    let input = match &step.kind {
        StepKind::Sleep(duration) => {
            let fire_at = later(now, duration.as_millis());
            let events = vec![started(Value::Null, None, None), Event::TimerSet { step: step.id.clone(), fire_at }];
            return Decision { events, effects: Vec::new() };
        }
        StepKind::WaitForSignal(wait) => {
            let timeout_at = wait.timeout.map(|t| later(now, t.as_millis()));
            let events = vec![started(json!({ "signal": wait.name }), timeout_at, None)];
            return Decision { events, effects: Vec::new() };
        }
        StepKind::Call { .. } | StepKind::Workflow(_) => {
            let empty = Value::Object(Map::new());
            let (template, member) = step.input_template().unwrap_or((&empty, "with"));
            match expr::render_in(template, &step_scope(definition, state, i, item)) {
                Ok(input) => input,
                Err(e) => {
                    let error = StepError::new(ErrorKind::InvalidInput, format!("rendering `{member}`: {e}"));
                    let failed = Event::StepFailed {
                        step: step.id.clone(),
                        iteration,
                        attempt,
                        error,
                        retry_at: None,
                        logs: Logs::default(),
                    };
                    return Decision { events: vec![failed], effects: Vec::new() };
                }
            }
        }
    };
    let timeout = step.timeout.map(|t| t.0);
    let (event, effect) = match &step.kind {
        StepKind::Workflow(_) => {
            let child = child_run_id(&state.run_id, &step.id, iteration, attempt);
            let effect = Effect::StartChild(ChildStart {
                attempt: id,
                step_id: step.id.clone(),
                run_id: child.clone(),
                input: input.clone(),
                timeout,
            });
            (started(input, None, Some(child)), effect)
        }
        StepKind::Call { uses, .. } => {
            let effect = Effect::Call(Call {
                attempt: id,
                step_id: step.id.clone(),
                uses: uses.clone(),
                digest: state.pins[i].as_ref().map(|pin| pin.digest.clone()),
                input: input.clone(),
                idempotency_key: key.clone(),
                timeout,
            });
            (started(input, None, None), effect)
        }
        StepKind::Sleep(_) | StepKind::WaitForSignal(_) => unreachable!("returned above"),
    };
    Decision { events: vec![event], effects: vec![effect] }
}

/// The event that records an attempt's result (with what its connector
/// logged), and the retry decision. Returns nothing for a stale result (the
/// attempt is no longer running).
pub fn on_outcome(
    definition: &Definition,
    state: &RunState,
    id: AttemptId,
    outcome: Result<Value, StepError>,
    logs: Logs,
    now: Millis,
) -> Vec<Event> {
    let AttemptId { step: i, iteration, attempt } = id;
    let key = match state.steps[i].iterations().get(iteration.unwrap_or(0) as usize) {
        Some(Iteration::Running { attempt: a, key, .. }) if *a == attempt && !state.status.is_terminal() => key,
        _ => return Vec::new(),
    };
    let step = &definition.workflow.steps[i];
    match outcome {
        Ok(output) => vec![Event::StepCompleted { step: step.id.clone(), iteration, attempt, output, logs }],
        Err(mut error) => {
            // Interrupted attempts are bounded on their own and retried at
            // once; the others count only the attempts that ran to an end.
            let interrupted = state.steps[i].interrupted(iteration);
            let retry_at = if error.kind == ErrorKind::Interrupted {
                if interrupted < MAX_INTERRUPTIONS {
                    Some(now)
                } else {
                    error.message = format!(
                        "{} (interrupted {} times; the limit is {MAX_INTERRUPTIONS})",
                        error.message,
                        interrupted + 1
                    );
                    None
                }
            } else {
                retry_delay(step, &error, attempt.saturating_sub(interrupted), key).map(|d| now.saturating_add(d))
            };
            vec![Event::StepFailed { step: step.id.clone(), iteration, attempt, error, retry_at, logs }]
        }
    }
}

/// What a driver that takes over a run does first. Connector calls that were
/// under way when the previous process stopped are recorded as interrupted,
/// and retried (with the same idempotency key) if their policy allows.
/// Sleeps, waits and child runs are durable and carry on: each child run is
/// picked up again, under the id its attempt journaled.
pub fn recover(definition: &Definition, state: &RunState, now: Millis) -> Decision {
    let mut decision = Decision::default();
    if state.status.is_terminal() {
        return decision;
    }
    for (id, iteration) in state.running() {
        let step = &definition.workflow.steps[id.step];
        let Iteration::Running { input, child, .. } = iteration else { continue };
        match &step.kind {
            StepKind::Call { .. } => {
                let error =
                    StepError::new(ErrorKind::Interrupted, "the process stopped while this attempt was running");
                let mut events = on_outcome(definition, state, id, Err(error), Logs::default(), now);
                for event in &mut events {
                    if let Event::StepFailed { retry_at: Some(at), .. } = event {
                        *at = now;
                    }
                }
                decision.events.extend(events);
            }
            StepKind::Workflow(_) => {
                let run_id =
                    child.clone().unwrap_or_else(|| child_run_id(&state.run_id, &step.id, id.iteration, id.attempt));
                decision.effects.push(Effect::StartChild(ChildStart {
                    attempt: id,
                    step_id: step.id.clone(),
                    run_id,
                    input: input.clone(),
                    timeout: step.timeout.map(|t| t.0),
                }));
            }
            StepKind::Sleep(_) | StepKind::WaitForSignal(_) => {}
        }
    }
    decision
}

/// The earliest time at which [`decide`] will have something to do without any
/// new event: a timer, a retry, a wait's timeout or the run's timeout.
pub fn next_wake(state: &RunState) -> Option<Millis> {
    let iterations = state.steps.iter().flat_map(|s| s.active()).filter_map(|(_, it)| match it {
        Iteration::Running { wake_at, .. } => *wake_at,
        Iteration::Backoff { retry_at, .. } => Some(*retry_at),
        _ => None,
    });
    iterations.chain(state.timeout_at).min()
}

/// `ms` milliseconds after `now`; a time past the end of the clock stays there.
pub fn later(now: Millis, ms: u64) -> Millis {
    now.saturating_add(Millis::try_from(ms).unwrap_or(Millis::MAX))
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
        None if matches!(step.kind, StepKind::Workflow(_)) => RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
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
    let asked = Millis::try_from(error.retry_after_ms.unwrap_or(0)).unwrap_or(Millis::MAX);
    Some(delay.max(asked))
}
