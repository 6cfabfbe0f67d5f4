//! The built-in `http` connector: one outbound HTTP request per step, over
//! wasi:http.
//!
//! The step's idempotency key goes out in the `Idempotency-Key` header (the
//! header name can be changed or turned off with `idempotency_header`), so an
//! upstream that deduplicates sees a retried attempt as the same request.

wit_bindgen::generate!({ path: "../../connectors-wit/wit", world: "connector" });

use std::io::{Read, Write};

use serde_json::{Map, Value, json};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use weft::connector::types::{Action, RateLimit};

/// Responses larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 8 << 20;

struct Http;

fn input_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "url": { "type": "string", "description": "http:// or https:// URL" },
            "method": { "type": "string", "default": "GET" },
            "headers": { "type": "object", "additionalProperties": { "type": "string" } },
            "body": { "description": "A string is sent as is; any other JSON value is sent as application/json." },
            "idempotency_header": {
                "type": ["string", "null"],
                "default": "Idempotency-Key",
                "description": "Header that carries the step's idempotency key; null sends none."
            },
            "fail_on_status": {
                "type": "boolean",
                "default": true,
                "description": "Fail the step on a non-2xx status (429 and 5xx are retryable)."
            }
        },
        "required": ["url"],
        "additionalProperties": false
    })
}

fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "status": { "type": "integer" },
            "headers": { "type": "object", "additionalProperties": { "type": "string" } },
            "body": { "description": "Parsed JSON when the response says application/json, else text." }
        },
        "required": ["status", "headers", "body"]
    })
}

impl Guest for Http {
    fn describe() -> Manifest {
        Manifest {
            name: "http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Send an HTTP request and return the response.".into(),
            actions: vec![Action {
                name: "request".into(),
                description: "Send one HTTP request.".into(),
                input_schema: input_schema().to_string(),
                output_schema: output_schema().to_string(),
                idempotent: false,
            }],
            secrets: vec![],
            egress: vec!["*".into()],
        }
    }

    fn invoke(ctx: Context, action: String, input: String) -> Result<String, Error> {
        if action != "request" {
            return Err(Error::InvalidInput(format!("http has no action `{action}`")));
        }
        let input: Map<String, Value> = serde_json::from_str(&input)
            .map_err(|e| Error::InvalidInput(format!("input must be a JSON object: {e}")))?;
        request(&ctx, &input).map(|v| v.to_string())
    }
}

fn request(ctx: &Context, input: &Map<String, Value>) -> Result<Value, Error> {
    let url =
        input.get("url").and_then(Value::as_str).ok_or_else(|| Error::InvalidInput("`url` is required".into()))?;
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(Error::InvalidInput(format!("`url` must start with http:// or https://, got {url:?}")));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let method = match input.get("method").and_then(Value::as_str).unwrap_or("GET").to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };

    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(map) = input.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            let value =
                value.as_str().ok_or_else(|| Error::InvalidInput(format!("header `{name}` must be a string")))?;
            headers.push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
        }
    }
    let idempotency_header = match input.get("idempotency_header") {
        None => Some("idempotency-key".to_string()),
        Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.to_ascii_lowercase()),
        Some(_) => return Err(Error::InvalidInput("`idempotency_header` must be a string or null".into())),
    };
    if let Some(name) = idempotency_header {
        if !headers.iter().any(|(n, _)| *n == name) {
            headers.push((name, ctx.idempotency_key.as_bytes().to_vec()));
        }
    }
    let body = match input.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.as_bytes().to_vec()),
        Some(other) => {
            if !headers.iter().any(|(n, _)| n == "content-type") {
                headers.push(("content-type".into(), b"application/json".to_vec()));
            }
            Some(other.to_string().into_bytes())
        }
    };

    let fields = Fields::from_list(&headers).map_err(|e| Error::InvalidInput(format!("bad header: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    request.set_method(&method).map_err(|()| Error::InvalidInput("bad method".into()))?;
    request.set_scheme(Some(&scheme)).map_err(|()| Error::InvalidInput("bad scheme".into()))?;
    request.set_authority(Some(authority)).map_err(|()| Error::InvalidInput(format!("bad host {authority:?}")))?;
    request.set_path_with_query(Some(path)).map_err(|()| Error::InvalidInput(format!("bad path {path:?}")))?;
    let outgoing_body = request.body().map_err(|()| Error::Fatal("request body taken twice".into()))?;

    let pending =
        outgoing_handler::handle(request, None).map_err(|e| Error::Transient(format!("request refused: {e:?}")))?;
    {
        let mut stream = outgoing_body.write().map_err(|()| Error::Fatal("body stream taken twice".into()))?;
        if let Some(bytes) = &body {
            stream.write_all(bytes).map_err(|e| Error::Transient(format!("sending body: {e}")))?;
            stream.flush().map_err(|e| Error::Transient(format!("sending body: {e}")))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| Error::Transient(format!("finishing body: {e:?}")))?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(Error::Transient(format!("request to {authority} failed: {code:?}"))),
        Some(Err(())) | None => return Err(Error::Fatal("response was already taken".into())),
    };

    let status = response.status();
    let mut response_headers = Map::new();
    let mut is_json = false;
    let mut retry_after_ms = None;
    for (name, value) in response.headers().entries() {
        let value = String::from_utf8_lossy(&value).into_owned();
        if name.eq_ignore_ascii_case("content-type") && value.contains("json") {
            is_json = true;
        }
        if name.eq_ignore_ascii_case("retry-after") {
            retry_after_ms = value.trim().parse::<u64>().ok().map(|s| s * 1000);
        }
        response_headers.insert(name.to_ascii_lowercase(), Value::String(value));
    }
    let incoming = response.consume().map_err(|()| Error::Fatal("response body taken twice".into()))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| Error::Fatal("response stream taken twice".into()))?;
        let mut limited = stream.take(MAX_RESPONSE_BYTES as u64 + 1);
        limited.read_to_end(&mut bytes).map_err(|e| Error::Transient(format!("reading response: {e}")))?;
    }
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(Error::Fatal(format!("response body is larger than {MAX_RESPONSE_BYTES} bytes")));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = if is_json { serde_json::from_str(&text).unwrap_or(Value::String(text)) } else { Value::String(text) };

    let fail_on_status = input.get("fail_on_status").and_then(Value::as_bool).unwrap_or(true);
    if fail_on_status && !(200..300).contains(&status) {
        let message = format!("{authority} answered HTTP {status}");
        return Err(match status {
            429 => Error::RateLimited(RateLimit { retry_after_ms, message }),
            401 | 403 => Error::Unauthorized(message),
            408 | 500..=599 => Error::Transient(message),
            _ => Error::Fatal(message),
        });
    }
    Ok(json!({ "status": status, "headers": response_headers, "body": body }))
}

export!(Http);
