//! Rate limits per API key and per tenant (governor's keyed GCRA limiters),
//! and per tenant whose plan sets its own rate (a limiter each): a request
//! over one is refused with 429 `rate_limited` and a `Retry-After` saying
//! when one more would pass.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

/// Requests per second, with a burst of twice that. `None` leaves that
/// scope unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Per API key.
    pub per_key: Option<u32>,
    /// Per tenant, over all its keys.
    pub per_tenant: Option<u32>,
}

impl Default for RateLimits {
    /// 2,000 requests/s per key and 5,000 per tenant: far above one
    /// client's normal use, low enough that one runaway client does not
    /// starve the others.
    fn default() -> RateLimits {
        RateLimits { per_key: Some(2_000), per_tenant: Some(5_000) }
    }
}

/// The limiters.
pub(crate) struct Limiters {
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    per_tenant: Option<DefaultKeyedRateLimiter<String>>,
    /// The tenants whose plans set a rate: the rate, and its limiter.
    by_plan: Mutex<HashMap<String, (NonZeroU32, DefaultDirectRateLimiter)>>,
    clock: DefaultClock,
}

/// `rate` requests per second, with bursts of twice that.
fn quota(rate: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero")))
}

fn limiter(per_second: Option<u32>) -> Option<DefaultKeyedRateLimiter<String>> {
    Some(DefaultKeyedRateLimiter::keyed(quota(NonZeroU32::new(per_second?)?)))
}

impl Limiters {
    pub(crate) fn new(limits: RateLimits) -> Limiters {
        Limiters {
            per_key: limiter(limits.per_key),
            per_tenant: limiter(limits.per_tenant),
            by_plan: Mutex::default(),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `key` (of `tenant`, whose plan may set its own
    /// rate), or refuses it.
    pub(crate) fn check(&self, key: &str, tenant: Option<&str>, plan_rate: Option<u32>) -> Result<(), ApiError> {
        if let Some(limiter) = &self.per_key {
            self.count(limiter.check_key(&key.to_string()), "API key")?;
        }
        let Some(tenant) = tenant else { return Ok(()) };
        match plan_rate.and_then(NonZeroU32::new) {
            Some(rate) => {
                let mut by_plan = self.by_plan.lock().expect("plan limiters lock");
                let entry = by_plan
                    .entry(tenant.to_string())
                    .or_insert_with(|| (rate, DefaultDirectRateLimiter::direct(quota(rate))));
                // The plan changed: its new rate starts afresh.
                if entry.0 != rate {
                    *entry = (rate, DefaultDirectRateLimiter::direct(quota(rate)));
                }
                self.count(entry.1.check(), "tenant's plan")
            }
            None => match &self.per_tenant {
                Some(limiter) => self.count(limiter.check_key(&tenant.to_string()), "tenant"),
                None => Ok(()),
            },
        }
    }

    fn count(
        &self,
        checked: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
        scope: &str,
    ) -> Result<(), ApiError> {
        checked.map_err(|not_until| ApiError::rate_limited(scope, not_until.wait_time_from(self.clock.now())))
    }
}
