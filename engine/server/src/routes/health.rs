//! `/healthz` (the process answers) and `/readyz` (its database answers
//! and its schema is current), for load balancers and orchestrators.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;

use crate::AppState;

/// A probe's answer.
#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// `ok`, or what is wrong.
    pub status: String,
}

async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into() })
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Health>) {
    match state.engine().store().ready().await {
        Ok(()) => (StatusCode::OK, axum::Json(Health { status: "ok".into() })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status: e.to_string() }))
        }
    }
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route("/healthz", get_with(healthz, |op| op.summary("Alive").tag("health"))).api_route(
        "/readyz",
        get_with(readyz, |op| {
            op.summary("Ready").description("503 while the database is out of reach or not migrated.").tag("health")
        }),
    )
}
