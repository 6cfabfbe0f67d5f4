//! `/v1/connectors`: the connectors a tenant can use (the built-ins and its
//! own), with their actions and schemas.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_host::ConnectorInfo;

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, Path};

/// A connector build.
#[derive(Serialize, JsonSchema)]
pub struct ConnectorView {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `sha256:…` of its component: what runs pin.
    pub digest: String,
    /// One line about it.
    pub description: String,
    /// Its actions, with their input and output schemas.
    pub actions: Vec<ActionView>,
    /// The secrets it reads.
    pub secrets: Vec<String>,
    /// The hosts it may call.
    pub egress: Vec<String>,
}

/// An action.
#[derive(Serialize, JsonSchema)]
pub struct ActionView {
    /// Its name.
    pub name: String,
    /// The JSON Schema of its input.
    pub input_schema: Value,
    /// The JSON Schema of its output.
    pub output_schema: Value,
}

impl From<ConnectorInfo> for ConnectorView {
    fn from(info: ConnectorInfo) -> ConnectorView {
        let m = info.manifest;
        ConnectorView {
            name: m.name,
            version: m.version,
            digest: info.digest,
            description: m.description,
            actions: m
                .actions
                .into_iter()
                .map(|a| ActionView { name: a.name, input_schema: a.input_schema, output_schema: a.output_schema })
                .collect(),
            secrets: m.secrets,
            egress: m.egress,
        }
    }
}

/// The connectors a tenant can use.
#[derive(Serialize, JsonSchema)]
pub struct ConnectorList {
    /// By name, then version.
    pub connectors: Vec<ConnectorView>,
}

/// A connector's path.
#[derive(Deserialize, JsonSchema)]
pub struct NamePath {
    /// Its name.
    pub name: String,
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<ConnectorList>> {
    let tenant = caller.tenant(Action::Read)?;
    let connectors = state.engine().host().connectors(tenant);
    Ok(axum::Json(ConnectorList { connectors: connectors.into_iter().map(ConnectorView::from).collect() }))
}

async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(NamePath { name }): Path<NamePath>,
) -> ApiResult<axum::Json<ConnectorList>> {
    let tenant = caller.tenant(Action::Read)?;
    let builds: Vec<ConnectorView> = state
        .engine()
        .host()
        .connectors(tenant)
        .into_iter()
        .filter(|c| c.manifest.name == name)
        .map(ConnectorView::from)
        .collect();
    if builds.is_empty() {
        return Err(ApiError::not_found(format!("connector {name:?}")));
    }
    Ok(axum::Json(ConnectorList { connectors: builds }))
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route("/v1/connectors", get_with(list, |op| op.summary("List connectors").tag("connectors")))
        .api_route(
            "/v1/connectors/{name}",
            get_with(get, |op| op.summary("Inspect a connector").description("Every version of it.").tag("connectors")),
        )
}
