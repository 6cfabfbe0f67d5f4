//! Rate limits per API key and per tenant (governor's keyed GCRA limiters),
//! and per tenant whose plan sets its own rate (a limiter each): a request
//! over one is refused with 429 `rate_limited` and a `Retry-After` saying
//! when one more would pass. Before any of those, a client address's look-ups
//! of keys not checked recently are limited too: a flood of made-up keys is
//! refused before it reaches the database.

use std::collections::HashMap;
use std::net::IpAddr;
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
    /// Per client address: requests with a key this server has not checked
    /// in the last few seconds (a new client, or keys that do not exist).
    pub key_lookups_per_address: Option<u32>,
}

impl Default for RateLimits {
    /// 2,000 requests/s per key and 5,000 per tenant: far above one
    /// client's normal use, low enough that one runaway client does not
    /// starve the others. 20 look-ups of keys not checked recently per
    /// second per address: a client's keys are looked up once every few
    /// seconds each.
    fn default() -> RateLimits {
        RateLimits { per_key: Some(2_000), per_tenant: Some(5_000), key_lookups_per_address: Some(20) }
    }
}

/// The limiters.
pub(crate) struct Limiters {
    per_key: Option<DefaultKeyedRateLimiter<String>>,
    per_tenant: Option<DefaultKeyedRateLimiter<String>>,
    key_lookups: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// When `key_lookups` last forgot addresses.
    trimmed: Mutex<std::time::Instant>,
    /// The tenants whose plans set a rate: the rate, and its limiter.
    by_plan: Mutex<HashMap<String, (NonZeroU32, DefaultDirectRateLimiter)>>,
    clock: DefaultClock,
}

/// How many client addresses the key look-up limiter holds before it
/// forgets those that are back to their whole allowance (at most every
/// [`TRIM_EVERY`]).
const ADDRESSES_KEPT: usize = 10_000;
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// `rate` requests per second, with bursts of twice that.
fn quota(rate: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero")))
}

fn limiter<K: Clone + Eq + std::hash::Hash>(per_second: Option<u32>) -> Option<DefaultKeyedRateLimiter<K>> {
    Some(DefaultKeyedRateLimiter::keyed(quota(NonZeroU32::new(per_second?)?)))
}

impl Limiters {
    pub(crate) fn new(limits: RateLimits) -> Limiters {
        Limiters {
            per_key: limiter(limits.per_key),
            per_tenant: limiter(limits.per_tenant),
            key_lookups: limiter(limits.key_lookups_per_address),
            trimmed: Mutex::new(std::time::Instant::now()),
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

    /// Counts one look-up of a key not checked recently, for a request from
    /// `address`, or refuses it. An IPv6 address counts by its /64 (what one
    /// client is usually given).
    pub(crate) fn check_key_lookup(&self, address: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.key_lookups else { return Ok(()) };
        if limiter.len() > ADDRESSES_KEPT {
            let mut trimmed = self.trimmed.lock().expect("trim lock");
            if trimmed.elapsed() >= TRIM_EVERY {
                // An address whose allowance is whole again is as good as new.
                limiter.retain_recent();
                limiter.shrink_to_fit();
                *trimmed = std::time::Instant::now();
            }
        }
        let client = match address {
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        };
        self.count(limiter.check_key(&client), "client address")
    }

    fn count(
        &self,
        checked: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
        scope: &str,
    ) -> Result<(), ApiError> {
        checked.map_err(|not_until| ApiError::rate_limited(scope, not_until.wait_time_from(self.clock.now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookups_only(per_second: u32) -> Limiters {
        Limiters::new(RateLimits { per_key: None, per_tenant: None, key_lookups_per_address: Some(per_second) })
    }

    /// IPv6 clients count by their /64; IPv4 ones by their address.
    #[test]
    fn an_ipv6_client_counts_by_its_prefix() {
        let limiters = lookups_only(1);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(limiters.check_key_lookup(ip("2001:db8:1:2::1")).is_ok());
        assert!(limiters.check_key_lookup(ip("2001:db8:1:2::ffff:1")).is_ok());
        assert!(
            limiters.check_key_lookup(ip("2001:db8:1:2:abcd::9")).is_err(),
            "the same /64: its burst of two is spent"
        );
        assert!(limiters.check_key_lookup(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        assert!(limiters.check_key_lookup(ip("192.0.2.1")).is_ok());
        assert!(limiters.check_key_lookup(ip("192.0.2.2")).is_ok());
    }

    /// Addresses seen once do not pile up: past the number kept, those back
    /// to their whole allowance are forgotten.
    #[test]
    fn addresses_whose_allowance_is_whole_again_are_forgotten() {
        // Ten a second: one look-up is made good again within 0.2 s.
        let limiters = lookups_only(10);
        for n in 0..=ADDRESSES_KEPT as u32 {
            limiters.check_key_lookup(IpAddr::V4(n.into())).unwrap();
        }
        let kept = || limiters.key_lookups.as_ref().unwrap().len();
        assert!(kept() > ADDRESSES_KEPT);
        std::thread::sleep(TRIM_EVERY + std::time::Duration::from_millis(300));
        limiters.check_key_lookup(IpAddr::V4(u32::MAX.into())).unwrap();
        assert!(kept() <= 1, "{} addresses kept", kept());
    }
}
