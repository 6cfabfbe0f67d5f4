//! Rate limits per API key and per tenant (governor's keyed GCRA limiters):
//! a request over either is refused with 429 `rate_limited` and a
//! `Retry-After` saying when one more would pass.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

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
    clock: DefaultClock,
}

fn limiter(per_second: Option<u32>) -> Option<DefaultKeyedRateLimiter<String>> {
    let rate = NonZeroU32::new(per_second?)?;
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
    Some(DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

impl Limiters {
    pub(crate) fn new(limits: RateLimits) -> Limiters {
        Limiters {
            per_key: limiter(limits.per_key),
            per_tenant: limiter(limits.per_tenant),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `key` (of `tenant`), or refuses it.
    pub(crate) fn check(&self, key: &str, tenant: Option<&str>) -> Result<(), ApiError> {
        let scopes = [(&self.per_key, Some(key), "API key"), (&self.per_tenant, tenant, "tenant")];
        for (limiter, id, scope) in scopes {
            let (Some(limiter), Some(id)) = (limiter, id) else { continue };
            if let Err(not_until) = limiter.check_key(&id.to_string()) {
                let wait = not_until.wait_time_from(self.clock.now());
                return Err(ApiError::rate_limited(scope, wait));
            }
        }
        Ok(())
    }
}
