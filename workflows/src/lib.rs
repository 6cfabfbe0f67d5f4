//! Weft's workflow language: the document types, their JSON Schema,
//! validation with precise positions, and the expression language.
//!
//! ```
//! use weft_workflows::{Catalog, load};
//!
//! let text = r#"{
//!   "name": "nap",
//!   "steps": [ { "id": "rest", "sleep": "10ms" } ]
//! }"#;
//! let definition = load("nap.json", text, &Catalog::default()).unwrap();
//! assert_eq!(definition.workflow.steps[0].id, "rest");
//!
//! let broken = r#"{ "name": "x", "steps": [ { "id": "a", "sleep": "1s", "colour": 1 } ] }"#;
//! let errors = load("x.json", broken, &Catalog::default()).unwrap_err();
//! assert_eq!(errors.items[0].path.to_string(), "$.steps[0].colour");
//! assert_eq!((errors.items[0].line, errors.items[0].column), (1, 55));
//! ```
#![deny(missing_docs)]

mod catalog;
mod diagnostic;
pub mod expr;
mod locate;
mod model;
mod schema;
mod validate;

use std::collections::BTreeSet;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use catalog::{ActionSpec, Catalog, ConnectorSpec, Uses};
pub use diagnostic::{Diagnostic, Diagnostics, JsonPath, Segment};
pub use model::{
    ChildWorkflow, Duration, ErrorKind, ErrorMode, OnError, RetryPolicy, Step, Trigger, WaitForSignal, Workflow,
};
pub use schema::{SCHEMA_PATH, workflow_schema, workflow_schema_text};
pub use validate::{dependencies, is_valid_id, schema_errors};

/// A validated workflow, ready to run: the document, its content hash and its
/// dependency graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The workflow document.
    pub workflow: Workflow,
    /// `sha256:<hex>` of the canonical JSON of the document. Runs pin it.
    pub hash: String,
    /// For each step (by index), the steps it waits for.
    pub deps: Vec<BTreeSet<usize>>,
}

impl Definition {
    /// Builds the graph and hash of an already-validated workflow.
    pub fn new(workflow: Workflow) -> Self {
        let hash = content_hash(&serde_json::to_value(&workflow).expect("a workflow serializes"));
        let deps = dependencies(&workflow);
        Definition { workflow, hash, deps }
    }

    /// The index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.workflow.steps.iter().position(|s| s.id == id)
    }
}

/// Parses and validates a workflow file. On failure, every problem is
/// returned at once, each with its JSON path and line:column.
pub fn load(file: &str, text: &str, catalog: &Catalog) -> Result<Definition, Diagnostics> {
    let locator = locate::Locator::new(text);
    let fail = |problems: Vec<(JsonPath, String)>| {
        let mut items: Vec<Diagnostic> = problems
            .into_iter()
            .map(|(path, message)| {
                let (line, column) = locator.position(&path);
                Diagnostic { path, line, column, message }
            })
            .collect();
        items.sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
        items.dedup();
        Diagnostics { file: file.to_string(), items }
    };

    let doc: Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            let items =
                vec![Diagnostic { path: JsonPath::root(), line: e.line().max(1), column: e.column().max(1), message }];
            return Err(Diagnostics { file: file.to_string(), items });
        }
    };
    let problems = validate::structure(&doc);
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    let workflow: Workflow = match serde_json::from_value(doc) {
        Ok(workflow) => workflow,
        Err(e) => return Err(fail(vec![(JsonPath::root(), e.to_string())])),
    };
    let problems = validate::semantics(&workflow, catalog);
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(Definition::new(workflow))
}

/// Checks a run input against the workflow's `input` schema. Each problem is
/// `path: message`, with paths such as `$.customer.email`.
pub fn check_input(workflow: &Workflow, input: &Value) -> Result<(), Vec<String>> {
    let Some(schema) = &workflow.input else { return Ok(()) };
    match schema_errors(schema, input) {
        Ok(errors) if errors.is_empty() => Ok(()),
        Ok(errors) => Err(errors.into_iter().map(|(path, message)| format!("{path}: {message}")).collect()),
        Err(message) => Err(vec![format!("the workflow's input schema: {message}")]),
    }
}

/// `sha256:<hex>` over the canonical form of a JSON value (object keys
/// sorted, no whitespace), so that formatting never changes the hash.
pub fn content_hash(value: &Value) -> String {
    fn canonical(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*key).clone()).to_string());
                    out.push(':');
                    canonical(&map[*key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(value, &mut text);
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}
