//! The API's routes, one file per resource, and what they share: the
//! document's API-wide parts, the request id, the not-found answer.

pub mod connectors;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod runs;
pub mod tenants;
pub mod workflows;

use aide::openapi::SecurityScheme;
use aide::transform::TransformOpenApi;
use axum::extract::Request;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::{ApiError, ErrorBody};

/// The document's API-wide parts: how to authenticate, and the error shape
/// every route may answer with.
pub(crate) fn document(api: TransformOpenApi<'_>) -> TransformOpenApi<'_> {
    api.security_scheme(
        "api_key",
        SecurityScheme::Http {
            scheme: "bearer".into(),
            bearer_format: Some("weft_<id>_<secret>".into()),
            description: Some("An API key, sent as `Authorization: Bearer weft_…`.".into()),
            extensions: Default::default(),
        },
    )
    .default_response_with::<axum::Json<ErrorBody>, _>(|r| {
        r.description("An error: `{\"error\": {\"code\", \"message\", \"path\"}}`, with a stable code.")
    })
}

/// Any path the API does not have.
pub(crate) async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("{method} {}", uri.path()))
}

/// The header that carries a request's id, both ways.
const REQUEST_ID: &str = "x-request-id";

/// Gives each request an id (the caller's `x-request-id`, when it sends a
/// sane one), logs the request under it, and returns it in the response.
pub(crate) async fn request_id(request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string());
    let span = tracing::info_span!("http.request", request_id = %id, %method, %path);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    // Unmatched paths share one label, so that probes cannot grow the series.
    metrics::request(method.as_str(), route.as_deref().unwrap_or("unmatched"), status, started.elapsed().as_secs_f64());
    span.in_scope(|| {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if status >= 500 {
            tracing::warn!(status, ms, "request answered");
        } else {
            tracing::info!(status, ms, "request answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// How many items a page holds when the caller does not say, and at most.
pub(crate) const PAGE: i64 = 50;
pub(crate) const MAX_PAGE: i64 = 500;

/// A page size as asked, checked.
pub(crate) fn page_size(limit: Option<i64>) -> crate::ApiResult<i64> {
    match limit {
        None => Ok(PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid_request(format!("`limit` must be from 1 to {MAX_PAGE}")).at("limit")),
    }
}
