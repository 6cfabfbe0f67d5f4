//! Write a Weft connector: typed actions in Rust, compiled to a WebAssembly
//! component that Weft runs in a sandbox, one action per call.
//!
//! ```
//! use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};
//! use serde::{Deserialize, Serialize};
//!
//! /// The input of `greet`.
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Greet {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! /// The output of `greet`.
//! #[derive(Serialize, JsonSchema)]
//! struct Greeting {
//!     message: String,
//! }
//!
//! fn greet(_cx: &Context, input: Greet) -> Result<Greeting, Error> {
//!     if input.name.is_empty() {
//!         return Err(Error::invalid_input("`name` must not be empty"));
//!     }
//!     Ok(Greeting { message: format!("Hello, {}!", input.name) })
//! }
//!
//! struct Hello;
//!
//! impl Connector for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "0.1.0", "Greets people.")
//!             .action(Action::new("greet", "Greet someone by name.", greet).idempotent())
//!     }
//! }
//!
//! weft_sdk::export!(Hello);
//! ```
//!
//! Build it with `weft connector build` (or `cargo build --release --target
//! wasm32-wasip2`), look at it with `weft connector inspect`, and call it with
//! `weft connector test FILE.wasm greet --input '{"name": "Ada"}'`.
//!
//! - An action is a function `fn(&Context, I) -> Result<O, Error>`. `I` and
//!   `O` derive serde and [`JsonSchema`], so the manifest's schemas come from
//!   the types; a bad input is refused with the JSON path of the problem.
//! - [`Context`] says which run, step and attempt is calling, carries the
//!   step's idempotency key, and gives access to declared secrets and OAuth
//!   tokens.
//! - [`http`] sends requests through the host (wasi:http), which lets them out
//!   only to the hosts in the manifest's egress list.
//! - [`Error`] is what the engine's retry policy reads;
//!   [`http::Response::error_for_status`] picks the right case for a status.

#![deny(missing_docs)]

mod error;
pub mod http;
pub mod log;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::Error;
pub use schemars::JsonSchema;

/// A connector: one type that describes its actions. Export it with
/// [`export!`].
pub trait Connector {
    /// The connector's name, version, actions and what it needs. Called for
    /// every call, so keep it cheap: schemas are generated only when the host
    /// asks for the manifest.
    fn manifest() -> Manifest;
}

/// What a connector declares about itself.
pub struct Manifest {
    name: String,
    version: String,
    description: String,
    actions: Vec<Action>,
    secrets: Vec<String>,
    oauth: Vec<(String, Vec<String>)>,
    egress: Vec<String>,
}

impl Manifest {
    /// A manifest with no actions, secrets or egress yet. `version` is usually
    /// `env!("CARGO_PKG_VERSION")`.
    pub fn new(name: impl Into<String>, version: impl Into<String>, description: impl Into<String>) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            actions: Vec::new(),
            secrets: Vec::new(),
            oauth: Vec::new(),
            egress: Vec::new(),
        }
    }

    /// Adds an action.
    pub fn action(mut self, action: Action) -> Manifest {
        self.actions.push(action);
        self
    }

    /// Declares a secret the connector may look up with [`Context::secret`].
    pub fn secret(mut self, name: impl Into<String>) -> Manifest {
        self.secrets.push(name.into());
        self
    }

    /// Declares an OAuth provider and the scopes to ask for; see
    /// [`Context::oauth_token`].
    pub fn oauth(mut self, provider: impl Into<String>, scopes: &[&str]) -> Manifest {
        self.oauth.push((provider.into(), scopes.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// Allows requests to `host` (`api.example.com`, or `*.example.com` for
    /// its subdomains; `*` for any host the tenant's policy allows).
    pub fn egress(mut self, host: impl Into<String>) -> Manifest {
        self.egress.push(host.into());
        self
    }
}

type Handler = Box<dyn Fn(&Context, &str) -> Result<String, Error>>;

/// One action: a name, a description and a typed function.
pub struct Action {
    name: String,
    description: String,
    idempotent: bool,
    run: Handler,
    schemas: fn() -> (String, String),
}

impl Action {
    /// An action that calls `handler` with the input parsed as `I` and
    /// returns its `O` as JSON. The manifest's input and output schemas are
    /// generated from `I` and `O`.
    pub fn new<I, O>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: fn(&Context, I) -> Result<O, Error>,
    ) -> Action
    where
        I: DeserializeOwned + JsonSchema + 'static,
        O: Serialize + JsonSchema + 'static,
    {
        Action {
            name: name.into(),
            description: description.into(),
            idempotent: false,
            run: Box::new(move |cx, input| {
                let input = parse_input::<I>(input)?;
                let output = handler(cx, input)?;
                serde_json::to_string(&output)
                    .map_err(|e| Error::fatal(format!("the action's output does not serialize to JSON: {e}")))
            }),
            schemas: schemas::<I, O>,
        }
    }

    /// Marks the action idempotent: running it twice with the same input has
    /// the effect of running it once.
    pub fn idempotent(mut self) -> Action {
        self.idempotent = true;
        self
    }
}

/// Parses an action's input, naming the JSON path of the first problem.
fn parse_input<I: DeserializeOwned>(input: &str) -> Result<I, Error> {
    let mut deserializer = serde_json::Deserializer::from_str(input);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            Error::invalid_input(format!("input: {inner}"))
        } else {
            Error::invalid_input(format!("input.{path}: {inner}"))
        }
    })
}

fn schemas<I: JsonSchema, O: JsonSchema>() -> (String, String) {
    (schemars::schema_for!(I).as_value().to_string(), schemars::schema_for!(O).as_value().to_string())
}

/// Who is calling: the run, step and attempt, and the step's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The tenant (workspace) that owns the run.
    pub tenant: String,
    /// The run's id.
    pub run_id: String,
    /// The step's id in the workflow.
    pub step_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The same for every attempt of this step iteration: send it to APIs
    /// that deduplicate requests (see [`http::Request::idempotency_key`]).
    pub idempotency_key: String,
}

impl Context {
    /// A declared secret. The handle reveals nothing until
    /// [`Secret::reveal`]; an undeclared name is refused.
    pub fn secret(&self, name: &str) -> Result<Secret, Error> {
        __private::bindings::weft::connector::secrets::get(name).map(Secret).map_err(Error::from)
    }

    /// A credential for APIs that take either a static token or OAuth: the
    /// secret `secret` when the tenant has set it, else an OAuth token for
    /// `provider`. Both must be declared in the manifest.
    pub fn secret_or_oauth(&self, secret: &str, provider: &str) -> Result<String, Error> {
        match self.secret(secret).and_then(|s| s.reveal()) {
            Err(Error::Unauthorized(not_set)) => self.oauth_token(provider).map_err(|e| match e {
                Error::Unauthorized(no_token) => Error::Unauthorized(format!("{not_set}; and {no_token}")),
                other => other,
            }),
            other => other,
        }
    }

    /// A current OAuth access token for a declared provider, for the run's
    /// tenant.
    pub fn oauth_token(&self, provider: &str) -> Result<String, Error> {
        __private::bindings::weft::connector::oauth::access_token(provider).map_err(Error::from)
    }
}

/// A handle to one secret; see [`Context::secret`].
pub struct Secret(__private::bindings::weft::connector::secrets::Secret);

impl Secret {
    /// The secret's name.
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// The value. The host records each reveal in its audit trail, so reveal
    /// once per call and only when the value is about to be used.
    pub fn reveal(&self) -> Result<String, Error> {
        self.0.reveal().map_err(Error::from)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Secret").field(&self.name()).finish()
    }
}

/// Exports a [`Connector`] as the component's `describe` and `invoke`.
/// Use it once, in the crate's `lib.rs`.
#[macro_export]
macro_rules! export {
    ($connector:ty) => {
        #[doc(hidden)]
        struct __WeftConnector;

        impl $crate::__private::Guest for __WeftConnector {
            fn describe() -> $crate::__private::WitManifest {
                $crate::__private::describe::<$connector>()
            }

            fn invoke(
                ctx: $crate::__private::WitContext,
                action: ::std::string::String,
                input: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::__private::WitError> {
                $crate::__private::invoke::<$connector>(ctx, &action, &input)
            }
        }

        $crate::__private::bindings::__export_connector!(__WeftConnector with_types_in $crate::__private::bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    //! What [`export!`](crate::export) expands to; not a stable API.

    use super::{Connector, Context, Error};

    #[allow(missing_docs, unsafe_code, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../connectors-wit/wit",
            world: "connector",
            with: {
                "wasi:http/types@0.2.12": wasip2::http::types,
                "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
                "wasi:io/poll@0.2.12": wasip2::io::poll,
                "wasi:io/error@0.2.12": wasip2::io::error,
                "wasi:io/streams@0.2.12": wasip2::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            },
            pub_export_macro: true,
            export_macro_name: "__export_connector",
            default_bindings_module: "weft_sdk::__private::bindings",
        });
    }

    pub use bindings::Guest;
    use bindings::weft::connector::types as wit;
    pub use bindings::weft::connector::types::{Context as WitContext, Error as WitError, Manifest as WitManifest};

    /// The manifest, with schemas generated.
    pub fn describe<C: Connector>() -> WitManifest {
        let m = C::manifest();
        WitManifest {
            name: m.name,
            version: m.version,
            description: m.description,
            actions: m
                .actions
                .into_iter()
                .map(|a| {
                    let (input_schema, output_schema) = (a.schemas)();
                    wit::Action {
                        name: a.name,
                        description: a.description,
                        input_schema,
                        output_schema,
                        idempotent: a.idempotent,
                    }
                })
                .collect(),
            secrets: m.secrets,
            oauth: m.oauth.into_iter().map(|(provider, scopes)| wit::OauthNeed { provider, scopes }).collect(),
            egress: m.egress,
        }
    }

    /// Runs one action.
    pub fn invoke<C: Connector>(ctx: WitContext, action: &str, input: &str) -> Result<String, WitError> {
        let manifest = C::manifest();
        let Some(found) = manifest.actions.iter().find(|a| a.name == action) else {
            let names: Vec<&str> = manifest.actions.iter().map(|a| a.name.as_str()).collect();
            return Err(Error::invalid_input(format!(
                "{} has no action `{action}`; it has {}",
                manifest.name,
                names.join(", ")
            ))
            .into());
        };
        let cx = Context {
            tenant: ctx.tenant,
            run_id: ctx.run_id,
            step_id: ctx.step_id,
            attempt: ctx.attempt,
            idempotency_key: ctx.idempotency_key,
        };
        (found.run)(&cx, input).map_err(WitError::from)
    }
}
