//! The template sandbox's guest: `weft-workflows`' own evaluator, compiled to
//! a WebAssembly component, so that a template runs the same code inside the
//! sandbox as outside it.

wit_bindgen::generate!({ path: "wit", world: "sandbox" });

use weft_workflows::expr;

struct Sandbox;

impl Guest for Sandbox {
    fn evaluate(mode: Mode, source: String, scope: String, limit: u64) -> Result<String, String> {
        let mode = match mode {
            Mode::Expression => expr::Mode::Expression,
            Mode::Condition => expr::Mode::Condition,
            Mode::Text => expr::Mode::Text,
        };
        expr::evaluate_unsandboxed(mode, &source, &scope, usize::try_from(limit).unwrap_or(usize::MAX))
    }

    fn references(source: String, bare_expression: bool) -> Result<Vec<String>, String> {
        expr::references_unsandboxed(&source, bare_expression)
    }
}

export!(Sandbox);
