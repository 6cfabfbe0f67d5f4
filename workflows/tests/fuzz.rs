//! Property tests that feed the workflow loader (JSON and YAML) and the
//! template renderer hostile text: whatever comes in, they answer with a
//! workflow or a positioned error, or a value or an error, and never panic,
//! overflow the stack or run unbounded. `.ci/run` runs them with the default
//! number of cases; `PROPTEST_CASES=100000 cargo test -p weft-workflows
//! --test fuzz` runs them longer.

use proptest::prelude::*;
use serde_json::json;
use weft_workflows::{Catalog, expr, load};

const VALID_JSON: &str = r#"{"name":"w","input":{"type":"object"},"steps":[
  {"id":"a","sleep":"1s"},
  {"id":"b","uses":"transform/echo","with":{"x":"{{ input.x }}"},"needs":["a"],"retry":{"max_attempts":2}},
  {"id":"c","wait_for_signal":{"name":"go","timeout":"5m"},"if":"{{ steps.b.output }}"}
],"output":"{{ steps.c.output }}"}"#;

const VALID_YAML: &str = "name: w\nsteps:\n  - &s { id: a, sleep: 1s }\n  - id: b\n    uses: transform/echo\n    with: { x: \"{{ input.x }}\", y: [1, 2, *s] }\n    foreach: \"{{ input.items }}\"\noutput: \"{{ steps.b.output }}\"\n";

/// Text near a valid workflow: one with a few bytes replaced, inserted or
/// cut, so that the parser gets past its first character.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (any::<prop::sample::Index>(), 0u8..3, "[\\[\\]{}:,\"&*!|>\\-# \\n\\\\a-z0-9]{0,4}"),
        1..6,
    );
    edits.prop_map(move |edits| {
        let mut text = base.to_string();
        for (at, kind, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            match kind {
                0 => text.insert_str(i, &insert),
                1 => {
                    let end = (i + insert.len()).min(text.len());
                    let end = (end..=text.len()).find(|&e| text.is_char_boundary(e)).unwrap_or(text.len());
                    text.replace_range(i..end, &insert);
                }
                _ => {
                    let end = (i + 3).min(text.len());
                    let end = (end..=text.len()).find(|&e| text.is_char_boundary(e)).unwrap_or(text.len());
                    text.replace_range(i..end, "");
                }
            }
        }
        text
    })
}

/// Templates built from the pieces that make templates expensive or odd.
fn template() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "{{ ",
        " }}",
        "{% for x in ",
        " %}",
        "{% endfor %}",
        "{% if ",
        "{% endif %}",
        "range(",
        "100000",
        ")",
        "input.s",
        "input.n",
        "input.list",
        " * ",
        " ~ ",
        " + ",
        "'ab'",
        "[1, 2]",
        "(1,)",
        "|join",
        "|length",
        "|upper",
        "x",
        ".",
        "[",
        "]",
        "{",
        "}",
        "-1",
        "9999999999999999999999",
        "loop.index",
        "none",
        "\"",
        "\\",
        "\u{1b}",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_json_loader_answers_every_text(text in mutated(VALID_JSON)) {
        if let Err(errors) = load("w.json", &text, &Catalog::default()) {
            prop_assert!(!errors.items.is_empty());
            prop_assert!(errors.items.iter().all(|d| d.line >= 1 && d.column >= 1));
        }
    }

    #[test]
    fn the_yaml_loader_answers_every_text(text in mutated(VALID_YAML)) {
        if let Err(errors) = load("w.yaml", &text, &Catalog::default()) {
            prop_assert!(!errors.items.is_empty());
            prop_assert!(errors.items.iter().all(|d| d.line >= 1 && d.column >= 1));
        }
    }

    #[test]
    fn the_loader_answers_arbitrary_text(text in "\\PC{0,200}", yaml in any::<bool>()) {
        let _ = load(if yaml { "w.yaml" } else { "w.json" }, &text, &Catalog::default());
    }

    #[test]
    fn the_renderer_answers_every_template(text in template()) {
        let scope = json!({ "input": { "s": "text", "n": 3, "list": [1, 2, 3] }, "steps": {} });
        match expr::render(&json!(text), &scope) {
            Ok(value) => prop_assert!(weft_workflows::limits::json_size(&value, 5 << 20) <= 4 << 20),
            Err(error) => prop_assert!(!error.message.is_empty()),
        }
        let _ = expr::eval_condition(&text, &scope);
    }
}
