//! One error shape for the whole API, `{"error": {"code", "message",
//! "path"}}`, with stable codes; and the extractors whose rejections take
//! that shape too (a body that is not JSON, a field that is unknown, a
//! query that does not parse).
//!
//! A client's mistake is a 4xx that says what to change. A server fault
//! is a 5xx that says little; the real error goes to the log with the
//! request id.

use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::{OperationInput, OperationOutput};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The body of every error response.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// A stable code to branch on, e.g. `not_found`, `invalid_request`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Where in the request: a JSON path into the body (`$.input.name`) or
    /// a query or path parameter's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For a workflow that does not validate: every problem, each with its
    /// JSON path and line:column in the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<Problem>>,
}

/// One problem in a workflow's source.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Problem {
    /// The JSON path of the offending value.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// Every problem of a failed load.
    pub fn all(diagnostics: &weft_workflows::Diagnostics) -> Vec<Problem> {
        diagnostics
            .items
            .iter()
            .map(|d| Problem { path: d.path.to_string(), line: d.line, column: d.column, message: d.message.clone() })
            .collect()
    }
}

/// An error response. Build one with the constructor named after its code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    path: Option<String>,
    diagnostics: Option<Vec<Problem>>,
    /// For a 429: whole seconds until a request would pass.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), path: None, diagnostics: None, retry_after: None }
    }

    /// Names where in the request the problem is.
    pub fn at(mut self, path: impl Into<String>) -> ApiError {
        self.path = Some(path.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// 400 `malformed_json`: the body is not JSON.
    pub fn malformed_json(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 400 `invalid_request`: the request's shape is wrong (an unknown or
    /// missing field, a wrong type, a bad parameter).
    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 400 `invalid_cursor`: a page cursor this server did not give.
    pub fn invalid_cursor() -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", "the cursor is not one this API returned").at("cursor")
    }

    /// 401 `unauthenticated`: no key, or one that is unknown or revoked.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403 `forbidden`: the key's role may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`. Another tenant's things are not found either.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{} not found", what.into()))
    }

    /// 409 with `code`: the request conflicts with what is stored.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// 413 `payload_too_large`.
    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 `rate_limited`: over the `scope`'s rate; `Retry-After` says when
    /// one more request would pass.
    pub fn rate_limited(scope: &str, wait: std::time::Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("over this {scope}'s request rate; retry in {seconds} s"),
        );
        error.retry_after = Some(seconds);
        error
    }

    /// 422 with `code`: well-formed, but not acceptable.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 422 `invalid_workflow`, with every problem.
    pub fn invalid_workflow(diagnostics: &weft_workflows::Diagnostics) -> ApiError {
        let problems = Problem::all(diagnostics);
        let count = problems.len();
        let mut error = ApiError::unprocessable(
            "invalid_workflow",
            format!("the workflow has {count} problem{}", if count == 1 { "" } else { "s" }),
        );
        error.path = problems.first().map(|p| p.path.clone());
        error.diagnostics = Some(problems);
        error
    }

    /// 503 `unavailable`: the database cannot be reached now; try again.
    pub fn unavailable() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the database cannot be reached; try again")
    }

    /// 500 `internal`: says nothing more; the cause is logged.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server failed; the cause is in its log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                path: self.path,
                diagnostics: self.diagnostics,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<aide::openapi::Response> {
        axum::Json::<ErrorBody>::operation_response(ctx, operation)
    }
}

impl From<weft_store::Error> for ApiError {
    fn from(e: weft_store::Error) -> ApiError {
        use weft_store::Error as E;
        match e {
            E::RunNotFound(id) => ApiError::not_found(format!("run {id:?}")),
            E::AmbiguousRun { prefix, .. } => ApiError::not_found(format!("run {prefix:?}")),
            E::TenantExists(id) => ApiError::conflict("tenant_exists", format!("a tenant with id {id:?} exists")),
            E::IdempotencyKeyUsed(key) => {
                ApiError::conflict("idempotency_key_used", format!("idempotency key {key:?} is taken"))
            }
            e @ E::WorkflowDeprecated(_) => ApiError::conflict("workflow_deprecated", e.to_string()).at("$.workflow"),
            e @ E::ConnectorConflict { .. } => ApiError::conflict("connector_conflict", e.to_string()),
            e @ E::TenantMoving(_) => {
                let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "tenant_moving", e.to_string());
                error.retry_after = Some(3);
                error
            }
            E::TenantNotFound(id) => ApiError::not_found(format!("tenant {id:?}")),
            e @ E::TenantBusy { .. } => ApiError::conflict("tenant_busy", e.to_string()),
            e @ E::MoveAbandoned(_) => ApiError::conflict("move_abandoned", e.to_string()),
            e @ E::TooManyRunning { .. } => {
                let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "plan_limit", e.to_string());
                error.retry_after = Some(1);
                error
            }
            E::Connect { .. } | E::Closed => ApiError::unavailable(),
            E::Database(ref db) if is_unavailable(db) => ApiError::unavailable(),
            other => ApiError::internal(&other),
        }
    }
}

/// Whether a database error means the database is out of reach (a restart,
/// a full pool) rather than that a statement failed.
fn is_unavailable(e: &weft_store::SqlxError) -> bool {
    use weft_store::SqlxError as E;
    matches!(e, E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed)
}

impl From<weft_runtime::Error> for ApiError {
    fn from(e: weft_runtime::Error) -> ApiError {
        use weft_runtime::Error as E;
        match e {
            E::Store(e) => e.into(),
            e @ E::InvalidInput(_) => ApiError::unprocessable("invalid_input", e.to_string()).at("$.input"),
            E::Limit(e) => ApiError::unprocessable("value_too_large", e.to_string()),
            e @ E::UnknownConnector(_) => ApiError::unprocessable("unknown_connector", e.to_string()),
            e @ E::UnknownSignal { .. } => ApiError::unprocessable("unknown_signal", e.to_string()).at("$.name"),
            e @ E::Finished { .. } => ApiError::conflict("run_finished", e.to_string()),
            e @ E::NotFinished { .. } => ApiError::conflict("run_not_finished", e.to_string()),
            e @ E::Retry { .. } => ApiError::conflict("retry_refused", e.to_string()),
            e @ E::LeaseHeld { .. } => ApiError::conflict("run_busy", e.to_string()),
            e @ E::PinnedConnectorMissing { .. } => ApiError::conflict("connector_missing", e.to_string()),
            e @ E::Component(_) => ApiError::unprocessable("invalid_component", e.to_string()),
            e @ E::PlanLimit { .. } => ApiError::new(StatusCode::FORBIDDEN, "plan_limit", e.to_string()),
            e @ E::UnknownAction { .. } => ApiError::unprocessable("unknown_action", e.to_string()),
            e @ E::InvalidActionInput(_) => ApiError::unprocessable("invalid_input", e.to_string()).at("$.input"),
            e @ E::Definition { .. } => ApiError::internal(&e),
        }
    }
}

/// A JSON body. Unlike axum's, every rejection is an [`ApiError`]: a body
/// that is not JSON (with line:column), a field that is unknown, missing or
/// of the wrong type (with its JSON path), a body over the size limit.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Json<T>, ApiError> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| body_rejection(e, "the request body is over the size limit"))?;
        parse_json(&bytes).map(Json)
    }
}

/// The error for a body that could not be read: `too_large` when it is
/// over the route's limit.
pub fn body_rejection(e: BytesRejection, too_large: &str) -> ApiError {
    match e {
        BytesRejection::FailedToBufferBody(ref inner) if inner.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large(too_large)
        }
        other => ApiError::invalid_request(other.body_text()),
    }
}

/// An optional JSON body: none when the request has no body at all.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Json<T>>, ApiError> {
        let bytes = <Json<serde_json::Value> as FromRequest<S>>::from_request(req, state).await;
        match bytes {
            Err(e) if e.code() == "malformed_json" && e.message.starts_with("the request body is empty") => Ok(None),
            Err(e) => Err(e),
            Ok(Json(value)) => serde_path_to_error::deserialize(value).map(|v| Some(Json(v))).map_err(|e| {
                let path = json_path(e.path());
                ApiError::invalid_request(e.into_inner().to_string()).at(path)
            }),
        }
    }
}

/// Parses a JSON body into `T`, naming where it went wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed_json("the request body is empty; send a JSON object"));
    }
    let not_json = |e: serde_json::Error| ApiError::malformed_json(format!("the request body is not JSON: {e}"));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = json_path(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::invalid_request(inner.to_string()).at(path),
            _ => not_json(inner),
        }
    })?;
    de.end().map_err(not_json)?;
    Ok(value)
}

/// A serde path as a JSON path from the body's root (`$.input.name`).
fn json_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::from("$");
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                out.push('.');
                out.push_str(key);
            }
            serde_path_to_error::Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

impl<T: JsonSchema> OperationInput for Json<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
    }
}

/// Query parameters, rejected as an [`ApiError`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e: QueryRejection| ApiError::invalid_request(e.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Query::<T>::operation_input(ctx, operation);
    }
}

/// Path parameters, rejected as an [`ApiError`].
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| ApiError::invalid_request(e.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for Path<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Path::<T>::operation_input(ctx, operation);
    }
}

/// `Result` with the API's error.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: u32,
    }

    #[test]
    fn a_body_error_names_its_code_and_place() {
        let e = parse_json::<Body>(br#"{"name": "a", "items": [{"n": 1}, {"n": "x"}]}"#).unwrap_err();
        assert_eq!((e.code(), e.path.as_deref()), ("invalid_request", Some("$.items[1].n")));
        let e = parse_json::<Body>(br#"{"name": "a", "items": [], "extra": 1}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(e.message.contains("unknown field `extra`"), "{}", e.message);
        let e = parse_json::<Body>(b"{\"name\": \n 12,").unwrap_err();
        assert_eq!(e.code(), "invalid_request", "a wrong type is the request's shape");
        let e = parse_json::<Body>(b"{\"name\": \"a\",\n ]").unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        assert!(e.message.contains("line 2 column 2"), "{}", e.message);
        let e = parse_json::<Body>(b"  ").unwrap_err();
        assert_eq!(e.code(), "malformed_json");
        let e = parse_json::<Body>(br#"{"name": "a", "items": []} trailing"#).unwrap_err();
        assert_eq!(e.code(), "malformed_json");
    }
}
