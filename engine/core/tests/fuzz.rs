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
