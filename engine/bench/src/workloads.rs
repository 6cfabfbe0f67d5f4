//! Workflows that benchmarks and tests share.

use serde_json::{Value, json};

/// `len` steps of `transform/double` in a chain, each doubling the previous
/// step's output; the first doubles `input.value`. W1 is `chain(10)`.
pub fn chain(len: usize) -> Value {
    let steps: Vec<Value> = (0..len)
        .map(|i| {
            let value = if i == 0 {
                "{{ input.value }}".to_string()
            } else {
                format!("{{{{ steps.s{}.output.value }}}}", i - 1)
            };
            json!({ "id": format!("s{i}"), "uses": "transform/double", "with": { "value": value } })
        })
        .collect();
    json!({ "name": format!("chain{len}"), "steps": steps })
}
