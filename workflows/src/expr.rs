//! Templates and expressions, evaluated with minijinja.
//!
//! A JSON string that is exactly one `{{ expression }}` evaluates to the
//! expression's JSON value (a number stays a number, an object an object).
//! Any other string containing `{{` or `{%` renders to a string. Conditions
//! and `foreach` take a bare expression; `{{ }}` around it is accepted too.
//!
//! The scope holds `input`, `steps.<id>.output`, `steps.<id>.error`, `run.id`,
//! and inside `foreach` steps `item` and `index`. Undefined names are errors,
//! so a typo fails loudly instead of rendering as an empty string.

mod bounded;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::limits::{self, CappedBuffer, MAX_VALUE_BYTES, TEMPLATE_FUEL};

/// An expression or template failed to compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (in `{source_text}`)")]
pub struct ExprError {
    /// What went wrong.
    pub message: String,
    /// The template or expression text.
    pub source_text: String,
}

/// The functions every template and expression can call (minijinja's
/// built-in globals); any other free name must be a variable of the scope.
pub const GLOBAL_FUNCTIONS: &[&str] = &["range", "dict", "namespace"];

/// How a template's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One expression, evaluated to a JSON value.
    Expression,
    /// One expression, read for its truth.
    Condition,
    /// A text template, rendered to a string.
    Text,
}

/// Evaluates templates that are not bounded by what they read (loops, `*`,
/// calls, most filters) away from the host process, under limits of memory
/// and time that minijinja's fuel cannot give: the template sandbox of
/// `weft-host`, a WebAssembly component running this very module.
pub trait Sandbox: Send + Sync {
    /// Evaluates `source` (as `mode`) in `scope`, a JSON object of the names
    /// it reads, to a result of at most `limit` bytes: the value as JSON text
    /// for an expression, `true` or `false` for a condition, the text itself
    /// for a text template. An error is the message of an [`ExprError`].
    fn evaluate(&self, mode: Mode, source: &str, scope: &str, limit: usize) -> Result<String, String>;

    /// The variables `source` reads, as [`references`] gives them.
    fn references(&self, source: &str, bare_expression: bool) -> Result<Vec<String>, String>;
}

static SANDBOX: OnceLock<Arc<dyn Sandbox>> = OnceLock::new();

/// Installs the process's template sandbox. From then on, every template that
/// is not bounded by what it reads is compiled and evaluated there, never in
/// this process. The first installation stays; this says whether it was
/// this one.
pub fn install_sandbox(sandbox: Arc<dyn Sandbox>) -> bool {
    SANDBOX.set(sandbox).is_ok()
}

/// The sandbox `source` must go to, if it is not bounded by what it reads
/// and a sandbox is installed.
fn sandbox_for(mode: Mode, source: &str) -> Option<&'static dyn Sandbox> {
    let sandbox = SANDBOX.get()?;
    (!bounded::is_bounded(mode, source)).then_some(sandbox.as_ref())
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env
    })
}

/// A value as templates read it: converted from JSON once, then shared, so
/// that handing it to many scopes (one per `foreach` item, say) copies
/// nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScopeValue(minijinja::Value);

impl ScopeValue {
    /// Converts a JSON value (in time proportional to its size).
    pub fn new(value: &Value) -> ScopeValue {
        ScopeValue(minijinja::Value::from(minijinja::value::Serde(value)))
    }

    /// A map of these values, keeping their order.
    pub fn map(entries: impl IntoIterator<Item = (String, ScopeValue)>) -> ScopeValue {
        ScopeValue(minijinja::Value::from_object(Fields(entries.into_iter().map(|(k, v)| (k, v.0)).collect())))
    }
}

/// What templates can read: named values (`input`, `steps`, `run`, `item`,
/// `index`), each shared rather than copied.
#[derive(Debug, Clone, Default)]
pub struct Scope(Vec<(String, minijinja::Value)>);

impl Scope {
    /// A scope with nothing in it.
    pub fn new() -> Scope {
        Scope::default()
    }

    /// The scope with `name` bound to `value` (replacing an earlier binding).
    pub fn with(mut self, name: &str, value: ScopeValue) -> Scope {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = value.0,
            None => self.0.push((name.to_string(), value.0)),
        }
        self
    }

    fn value(&self) -> minijinja::Value {
        minijinja::Value::from_object(Fields(self.0.clone()))
    }

    /// The part of the scope `source` reads, as a JSON object for the
    /// sandbox: the top-level names it reads, and of `steps` only the steps
    /// it names (all of them when it reads `steps` another way).
    fn json_for(&self, mode: Mode, source: &str) -> String {
        let reads = bounded::reads(mode, source).unwrap_or_default();
        let mut out = serde_json::Map::new();
        for (name, value) in &self.0 {
            if !reads.names.contains(name) {
                continue;
            }
            let value = match (name.as_str(), &reads.steps, value.downcast_object_ref::<Fields>()) {
                ("steps", Some(read), Some(steps)) => serde_json::to_value(minijinja::Value::from_object(Fields(
                    steps.0.iter().filter(|(id, _)| read.contains(id)).cloned().collect(),
                ))),
                _ => serde_json::to_value(value),
            };
            // A scope holds JSON values, which convert back.
            out.insert(name.clone(), value.unwrap_or(Value::Null));
        }
        Value::Object(out).to_string()
    }
}

impl From<&Value> for Scope {
    /// The members of a JSON object, each a name of the scope.
    fn from(scope: &Value) -> Scope {
        match scope {
            Value::Object(map) => Scope(map.iter().map(|(k, v)| (k.clone(), ScopeValue::new(v).0)).collect()),
            _ => Scope::default(),
        }
    }
}

/// A map for templates, in insertion order, looked up by name (scopes and
/// their `steps` maps hold few names).
#[derive(Debug)]
struct Fields(Vec<(String, minijinja::Value)>);

impl minijinja::value::Object for Fields {
    fn repr(self: &std::sync::Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Map
    }

    fn get_value(self: &std::sync::Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        let key = key.as_str()?;
        self.0.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone())
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.0.iter().map(|(name, _)| minijinja::Value::from(name.as_str())).collect(),
        )
    }

    fn enumerator_len(self: &std::sync::Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

fn error(source_text: &str, err: impl std::fmt::Display) -> ExprError {
    ExprError { message: err.to_string(), source_text: source_text.to_string() }
}

/// A template engine's error, with its limits named.
fn engine_error(source_text: &str, err: minijinja::Error) -> ExprError {
    match err.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            error(source_text, format!("the template ran past its budget of {TEMPLATE_FUEL} operations"))
        }
        _ => error(source_text, err),
    }
}

fn too_large(source_text: &str, limit: usize) -> ExprError {
    error(source_text, format!("the result is over the size limit of {limit} bytes"))
}

/// Whether a string is a template rather than a literal.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The inner expression of a string that is exactly one `{{ ... }}`.
pub fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

/// A bare expression, with optional `{{ }}` around it.
fn bare(expr: &str) -> &str {
    single_expression(expr).unwrap_or(expr.trim())
}

/// Evaluates one expression to JSON.
pub fn eval(expr: &str, scope: &Value) -> Result<Value, ExprError> {
    eval_in(expr, &Scope::from(scope))
}

/// Evaluates one expression to JSON, in a [`Scope`].
pub fn eval_in(expr: &str, scope: &Scope) -> Result<Value, ExprError> {
    eval_within(expr, scope, MAX_VALUE_BYTES).map(|(value, _)| value)
}

/// Evaluates one expression to JSON of at most `limit` bytes, with its size,
/// in the sandbox when it is not bounded by what it reads.
fn eval_within(expr: &str, scope: &Scope, limit: usize) -> Result<(Value, usize), ExprError> {
    let text = bare(expr);
    match sandbox_for(Mode::Expression, text) {
        Some(sandbox) => {
            let json = sandbox.evaluate(Mode::Expression, text, &scope.json_for(Mode::Expression, text), limit);
            let json = json.map_err(|message| error(text, message))?;
            let value = serde_json::from_str(&json).map_err(|e| error(text, e))?;
            Ok((value, json.len()))
        }
        None => eval_here(text, &scope.value(), limit),
    }
}

/// Evaluates one expression in this process. The result is written out
/// under its cap before it is read back, so a value that a few operations
/// made huge (a list repeated many times) is refused, not built.
fn eval_here(text: &str, scope: &minijinja::Value, limit: usize) -> Result<(Value, usize), ExprError> {
    let compiled = environment().compile_expression_owned(text.to_string()).map_err(|e| error(text, e))?;
    let value = compiled.eval(scope.clone()).map_err(|e| engine_error(text, e))?;
    if value.is_undefined() {
        return Err(error(text, "the expression is undefined"));
    }
    let mut out = CappedBuffer { bytes: Vec::new(), limit };
    if let Err(e) = serde_json::to_writer(&mut out, &value) {
        return Err(if e.is_io() { too_large(text, limit) } else { error(text, e) });
    }
    let value = serde_json::from_slice(&out.bytes).map_err(|e| error(text, e))?;
    Ok((value, out.bytes.len()))
}

/// Renders a text template to at most `limit` bytes, in the sandbox when it
/// is not bounded by what it reads.
fn render_text(text: &str, scope: &Scope, limit: usize) -> Result<String, ExprError> {
    match sandbox_for(Mode::Text, text) {
        Some(sandbox) => {
            let rendered = sandbox.evaluate(Mode::Text, text, &scope.json_for(Mode::Text, text), limit);
            rendered.map_err(|message| error(text, message))
        }
        None => render_here(text, &scope.value(), limit),
    }
}

fn render_here(text: &str, scope: &minijinja::Value, limit: usize) -> Result<String, ExprError> {
    let template = environment().template_from_str(text).map_err(|e| error(text, e))?;
    let mut out = CappedBuffer { bytes: Vec::new(), limit };
    match template.render_captured_to(scope.clone(), &mut out) {
        Ok(_) => String::from_utf8(out.bytes).map_err(|e| error(text, e)),
        Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => Err(too_large(text, limit)),
        Err(e) => Err(engine_error(text, e)),
    }
}

/// Evaluates a condition with Jinja truthiness (empty lists, `0`, `""`,
/// `none` and `false` are false).
pub fn eval_condition(expr: &str, scope: &Value) -> Result<bool, ExprError> {
    eval_condition_in(expr, &Scope::from(scope))
}

/// [`eval_condition`] in a [`Scope`].
pub fn eval_condition_in(expr: &str, scope: &Scope) -> Result<bool, ExprError> {
    let text = bare(expr);
    match sandbox_for(Mode::Condition, text) {
        Some(sandbox) => {
            let truth = sandbox.evaluate(Mode::Condition, text, &scope.json_for(Mode::Condition, text), 8);
            Ok(truth.map_err(|message| error(text, message))? == "true")
        }
        None => condition_here(text, &scope.value()),
    }
}

fn condition_here(text: &str, scope: &minijinja::Value) -> Result<bool, ExprError> {
    let compiled = environment().compile_expression_owned(text.to_string()).map_err(|e| error(text, e))?;
    let value = compiled.eval(scope.clone()).map_err(|e| engine_error(text, e))?;
    Ok(value.is_true())
}

/// Evaluates `source` in this process, whatever it is: what the template
/// sandbox runs inside its WebAssembly component. `scope` is a JSON object;
/// the result is as [`Sandbox::evaluate`] gives it.
pub fn evaluate_unsandboxed(mode: Mode, source: &str, scope: &str, limit: usize) -> Result<String, String> {
    let scope: Value = serde_json::from_str(scope).map_err(|e| format!("the template's scope is not JSON: {e}"))?;
    let scope = Scope::from(&scope).value();
    let result = match mode {
        Mode::Expression => eval_here(source, &scope, limit).map(|(value, _)| value.to_string()),
        Mode::Condition => condition_here(source, &scope).map(|truth| truth.to_string()),
        Mode::Text => render_here(source, &scope, limit),
    };
    result.map_err(|e| e.message)
}

/// Renders every template string inside a JSON value. Each template has a
/// budget of operations, and the result must fit the limits on values
/// ([`limits::MAX_DEPTH`], [`MAX_VALUE_BYTES`]), which apply while it is
/// built.
pub fn render(template: &Value, scope: &Value) -> Result<Value, ExprError> {
    render_in(template, &Scope::from(scope))
}

/// [`render`] in a [`Scope`].
pub fn render_in(template: &Value, scope: &Scope) -> Result<Value, ExprError> {
    let mut budget = MAX_VALUE_BYTES;
    let value = render_within(template, scope, &mut budget)?;
    limits::check_value(&value, "the result", MAX_VALUE_BYTES).map_err(|e| error(&template_text(template), e))?;
    Ok(value)
}

/// `render`, spending `budget` bytes on the templates' results.
fn render_within(template: &Value, scope: &Scope, budget: &mut usize) -> Result<Value, ExprError> {
    Ok(match template {
        Value::String(text) if is_template(text) => {
            let (value, size) = match single_expression(text) {
                Some(expr) => eval_within(expr, scope, *budget)?,
                None => render_text(text, scope, *budget).map(|text| {
                    let size = text.len();
                    (Value::String(text), size)
                })?,
            };
            // Within the cap by construction (the sandbox's result is
            // checked against it too): what is left shrinks by it.
            *budget = budget.saturating_sub(size);
            value
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| render_within(v, scope, budget)).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_within(v, scope, budget)?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// A template value as text for an error message, cut short.
fn template_text(template: &Value) -> String {
    match template {
        Value::String(text) => text.clone(),
        other => limits::truncate_message(other.to_string(), 200),
    }
}

/// The variables a template (or, with `bare_expression`, an expression)
/// reads, as dotted paths such as `steps.fetch.output`. Fails on syntax
/// errors.
pub fn references(text: &str, bare_expression: bool) -> Result<BTreeSet<String>, ExprError> {
    let (mode, source) = reference_source(text, bare_expression);
    // Compiling folds constants, which for `(1,) * 100000000` alone builds
    // gigabytes: what is not bounded is compiled in the sandbox.
    if let Some(sandbox) = sandbox_for(mode, source) {
        let names = sandbox.references(text, bare_expression).map_err(|message| error(source, message))?;
        return Ok(names.into_iter().collect());
    }
    references_here(mode, source).map_err(|e| error(source, e))
}

/// [`references`] in this process, whatever the template: what the template
/// sandbox runs.
pub fn references_unsandboxed(text: &str, bare_expression: bool) -> Result<Vec<String>, String> {
    let (mode, source) = reference_source(text, bare_expression);
    references_here(mode, source).map(|names| names.into_iter().collect()).map_err(|e| e.to_string())
}

/// How [`references`] reads `text`: one expression (bare, or the whole of a
/// `{{ … }}`), or a text template.
fn reference_source(text: &str, bare_expression: bool) -> (Mode, &str) {
    match (bare_expression, single_expression(text)) {
        (true, _) => (Mode::Expression, bare(text)),
        (false, Some(expr)) => (Mode::Expression, expr),
        (false, None) => (Mode::Text, text),
    }
}

fn references_here(mode: Mode, source: &str) -> Result<BTreeSet<String>, minijinja::Error> {
    let env = Environment::new();
    let names = match mode {
        Mode::Expression | Mode::Condition => env.compile_expression(source)?.undeclared_variables(true),
        Mode::Text => env.template_from_str(source)?.undeclared_variables(true),
    };
    Ok(names.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_expressions_keep_their_json_type() {
        let scope = json!({ "input": { "n": 21, "tags": ["a", "b"] } });
        assert_eq!(render(&json!("{{ input.n * 2 }}"), &scope).unwrap(), json!(42));
        assert_eq!(render(&json!("{{ input.tags }}"), &scope).unwrap(), json!(["a", "b"]));
        assert_eq!(render(&json!("n={{ input.n }}"), &scope).unwrap(), json!("n=21"));
        assert_eq!(render(&json!({ "x": ["{{ input.n }}", 1] }), &scope).unwrap(), json!({ "x": [21, 1] }));
    }

    #[test]
    fn the_global_functions_exist() {
        let scope = json!({ "input": { "n": 3 } });
        assert_eq!(eval("range(input.n)", &scope).unwrap(), json!([0, 1, 2]));
        assert_eq!(eval("dict(a=1)", &scope).unwrap(), json!({ "a": 1 }));
        for name in GLOBAL_FUNCTIONS {
            assert_eq!(eval(&format!("{name} is defined"), &scope).unwrap(), json!(true), "{name}");
        }
    }

    #[test]
    fn undefined_names_are_errors() {
        let scope = json!({ "input": {} });
        assert!(render(&json!("{{ input.missing.deeper }}"), &scope).is_err());
        assert!(render(&json!("{{ nothing }}"), &scope).is_err());
    }

    #[test]
    fn conditions_use_truthiness() {
        let scope = json!({ "input": { "ok": true, "list": [] } });
        assert!(eval_condition("input.ok", &scope).unwrap());
        assert!(eval_condition("{{ input.ok }}", &scope).unwrap());
        assert!(!eval_condition("input.list", &scope).unwrap());
    }

    #[test]
    fn references_are_dotted_paths() {
        let refs = references("{{ steps.fetch.output.body }} and {{ input.name }}", false).unwrap();
        assert!(refs.iter().any(|r| r.starts_with("steps.fetch")), "{refs:?}");
        assert!(refs.iter().any(|r| r.starts_with("input")), "{refs:?}");
        assert!(references("{{ oops(", false).is_err());
    }

    #[test]
    fn templates_stop_at_their_budget_and_size_limit() {
        let scope = json!({ "input": { "n": 100_000 } });
        // Nested loops: 10^10 iterations are stopped by the budget.
        let looping = json!("{% for a in range(input.n) %}{% for b in range(input.n) %}.{% endfor %}{% endfor %}");
        let error = render(&looping, &scope).unwrap_err();
        assert!(error.message.contains("ran past its budget of 10000000 operations"), "{error}");
        // String and list multiplication are refused past the size limit, as
        // text and as one expression.
        for huge in ["x{{ 'a' * 50000000 }}", "{{ 'a' * 50000000 }}", "{{ ['abcdefgh'] * 10000000 }}"] {
            let error = render(&json!(huge), &scope).unwrap_err();
            assert!(error.message.contains("over the size limit of 4194304 bytes"), "{huge}: {error}");
        }
        // Many templates share one budget.
        let many = json!(["{{ 'a' * 3000000 }}", "{{ 'a' * 3000000 }}"]);
        assert!(render(&many, &scope).unwrap_err().message.contains("over the size limit"));
        // Nesting is limited like any value's.
        let deep = json!(format!("{{{{ {}1{} }}}}", "[".repeat(70), "]".repeat(70)));
        assert!(render(&deep, &scope).unwrap_err().message.contains("nests deeper than the limit of 64"));
    }
}
