//! `/v1/connectors`: the connectors a tenant can use (the built-ins and its
//! own), with their actions and schemas; installing one; and calling one
//! action directly (the plugin gateway).

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
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
use crate::error::{ApiError, ApiResult, Json, Path, body_rejection};

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

/// One action to call directly.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectCallBody {
    /// The action's name.
    pub action: String,
    /// Its input, checked against the action's input schema (`{}` when left out).
    #[serde(default = "empty_object")]
    pub input: Value,
    /// The connector's version; the newest the tenant can use when left out.
    #[serde(default)]
    pub version: Option<String>,
    /// Handed to the connector as the call's idempotency key (1 to 255
    /// characters): an upstream that honours it does the work once per key.
    /// A new key for each call when left out.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// How a direct call went. A call that the connector answered with an
/// error is a `failed` call here, answered 200 like a completed one.
#[derive(Serialize, JsonSchema)]
pub struct DirectCallView {
    /// The call's id, in the connector's context and the server's logs.
    pub call_id: String,
    /// The build that ran, `name@version`.
    pub connector: String,
    /// Its digest.
    pub digest: String,
    /// `completed` or `failed`.
    pub status: &'static str,
    /// The output, when completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CallErrorView>,
    /// What the connector logged (the first lines).
    pub logs: Vec<LogLineView>,
    /// How many more lines it logged.
    pub logs_dropped: usize,
    /// The time spent in the call, in microseconds (counted in the tenant's usage).
    pub wasm_us: i64,
}

/// A failed call's error, as a step's would be journaled.
#[derive(Serialize, JsonSchema)]
pub struct CallErrorView {
    /// `invalid_input`, `unauthorized`, `rate_limited`, `transient`, `fatal`, `timeout` or `trap`.
    pub kind: String,
    /// What happened (secrets redacted).
    pub message: String,
    /// For `rate_limited`: how long the upstream asked to wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// A line the connector logged.
#[derive(Serialize, JsonSchema)]
pub struct LogLineView {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message (secrets redacted).
    pub message: String,
}

async fn call_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(NamePath { name }): Path<NamePath>,
    Json(body): Json<DirectCallBody>,
) -> ApiResult<axum::Json<DirectCallView>> {
    let tenant = caller.tenant(Action::RunWorkflows)?;
    if body.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::invalid_request("an idempotency key is 1 to 255 characters").at("$.idempotency_key"));
    }
    let call = weft_runtime::DirectCall {
        connector: &name,
        version: body.version.as_deref(),
        action: &body.action,
        input: &body.input,
        idempotency_key: body.idempotency_key.as_deref(),
    };
    let outcome = match state.engine().call_directly(tenant, call).await {
        Ok(outcome) => outcome,
        Err(weft_runtime::Error::UnknownConnector(_)) => {
            let version = body.version.map(|v| format!("@{v}")).unwrap_or_default();
            return Err(ApiError::not_found(format!("connector {name:?}{version}")));
        }
        Err(e @ weft_runtime::Error::UnknownAction { .. }) => {
            return Err(ApiError::unprocessable("unknown_action", e.to_string()).at("$.action"));
        }
        Err(e) => return Err(e.into()),
    };
    let (status, output, error) = match outcome.result {
        Ok(output) => ("completed", Some(output), None),
        Err(e) => {
            let error =
                CallErrorView { kind: e.kind.to_string(), message: e.message, retry_after_ms: e.retry_after_ms };
            ("failed", None, Some(error))
        }
    };
    let logs = outcome.logs.lines.into_iter().map(|l| LogLineView { level: l.level.to_string(), message: l.message });
    Ok(axum::Json(DirectCallView {
        call_id: outcome.call_id,
        connector: outcome.connector.key(),
        digest: outcome.connector.digest,
        status,
        output,
        error,
        logs: logs.collect(),
        logs_dropped: outcome.logs.dropped,
        wasm_us: outcome.wasm_us,
    }))
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
        // Only the routes above take components; the one below has the
        // server's body limit.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .api_route(
            "/v1/connectors/{name}/invoke",
            post_with(call_action, |op| {
                op.summary("Call a connector action directly")
                    .description(
                        "Outside any run, through the same sandbox, secrets, egress policy and plan as a workflow \
                         step; the call counts as a step in the tenant's usage. The connector's own failure answers \
                         200 with `status: failed` and its error kind; 404 when the tenant has no such connector, \
                         422 `unknown_action` or `invalid_input` for a call that is not made.",
                    )
                    .tag("connectors")
            }),
        )
}
