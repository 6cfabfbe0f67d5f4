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

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// An expression or template failed to compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (in `{source_text}`)")]
pub struct ExprError {
    /// What went wrong.
    pub message: String,
    /// The template or expression text.
    pub source_text: String,
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

fn scope_value(scope: &Value) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(scope))
}

fn error(source_text: &str, err: impl std::fmt::Display) -> ExprError {
    ExprError { message: err.to_string(), source_text: source_text.to_string() }
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
    let text = bare(expr);
    let compiled = environment().compile_expression_owned(text.to_string()).map_err(|e| error(text, e))?;
    let value = compiled.eval(scope_value(scope)).map_err(|e| error(text, e))?;
    if value.is_undefined() {
        return Err(error(text, "the expression is undefined"));
    }
    serde_json::to_value(&value).map_err(|e| error(text, e))
}

/// Evaluates a condition with Jinja truthiness (empty lists, `0`, `""`,
/// `none` and `false` are false).
pub fn eval_condition(expr: &str, scope: &Value) -> Result<bool, ExprError> {
    let text = bare(expr);
    let compiled = environment().compile_expression_owned(text.to_string()).map_err(|e| error(text, e))?;
    let value = compiled.eval(scope_value(scope)).map_err(|e| error(text, e))?;
    Ok(value.is_true())
}

/// Renders every template string inside a JSON value.
pub fn render(template: &Value, scope: &Value) -> Result<Value, ExprError> {
    Ok(match template {
        Value::String(text) if is_template(text) => match single_expression(text) {
            Some(expr) => eval(expr, scope)?,
            None => Value::String(environment().render_str(text, scope_value(scope)).map_err(|e| error(text, e))?),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, scope)).collect::<Result<_, _>>()?),
        Value::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), render(v, scope)?))).collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// The variables a template (or, with `bare_expression`, an expression)
/// reads, as dotted paths such as `steps.fetch.output`. Fails on syntax
/// errors.
pub fn references(text: &str, bare_expression: bool) -> Result<BTreeSet<String>, ExprError> {
    let env = Environment::new();
    let names = match (bare_expression, single_expression(text)) {
        (true, _) => {
            let expr = bare(text);
            env.compile_expression(expr).map_err(|e| error(expr, e))?.undeclared_variables(true)
        }
        (false, Some(expr)) => env.compile_expression(expr).map_err(|e| error(expr, e))?.undeclared_variables(true),
        (false, None) => env.template_from_str(text).map_err(|e| error(text, e))?.undeclared_variables(true),
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
}
