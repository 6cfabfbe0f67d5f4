//! API keys and what each role may do.
//!
//! A key reads `weft_<id>_<secret>`. The id is public: it names the key in
//! lists and logs. The secret is shown once, when the key is made; the
//! store keeps only its SHA-256. A key belongs to a tenant with one of the
//! tenant roles, or to nobody with the `super_admin` role: the service's
//! operator, who manages tenants and their keys and nothing inside a tenant.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::OperationInput;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use weft_store::{ApiKey, Store};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the service: creates tenants and their keys. Belongs to no tenant.
    SuperAdmin,
    /// A tenant's owner: everything in the tenant.
    Owner,
    /// Everything in the tenant.
    Admin,
    /// Writes workflows, installs connectors, starts and controls runs.
    Developer,
    /// Starts and controls runs (cancel, signal, resume).
    Operator,
    /// Reads only.
    Viewer,
}

impl Role {
    /// Its name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    fn parse(name: &str) -> Option<Role> {
        [Role::SuperAdmin, Role::Owner, Role::Admin, Role::Developer, Role::Operator, Role::Viewer]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// Something a request does, for the permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create and list tenants.
    ManageTenants,
    /// Create, list and revoke a tenant's keys.
    ManageKeys,
    /// Read the tenant's workflows, runs and connectors.
    Read,
    /// Create and deprecate workflow versions.
    WriteWorkflows,
    /// Start, cancel, signal and resume runs.
    RunWorkflows,
    /// Install connector components.
    InstallConnectors,
}

/// The permission matrix: whether `role` may do `action`.
pub fn allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::SuperAdmin => matches!(action, ManageTenants | ManageKeys),
        Role::Owner | Role::Admin => !matches!(action, ManageTenants),
        Role::Developer => matches!(action, Read | WriteWorkflows | RunWorkflows | InstallConnectors),
        Role::Operator => matches!(action, Read | RunWorkflows),
        Role::Viewer => matches!(action, Read),
    }
}

/// Who is calling: the key's id, its tenant (none for an operator) and role.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's id.
    pub key: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// The caller's tenant, when its role may do `action` there.
    pub fn tenant(&self, action: Action) -> ApiResult<&str> {
        match &self.tenant {
            None => Err(ApiError::forbidden(
                "a super_admin key manages tenants and their keys; use a key of the tenant for this",
            )),
            Some(tenant) if allows(self.role, action) => Ok(tenant),
            Some(_) => Err(ApiError::forbidden(format!("a {} key may not do this", self.role.as_str()))),
        }
    }

    /// Checks that the caller may do `action` on tenant `tenant`'s keys or
    /// record: a super admin may for any tenant, a tenant's key only for its
    /// own (another tenant is not found).
    pub fn on_tenant(&self, tenant: &str, action: Action) -> ApiResult<()> {
        if self.tenant.as_deref().is_some_and(|own| own != tenant) {
            return Err(ApiError::not_found(format!("tenant {tenant:?}")));
        }
        if !allows(self.role, action) {
            return Err(ApiError::forbidden(format!("a {} key may not do this", self.role.as_str())));
        }
        Ok(())
    }

    /// Checks that the caller may do a service-wide `action`.
    pub fn operator(&self, action: Action) -> ApiResult<()> {
        match (&self.tenant, allows(self.role, action)) {
            (None, true) => Ok(()),
            _ => Err(ApiError::forbidden("only a super_admin key may do this")),
        }
    }
}

/// A key made now: what is stored, and the whole key, shown once.
pub struct NewKey {
    /// The stored form.
    pub stored: ApiKey,
    /// `weft_<id>_<secret>`.
    pub secret: String,
}

/// Makes a key for `tenant` (none: a super admin's key).
pub fn new_key(tenant: Option<&str>, name: &str, role: Role, now: i64) -> NewKey {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id).expect("the OS random source");
    getrandom::fill(&mut secret).expect("the OS random source");
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewKey {
        stored: ApiKey {
            id: id.clone(),
            tenant: tenant.map(str::to_string),
            name: name.to_string(),
            role: role.as_str().to_string(),
            secret_hash: hash(&secret),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        },
        secret: format!("weft_{id}_{secret}"),
    }
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equal without telling, by its timing, where two hashes first differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a checked key is trusted without reading the store again: a
/// key revoked through another server stops working within this time
/// (through this one, at once).
const TRUSTED_FOR: Duration = Duration::from_secs(5);

/// How often a key's last-used time is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Keys checked recently, by id.
#[derive(Default)]
pub struct Keys {
    checked: Mutex<HashMap<String, Checked>>,
}

struct Checked {
    key: ApiKey,
    at: Instant,
    touched: Instant,
}

impl Keys {
    /// The caller a bearer token names, checked against the store. A key
    /// not checked recently is looked up only if `lookup` allows it (the
    /// client address's limit).
    pub async fn check(
        &self,
        store: &Store,
        token: &str,
        now_ms: i64,
        lookup: impl FnOnce() -> ApiResult<()>,
    ) -> ApiResult<Caller> {
        let refused = || ApiError::unauthenticated("the API key is not valid (unknown, revoked or mistyped)");
        let (id, secret) = token.strip_prefix("weft_").and_then(|rest| rest.split_once('_')).ok_or_else(refused)?;
        let cached = {
            let checked = self.checked.lock().expect("keys lock");
            checked.get(id).filter(|c| c.at.elapsed() < TRUSTED_FOR).map(|c| (c.key.clone(), c.touched))
        };
        let (key, touched) = match cached {
            Some(found) => found,
            None => {
                lookup()?;
                let key = store.get_api_key(id).await?.ok_or_else(refused)?;
                let touched = Instant::now().checked_sub(TOUCH_EVERY).unwrap_or_else(Instant::now);
                (key, touched)
            }
        };
        if key.revoked_at.is_some() || !same(&hash(secret), &key.secret_hash) {
            return Err(refused());
        }
        let role = Role::parse(&key.role).ok_or_else(refused)?;
        let touch = touched.elapsed() >= TOUCH_EVERY;
        if touch {
            // Best effort: a failed write of the last-used time does not
            // refuse the request.
            if let Err(e) = store.touch_api_key(&key.id, now_ms).await {
                tracing::warn!(key = %key.id, error = %e, "recording the key's use failed");
            }
        }
        let caller = Caller { key: key.id.clone(), tenant: key.tenant.clone(), role };
        let touched = if touch { Instant::now() } else { touched };
        let mut checked = self.checked.lock().expect("keys lock");
        let at = checked.get(id).filter(|c| c.at.elapsed() < TRUSTED_FOR).map_or_else(Instant::now, |c| c.at);
        checked.insert(id.to_string(), Checked { key, at, touched });
        Ok(caller)
    }

    /// Forgets a key (it was revoked here).
    pub fn forget(&self, id: &str) {
        self.checked.lock().expect("keys lock").remove(id);
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("send an API key: `Authorization: Bearer weft_…`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthenticated("the Authorization header must be `Bearer weft_…`"))?;
        // Requests that come in other than through a listener (tests) have
        // no address, and no limit on looking keys up.
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let lookup = || match address {
            Some(address) => state.limiters().check_key_lookup(address),
            None => Ok(()),
        };
        let caller = state.keys().check(state.engine().store(), token, weft_runtime::now_ms(), lookup).await?;
        let plan_rate = match caller.tenant.as_deref() {
            Some(tenant) => state.engine().request_rate(tenant).await?,
            None => None,
        };
        state.limiters().check(&caller.key, caller.tenant.as_deref(), plan_rate)?;
        Ok(caller)
    }
}

impl OperationInput for Caller {
    fn operation_input(_: &mut GenContext, operation: &mut Operation) {
        let mut requirement = indexmap::IndexMap::new();
        requirement.insert("api_key".to_string(), Vec::new());
        operation.security.push(requirement);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix, row by row.
    #[test]
    fn each_role_may_do_what_its_row_says() {
        use Action::*;
        let actions = [ManageTenants, ManageKeys, Read, WriteWorkflows, RunWorkflows];
        let table = [
            (Role::SuperAdmin, [true, true, false, false, false]),
            (Role::Owner, [false, true, true, true, true]),
            (Role::Admin, [false, true, true, true, true]),
            (Role::Developer, [false, false, true, true, true]),
            (Role::Operator, [false, false, true, false, true]),
            (Role::Viewer, [false, false, true, false, false]),
        ];
        for (role, row) in table {
            for (action, allowed) in actions.into_iter().zip(row) {
                assert_eq!(allows(role, action), allowed, "{role:?} {action:?}");
            }
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }

    #[test]
    fn a_key_shows_its_id_and_stores_only_its_secrets_hash() {
        let made = new_key(Some("acme"), "ci", Role::Developer, 1);
        let key = &made.stored;
        assert!(made.secret.starts_with(&format!("weft_{}_", key.id)));
        let secret = made.secret.rsplit_once(&format!("{}_", key.id)).unwrap().1;
        assert_eq!(secret.len(), 43, "32 random bytes");
        assert!(!made.secret.contains(&key.secret_hash));
        assert_eq!(key.secret_hash, hash(secret));
        assert_ne!(new_key(None, "x", Role::SuperAdmin, 1).secret, made.secret);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
