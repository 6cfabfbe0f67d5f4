//! `/v1/tenants/{tenant}/api-keys`: a tenant's API keys. A key's secret is
//! returned once, when it is made.

use aide::axum::ApiRouter;
use aide::axum::routing::{delete_with, post_with};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use weft_store::ApiKey;

use crate::AppState;
use crate::auth::{self, Action, Caller, Role};
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::routes::tenants::TenantPath;

/// A key to make.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A name for people, e.g. where the key is used.
    pub name: String,
    /// Its role in the tenant (not `super_admin`).
    pub role: Role,
}

/// A key, without its secret.
#[derive(Serialize, JsonSchema)]
pub struct KeyView {
    /// Its id: the visible part of the key.
    pub id: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Created at (ms).
    pub created_at: i64,
    /// Last used at (ms), to the minute.
    pub last_used_at: Option<i64>,
    /// Revoked at (ms).
    pub revoked_at: Option<i64>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> KeyView {
        KeyView {
            id: k.id,
            tenant: k.tenant,
            name: k.name,
            role: k.role,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just made.
#[derive(Serialize, JsonSchema)]
pub struct MadeKey {
    /// The key.
    #[serde(flatten)]
    pub key: KeyView,
    /// The whole key, `weft_<id>_<secret>`. It is shown only now.
    pub secret: String,
}

/// A tenant's keys.
#[derive(Serialize, JsonSchema)]
pub struct KeyList {
    /// Oldest first, revoked ones included.
    pub api_keys: Vec<KeyView>,
}

/// A key's path.
#[derive(Deserialize, JsonSchema)]
pub struct KeyPath {
    /// The tenant's id.
    pub tenant: String,
    /// The key's id.
    pub key: String,
}

/// Checks that the tenant exists and the caller may manage its keys.
async fn managed(state: &AppState, caller: &Caller, tenant: &str) -> ApiResult<()> {
    caller.on_tenant(tenant, Action::ManageKeys)?;
    match state.engine().store().get_tenant(tenant).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("tenant {tenant:?}"))),
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
    Json(new): Json<NewKey>,
) -> ApiResult<(StatusCode, axum::Json<MadeKey>)> {
    managed(&state, &caller, &tenant).await?;
    if new.role == Role::SuperAdmin {
        return Err(ApiError::unprocessable("invalid_role", "a tenant's key cannot be a super_admin key").at("$.role"));
    }
    if new.name.trim().is_empty() || new.name.len() > 200 {
        return Err(ApiError::invalid_request("a key's name is 1 to 200 characters").at("$.name"));
    }
    let made = auth::new_key(Some(&tenant), new.name.trim(), new.role, weft_runtime::now_ms());
    state.engine().store().create_api_key(&made.stored).await?;
    Ok((StatusCode::CREATED, axum::Json(MadeKey { key: made.stored.into(), secret: made.secret })))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(TenantPath { tenant }): Path<TenantPath>,
) -> ApiResult<axum::Json<KeyList>> {
    managed(&state, &caller, &tenant).await?;
    let keys = state.engine().store().list_api_keys(Some(&tenant)).await?;
    Ok(axum::Json(KeyList { api_keys: keys.into_iter().map(KeyView::from).collect() }))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(KeyPath { tenant, key }): Path<KeyPath>,
) -> ApiResult<StatusCode> {
    managed(&state, &caller, &tenant).await?;
    if !state.engine().store().revoke_api_key(Some(&tenant), &key, weft_runtime::now_ms()).await? {
        return Err(ApiError::not_found(format!("API key {key:?}")));
    }
    state.keys().forget(&key);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/tenants/{tenant}/api-keys",
            post_with(create, |op| {
                op.summary("Make an API key")
                    .description("Its secret is in this answer only. A super admin, or the tenant's owner or admin.")
                    .tag("api keys")
            })
            .get_with(list, |op| op.summary("List a tenant's API keys").tag("api keys")),
        )
        .api_route(
            "/v1/tenants/{tenant}/api-keys/{key}",
            delete_with(revoke, |op| {
                op.summary("Revoke an API key").description("It is refused from then on.").tag("api keys")
            }),
        )
}
