//! The built-in `http` connector: one outbound HTTP request per step, over
//! wasi:http.
//!
//! The step's idempotency key goes out in the `Idempotency-Key` header (the
//! header name can be changed or turned off with `idempotency_header`), so an
//! upstream that deduplicates sees a retried attempt as the same request.
//!
//! Credentials come from secrets, not from the step's input: `bearer_secret`
//! sends one as `Authorization: Bearer …` and `secret_headers` sends others
//! as header values. The connector declares the secret `*`: it may read any
//! secret stored for `http` (locally, `WEFT_SECRET_HTTP_<NAME>`), and the
//! host redacts their values from what the step returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

/// One HTTP request.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// An http:// or https:// URL.
    url: String,
    /// The method.
    #[serde(default = "get")]
    #[schemars(default = "get")]
    method: String,
    /// Request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The name of a secret to send as `Authorization: Bearer <value>`.
    #[serde(default)]
    bearer_secret: Option<String>,
    /// Headers whose values are secrets: header name to secret name.
    #[serde(default)]
    secret_headers: BTreeMap<String, String>,
    /// A string is sent as is; any other JSON value is sent as application/json.
    #[serde(default)]
    body: Option<Value>,
    /// Header that carries the step's idempotency key; null sends none.
    #[serde(default = "idempotency_key")]
    #[schemars(default = "idempotency_key")]
    idempotency_header: Option<String>,
    /// Fail the step on a non-2xx status (429 and 5xx are retryable).
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    fail_on_status: bool,
}

fn get() -> String {
    "GET".into()
}

fn idempotency_key() -> Option<String> {
    Some("Idempotency-Key".into())
}

fn yes() -> bool {
    true
}

/// The response.
#[derive(Serialize, JsonSchema)]
struct Output {
    /// The status code.
    status: u16,
    /// Response headers, names in lower case.
    headers: BTreeMap<String, String>,
    /// Parsed JSON when the response says application/json, else text.
    body: Value,
}

fn request(cx: &Context, input: Input) -> Result<Output, Error> {
    let mut request = Request::new(&input.method, &input.url);
    for (name, value) in &input.headers {
        request = request.header(name, value);
    }
    if let Some(secret) = &input.bearer_secret {
        request = request.bearer(&cx.secret(secret)?.reveal()?);
    }
    for (name, secret) in &input.secret_headers {
        request = request.header(name, cx.secret(secret)?.reveal()?);
    }
    if let Some(name) = &input.idempotency_header
        && !input.headers.keys().any(|n| n.eq_ignore_ascii_case(name))
    {
        request = request.idempotency_key_in(name, cx);
    }
    let has_content_type = input.headers.keys().any(|n| n.eq_ignore_ascii_case("content-type"));
    request = match input.body {
        None | Some(Value::Null) => request,
        Some(Value::String(text)) => request.body_raw(text.into_bytes()),
        Some(other) if has_content_type => request.body_raw(other.to_string().into_bytes()),
        Some(other) => request.json(&other),
    };
    let response = request.send()?;
    let response = if input.fail_on_status { response.error_for_status()? } else { response };
    let is_json = response.header("content-type").is_some_and(|t| t.contains("json"));
    let text = response.text();
    let body = if is_json { serde_json::from_str(&text).unwrap_or(Value::String(text)) } else { Value::String(text) };
    let headers = response.headers().iter().cloned().collect();
    Ok(Output { status: response.status, headers, body })
}

struct Http;

impl Connector for Http {
    fn manifest() -> Manifest {
        Manifest::new("http", env!("CARGO_PKG_VERSION"), "Send an HTTP request and return the response.")
            .action(Action::new("request", "Send one HTTP request.", request))
            .secret("*")
            .egress("*")
    }
}

weft_sdk::export!(Http);
