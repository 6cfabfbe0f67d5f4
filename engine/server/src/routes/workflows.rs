//! `/v1/workflows`: immutable workflow versions, named by content hash. A
//! version is created from its JSON or YAML source and validated exactly as
//! `weft validate` does, with the same diagnostics (JSON path and
//! line:column in that source).

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_store::WorkflowVersion;
use weft_workflows::Definition;

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, Json, Path, Problem, Query};
use crate::routes::page_size;

/// The source's language.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON (comments and trailing commas allowed, as in files).
    #[default]
    Json,
    /// YAML.
    Yaml,
}

/// A workflow's source.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The workflow document as text: diagnostics point into it by line
    /// and column.
    pub source: String,
    /// Its language (JSON when left out).
    #[serde(default)]
    pub format: Format,
    /// The child workflows its steps name by `path`, and theirs: each
    /// text by its path relative to this workflow's directory (`child.json`,
    /// `sub/other.yaml`, `../shared/x.json`), as `weft --server` sends them.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, String>,
}

/// A stored version.
#[derive(Serialize, JsonSchema)]
pub struct VersionView {
    /// Its content hash, which names it.
    pub hash: String,
    /// The workflow's name.
    pub name: String,
    /// First stored at (ms).
    pub created_at: i64,
    /// Deprecated at (ms): new runs of it are refused.
    pub deprecated_at: Option<i64>,
}

impl From<WorkflowVersion> for VersionView {
    fn from(v: WorkflowVersion) -> VersionView {
        VersionView { hash: v.hash, name: v.name, created_at: v.created_at, deprecated_at: v.deprecated_at }
    }
}

/// The answer to a create.
#[derive(Serialize, JsonSchema)]
pub struct Created {
    /// The version.
    pub workflow: VersionView,
    /// Whether this request stored it (false: it was already stored).
    pub created: bool,
}

/// A version with its definition.
#[derive(Serialize, JsonSchema)]
pub struct VersionDetail {
    /// The version.
    #[serde(flatten)]
    pub version: VersionView,
    /// The workflow document as stored (normalized JSON).
    pub definition: Value,
}

/// The answer to a validation.
#[derive(Serialize, JsonSchema)]
pub struct Validation {
    /// Whether it validates.
    pub valid: bool,
    /// Its content hash, when valid.
    pub hash: Option<String>,
    /// Its name, when valid.
    pub name: Option<String>,
    /// How many steps it has, when valid.
    pub steps: Option<usize>,
    /// Every problem, each with its JSON path and line:column.
    pub diagnostics: Vec<Problem>,
}

/// Which versions to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only versions of the workflow with this name.
    pub name: Option<String>,
    /// At most this many (50 when left out, up to 500).
    pub limit: Option<i64>,
}

/// Versions, newest first.
#[derive(Serialize, JsonSchema)]
pub struct VersionList {
    /// The versions.
    pub workflows: Vec<VersionView>,
}

/// A version's path.
#[derive(Deserialize, JsonSchema)]
pub struct HashPath {
    /// The version's content hash (`sha256:…`).
    pub hash: String,
}

/// Loads a source for `tenant`, with its connectors as the catalog, and its
/// child workflows from the files sent with it (the server reads none).
fn load(state: &AppState, tenant: &str, source: &Source) -> Result<Definition, weft_workflows::Diagnostics> {
    let file = match source.format {
        Format::Json => "workflow.json",
        Format::Yaml => "workflow.yaml",
    };
    let children = weft_workflows::Bundle(&source.files);
    weft_workflows::load_with(file, &source.source, &state.engine().catalog(tenant), &children)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(source): Json<Source>,
) -> ApiResult<(StatusCode, axum::Json<Created>)> {
    let tenant = caller.tenant(Action::WriteWorkflows)?;
    state.engine().load_installed(tenant).await?;
    let definition = load(&state, tenant, &source).map_err(|d| ApiError::invalid_workflow(&d))?;
    let created = state.engine().save(tenant, &definition).await?;
    let version = state.engine().store().workflow_version(tenant, &definition.hash).await?;
    let version = version.ok_or_else(|| ApiError::internal(&"a version just stored is missing"))?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(Created { workflow: version.into(), created })))
}

async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    Json(source): Json<Source>,
) -> ApiResult<axum::Json<Validation>> {
    let tenant = caller.tenant(Action::Read)?;
    state.engine().load_installed(tenant).await?;
    Ok(axum::Json(match load(&state, tenant, &source) {
        Ok(definition) => Validation {
            valid: true,
            hash: Some(definition.hash.clone()),
            name: Some(definition.workflow.name.clone()),
            steps: Some(definition.workflow.steps.len()),
            diagnostics: Vec::new(),
        },
        Err(diagnostics) => {
            Validation { valid: false, hash: None, name: None, steps: None, diagnostics: Problem::all(&diagnostics) }
        }
    }))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<VersionList>> {
    let tenant = caller.tenant(Action::Read)?;
    let limit = page_size(query.limit)?;
    let versions = state.engine().store().workflow_versions(tenant, query.name.as_deref(), limit).await?;
    Ok(axum::Json(VersionList { workflows: versions.into_iter().map(VersionView::from).collect() }))
}

/// The tenant's version `hash`, or 404.
async fn version(state: &AppState, tenant: &str, hash: &str) -> ApiResult<WorkflowVersion> {
    let found = state.engine().store().workflow_version(tenant, hash).await?;
    found.ok_or_else(|| ApiError::not_found(format!("workflow version {hash:?}")))
}

async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(HashPath { hash }): Path<HashPath>,
) -> ApiResult<axum::Json<VersionDetail>> {
    let tenant = caller.tenant(Action::Read)?;
    let version = version(&state, tenant, &hash).await?;
    let text = state.engine().store().get_workflow(tenant, &hash).await?.unwrap_or_default();
    let definition = serde_json::from_str(&text).map_err(|e| ApiError::internal(&e))?;
    Ok(axum::Json(VersionDetail { version: version.into(), definition }))
}

async fn deprecate(
    State(state): State<AppState>,
    caller: Caller,
    Path(HashPath { hash }): Path<HashPath>,
) -> ApiResult<axum::Json<VersionView>> {
    let tenant = caller.tenant(Action::WriteWorkflows)?;
    if !state.engine().store().deprecate_workflow(tenant, &hash, weft_runtime::now_ms()).await? {
        return Err(ApiError::not_found(format!("workflow version {hash:?}")));
    }
    Ok(axum::Json(version(&state, tenant, &hash).await?.into()))
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/workflows",
            post_with(create, |op| {
                op.summary("Create a workflow version")
                    .description(
                        "Validates the source as `weft validate` does; an invalid one is refused with \
                         `invalid_workflow` and every problem. The same source twice is one version.",
                    )
                    .tag("workflows")
            })
            .get_with(list, |op| op.summary("List workflow versions").tag("workflows")),
        )
        .api_route(
            "/v1/workflows/validate",
            post_with(validate, |op| op.summary("Validate a workflow").description("Stores nothing.").tag("workflows")),
        )
        .api_route("/v1/workflows/{hash}", get_with(get, |op| op.summary("Get a workflow version").tag("workflows")))
        .api_route(
            "/v1/workflows/{hash}/deprecate",
            post_with(deprecate, |op| {
                op.summary("Deprecate a workflow version")
                    .description("New runs of it are refused; runs already pinned to it go on.")
                    .tag("workflows")
            }),
        )
}
