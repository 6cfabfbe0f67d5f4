//! The built-in `transform` connector: pure data actions that need no network.
//!
//! - `echo` returns its input unchanged.
//! - `double` returns `{"value": 2 * input.value}`.
//! - `fail` fails the step with the error kind it is given, for explicit
//!   failure branches and for exercising retry policies.

wit_bindgen::generate!({ path: "../../connectors-wit/wit", world: "connector" });

use serde_json::{Value, json};
use weft::connector::types::{Action, RateLimit};

struct Transform;

fn action(name: &str, description: &str, input: Value, output: Value) -> Action {
    Action {
        name: name.into(),
        description: description.into(),
        input_schema: input.to_string(),
        output_schema: output.to_string(),
        idempotent: true,
    }
}

impl Guest for Transform {
    fn describe() -> Manifest {
        let number = json!({
            "type": "object",
            "properties": { "value": { "type": "number" } },
            "required": ["value"],
        });
        Manifest {
            name: "transform".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Pure data actions: echo, arithmetic, explicit failure.".into(),
            actions: vec![
                action("echo", "Return the input unchanged.", json!({}), json!({})),
                action("double", "Return {\"value\": 2 * value}.", number.clone(), number),
                action(
                    "fail",
                    "Fail the step with the given error kind.",
                    json!({
                        "type": "object",
                        "properties": {
                            "kind": { "enum": ["invalid-input", "unauthorized", "rate-limited", "transient", "fatal"] },
                            "message": { "type": "string" },
                            "retry_after_ms": { "type": "integer", "minimum": 0 }
                        },
                        "required": ["kind"],
                        "additionalProperties": false
                    }),
                    json!(false),
                ),
            ],
            secrets: vec![],
            egress: vec![],
        }
    }

    fn invoke(_ctx: Context, action: String, input: String) -> Result<String, Error> {
        let input: Value =
            serde_json::from_str(&input).map_err(|e| Error::InvalidInput(format!("input is not JSON: {e}")))?;
        match action.as_str() {
            "echo" => Ok(input.to_string()),
            "double" => {
                let value = input
                    .get("value")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| Error::InvalidInput("`value` must be a number".into()))?;
                let doubled = if value.fract() == 0.0 && value.abs() < 1e15 {
                    json!((value as i64) * 2)
                } else {
                    json!(value * 2.0)
                };
                Ok(json!({ "value": doubled }).to_string())
            }
            "fail" => {
                let message = input.get("message").and_then(Value::as_str).unwrap_or("failed by request").to_string();
                Err(match input.get("kind").and_then(Value::as_str) {
                    Some("invalid-input") => Error::InvalidInput(message),
                    Some("unauthorized") => Error::Unauthorized(message),
                    Some("rate-limited") => Error::RateLimited(RateLimit {
                        retry_after_ms: input.get("retry_after_ms").and_then(Value::as_u64),
                        message,
                    }),
                    Some("transient") => Error::Transient(message),
                    Some("fatal") => Error::Fatal(message),
                    other => Error::InvalidInput(format!("unknown error kind {other:?}")),
                })
            }
            other => Err(Error::InvalidInput(format!("transform has no action `{other}`"))),
        }
    }
}

export!(Transform);
