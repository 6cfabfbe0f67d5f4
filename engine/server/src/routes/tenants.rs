//! `/v1/tenants`: the workspaces a super admin creates, their plans and
//! their usage. Everything else a tenant owns (workflows, runs, keys)
//! carries its id.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with, put_with};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_store::{Plan, Tenant, Usage};

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, Json, Path, Query};

/// A tenant to create.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Its id: lower-case letters, digits and `-`, 1 to 63 characters,
    /// starting with a letter or digit. It never changes.
    pub id: String,
    /// A display name (the id when left out).
    #[serde(default)]
    pub name: Option<String>,
}

/// A tenant.
#[derive(Serialize, JsonSchema)]
pub struct TenantView {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Created at (ms since the Unix epoch).
    pub created_at: i64,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> TenantView {
        TenantView { id: t.id, name: t.name, created_at: t.created_at }
    }
}

/// Every tenant.
#[derive(Serialize, JsonSchema)]
pub struct TenantList {
    /// Oldest first.
    pub tenants: Vec<TenantView>,
}

/// The tenant path parameter.
#[derive(Deserialize, JsonSchema)]
pub struct TenantPath {
    /// The tenant's id.
    pub tenant: String,
}

/// A tenant's plan: what it may use. A limit left out is no limit.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanView {
    /// The connectors (by name) its runs may call; every connector when
    /// left out. A run that uses another is refused at its start, and a
    /// call to one (after the plan changed) fails its step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectors: Option<Vec<String>>,
    /// How many of its top-level runs may be running or waiting at once. A
    /// start past it is answered 429 `plan_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs: Option<u64>,
    /// How many connector calls its runs may make in a calendar month
    /// (UTC). Once they are used up, starts are refused and a step that
    /// would call a connector fails, with 403 `plan_limit` or a `fatal`
    /// step error naming the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_month: Option<u64>,
    /// Its API requests per second, over all its keys (bursts of twice
    /// that), in place of the server's per-tenant rate; at least 1. A
    /// request over it is answered 429 `rate_limited` with `Retry-After`.
    /// Each server process counts its own requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_second: Option<u32>,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> PlanView {
        PlanView {
            connectors: p.connectors,
            max_concurrent_runs: p.max_concurrent_runs,
            steps_per_month: p.steps_per_month,
            requests_per_second: p.requests_per_second,
        }
    }
}

impl From<PlanView> for Plan {
    fn from(p: PlanView) -> Plan {
        Plan {
            connectors: p.connectors,
            max_concurrent_runs: p.max_concurrent_runs,
            steps_per_month: p.steps_per_month,
            requests_per_second: p.requests_per_second,
        }
    }
}

/// What a tenant used in a month, with its plan.
#[derive(Serialize, JsonSchema)]
pub struct UsageView {
    /// The tenant.
    pub tenant: String,
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// Runs created in it (child runs and retries too).
    pub runs: i64,
    /// Connector calls made in it (every attempt that ran counts).
    pub steps: i64,
    /// Time spent in those calls, in microseconds.
    pub wasm_us: i64,
    /// The tenant's plan now.
    pub plan: PlanView,
}

/// Which month's usage to read.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// The month, `YYYY-MM` (UTC); this month when left out.
    #[serde(default)]
    pub period: Option<String>,
}

/// Where to move a tenant's data.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseBody {
    /// The database's URL (of the shared database's kind: `postgres://…` or
    /// `sqlite://…`); `null` moves the tenant back to the shared database.
    pub url: Option<String>,
}

/// What a move did.
#[derive(Serialize, JsonSchema)]
pub struct MovedView {
    /// The tenant.
    pub tenant: String,
    /// `own` or `shared`: where its data is now.
    pub database: &'static str,
    /// Workflow versions copied.
    pub workflows: u64,
    /// Runs copied.
    pub runs: u64,
    /// Journal events copied.
    pub events: u64,
    /// Installed connectors copied.
    pub connectors: u64,
}

/// Whether `id` may name a tenant.
pub(crate) fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewTenant>,
) -> ApiResult<(StatusCode, axum::Json<TenantView>)> {
    caller.operator(Action::ManageTenants)?;
    if !valid_id(&new.id) {
        return Err(ApiError::invalid_request(
            "a tenant id is 1 to 63 lower-case letters, digits and `-`, starting with a letter or digit",
        )
        .at("$.id"));
    }
    let name = new.name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| new.id.clone());
    let tenant = state.engine().store().create_tenant(&new.id, &name, weft_runtime::now_ms()).await?;
    Ok((StatusCode::CREATED, axum::Json(tenant.into())))
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<axum::Json<TenantList>> {
    caller.operator(Action::ManageTenants)?;
    let tenants = state.engine().store().list_tenants().await?;
    Ok(axum::Json(TenantList { tenants: tenants.into_iter().map(TenantView::from).collect() }))
}

async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
) -> ApiResult<axum::Json<TenantView>> {
    let action = if caller.tenant.is_some() { Action::Read } else { Action::ManageTenants };
    caller.on_tenant(&tenant, action)?;
    let found = state.engine().store().get_tenant(&tenant).await?;
    found.map(|t| axum::Json(t.into())).ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?}")))
}

/// The tenant's plan, checked as `get` checks the tenant.
async fn get_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
) -> ApiResult<axum::Json<PlanView>> {
    let action = if caller.tenant.is_some() { Action::Read } else { Action::ManageTenants };
    caller.on_tenant(&tenant, action)?;
    let plan = state.engine().store().plan(&tenant).await?;
    plan.map(|p| axum::Json(p.into())).ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?}")))
}

async fn put_plan(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
    Json(plan): Json<PlanView>,
) -> ApiResult<axum::Json<PlanView>> {
    // A tenant's key is told its own plan is not its to set, and that
    // another tenant does not exist.
    caller.on_tenant(&tenant, Action::ManageTenants)?;
    if let Some(at) = plan.connectors.iter().flatten().position(|name| name.trim().is_empty()) {
        return Err(ApiError::invalid_request("a connector name is not empty").at(format!("$.connectors[{at}]")));
    }
    if plan.requests_per_second == Some(0) {
        return Err(ApiError::invalid_request("`requests_per_second` is at least 1").at("$.requests_per_second"));
    }
    let plan = Plan::from(plan);
    if !state.engine().store().set_plan(&tenant, &plan).await? {
        return Err(ApiError::not_found(format!("tenant {tenant:?}")));
    }
    // This process applies it at once; others within a second.
    state.engine().forget_plan(&tenant);
    Ok(axum::Json(plan.into()))
}

async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<axum::Json<UsageView>> {
    let action = if caller.tenant.is_some() { Action::Read } else { Action::ManageTenants };
    caller.on_tenant(&tenant, action)?;
    let period = query.period.unwrap_or_else(|| weft_store::period_of(weft_runtime::now_ms()));
    if weft_store::period_bounds(&period).is_none() {
        return Err(ApiError::invalid_request("a period is a month, YYYY-MM (such as 2026-12)").at("period"));
    }
    let store = state.engine().store();
    let plan = store.plan(&tenant).await?.ok_or_else(|| ApiError::not_found(format!("tenant {tenant:?}")))?;
    let Usage { period, runs, steps, wasm_us } = store.usage(&tenant, &period).await?;
    Ok(axum::Json(UsageView { tenant, period, runs, steps, wasm_us, plan: plan.into() }))
}

async fn move_database(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
    Json(body): Json<DatabaseBody>,
) -> ApiResult<axum::Json<MovedView>> {
    caller.on_tenant(&tenant, Action::ManageTenants)?;
    let store = state.engine().store().clone();
    let url = body.url.filter(|u| !u.trim().is_empty());
    // In a task of its own: a client that hangs up mid-move must not stop
    // it between marking the tenant and routing it.
    let moving = {
        let (tenant, url) = (tenant.clone(), url.clone());
        tokio::spawn(async move { store.move_tenant(&tenant, url.as_deref(), weft_runtime::now_ms()).await })
    };
    let moved = match moving.await.map_err(|e| ApiError::internal(&e))? {
        Ok(moved) => moved,
        Err(e @ (weft_store::Error::UnsupportedUrl(_) | weft_store::Error::Connect { .. })) => {
            return Err(ApiError::unprocessable("invalid_database", e.to_string()).at("$.url"));
        }
        Err(e) => return Err(e.into()),
    };
    let weft_store::Moved { workflows, runs, events, connectors } = moved;
    let database = if url.is_some() { "own" } else { "shared" };
    Ok(axum::Json(MovedView { tenant, database, workflows, runs, events, connectors }))
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/tenants",
            post_with(create, |op| op.summary("Create a tenant").description("Super admin only.").tag("tenants"))
                .get_with(list, |op| op.summary("List tenants").description("Super admin only.").tag("tenants")),
        )
        .api_route(
            "/v1/tenants/{tenant}",
            get_with(get, |op| {
                op.summary("Get a tenant").description("A super admin, or a key of the tenant.").tag("tenants")
            }),
        )
        .api_route(
            "/v1/tenants/{tenant}/plan",
            get_with(get_plan, |op| {
                op.summary("Get a tenant's plan").description("A super admin, or a key of the tenant.").tag("tenants")
            })
            .put_with(put_plan, |op| {
                op.summary("Set a tenant's plan")
                    .description(
                        "Super admin only. Replaces the whole plan; the server applies it at once, other \
                         processes within a second.",
                    )
                    .tag("tenants")
            }),
        )
        .api_route(
            "/v1/tenants/{tenant}/database",
            put_with(move_database, |op| {
                op.summary("Move a tenant to its own database")
                    .description(
                        "Super admin only. Copies the tenant's workflows, runs, journals, connectors and usage to \
                         the database at `url` (created and migrated if needed; `null`: back to the shared \
                         database) and routes the tenant there; its keys, plan and id stay. Runs asleep or waiting \
                         for a signal move as they are and wake in the new database; a run a worker is driving \
                         refuses the move (409 `tenant_busy`: try again once it finishes or parks). Its \
                         requests are answered 503 `tenant_moving` for the few seconds the move takes.",
                    )
                    .tag("tenants")
            }),
        )
        .api_route(
            "/v1/tenants/{tenant}/usage",
            get_with(usage, |op| {
                op.summary("Read a tenant's usage")
                    .description(
                        "Runs, connector calls and the time spent in them in one calendar month (UTC), with the \
                         plan. A super admin, or a key of the tenant.",
                    )
                    .tag("tenants")
            }),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn tenant_ids_are_short_lower_case_names() {
        for good in ["acme", "a", "team-7", "0x"] {
            assert!(super::valid_id(good), "{good}");
        }
        for bad in ["", "-acme", "Acme", "a_b", "a b", "ä", &"a".repeat(64)] {
            assert!(!super::valid_id(bad), "{bad}");
        }
    }
}
