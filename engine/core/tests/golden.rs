//! Golden tests of the state machine: events in; events and effects out.

use serde_json::{Value, json};
use weft_core::{
    AttemptId, Awaiting, Call, ChildStart, Decision, Effect, Event, Logs, MAX_INTERRUPTIONS, RunState, RunStatus,
    StepError, advance, decide, next_wake, on_outcome, recover,
};
use weft_workflows::{ActionSpec, Catalog, ConnectorSpec, Definition, ErrorKind, load};

fn catalog() -> Catalog {
    let action = |name: &str| ActionSpec { name: name.into(), input_schema: json!({}), output_schema: json!({}) };
    Catalog::new(vec![ConnectorSpec {
        name: "t".into(),
        version: "1".into(),
        actions: vec![action("echo"), action("double")],
    }])
}

/// A driver without I/O: applies what the core decides and records it.
struct Sim {
    def: Definition,
    state: RunState,
    journal: Vec<Event>,
    /// The effects of the last `settle`.
    effects: Vec<Effect>,
    now: i64,
}

impl Sim {
    fn new(workflow: Value, input: Value) -> Sim {
        let def = load("w.json", &workflow.to_string(), &catalog()).unwrap_or_else(|e| panic!("{e}"));
        Sim::with(def, input)
    }

    fn with(def: Definition, input: Value) -> Sim {
        let mut sim =
            Sim { state: RunState::new("r1", &def), def, journal: Vec::new(), effects: Vec::new(), now: 1_000 };
        let started = Event::RunStarted {
            workflow: "w".into(),
            workflow_hash: sim.def.hash.clone(),
            input,
            connectors: Default::default(),
            timeout_at: None,
            retry_of: None,
        };
        sim.commit(vec![started]);
        sim
    }

    fn commit(&mut self, events: Vec<Event>) {
        for event in events {
            self.state.apply(&self.def, &event);
            self.journal.push(event);
        }
    }

    /// Advances until the core has nothing more to decide; returns the events
    /// it produced and keeps the effects in `self.effects`.
    fn settle(&mut self) -> Vec<Event> {
        let mut state = self.state.clone();
        let Decision { events, effects } = advance(&self.def, &mut state, self.now);
        self.commit(events.clone());
        assert_eq!(state, self.state, "advance applies exactly the events it returns");
        self.effects = effects;
        events
    }

    /// The attempt of `step` (and iteration) under way.
    fn attempt(&self, step: &str, iteration: Option<u32>) -> AttemptId {
        let i = self.def.step_index(step).unwrap();
        self.state.running().map(|(id, _)| id).find(|id| id.step == i && id.iteration == iteration).expect("running")
    }

    fn finish(&mut self, step: &str, iteration: Option<u32>, outcome: Result<Value, StepError>) -> Vec<Event> {
        let events =
            on_outcome(&self.def, &self.state, self.attempt(step, iteration), outcome, Logs::default(), self.now);
        self.commit(events.clone());
        let mut all = events;
        all.extend(self.settle());
        all
    }

    fn running(&self) -> Vec<String> {
        self.state
            .running()
            .map(|(id, _)| {
                format!("{}[{}]#{}", self.def.workflow.steps[id.step].id, id.iteration.unwrap_or(0), id.attempt)
            })
            .collect()
    }

    /// The calls the last `settle` asked for, as `step[iteration]#attempt`.
    fn calls(&self) -> Vec<String> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Call(call) => {
                    Some(format!("{}[{}]#{}", call.step_id, call.attempt.iteration.unwrap_or(0), call.attempt.attempt))
                }
                _ => None,
            })
            .collect()
    }
}

fn kinds(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| format!("{}{}", e.kind(), e.step().map(|s| format!(":{s}")).unwrap_or_default())).collect()
}

#[test]
fn a_chain_runs_in_order_and_passes_outputs() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/double", "with": { "value": "{{ input.n }}" } },
            { "id": "b", "uses": "t/double", "with": { "value": "{{ steps.a.output.value }}" } }
        ]}),
        json!({ "n": 5 }),
    );
    assert_eq!(kinds(&sim.settle()), ["step_scheduled:a", "step_started:a"]);
    assert_eq!(
        sim.effects,
        [Effect::Call(Call {
            attempt: AttemptId { step: 0, iteration: None, attempt: 1 },
            step_id: "a".into(),
            uses: "t/double".parse().unwrap(),
            digest: None,
            input: json!({ "value": 5 }),
            idempotency_key: "r1:a:0".into(),
            timeout: None,
        })],
        "the started attempt is a call to perform, with the key the journal holds"
    );
    let done = sim.finish("a", None, Ok(json!({ "value": 10 })));
    assert_eq!(kinds(&done), ["step_completed:a", "step_scheduled:b", "step_started:b"]);
    assert_eq!(sim.calls(), ["b[0]#1"]);
    match &done[2] {
        Event::StepStarted { input, key, attempt, .. } => {
            assert_eq!(input, &json!({ "value": 10 }));
            assert_eq!(key, "r1:b:0");
            assert_eq!(*attempt, 1);
        }
        other => panic!("{other:?}"),
    }
    let done = sim.finish("b", None, Ok(json!({ "value": 20 })));
    assert_eq!(kinds(&done), ["step_completed:b", "run_completed"]);
    assert_eq!(sim.effects, [Effect::Finish(RunStatus::Completed)]);
    assert_eq!(sim.state.output, Some(json!({ "value": 20 })), "default output is the last step's");
}

#[test]
fn independent_branches_start_together() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo" }, { "id": "b", "uses": "t/echo" },
            { "id": "c", "uses": "t/echo", "needs": ["a", "b"] }
        ], "output": { "a": "{{ steps.a.output }}", "c": "{{ steps.c.output }}" } }),
        json!({}),
    );
    sim.settle();
    assert_eq!(sim.running(), ["a[0]#1", "b[0]#1"]);
    assert_eq!(sim.calls(), sim.running(), "each started attempt is one call");
    assert!(kinds(&sim.finish("a", None, Ok(json!(1)))).iter().all(|k| !k.ends_with(":c")), "c waits for b");
    sim.finish("b", None, Ok(json!(2)));
    assert_eq!(sim.running(), ["c[0]#1"]);
    sim.finish("c", None, Ok(json!(3)));
    assert_eq!(sim.state.output, Some(json!({ "a": 1, "c": 3 })));
}

#[test]
fn retryable_errors_back_off_and_keep_the_key() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo", "retry": { "max_attempts": 3, "initial_interval": "1s", "backoff": 2 } }
        ]}),
        json!({}),
    );
    sim.settle();
    let failed = sim.finish("a", None, Err(StepError::new(ErrorKind::Transient, "503")));
    let Event::StepFailed { retry_at: Some(at), .. } = &failed[0] else { panic!("{failed:?}") };
    let delay = at - sim.now;
    assert!((500..=1000).contains(&delay), "first retry waits 0.5–1 s with jitter, got {delay}");
    assert_eq!(next_wake(&sim.state), Some(*at));
    assert_eq!(sim.effects, [Effect::WakeAt(*at)], "the driver is told when the retry is due");
    assert!(sim.settle().is_empty(), "nothing before the retry time");
    sim.now = *at;
    let retried = sim.settle();
    assert!(matches!(&retried[0], Event::StepStarted { attempt: 2, key, .. } if key == "r1:a:0"), "{retried:?}");
    assert_eq!(sim.calls(), ["a[0]#2"]);
    let failed = sim.finish("a", None, Err(StepError::new(ErrorKind::Transient, "503")));
    let Event::StepFailed { retry_at: Some(at), .. } = &failed[0] else { panic!("{failed:?}") };
    assert!((1000..=2000).contains(&(at - sim.now)), "second retry waits 1–2 s");
    sim.now = *at;
    sim.settle();
    let last = sim.finish("a", None, Err(StepError::new(ErrorKind::Transient, "503")));
    assert_eq!(kinds(&last), ["step_failed:a", "run_failed"], "the third attempt is the last");
    assert_eq!(sim.state.status, RunStatus::Failed);
}

#[test]
fn non_retryable_errors_fail_at_once() {
    let mut sim = Sim::new(json!({ "name": "w", "steps": [ { "id": "a", "uses": "t/echo" } ] }), json!({}));
    sim.settle();
    let out = sim.finish("a", None, Err(StepError::new(ErrorKind::Fatal, "no")));
    assert_eq!(kinds(&out), ["step_failed:a", "run_failed"]);
    assert!(matches!(&out[0], Event::StepFailed { retry_at: None, .. }));
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [ { "id": "a", "uses": "t/echo", "retry": { "non_retryable": ["transient"] } } ] }),
        json!({}),
    );
    sim.settle();
    let out = sim.finish("a", None, Err(StepError::new(ErrorKind::Transient, "x")));
    assert_eq!(kinds(&out), ["step_failed:a", "run_failed"], "the policy can make a kind non-retryable");
}

#[test]
fn continue_and_handlers_let_the_run_go_on() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo", "on_error": "continue" },
            { "id": "b", "uses": "t/echo", "needs": ["a"], "with": { "why": "{{ steps.a.error.message }}" } },
            { "id": "c", "uses": "t/echo", "needs": ["b"], "on_error": { "handler": "fix" } },
            { "id": "fix", "uses": "t/echo", "with": { "e": "{{ steps.c.error.kind }}" } },
            { "id": "unused_handler", "uses": "t/echo" },
            { "id": "d", "uses": "t/echo", "on_error": { "handler": "unused_handler" } }
        ]}),
        json!({}),
    );
    sim.settle();
    sim.finish("d", None, Ok(json!("d")));
    let out = sim.finish("a", None, Err(StepError::new(ErrorKind::Fatal, "boom")));
    assert!(out.iter().any(
        |e| matches!(e, Event::StepStarted { step, input, .. } if step == "b" && input == &json!({ "why": "boom" }))
    ));
    sim.finish("b", None, Ok(json!("b")));
    let out = sim.finish("c", None, Err(StepError::new(ErrorKind::Unauthorized, "401")));
    assert!(out.iter().any(|e| matches!(e, Event::StepStarted { step, input, .. } if step == "fix" && input == &json!({ "e": "unauthorized" }))), "{out:?}");
    let out = sim.finish("fix", None, Ok(json!("fixed")));
    assert_eq!(kinds(&out), ["step_completed:fix", "step_skipped:unused_handler", "run_completed"]);
}

#[test]
fn false_conditions_skip_the_step_and_its_dependents() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo", "if": "input.go" },
            { "id": "b", "uses": "t/echo", "needs": ["a"] },
            { "id": "c", "uses": "t/echo", "if": "{{ not input.go }}" }
        ], "output": "{{ steps.c.output }}" }),
        json!({ "go": false }),
    );
    let out = sim.settle();
    assert_eq!(kinds(&out)[..4], ["step_skipped:a", "step_scheduled:c", "step_started:c", "step_skipped:b"]);
    let out = sim.finish("c", None, Ok(json!("c")));
    assert_eq!(kinds(&out), ["step_completed:c", "run_completed"]);
    assert_eq!(sim.state.output, Some(json!("c")));
}

#[test]
fn foreach_fans_out_within_its_concurrency_and_collects_outputs() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "each", "uses": "t/double", "foreach": "input.items", "concurrency": 2,
              "with": { "value": "{{ item }}", "i": "{{ index }}" } }
        ]}),
        json!({ "items": [1, 2, 3, 4, 5] }),
    );
    sim.settle();
    assert_eq!(sim.running(), ["each[0]#1", "each[1]#1"]);
    assert_eq!(sim.calls(), ["each[0]#1", "each[1]#1"]);
    for n in 0..5u32 {
        let input = sim
            .state
            .running()
            .find_map(|(id, it)| match it {
                weft_core::Iteration::Running { input, .. } if id.iteration == Some(n) => Some(input.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(input["i"], json!(n));
        assert!(sim.running().len() <= 2);
        let key = weft_core::idempotency_key("r1", "each", Some(n));
        assert_eq!(key, format!("r1:each:{n}"));
        sim.finish("each", Some(n), Ok(json!(input["value"].as_i64().unwrap() * 2)));
    }
    assert_eq!(sim.state.output, Some(json!([2, 4, 6, 8, 10])));
}

#[test]
fn foreach_with_continue_runs_every_item_and_keeps_the_outputs_of_those_that_succeed() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "each", "uses": "t/double", "foreach": "input.items", "concurrency": 2,
              "with": { "value": "{{ item }}" }, "on_error": "continue",
              "retry": { "max_attempts": 1 } },
            { "id": "after", "uses": "t/echo", "with": { "out": "{{ steps.each.output }}", "err": "{{ steps.each.error }}" } }
        ], "output": "{{ steps.after.output }}" }),
        json!({ "items": [1, 2, 3] }),
    );
    sim.settle();
    // The first item fails; the others still run.
    let out = sim.finish("each", Some(0), Err(StepError::new(ErrorKind::Fatal, "no")));
    assert_eq!(kinds(&out), ["step_failed:each", "step_started:each"], "{out:?}");
    sim.finish("each", Some(1), Ok(json!(4)));
    let out = sim.finish("each", Some(2), Ok(json!(6)));
    let input = out
        .iter()
        .find_map(|e| match e {
            Event::StepStarted { step, input, .. } if step == "after" => Some(input.clone()),
            _ => None,
        })
        .expect("after starts once every item finished");
    assert_eq!(input["out"], json!([{ "error": { "kind": "fatal", "message": "no" } }, 4, 6]));
    assert_eq!(input["err"], json!({ "kind": "fatal", "message": "no" }));
}

#[test]
fn a_retry_reuses_what_completed_and_runs_the_step_named_and_its_dependents_again() {
    let workflow = json!({ "name": "w", "steps": [
        { "id": "a", "uses": "t/double", "with": { "value": 1 } },
        { "id": "b", "uses": "t/double", "with": { "value": "{{ steps.a.output }}" } },
        { "id": "side", "uses": "t/echo" },
        { "id": "c", "uses": "t/double", "with": { "value": "{{ steps.b.output }}" } }
    ], "output": "{{ [steps.a.output, steps.b.output, steps.c.output] }}" });
    let mut first = Sim::new(workflow.clone(), json!({}));
    first.settle();
    first.finish("a", None, Ok(json!(2)));
    first.finish("side", None, Ok(json!("s")));
    first.finish("b", None, Ok(json!(4)));
    first.finish("c", None, Err(StepError::new(ErrorKind::Fatal, "down")));
    assert_eq!(first.state.status, RunStatus::Failed);

    let names = |events: &[Event]| events.iter().filter_map(|e| e.step().map(str::to_string)).collect::<Vec<_>>();
    // Without a step: what completed is reused; c runs again.
    let reused = weft_core::reused(&first.def, &first.state, None).unwrap();
    assert_eq!(names(&reused), ["a", "b", "side"]);
    let mut retry = Sim::new(workflow.clone(), json!({}));
    retry.commit(reused);
    assert_eq!(kinds(&retry.settle()), ["step_scheduled:c", "step_started:c"]);
    retry.finish("c", None, Ok(json!(8)));
    assert_eq!(retry.state.output, Some(json!([2, 4, 8])));
    let lines = weft_core::timeline(&retry.def, retry.journal.iter().map(|e| (0, e)));
    assert_eq!(lines[0].status, weft_core::EntryStatus::Reused);
    assert_eq!(lines[0].output, Some(json!(2)));

    // From b: b and c run again; a and side, which do not depend on b, are reused.
    let reused = weft_core::reused(&first.def, &first.state, Some("b")).unwrap();
    assert_eq!(names(&reused), ["a", "side"]);
    let mut retry = Sim::new(workflow, json!({}));
    retry.commit(reused);
    assert_eq!(kinds(&retry.settle()), ["step_scheduled:b", "step_started:b"]);

    let unknown = weft_core::reused(&first.def, &first.state, Some("nope")).unwrap_err();
    assert_eq!(unknown.to_string(), "the workflow has no step `nope`; its steps are a, b, side, c");
    let out = retry.finish("b", None, Ok(json!(4)));
    assert_eq!(kinds(&out), ["step_completed:b", "step_scheduled:c", "step_started:c"]);
    retry.finish("c", None, Ok(json!(8)));
    assert_eq!(
        weft_core::reused(&retry.def, &retry.state, None).unwrap_err(),
        weft_core::RetryError::NothingToRetry,
        "a completed run has nothing to retry unless a step is named"
    );
}

#[test]
fn sleeps_are_timers_in_the_journal() {
    let mut sim = Sim::new(json!({ "name": "w", "steps": [ { "id": "nap", "sleep": "30s" } ] }), json!({}));
    let out = sim.settle();
    assert_eq!(kinds(&out), ["step_scheduled:nap", "step_started:nap", "timer_set:nap"]);
    assert_eq!(next_wake(&sim.state), Some(sim.now + 30_000));
    assert_eq!(sim.effects, [Effect::WakeAt(sim.now + 30_000)], "a sleep is a wake-up, not a task");
    sim.now += 29_999;
    assert!(sim.settle().is_empty());
    sim.now += 1;
    assert_eq!(kinds(&sim.settle()), ["timer_fired:nap", "run_completed"]);
    // A restart replays the journal into the same state.
    let replayed = RunState::replay("r1", &sim.def, &sim.journal);
    assert_eq!(replayed, sim.state);
}

#[test]
fn signals_complete_waits_and_waits_time_out() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "approve", "wait_for_signal": { "name": "approval", "timeout": "1h" } },
            { "id": "late", "wait_for_signal": { "name": "never", "timeout": "1m" } }
        ], "output": "{{ steps.approve.output }}" }),
        json!({}),
    );
    sim.settle();
    sim.commit(vec![Event::SignalReceived { name: "approval".into(), payload: json!({ "ok": true }) }]);
    assert_eq!(kinds(&sim.settle()), ["step_completed:approve"]);
    assert!(sim.state.signals[0].consumed);
    sim.now += 60_000;
    let out = sim.settle();
    assert_eq!(kinds(&out), ["step_failed:late", "run_failed"]);
    assert!(matches!(&out[0], Event::StepFailed { error, .. } if error.kind == ErrorKind::Timeout));
}

/// Three kills during one call do not fail a step that may be attempted
/// once: interruptions are counted apart from `max_attempts`, and bounded
/// on their own.
#[test]
fn interruptions_do_not_use_up_max_attempts_and_are_bounded_on_their_own() {
    let workflow = json!({ "name": "w", "steps": [
        { "id": "a", "uses": "t/echo", "retry": { "max_attempts": 1 } }
    ] });
    let mut sim = Sim::new(workflow, json!({}));
    sim.settle();
    let interrupt = |sim: &mut Sim| {
        let state = RunState::replay("r1", &sim.def, &sim.journal);
        let recovered = recover(&sim.def, &state, sim.now);
        sim.commit(recovered.events.clone());
        recovered.events
    };
    for kill in 1..=MAX_INTERRUPTIONS {
        let events = interrupt(&mut sim);
        assert!(
            matches!(&events[..], [Event::StepFailed { retry_at: Some(_), .. }]),
            "interruption {kill} ended the step: {events:?}"
        );
        let restarted = sim.settle();
        let attempt = kill + 1;
        assert!(matches!(&restarted[..], [Event::StepStarted { attempt: a, .. }] if *a == attempt), "{restarted:?}");
    }
    let events = interrupt(&mut sim);
    assert!(
        matches!(&events[..], [Event::StepFailed { retry_at: None, error, .. }, ..]
            if error.message.ends_with("(interrupted 11 times; the limit is 10)")),
        "{events:?}"
    );
    // A real failure after an interruption still counts as the one attempt.
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [ { "id": "a", "uses": "t/echo", "retry": { "max_attempts": 1 } } ] }),
        json!({}),
    );
    sim.settle();
    interrupt(&mut sim);
    sim.settle();
    let state = RunState::replay("r1", &sim.def, &sim.journal);
    let id = AttemptId { step: 0, iteration: None, attempt: 2 };
    let failed =
        on_outcome(&sim.def, &state, id, Err(StepError::new(ErrorKind::Transient, "no")), Logs::default(), sim.now);
    assert!(matches!(&failed[..], [Event::StepFailed { retry_at: None, .. }]), "{failed:?}");
}

#[test]
fn interrupted_attempts_are_retried_with_the_same_key() {
    let mut sim = Sim::new(json!({ "name": "w", "steps": [ { "id": "a", "uses": "t/echo" } ] }), json!({}));
    sim.settle();
    // The process dies here; a new one replays the journal and recovers.
    let mut state = RunState::replay("r1", &sim.def, &sim.journal);
    let recovered = recover(&sim.def, &state, sim.now);
    assert!(
        matches!(&recovered.events[..], [Event::StepFailed { error, retry_at: Some(_), .. }] if error.kind == ErrorKind::Interrupted)
    );
    assert!(recovered.effects.is_empty(), "an interrupted call is not called again as it was");
    for e in &recovered.events {
        state.apply(&sim.def, e);
    }
    let restarted = decide(&sim.def, &state, sim.now);
    assert!(
        matches!(&restarted.events[0], Event::StepStarted { attempt: 2, key, .. } if key == "r1:a:0"),
        "{restarted:?}"
    );
    assert!(
        matches!(&restarted.effects[..], [Effect::Call(call)] if call.attempt.attempt == 2 && call.idempotency_key == "r1:a:0")
    );
}

#[test]
fn cancellation_ends_the_run() {
    let mut sim = Sim::new(json!({ "name": "w", "steps": [ { "id": "a", "uses": "t/echo" } ] }), json!({}));
    sim.settle();
    sim.commit(vec![Event::CancelRequested { reason: "by user".into() }]);
    assert_eq!(kinds(&sim.settle()), ["run_cancelled"]);
    assert_eq!(sim.state.status, RunStatus::Cancelled);
    assert_eq!(sim.effects, [Effect::Finish(RunStatus::Cancelled)]);
    let late = sim.attempt("a", None);
    assert!(
        on_outcome(&sim.def, &sim.state, late, Ok(json!(1)), Logs::default(), sim.now).is_empty(),
        "late results are dropped"
    );
}

#[test]
fn run_timeouts_fail_the_run() {
    let def_json = json!({ "name": "w", "timeout": "10s", "steps": [ { "id": "a", "sleep": "1m" } ] });
    let mut sim = Sim::new(def_json, json!({}));
    sim.state.timeout_at = Some(sim.now + 10_000);
    sim.settle();
    sim.now += 10_000;
    let out = sim.settle();
    assert_eq!(kinds(&out), ["run_failed"]);
}

#[test]
fn child_workflow_steps_start_a_child_run_that_outlives_restarts() {
    let child = load("c.json", r#"{ "name": "c", "steps": [ { "id": "x", "uses": "t/echo" } ] }"#, &catalog()).unwrap();
    let parent: weft_workflows::Workflow = serde_json::from_value(json!({ "name": "p", "steps": [
        { "id": "kid", "workflow": { "path": "c.json", "input": { "n": "{{ input.n }}" } } },
        { "id": "after", "uses": "t/echo", "with": { "got": "{{ steps.kid.output }}" } }
    ] }))
    .unwrap();
    let def = Definition::with_children(parent, [("kid".to_string(), child)].into());
    let mut sim = Sim::with(def, json!({ "n": 7 }));
    let out = sim.settle();
    let expected = weft_core::child_run_id("r1", "kid", None, 1);
    assert!(
        matches!(&out[..], [Event::StepScheduled { .. }, Event::StepStarted { input, child: Some(id), .. }]
            if input == &json!({ "n": 7 }) && *id == expected),
        "{out:?}"
    );
    assert_ne!(expected, weft_core::child_run_id("r1", "kid", None, 2), "each attempt has its own child");
    let start = ChildStart {
        attempt: AttemptId { step: 0, iteration: None, attempt: 1 },
        step_id: "kid".into(),
        run_id: expected.clone(),
        input: json!({ "n": 7 }),
        timeout: None,
    };
    assert_eq!(sim.effects, [Effect::StartChild(start.clone())]);

    // A restart does not interrupt a child run: the new driver picks it up,
    // under the id the journal holds.
    let state = RunState::replay("r1", &sim.def, &sim.journal);
    let recovered = recover(&sim.def, &state, sim.now);
    assert!(recovered.events.is_empty());
    assert_eq!(recovered.effects, [Effect::StartChild(start)]);

    // Cancelling the parent cancels the child before the parent's end.
    let mut cancelled = sim.state.clone();
    cancelled.apply(&sim.def, &Event::CancelRequested { reason: "by user".into() });
    let end = advance(&sim.def, &mut cancelled, sim.now);
    assert_eq!(
        end.effects,
        [
            Effect::CancelChild { run_id: expected.clone(), reason: "its parent run r1 cancelled".into() },
            Effect::Finish(RunStatus::Cancelled)
        ]
    );

    // A failed child fails the step for good: it is not retried by default.
    let failed = sim.finish("kid", None, Err(StepError::new(ErrorKind::Transient, "child run failed")));
    assert!(matches!(&failed[0], Event::StepFailed { retry_at: None, .. }), "{failed:?}");
    assert_eq!(kinds(&failed)[1], "run_failed");
}

#[test]
fn the_timeline_is_a_projection_of_the_journal() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo", "retry": { "max_attempts": 2, "initial_interval": "1s" } },
            { "id": "gate", "uses": "t/echo", "if": "false" },
            { "id": "approve", "wait_for_signal": { "name": "ok" }, "needs": ["a"] }
        ]}),
        json!({}),
    );
    sim.settle();
    sim.finish("a", None, Err(StepError::new(ErrorKind::Transient, "503")));
    sim.now += 1_000;
    sim.settle();
    sim.finish("a", None, Ok(json!("fine")));
    let entries = weft_core::timeline(&sim.def, sim.journal.iter().map(|e| (sim.now, e)));
    let line = |e: &weft_core::Entry| {
        format!(
            "{}#{} {}",
            e.step.as_deref().unwrap_or("-"),
            e.attempt.map_or("-".into(), |a| a.to_string()),
            e.status.as_str()
        )
    };
    assert_eq!(
        entries.iter().map(line).collect::<Vec<_>>(),
        ["gate#- skipped", "a#1 failed", "a#2 completed", "approve#1 waiting"]
    );
    assert_eq!(entries[1].error.as_ref().map(|e| e.kind), Some(ErrorKind::Transient));
    assert!(entries[1].retry_at.is_some(), "a retried failure says when");
    assert_eq!(entries[2].output, Some(json!("fine")));
    assert_eq!(entries[3].signal.as_deref(), Some("ok"));
}

#[test]
fn a_run_says_what_it_waits_for_and_only_when_nothing_is_under_way() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo", "retry": { "max_attempts": 2, "initial_interval": "1s" } },
            { "id": "approve", "wait_for_signal": { "name": "ok", "timeout": "1h" }, "needs": ["a"] },
            { "id": "nap", "sleep": "30s", "needs": ["a"] }
        ]}),
        json!({}),
    );
    sim.settle();
    assert_eq!(sim.state.awaiting(&sim.def, sim.now), None, "a call is under way");
    let failed = sim.finish("a", None, Err(StepError::new(ErrorKind::Transient, "503")));
    let Some(Event::StepFailed { retry_at: Some(retry_at), .. }) = failed.first().cloned() else {
        panic!("{failed:?}")
    };
    assert_eq!(
        sim.state.awaiting(&sim.def, sim.now),
        Some(vec![Awaiting::Retry { step: "a".into(), iteration: None, at: retry_at }])
    );
    sim.now = retry_at;
    assert_eq!(sim.state.awaiting(&sim.def, sim.now), None, "the retry is due");
    sim.settle();
    sim.finish("a", None, Ok(json!(1)));
    let waits = sim.state.awaiting(&sim.def, sim.now).expect("waiting");
    assert_eq!(
        waits,
        [
            Awaiting::Signal { step: "approve".into(), name: "ok".into(), timeout_at: Some(sim.now + 3_600_000) },
            Awaiting::Timer { step: "nap".into(), until: sim.now + 30_000 },
        ]
    );
    sim.commit(vec![Event::SignalReceived { name: "ok".into(), payload: json!(true) }]);
    assert_eq!(sim.state.awaiting(&sim.def, sim.now), None, "the signal arrived: the wait can end");
    sim.settle();
    assert_eq!(
        sim.state.awaiting(&sim.def, sim.now),
        Some(vec![Awaiting::Timer { step: "nap".into(), until: sim.now + 30_000 }])
    );
}

#[test]
fn steps_in_flight_end_cancelled_with_the_run_and_interrupted_attempts_say_so() {
    let mut sim = Sim::new(
        json!({ "name": "w", "steps": [
            { "id": "a", "uses": "t/echo" },
            { "id": "approve", "wait_for_signal": { "name": "ok" } },
            { "id": "nap", "sleep": "1h" }
        ]}),
        json!({}),
    );
    sim.settle();
    let open = weft_core::timeline(&sim.def, sim.journal.iter().map(|e| (sim.now, e)));
    let statuses = |entries: &[weft_core::Entry]| entries.iter().map(|e| e.status.as_str()).collect::<Vec<_>>();
    assert_eq!(statuses(&open), ["running", "waiting", "sleeping"]);
    let mut lost = open.clone();
    weft_core::interrupt(&mut lost);
    assert_eq!(statuses(&lost), ["interrupted", "waiting", "sleeping"], "only calls need a process");

    sim.now += 5;
    sim.commit(vec![Event::CancelRequested { reason: "by user".into() }]);
    sim.settle();
    let closed = weft_core::timeline(&sim.def, sim.journal.iter().map(|e| (sim.now, e)));
    assert_eq!(statuses(&closed), ["cancelled", "cancelled", "cancelled"]);
    assert!(closed.iter().all(|e| e.ended_at == Some(sim.now)));

    // An attempt a dead driver cut short is journaled as interrupted.
    let mut sim = Sim::new(json!({ "name": "w", "steps": [ { "id": "a", "uses": "t/echo" } ] }), json!({}));
    sim.settle();
    let state = RunState::replay("r1", &sim.def, &sim.journal);
    sim.commit(recover(&sim.def, &state, sim.now).events);
    let entries = weft_core::timeline(&sim.def, sim.journal.iter().map(|e| (sim.now, e)));
    assert_eq!(entries[0].status, weft_core::EntryStatus::Interrupted);
}
