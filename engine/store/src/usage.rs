//! Plans and usage: what a tenant may use, and what it used.
//!
//! A plan is kept with its tenant. Usage is counted by calendar month (UTC):
//! runs from the runs table, and the connector calls that ran, with the time
//! spent in them, in the usage table, written in the same commit as the calls'
//! results (so the count never runs ahead of or behind the journal).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::db::Scope;
use crate::sql;
use crate::{Error, Result, Store};

/// What a tenant may use. A limit left out is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The connectors (by name) its runs may call; all when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectors: Option<Vec<String>>,
    /// How many of its top-level runs may be running (or waiting) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs: Option<u64>,
    /// How many connector calls its runs may make in a calendar month (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_per_month: Option<u64>,
    /// Its API requests per second over all its keys (bursts of twice
    /// that), in place of the server's per-tenant rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
}

impl Plan {
    /// Whether the plan lets runs call connector `name`.
    pub fn allows_connector(&self, name: &str) -> bool {
        self.connectors.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a == name))
    }
}

/// What a tenant used in one month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// The month, `YYYY-MM` (UTC).
    pub period: String,
    /// Runs created (child runs and retries too).
    pub runs: i64,
    /// Connector calls that ran (each attempt counts).
    pub steps: i64,
    /// Time spent in those calls, in microseconds.
    pub wasm_us: i64,
}

/// The work a journal append records having done: connector calls that ran
/// and their time. It is added to the tenant's usage in the append's commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metered {
    /// Connector calls.
    pub steps: i64,
    /// Their time, in microseconds.
    pub wasm_us: i64,
}

impl Metered {
    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.steps == 0 && self.wasm_us == 0
    }
}

/// The month (`YYYY-MM`, UTC) that the time `at` (ms) falls in.
pub fn period_of(at: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(at.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()[..7].to_string()
}

/// The first millisecond of month `period` (`YYYY-MM`) and of the month after.
pub fn period_bounds(period: &str) -> Option<(i64, i64)> {
    let (year, month) = period.split_once('-')?;
    let (year, month): (u32, u32) = (year.parse().ok()?, month.parse().ok()?);
    if period.len() != 7 || !(1970..=9998).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let start = |y: u32, m: u32| {
        let time = humantime::parse_rfc3339(&format!("{y:04}-{m:02}-01T00:00:00Z")).ok()?;
        Some(time.duration_since(UNIX_EPOCH).ok()?.as_millis() as i64)
    };
    Some((start(year, month)?, start(next_year, next_month)?))
}

/// The usage rows a batch of appends adds: its metered work summed by
/// tenant and month.
pub(crate) fn usage_rows<'a>(
    appends: impl Iterator<Item = (&'a str, i64, Metered)>,
) -> Vec<(&'a str, String, Metered)> {
    let mut rows: BTreeMap<(&str, String), Metered> = BTreeMap::new();
    for (tenant, at, metered) in appends.filter(|(_, _, m)| !m.is_empty()) {
        let row = rows.entry((tenant, period_of(at))).or_default();
        row.steps += metered.steps;
        row.wasm_us += metered.wasm_us;
    }
    rows.into_iter().map(|((tenant, period), metered)| (tenant, period, metered)).collect()
}

/// The shard of the usage rows this process writes: processes writing
/// their own rows never wait on each other's row locks.
pub(crate) fn usage_shard() -> i64 {
    static SHARD: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SHARD.get_or_init(|| i64::from(std::process::id() % USAGE_SHARDS))
}

/// How many rows a tenant's month of usage is spread over at most.
const USAGE_SHARDS: u32 = 16;

impl Store {
    /// The tenant's plan (the default, with no limits, when none was set);
    /// `None` when there is no such tenant.
    pub async fn plan(&self, tenant: &str) -> Result<Option<Plan>> {
        let row: Option<Option<String>> = sqlx::query_scalar(sql::SELECT_PLAN)
            .bind(tenant)
            .fetch_optional(&mut self.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        let Some(text) = row else { return Ok(None) };
        let Some(text) = text else { return Ok(Some(Plan::default())) };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Corrupt { what: format!("the plan of tenant {tenant:?}"), message: e.to_string() })
    }

    /// Sets the tenant's plan; returns whether the tenant exists.
    pub async fn set_plan(&self, tenant: &str, plan: &Plan) -> Result<bool> {
        let text = serde_json::to_string(plan).expect("plans serialize");
        let updated = sqlx::query(sql::UPDATE_PLAN)
            .bind(tenant)
            .bind(text)
            .execute(&mut self.db.conn(Scope::Tenant(tenant)).await?)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// What the tenant used in `period` (`YYYY-MM`, see [`period_of`]).
    pub async fn usage(&self, tenant: &str, period: &str) -> Result<Usage> {
        let (start, end) = period_bounds(period).ok_or_else(|| Error::Corrupt {
            what: "a usage period".into(),
            message: format!("{period:?} is not YYYY-MM"),
        })?;
        let mut conn = self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?;
        let runs: i64 =
            sqlx::query_scalar(sql::COUNT_RUNS_CREATED).bind(tenant).bind(start).bind(end).fetch_one(&mut conn).await?;
        let (steps, wasm_us): (i64, i64) =
            sqlx::query_as(sql::SELECT_USAGE).bind(tenant).bind(period).fetch_one(&mut conn).await?;
        Ok(Usage { period: period.to_string(), runs, steps, wasm_us })
    }

    /// How many of the tenant's top-level runs are running or waiting.
    pub async fn running_runs(&self, tenant: &str) -> Result<i64> {
        let n = sqlx::query_scalar(sql::COUNT_RUNNING)
            .bind(tenant)
            .fetch_one(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_utc_calendar_months() {
        assert_eq!(period_of(0), "1970-01");
        // 2026-12-31T23:59:59.999Z and the next millisecond.
        let (start, end) = period_bounds("2026-12").unwrap();
        assert_eq!(period_of(start), "2026-12");
        assert_eq!(period_of(end - 1), "2026-12");
        assert_eq!(period_of(end), "2027-01");
        assert_eq!(period_bounds("2027-01").unwrap().0, end);
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00", "x"] {
            assert_eq!(period_bounds(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_batch_adds_one_row_per_tenant_and_month() {
        let (dec, jan) = (period_bounds("2026-12").unwrap().0, period_bounds("2027-01").unwrap().0);
        let m = |steps| Metered { steps, wasm_us: steps * 10 };
        let rows = usage_rows(
            [("a", dec, m(1)), ("b", dec, m(2)), ("a", dec + 5, m(3)), ("a", jan, m(4)), ("a", dec, m(0))].into_iter(),
        );
        assert_eq!(
            rows,
            vec![
                ("a", "2026-12".to_string(), m(4)),
                ("a", "2027-01".to_string(), m(4)),
                ("b", "2026-12".to_string(), m(2))
            ]
        );
    }

    #[test]
    fn a_plan_without_a_list_allows_every_connector() {
        assert!(Plan::default().allows_connector("http"));
        let plan = Plan { connectors: Some(vec!["http".into()]), ..Plan::default() };
        assert!(plan.allows_connector("http"));
        assert!(!plan.allows_connector("slack"));
    }
}
