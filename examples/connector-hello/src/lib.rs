//! The `hello` connector for Weft.
//!
//! Build: `weft connector build`
//! Look:  `weft connector inspect target/wasm32-wasip2/release/hello.wasm`
//! Try:   `weft connector test target/wasm32-wasip2/release/hello.wasm greet --input '{"name": "Ada"}'`

use serde::{Deserialize, Serialize};
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

/// The input of `greet`: its schema is generated from this type.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Greet {
    /// Who to greet.
    name: String,
    /// How many exclamation marks.
    #[serde(default)]
    excitement: u8,
}

/// The output of `greet`.
#[derive(Serialize, JsonSchema)]
struct Greeting {
    /// The greeting.
    message: String,
    /// The step's idempotency key: send it to APIs that deduplicate requests.
    idempotency_key: String,
}

fn greet(cx: &Context, input: Greet) -> Result<Greeting, Error> {
    if input.name.trim().is_empty() {
        return Err(Error::invalid_input("`name` must not be empty"));
    }
    let marks = "!".repeat(input.excitement.clamp(1, 5) as usize);
    Ok(Greeting { message: format!("Hello, {}{marks}", input.name), idempotency_key: cx.idempotency_key.clone() })
}

struct Plugin;

impl Connector for Plugin {
    fn manifest() -> Manifest {
        Manifest::new("hello", env!("CARGO_PKG_VERSION"), "Greets people (a Weft connector template).")
            .action(Action::new("greet", "Greet someone by name.", greet).idempotent())
        // Declare what the connector needs, for example:
        //     .secret("api_token")
        //     .oauth("github", &["repo"])
        //     .egress("api.example.com")
    }
}

weft_sdk::export!(Plugin);
