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
pub mod limits;
mod locate;
mod model;
mod schema;
mod validate;
mod yaml;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use catalog::{ActionSpec, Catalog, ConnectorId, ConnectorRef, ConnectorSpec};
pub use diagnostic::{Diagnostic, Diagnostics, JsonPath, Segment};
pub use model::{
    ChildWorkflow, Duration, ErrorKind, ErrorMode, OnError, RetryPolicy, Step, StepKind, Trigger, WaitForSignal,
    Workflow,
};
pub use schema::{SCHEMA_PATH, workflow_schema, workflow_schema_text};
pub use validate::{dependencies, is_valid_id, schema_errors};

/// A validated workflow, ready to run: the document, its content hash, its
/// dependency graph and the definitions of its child workflows.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// The workflow document.
    pub workflow: Workflow,
    /// `sha256:<hex>` of the canonical JSON of the document, and of its
    /// children's hashes when it has child workflow steps. Runs pin it, so a
    /// run is pinned to its children's versions too.
    pub hash: String,
    /// For each step (by index), the steps it waits for.
    pub deps: Vec<BTreeSet<usize>>,
    /// The child workflow of each `workflow` step, by step id.
    pub children: BTreeMap<String, Definition>,
    /// Each step's index, by id: every journal event names its step, so a
    /// long workflow must not search its steps per event.
    index: HashMap<String, usize>,
    /// For each step (by index), the step whose errors it handles, if it is
    /// a handler.
    handles: Vec<Option<usize>>,
}

impl Definition {
    /// Builds the graph and hash of an already-validated workflow that has no
    /// child workflow steps.
    pub fn new(workflow: Workflow) -> Self {
        Definition::with_children(workflow, BTreeMap::new())
    }

    /// Builds the graph and hash of an already-validated workflow and the
    /// definitions of its child workflow steps (by step id).
    pub fn with_children(workflow: Workflow, children: BTreeMap<String, Definition>) -> Self {
        let deps = dependencies(&workflow);
        let index: HashMap<String, usize> = workflow.steps.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
        let mut handles = vec![None; workflow.steps.len()];
        for (i, step) in workflow.steps.iter().enumerate() {
            if let OnError::Handler { handler } = &step.on_error
                && let Some(&h) = index.get(handler)
            {
                handles[h].get_or_insert(i);
            }
        }
        let mut definition = Definition { workflow, hash: String::new(), deps, children, index, handles };
        definition.hash = content_hash(&definition.stored_form());
        definition
    }

    /// The step whose errors step `handler` handles, if it is a handler.
    pub fn handled_by(&self, handler: usize) -> Option<usize> {
        self.handles.get(handler).copied().flatten()
    }

    /// The index of the step with this id.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The JSON a store keeps under [`Definition::hash`]: the document itself,
    /// or, with children, `{"workflow": document, "children": {step: hash}}`.
    /// [`Stored::parse`] reads it back.
    pub fn stored_form(&self) -> Value {
        let document = serde_json::to_value(&self.workflow).expect("a workflow serializes");
        if self.children.is_empty() {
            return document;
        }
        let children: BTreeMap<&str, &str> =
            self.children.iter().map(|(step, child)| (step.as_str(), child.hash.as_str())).collect();
        json!({ "workflow": document, "children": children })
    }
}

/// A definition as a store keeps it: the document, and the hashes of its
/// children, which are stored under their own hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The workflow document.
    pub workflow: Workflow,
    /// The hash of each child workflow, by step id.
    pub children: BTreeMap<String, String>,
}

impl Stored {
    /// Reads what [`Definition::stored_form`] wrote.
    pub fn parse(text: &str) -> Result<Stored, serde_json::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Bundle {
            workflow: Workflow,
            children: BTreeMap<String, String>,
        }
        let value: Value = serde_json::from_str(text)?;
        if value.get("workflow").is_some() && value.get("children").is_some() {
            let Bundle { workflow, children } = serde_json::from_value(value)?;
            Ok(Stored { workflow, children })
        } else {
            Ok(Stored { workflow: serde_json::from_value(value)?, children: BTreeMap::new() })
        }
    }
}

/// Where child workflows come from: files next to their parent for the CLI,
/// stored versions for a server. Loading calls nothing else that reads.
pub trait Loader {
    /// The child workflow that workflow `parent` names `path`: its name (for
    /// messages, and as the parent of its own children) and its text.
    fn child(&self, parent: &str, path: &str) -> Result<Source, String>;

    /// What names the same workflow however it is written (a canonical
    /// path, say), to catch cycles.
    fn identity(&self, name: &str) -> String {
        name.to_string()
    }
}

/// A workflow's text, with the name it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its name, e.g. a path.
    pub name: String,
    /// Its JSON or YAML text.
    pub text: String,
}

/// Reads child workflows from files, relative to their parent's directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Files;

impl Loader for Files {
    fn child(&self, parent: &str, path: &str) -> Result<Source, String> {
        let file = Path::new(parent).parent().unwrap_or(Path::new("")).join(path);
        let name = file.display().to_string();
        let text = limits::read_text_file(&file, limits::MAX_FILE_BYTES)
            .map_err(|e| format!("cannot read child workflow `{name}`: {e}"))?;
        Ok(Source { name, text })
    }

    fn identity(&self, name: &str) -> String {
        Path::new(name).canonicalize().map_or_else(|_| name.to_string(), |p| p.display().to_string())
    }
}

/// Loads no child workflows: a workflow with child workflow steps is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoChildren;

impl Loader for NoChildren {
    fn child(&self, _: &str, path: &str) -> Result<Source, String> {
        Err(format!("child workflow `{path}` cannot be loaded here: this load reads no other workflows"))
    }
}

/// The name that child workflow `path`, named in the workflow called
/// `parent`, goes by in a [`Bundle`]: `path` joined to `parent`'s directory,
/// with `.` and `..` resolved by name (a `..` past the top is kept).
pub fn child_name(parent: &str, path: &str) -> String {
    let mut parts: Vec<&str> = parent.split('/').collect();
    parts.pop();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|last| *last != "..") => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.retain(|part| !part.is_empty());
    parts.join("/")
}

/// Child workflows sent along with their parent (a server reads no files):
/// their texts by the names [`child_name`] gives them, from a parent named
/// `workflow.json` (or `workflow.yaml`).
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a>(pub &'a BTreeMap<String, String>);

impl Loader for Bundle<'_> {
    fn child(&self, parent: &str, path: &str) -> Result<Source, String> {
        let name = child_name(parent, path);
        match self.0.get(&name) {
            Some(text) => Ok(Source { name, text: text.clone() }),
            None => {
                let sent: Vec<&str> = self.0.keys().map(String::as_str).collect();
                let sent = if sent.is_empty() { "none".to_string() } else { sent.join(", ") };
                Err(format!("child workflow `{name}` was not sent with the workflow (files sent: {sent})"))
            }
        }
    }
}

/// Parses and validates a workflow file's text, with no child workflows (it
/// reads nothing); see [`load_with`].
pub fn load(file: &str, text: &str, catalog: &Catalog) -> Result<Definition, Diagnostics> {
    load_with(file, text, catalog, &NoChildren)
}

/// Parses and validates a workflow file. On failure, every problem is
/// returned at once, each with its JSON path and line:column.
///
/// Child workflows (`"workflow": {"path": ...}`) come from `loader` and are
/// validated too; their problems are reported at the parent's `path` member,
/// each naming the child's own position.
pub fn load_with(file: &str, text: &str, catalog: &Catalog, loader: &dyn Loader) -> Result<Definition, Diagnostics> {
    load_nested(file, text, catalog, loader, &mut Vec::new())
}

/// Reads and loads a workflow file, and its child workflows from files.
pub fn load_file(file: &Path, catalog: &Catalog) -> Result<Definition, Diagnostics> {
    let name = file.display().to_string();
    match limits::read_text_file(file, limits::MAX_FILE_BYTES) {
        Ok(text) => load_with(&name, &text, catalog, &Files),
        Err(e) => Err(Diagnostics {
            file: name,
            items: vec![Diagnostic {
                path: JsonPath::root(),
                line: 1,
                column: 1,
                message: format!("cannot read: {e}"),
            }],
        }),
    }
}

/// `load`, with the chain of files that led here, to catch cycles.
fn load_nested(
    file: &str,
    text: &str,
    catalog: &Catalog,
    loader: &dyn Loader,
    chain: &mut Vec<String>,
) -> Result<Definition, Diagnostics> {
    let parsed = if yaml::is_yaml(file) {
        yaml::parse(text).map(|(doc, positions)| (doc, locate::Locator::Yaml(positions)))
    } else {
        serde_json::from_str::<Value>(text)
            .map(|doc| (doc, locate::Locator::Json(locate::JsonLocator::new(text))))
            .map_err(|e| {
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message).to_string();
                (message, (e.line().max(1), e.column().max(1)), JsonPath::root())
            })
    };
    let (doc, locator) = match parsed {
        Ok(parsed) => parsed,
        Err((message, (line, column), path)) => {
            let items = vec![Diagnostic { path, line, column, message }];
            return Err(Diagnostics { file: file.to_string(), items });
        }
    };
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

    if let Some(path) = limits::too_deep_at(&doc, limits::MAX_DEPTH) {
        let message = format!("the workflow nests deeper than the limit of {} levels", limits::MAX_DEPTH);
        return Err(fail(vec![(path, message)]));
    }
    let mut problems = validate::structure(&doc);
    // The rules beyond the schema read the steps' file form, so that a step
    // that does not say what it does is reported with everything else. They
    // run even when the schema found problems, so that every problem is
    // reported at once: on the steps without the members the schema
    // refused, and keeping quiet about those members and their steps.
    let (steps, refused) = validate::without_refused(doc.get("steps"), &problems);
    let steps: Vec<model::StepDocument> = match steps.as_ref().map(|steps| decode(steps, JsonPath::root().key("steps")))
    {
        None => Vec::new(),
        Some(Ok(steps)) => steps,
        Some(Err(problem)) if problems.is_empty() => return Err(fail(vec![problem])),
        Some(Err(_)) => return Err(fail(problems)),
    };
    let semantic = validate::semantics(&steps, doc.get("output"), catalog);
    problems.extend(semantic.into_iter().filter(|(path, _)| !refused.iter().any(|r| related(path, r))));
    problems.extend(validate::trigger(doc.get("trigger")));
    let mut children = BTreeMap::new();
    chain.push(loader.identity(file));
    for (i, step) in steps.iter().enumerate() {
        let Some(child) = &step.workflow else { continue };
        let at = JsonPath::root().key("steps").index(i).key("workflow").key("path");
        match load_child(file, &child.path, catalog, loader, chain) {
            Ok(definition) => {
                children.insert(step.id.clone(), definition);
            }
            Err(messages) => problems.extend(messages.into_iter().map(|m| (at.clone(), m))),
        }
    }
    chain.pop();
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    let workflow: Workflow = decode(&doc, JsonPath::root()).map_err(|problem| fail(vec![problem]))?;
    Ok(Definition::with_children(workflow, children))
}

/// Whether one path is the other or lies inside it.
fn related(a: &JsonPath, b: &JsonPath) -> bool {
    a.0.starts_with(&b.0) || b.0.starts_with(&a.0)
}

/// Reads the typed form of `value`, found at `at` in the document; a
/// problem (a duration too long, a number out of range) is reported at the
/// member that has it.
fn decode<T: serde::de::DeserializeOwned>(value: &Value, at: JsonPath) -> Result<T, (JsonPath, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = at;
        for segment in e.path().iter() {
            path = match segment {
                serde_path_to_error::Segment::Seq { index } => path.index(*index),
                serde_path_to_error::Segment::Map { key } => path.key(key.as_str()),
                serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => path,
            };
        }
        (path, e.into_inner().to_string())
    })
}

/// Loads a child workflow that `parent` names `path`. Its problems come back
/// as messages that name the child's own positions.
fn load_child(
    parent: &str,
    path: &str,
    catalog: &Catalog,
    loader: &dyn Loader,
    chain: &mut Vec<String>,
) -> Result<Definition, Vec<String>> {
    let Source { name, text } = loader.child(parent, path).map_err(|message| vec![message])?;
    let identity = loader.identity(&name);
    if let Some(start) = chain.iter().position(|f| *f == identity) {
        let cycle: Vec<&str> = chain[start..].iter().chain([&identity]).map(String::as_str).collect();
        return Err(vec![format!("child workflows form a cycle: {}", cycle.join(" -> "))]);
    }
    load_nested(&name, &text, catalog, loader, chain).map_err(|diagnostics| {
        diagnostics
            .items
            .into_iter()
            .map(|d| format!("in child workflow {name}:{}:{}: {}: {}", d.line, d.column, d.path, d.message))
            .collect()
    })
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

#[cfg(test)]
mod bundle_tests {
    use super::child_name;

    #[test]
    fn child_names_resolve_by_name() {
        assert_eq!(child_name("workflow.json", "child.json"), "child.json");
        assert_eq!(child_name("workflow.json", "./sub/child.json"), "sub/child.json");
        assert_eq!(child_name("sub/child.json", "../other.yaml"), "other.yaml");
        assert_eq!(child_name("sub/child.json", "deeper/x.json"), "sub/deeper/x.json");
        assert_eq!(child_name("workflow.json", "../shared/x.json"), "../shared/x.json");
        assert_eq!(child_name("../shared/x.json", "../y.json"), "../y.json");
        assert_eq!(child_name("../x.json", "../y.json"), "../../y.json");
    }
}
