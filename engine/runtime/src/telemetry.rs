//! The engine's metrics, through the `metrics` facade: a process that
//! installs a recorder (the server, for `/metrics`) calls [`record`] and
//! sees them. Until then nothing is built: the labels of a step's metric
//! are strings, and the CLI's steps should not pay for them.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `weft_runs_started_total` | counter | tenant, workflow |
//! | `weft_runs_finished_total` | counter | tenant, workflow, status |
//! | `weft_step_duration_seconds` | histogram | tenant, connector, outcome |
//! | `weft_runs_claimed_total` | counter | (none) |
//! | `weft_lease_takeovers_total` | counter | (none) |
//! | `weft_runs_parked_total` | counter | (none) |

use std::sync::atomic::{AtomicBool, Ordering};

use weft_core::RunStatus;

static RECORDING: AtomicBool = AtomicBool::new(false);

/// Turns the engine's metrics on, for a process that has installed a
/// `metrics` recorder.
pub fn record() {
    RECORDING.store(true, Ordering::Relaxed);
}

fn on() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// A run was created.
pub(crate) fn run_started(tenant: &str, workflow: &str) {
    if !on() {
        return;
    }
    metrics::counter!("weft_runs_started_total", "tenant" => tenant.to_string(), "workflow" => workflow.to_string())
        .increment(1);
}

/// This process committed a run's end.
pub(crate) fn run_finished(tenant: &str, workflow: &str, status: RunStatus) {
    if !on() {
        return;
    }
    metrics::counter!(
        "weft_runs_finished_total",
        "tenant" => tenant.to_string(),
        "workflow" => workflow.to_string(),
        "status" => status.as_str()
    )
    .increment(1);
}

/// A connector call's attempt ended after `seconds`.
pub(crate) fn step_attempt(tenant: &str, connector: &str, ok: bool, seconds: f64) {
    if !on() {
        return;
    }
    metrics::histogram!(
        "weft_step_duration_seconds",
        "tenant" => tenant.to_string(),
        "connector" => connector.to_string(),
        "outcome" => if ok { "ok" } else { "error" }
    )
    .record(seconds);
}

/// A worker claimed runs, `taken_over` of them from drivers whose leases
/// had expired.
pub(crate) fn claimed(runs: usize, taken_over: usize) {
    if !on() {
        return;
    }
    metrics::counter!("weft_runs_claimed_total").increment(runs as u64);
    metrics::counter!("weft_lease_takeovers_total").increment(taken_over as u64);
}

/// A run was parked.
pub(crate) fn parked() {
    if !on() {
        return;
    }
    metrics::counter!("weft_runs_parked_total").increment(1);
}
