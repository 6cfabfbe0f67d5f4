//! `/v1/tenants`: the workspaces a super admin creates. Everything else a
//! tenant owns (workflows, runs, keys) carries its id.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_store::Tenant;

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, Json, Path};

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
