//! `/metrics`: the engine's and the API's metrics in Prometheus's text
//! format, with the queue's depth and the worker's load read at each
//! scrape. Labels name tenants and workflows: expose it to the operator's
//! network only.

use std::sync::OnceLock;

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::extract::State;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::error::ApiResult;

/// Seconds: the buckets of the duration histograms, from a fast wasm step
/// to a slow HTTP call.
const BUCKETS: &[f64] = &[0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process's recorder, installed by the first server made in it. When
/// another recorder was installed first (by a program embedding the
/// server), this one renders what it alone records, which may be nothing.
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only what reaches this one");
        }
        weft_runtime::telemetry::record();
        handle
    })
}

/// Records an answered request.
pub(crate) fn request(method: &str, route: &str, status: u16, seconds: f64) {
    let labels = [("method", method.to_string()), ("route", route.to_string()), ("status", status.to_string())];
    metrics::histogram!("weft_http_request_duration_seconds", &labels).record(seconds);
}

/// The metrics as text (served as `text/plain`, which Prometheus reads).
async fn metrics(State(state): State<AppState>) -> ApiResult<String> {
    let due = state.engine().store().due_runs(weft_runtime::now_ms()).await?;
    metrics::gauge!("weft_runs_due").set(due as f64);
    if let Some(worker) = state.worker() {
        metrics::gauge!("weft_runs_driving").set(worker.driving() as f64);
    }
    Ok(handle().render())
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/metrics",
        get_with(metrics, |op| {
            op.summary("Metrics")
                .description(
                    "Prometheus text format: runs started and finished by tenant, workflow and status; step \
                     durations by connector; runs due and not driven (the queue); runs being driven; claims \
                     and lease takeovers; request durations by route and status.",
                )
                .tag("health")
        }),
    )
}
