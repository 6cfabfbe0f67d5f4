//! A tenant's plan, checked when a run starts and when a step calls a
//! connector.
//!
//! Each engine keeps every tenant's plan and month's step count for up to
//! [`PLAN_FRESH_FOR`], and counts the calls it lets through meanwhile, so a
//! step costs no extra query. Processes learn of each other's calls when they
//! read again: across several workers the monthly cap can be passed by the
//! calls made within that window, never by more.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use weft_store::Plan;

use crate::{Engine, Error, Result, now_ms};

/// How long an engine trusts a tenant's plan and step count it read.
pub(crate) const PLAN_FRESH_FOR: Duration = Duration::from_secs(1);

/// A tenant's plan and month's steps, as last read, and the calls this
/// engine let through since.
#[derive(Debug)]
pub(crate) struct Quota {
    read_at: Instant,
    /// The first millisecond of the next month: the quota is read again then.
    until: i64,
    plan: Plan,
    period: String,
    steps: i64,
    admitted: i64,
}

impl Quota {
    fn fresh(&self, now: i64) -> bool {
        self.read_at.elapsed() < PLAN_FRESH_FOR && now < self.until
    }
}

/// What the plan says about a run that is about to start.
pub(crate) struct Admission {
    /// The cap on running runs, for the store to enforce as it creates the run.
    pub(crate) max_running: Option<u64>,
}

impl Engine {
    /// Runs `check` on the tenant's quota, read again when it is older than
    /// [`PLAN_FRESH_FOR`] or the month turned; otherwise in place, with no
    /// copy and no query (this is on every connector call). A tenant that
    /// does not exist has no limits (the local tenant of a store made before
    /// plans existed, say).
    async fn with_quota<T>(&self, tenant: &str, check: impl FnOnce(&mut Quota) -> T) -> Result<T> {
        let now = now_ms();
        {
            let mut quotas = self.quotas.lock().expect("quotas lock");
            if let Some(quota) = quotas.get_mut(tenant).filter(|q| q.fresh(now)) {
                return Ok(check(quota));
            }
        }
        let period = weft_store::period_of(now);
        let until = weft_store::period_bounds(&period).map_or(i64::MAX, |(_, next)| next);
        let plan = self.store.plan(tenant).await?.unwrap_or_default();
        let steps = match plan.steps_per_month {
            Some(_) => self.store.usage(tenant, &period).await?.steps,
            None => 0,
        };
        let quota = Quota { read_at: Instant::now(), until, plan, period, steps, admitted: 0 };
        let mut quotas = self.quotas.lock().expect("quotas lock");
        let quota = match quotas.entry(tenant.to_string()) {
            Entry::Occupied(mut entry) => {
                entry.insert(quota);
                entry.into_mut()
            }
            Entry::Vacant(entry) => entry.insert(quota),
        };
        Ok(check(quota))
    }

    /// Checks a run about to start against the tenant's plan: every connector
    /// it is pinned to (`name@version` keys) must be allowed and, for a
    /// top-level run, the month's steps must not be used up. Returns the cap
    /// on running runs that its creation must respect.
    pub(crate) async fn admit_run(
        &self,
        tenant: &str,
        pins: &BTreeMap<String, String>,
        top_level: bool,
    ) -> Result<Admission> {
        self.with_quota(tenant, |quota| {
            for key in pins.keys() {
                let name = key.rsplit_once('@').map_or(key.as_str(), |(name, _)| name);
                if !quota.plan.allows_connector(name) {
                    return Err(connector_refused(&quota.plan, name));
                }
            }
            if !top_level {
                return Ok(Admission { max_running: None });
            }
            match steps_refused(quota) {
                Some(refusal) => Err(refusal),
                None => Ok(Admission { max_running: quota.plan.max_concurrent_runs }),
            }
        })
        .await?
    }

    /// Checks a connector call about to be made against the tenant's plan,
    /// and counts it when it may go ahead.
    pub(crate) async fn admit_call(&self, tenant: &str, connector: &str) -> Result<()> {
        self.with_quota(tenant, |quota| {
            if !quota.plan.allows_connector(connector) {
                return Err(connector_refused(&quota.plan, connector));
            }
            if quota.plan.steps_per_month.is_some() {
                if let Some(refusal) = steps_refused(quota) {
                    return Err(refusal);
                }
                quota.admitted += 1;
            }
            Ok(())
        })
        .await?
    }

    /// The tenant's plan's request rate, if it sets one (as last read, at
    /// most [`PLAN_FRESH_FOR`] ago).
    pub async fn request_rate(&self, tenant: &str) -> Result<Option<u32>> {
        self.with_quota(tenant, |quota| quota.plan.requests_per_second).await
    }

    /// Forgets what this engine read of the tenant's plan (it just changed).
    pub fn forget_plan(&self, tenant: &str) {
        self.quotas.lock().expect("quotas lock").remove(tenant);
    }
}

/// The refusal of a connector the plan leaves out.
fn connector_refused(plan: &Plan, name: &str) -> Error {
    let allowed = plan.connectors.as_deref().unwrap_or_default();
    let allowed = if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") };
    Error::PlanLimit {
        limit: "connectors",
        message: format!("the tenant's plan does not allow connector `{name}` (connectors: {allowed})"),
    }
}

/// The refusal, when the month's steps are used up.
fn steps_refused(quota: &Quota) -> Option<Error> {
    let max = quota.plan.steps_per_month?;
    let used = quota.steps + quota.admitted;
    (used >= max as i64).then(|| Error::PlanLimit {
        limit: "steps_per_month",
        message: format!(
            "the tenant's plan allows {max} steps a month (steps_per_month) and {used} have run in {}",
            quota.period
        ),
    })
}

/// A type for callers that keep quotas.
pub(crate) type Quotas = std::sync::Mutex<HashMap<String, Quota>>;
