//! `/v1/connectors`: the connectors a tenant can use (the built-ins and its
//! own), with their actions and schemas.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::OperationInput;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_host::ConnectorInfo;

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, Path, body_rejection};

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
    state.engine().load_installed(tenant).await?;
    let connectors = state.engine().host().connectors(tenant);
    Ok(axum::Json(ConnectorList { connectors: connectors.into_iter().map(ConnectorView::from).collect() }))
}

async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(NamePath { name }): Path<NamePath>,
) -> ApiResult<axum::Json<ConnectorList>> {
    let tenant = caller.tenant(Action::Read)?;
    state.engine().load_installed(tenant).await?;
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

/// The largest component accepted for installing, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 64 * 1024 * 1024;

/// A component's bytes, the whole request body (`application/wasm`).
pub struct Component(bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for Component {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Component, ApiError> {
        let too_large = format!("a component is at most {MAX_COMPONENT_BYTES} bytes");
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|e| body_rejection(e, &too_large))?;
        Ok(Component(bytes))
    }
}

impl OperationInput for Component {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        bytes::Bytes::operation_input(ctx, operation);
    }
}

/// What installing did.
#[derive(Serialize, JsonSchema)]
pub struct InstalledView {
    /// The component, as its manifest describes it.
    pub connector: ConnectorView,
    /// False when this very component was installed already.
    pub created: bool,
}

async fn install(
    State(state): State<AppState>,
    caller: Caller,
    Component(bytes): Component,
) -> ApiResult<(StatusCode, axum::Json<InstalledView>)> {
    let tenant = caller.tenant(Action::InstallConnectors)?;
    let (info, installed) = state.engine().install_connector(tenant, bytes.to_vec()).await?;
    let created = installed == weft_store::Installed::New;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(InstalledView { connector: info.into(), created })))
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/connectors",
            get_with(list, |op| op.summary("List connectors").tag("connectors")).post_with(install, |op| {
                op.summary("Install a connector")
                    .description(
                        "The body is a component (`application/wasm`), as `weft connector build` makes it. It must \
                         load and describe itself; a different build under a name@version the tenant can use already \
                         is refused (409 connector_conflict). The same component again answers 200.",
                    )
                    .tag("connectors")
            }),
        )
        .api_route(
            "/v1/connectors/{name}",
            get_with(get, |op| op.summary("Inspect a connector").description("Every version of it.").tag("connectors")),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
}
