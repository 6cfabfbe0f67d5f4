//! Property tests for the journal decoder: any stored text decodes to an
//! event or an error, never a panic, and every event that is written reads
//! back as itself. `PROPTEST_CASES=100000` runs them longer.

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_core::Event;

/// JSON values shaped like events: an object with a known `type` and
/// members of any shape.
fn event_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let kind = prop::sample::select(vec![
        "run_started",
        "step_scheduled",
        "step_started",
        "step_completed",
        "step_failed",
        "step_skipped",
        "step_reused",
        "timer_set",
        "timer_fired",
        "signal_received",
        "cancel_requested",
        "run_completed",
        "run_failed",
        "run_cancelled",
        "no_such_event",
    ]);
    let names = prop::sample::select(vec![
        "step",
        "iteration",
        "attempt",
        "input",
        "output",
        "error",
        "key",
        "timeout_at",
        "child",
        "retry_at",
        "workflow",
        "workflow_hash",
        "connectors",
        "items",
        "reason",
        "name",
        "payload",
        "fire_at",
        "kind",
        "message",
    ]);
    (kind, prop::collection::vec((names, value), 0..8)).prop_map(|(kind, members)| {
        let mut event = json!({ "type": kind });
        for (name, value) in members {
            event[name] = value;
        }
        event
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_stored_text_decodes_or_is_refused(text in "\\PC{0,200}") {
        let _ = serde_json::from_str::<Event>(&text);
    }

    #[test]
    fn event_shaped_values_decode_or_are_refused_and_read_back_as_written(value in event_like()) {
        if let Ok(event) = serde_json::from_value::<Event>(value) {
            let text = serde_json::to_string(&event).unwrap();
            prop_assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        }
    }
}

/// A workflow with every kind of step the core decides without a loader:
/// a call, a `foreach` call, a sleep and a wait for a signal.
fn replay_definition() -> weft_workflows::Definition {
    use weft_workflows::{ActionSpec, Catalog, ConnectorSpec, load};
    let action = ActionSpec { name: "echo".into(), input_schema: json!({}), output_schema: json!({}) };
    let catalog = Catalog::new(vec![ConnectorSpec { name: "t".into(), version: "1".into(), actions: vec![action] }]);
    let workflow = json!({ "name": "w", "timeout": "1h", "steps": [
        { "id": "a", "uses": "t/echo", "with": { "v": "{{ input.v }}" }, "retry": { "max_attempts": 3 } },
        { "id": "each", "uses": "t/echo", "foreach": "input.items", "concurrency": 2, "on_error": "continue",
          "with": { "v": "{{ item }}" }, "needs": ["a"] },
        { "id": "nap", "sleep": "1m", "needs": ["a"] },
        { "id": "wait", "wait_for_signal": { "name": "go", "timeout": "1h" } }
    ], "output": "{{ steps.each.output }}" });
    load("w.json", &workflow.to_string(), &catalog).unwrap_or_else(|e| panic!("{e}"))
}

/// Events a journal could hold for that workflow, in any order and with any
/// numbers: steps that exist and one that does not, iterations in range and
/// far out of it, every error kind.
fn journal_event() -> impl Strategy<Value = Event> {
    use weft_core::{ErrorKind, StepError};
    let step = prop::sample::select(vec!["a", "each", "nap", "wait", "gone"]).prop_map(String::from);
    let iteration = prop_oneof![Just(None), (0u32..4).prop_map(Some), Just(Some(u32::MAX))];
    let attempt = prop_oneof![0u32..4, Just(u32::MAX)];
    let time = prop_oneof![0i64..10_000, Just(i64::MAX), Just(i64::MIN)];
    let kind = prop::sample::select(vec![
        ErrorKind::InvalidInput,
        ErrorKind::Unauthorized,
        ErrorKind::RateLimited,
        ErrorKind::Transient,
        ErrorKind::Fatal,
        ErrorKind::Timeout,
        ErrorKind::Trap,
        ErrorKind::Interrupted,
    ]);
    let error = (kind, "\\PC{0,8}", prop::option::of(any::<u64>()))
        .prop_map(|(kind, message, retry_after_ms)| StepError { kind, message, retry_after_ms });
    let items = prop::option::of(prop::collection::vec((0i64..9).prop_map(Value::from), 0..4));
    prop_oneof![
        (prop::collection::vec(0i64..9, 0..4), prop::option::of(time.clone())).prop_map(|(items, timeout_at)| {
            Event::RunStarted {
                workflow: "w".into(),
                workflow_hash: "h".into(),
                input: json!({ "v": 1, "items": items }),
                connectors: [("t@1".to_string(), "d".to_string())].into(),
                timeout_at,
                retry_of: None,
            }
        }),
        (step.clone(), items).prop_map(|(step, items)| Event::StepScheduled { step, items }),
        step.clone().prop_map(|step| Event::StepSkipped { step, reason: "r".into() }),
        step.clone().prop_map(|step| Event::StepReused { step, output: json!("kept") }),
        (step.clone(), iteration.clone(), attempt.clone(), prop::option::of(time.clone())).prop_map(
            |(step, iteration, attempt, timeout_at)| Event::StepStarted {
                step,
                iteration,
                attempt,
                input: json!({}),
                key: "k".into(),
                timeout_at,
                child: None,
            }
        ),
        (step.clone(), time.clone()).prop_map(|(step, fire_at)| Event::TimerSet { step, fire_at }),
        step.clone().prop_map(|step| Event::TimerFired { step }),
        (step.clone(), iteration.clone(), attempt.clone()).prop_map(|(step, iteration, attempt)| {
            Event::StepCompleted { step, iteration, attempt, output: json!(attempt), logs: weft_core::Logs::default() }
        }),
        (step, iteration, attempt, error.clone(), prop::option::of(time)).prop_map(
            |(step, iteration, attempt, error, retry_at)| Event::StepFailed {
                step,
                iteration,
                attempt,
                error,
                retry_at,
                logs: weft_core::Logs::default(),
            }
        ),
        prop::sample::select(vec!["go", "other"])
            .prop_map(|name| Event::SignalReceived { name: name.into(), payload: json!(1) }),
        Just(Event::CancelRequested { reason: "r".into() }),
        Just(Event::RunCompleted { output: json!(null) }),
        error.prop_map(|error| Event::RunFailed { error }),
        Just(Event::RunCancelled { reason: "r".into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// A journal in any order, with any numbers, folds to a state without a
    /// panic, and what the core then decides for that state (recovery, the
    /// next decision, a result for every attempt it thinks is under way, the
    /// timeline) is computed without one as well.
    #[test]
    fn any_journal_replays_and_decides_without_a_panic(
        events in prop::collection::vec(journal_event(), 0..24),
        now in prop_oneof![0i64..20_000, Just(i64::MAX)],
    ) {
        let def = replay_definition();
        let mut state = weft_core::RunState::replay("r", &def, &events);
        prop_assert_eq!(&state, &weft_core::RunState::replay("r", &def, &events), "replay is deterministic");
        let _ = weft_core::timeline(&def, events.iter().map(|e| (0, e)));
        let _ = weft_core::next_wake(&state);
        for event in weft_core::recover(&def, &state, now).events {
            state.apply(&def, &event);
        }
        let _ = weft_core::advance(&def, &mut state, now);
        let running: Vec<_> = state.running().map(|(id, _)| id).collect();
        for id in running {
            let failure = weft_core::StepError::new(weft_core::ErrorKind::Transient, "x");
            for outcome in [Ok(json!(1)), Err(failure)] {
                for event in weft_core::on_outcome(&def, &state, id, outcome, weft_core::Logs::default(), now) {
                    let mut next = state.clone();
                    next.apply(&def, &event);
                    let _ = weft_core::advance(&def, &mut next, now);
                }
            }
        }
    }
}
