//! The built-in `transform` connector: pure data actions that need no network.
//!
//! - `echo` returns its input unchanged.
//! - `double` returns `{"value": 2 * input.value}`.
//! - `fail` fails the step with the error kind it is given, for explicit
//!   failure branches and for exercising retry policies.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

/// A number to double.
#[derive(Deserialize, JsonSchema)]
struct Operand {
    /// The number.
    value: f64,
}

/// The doubled number; an integer when the input was one.
#[derive(Serialize, JsonSchema)]
struct Doubled {
    /// Twice the input.
    value: Number,
}

/// Which error to fail with.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Failure {
    /// The error kind.
    kind: Kind,
    /// The error message.
    #[serde(default)]
    message: Option<String>,
    /// For `rate-limited`: how long to ask the engine to wait.
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    InvalidInput,
    Unauthorized,
    RateLimited,
    Transient,
    Fatal,
}

/// `fail` never returns a value.
#[derive(Serialize, JsonSchema)]
enum Never {}

fn echo(_cx: &Context, input: Value) -> Result<Value, Error> {
    Ok(input)
}

fn double(_cx: &Context, input: Operand) -> Result<Doubled, Error> {
    let value = input.value;
    let doubled = if value.fract() == 0.0 && value.abs() < 1e15 {
        Number::from((value as i64) * 2)
    } else {
        Number::from_f64(value * 2.0).ok_or_else(|| Error::invalid_input("`value` doubled is not a finite number"))?
    };
    Ok(Doubled { value: doubled })
}

fn fail(_cx: &Context, input: Failure) -> Result<Never, Error> {
    let message = input.message.unwrap_or_else(|| "failed by request".into());
    Err(match input.kind {
        Kind::InvalidInput => Error::InvalidInput(message),
        Kind::Unauthorized => Error::Unauthorized(message),
        Kind::RateLimited => {
            Error::RateLimited { retry_after: input.retry_after_ms.map(Duration::from_millis), message }
        }
        Kind::Transient => Error::Transient(message),
        Kind::Fatal => Error::Fatal(message),
    })
}

struct Transform;

impl Connector for Transform {
    fn manifest() -> Manifest {
        Manifest::new("transform", env!("CARGO_PKG_VERSION"), "Pure data actions: echo, arithmetic, explicit failure.")
            .action(Action::new("echo", "Return the input unchanged.", echo).idempotent())
            .action(Action::new("double", "Return {\"value\": 2 * value}.", double).idempotent())
            .action(Action::new("fail", "Fail the step with the given error kind.", fail).idempotent())
    }
}

weft_sdk::export!(Transform);
