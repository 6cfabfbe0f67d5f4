//! Fan-out at scale: a `foreach` over many items costs each event and each
//! decision the iterations under way, not all of them, so a run's work grows
//! linearly with its items. (Quadratic work would make these tests run for
//! hours; the figures are in docs/BENCHMARKS.md.)

use serde_json::{Value, json};
use weft_core::{Effect, Event, Logs, RunState, RunStatus, advance, on_outcome};
use weft_workflows::{ActionSpec, Catalog, ConnectorSpec, Definition, load};

fn definition(workflow: Value) -> Definition {
    let action = ActionSpec { name: "echo".into(), input_schema: json!({}), output_schema: json!({}) };
    let catalog = Catalog::new(vec![ConnectorSpec { name: "t".into(), version: "1".into(), actions: vec![action] }]);
    load("w.json", &workflow.to_string(), &catalog).unwrap_or_else(|e| panic!("{e}"))
}

/// Drives a run to its end, answering every call with its input's `v`
/// (or with `answer`), a batch of calls at a time as a driver does.
/// Returns the state and the journal.
fn drive(
    def: &Definition,
    input: Value,
    answer: impl Fn(&Value) -> Result<Value, weft_core::StepError>,
) -> (RunState, Vec<Event>) {
    let mut state = RunState::new("r1", def);
    let mut journal = vec![Event::RunStarted {
        workflow: "w".into(),
        workflow_hash: def.hash.clone(),
        input,
        connectors: Default::default(),
        timeout_at: None,
        retry_of: None,
    }];
    state.apply(def, &journal[0]);
    let mut calls = Vec::new();
    loop {
        let decision = advance(def, &mut state, 1_000);
        journal.extend(decision.events);
        calls.extend(decision.effects.into_iter().filter_map(|e| match e {
            Effect::Call(call) => Some(call),
            _ => None,
        }));
        if state.status.is_terminal() {
            return (state, journal);
        }
        assert!(!calls.is_empty(), "the run is stuck");
        for call in std::mem::take(&mut calls) {
            for event in on_outcome(def, &state, call.attempt, answer(&call.input), Logs::default(), 1_000) {
                state.apply(def, &event);
                journal.push(event);
            }
        }
    }
}

#[test]
fn a_foreach_over_a_million_items_runs_in_linear_time() {
    const N: usize = 1_000_000;
    let def = definition(json!({ "name": "w", "steps": [
        { "id": "each", "uses": "t/echo", "foreach": "input.items", "concurrency": 64, "with": { "v": "{{ item }}" } }
    ], "output": "{{ steps.each.output | length }}" }));
    // Small items, so that the list fits the 4 MiB limit on run inputs.
    let items: Vec<u32> = (0..N as u32).map(|n| n % 10).collect();
    let (state, journal) = drive(&def, json!({ "items": items }), |input| Ok(input["v"].clone()));
    assert_eq!(state.status, RunStatus::Completed, "{:?}", state.error);
    assert_eq!(state.output, Some(json!(N)));
    // Every item started once and completed once.
    let started = journal.iter().filter(|e| matches!(e, Event::StepStarted { .. })).count();
    let completed = journal.iter().filter(|e| matches!(e, Event::StepCompleted { .. })).count();
    assert_eq!((started, completed), (N, N));
    // And a replay of that journal is the same state.
    assert_eq!(RunState::replay("r1", &def, &journal), state);
}

#[test]
fn failures_and_retries_in_a_large_foreach_keep_their_order() {
    const N: usize = 50_000;
    // Every 1,000th item fails for good; the step's error is the first one's.
    let def = definition(json!({ "name": "w", "steps": [
        { "id": "each", "uses": "t/echo", "foreach": "range(input.n)", "concurrency": 100,
          "retry": { "max_attempts": 1 }, "with": { "v": "{{ item }}" } }
    ] }));
    let (state, _) = drive(&def, json!({ "n": N }), |input| {
        let v = input["v"].as_u64().unwrap();
        if v % 1000 == 999 {
            Err(weft_core::StepError::new(weft_workflows::ErrorKind::Fatal, format!("item {v}")))
        } else {
            Ok(json!(v))
        }
    });
    assert_eq!(state.status, RunStatus::Failed);
    assert!(state.error.unwrap().message.ends_with("item 999"));
}

#[test]
fn each_item_of_a_large_foreach_reads_the_run_input_and_an_earlier_output_without_copying_them() {
    const N: usize = 200_000;
    let def = definition(json!({ "name": "w", "steps": [
        { "id": "list", "uses": "t/echo", "with": { "v": "{{ input.n }}" } },
        { "id": "each", "uses": "t/echo", "foreach": "steps.list.output", "concurrency": 16,
          "with": { "v": "{{ input.tag }}{{ item }}/{{ steps.list.output | length }}" } }
    ], "output": "{{ steps.each.output[-1] }}" }));
    // The first call answers with N items; the others with their input.
    let items: Vec<u32> = (0..N as u32).map(|n| n % 10).collect();
    let padding = "x".repeat(1 << 20);
    let (state, _) = drive(&def, json!({ "n": N, "tag": "t", "padding": padding }), |input| match &input["v"] {
        Value::Number(_) => Ok(json!(items)),
        other => Ok(other.clone()),
    });
    assert_eq!(state.status, RunStatus::Completed, "{:?}", state.error);
    assert_eq!(state.output, Some(json!(format!("t9/{N}"))));
}
