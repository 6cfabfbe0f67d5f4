//! `/v1/runs`: start a run of a stored version (once per idempotency key),
//! list runs page by page, read one and its timeline, and cancel, signal
//! or resume it. A started run is driven by a worker; one that waits is
//! parked in the database until it is due.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_core::RunStatus;
use weft_store::{RunFilter, RunRecord};

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::routes::page_size;

/// A run to start.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The workflow version's hash (from `POST /v1/workflows`).
    pub workflow: String,
    /// The run's input (`{}` when left out), checked against the
    /// workflow's `input` schema.
    #[serde(default = "empty_object")]
    pub input: Value,
    /// A key of the caller's choosing: starting again with the same key
    /// returns the first run instead of starting another.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A run.
#[derive(Serialize, JsonSchema)]
pub struct RunView {
    /// Its id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The version it is pinned to.
    pub workflow_hash: String,
    /// `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Its input.
    pub input: Value,
    /// Its output, once completed.
    pub output: Option<Value>,
    /// Its error, once failed or cancelled.
    pub error: Option<Value>,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// For a child workflow's run: the run whose step started it.
    pub parent: Option<String>,
    /// For a retry: the run it retries.
    pub retry_of: Option<String>,
    /// Created at (ms).
    pub created_at: i64,
    /// Last written at (ms).
    pub updated_at: i64,
    /// The seq of its journal's last event.
    pub last_seq: i64,
    /// The process that drives it (`host:pid:nonce`), while its lease holds.
    pub lease_owner: Option<String>,
    /// Until when (ms) that lease holds unless renewed.
    pub lease_until: Option<i64>,
    /// When (ms) a waiting run is due for a worker again; the largest
    /// 64-bit integer while it waits for a signal alone.
    pub wake_at: i64,
}

impl From<RunRecord> for RunView {
    fn from(run: RunRecord) -> RunView {
        let json = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
        RunView {
            status: run.status.as_str().to_string(),
            input: json(&run.input),
            output: run.output.as_deref().map(json),
            error: run.error.as_deref().map(json),
            id: run.id,
            workflow: run.workflow_name,
            workflow_hash: run.workflow_hash,
            idempotency_key: run.idempotency_key,
            parent: run.parent_id,
            retry_of: run.retry_of,
            created_at: run.created_at,
            updated_at: run.updated_at,
            last_seq: run.last_seq,
            lease_owner: run.lease_owner,
            lease_until: run.lease_until,
            wake_at: run.wake_at,
        }
    }
}

/// The answer to a start.
#[derive(Serialize, JsonSchema)]
pub struct Started {
    /// The run.
    pub run: RunView,
    /// False when the idempotency key had already started this run.
    pub created: bool,
}

/// Which runs to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs with this status: `running`, `completed`, `failed` or
    /// `cancelled`.
    pub status: Option<String>,
    /// Only runs of the workflow with this name.
    pub workflow: Option<String>,
    /// Only runs created at or after this time (ms).
    pub since: Option<i64>,
    /// Only runs created before this time (ms).
    pub until: Option<i64>,
    /// At most this many (50 when left out, up to 500).
    pub limit: Option<i64>,
    /// The `next_cursor` of the page before.
    pub cursor: Option<String>,
}

/// A page of runs, newest first.
#[derive(Serialize, JsonSchema)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunView>,
    /// Pass it as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A run with its timeline and journal.
#[derive(Serialize, JsonSchema)]
pub struct Timeline {
    /// The run.
    pub run: RunView,
    /// Where it stands: `running`, `waiting`, `interrupted`, `completed`,
    /// `failed` or `cancelled`.
    pub standing: String,
    /// One entry per step attempt, wait and iteration, in order.
    pub timeline: Value,
    /// The journal: `{seq, at, event}` in order.
    pub events: Vec<Value>,
}

/// A run's path.
#[derive(Deserialize, JsonSchema)]
pub struct RunPath {
    /// The run's id.
    pub id: String,
}

/// Why a run is cancelled.
#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// Recorded in its journal.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A signal to deliver.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// The name a `wait_for_signal` step waits for.
    pub name: String,
    /// Its payload, which becomes that step's output (`null` when left out).
    #[serde(default)]
    pub payload: Value,
}

/// A page cursor: where the page before ended.
fn cursor(run: &RunRecord) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", run.created_at, run.id))
}

fn parse_cursor(text: &str) -> ApiResult<(i64, String)> {
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| ApiError::invalid_cursor())?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::invalid_cursor())?;
    let (at, id) = text.split_once(':').ok_or_else(ApiError::invalid_cursor)?;
    Ok((at.parse().map_err(|_| ApiError::invalid_cursor())?, id.to_string()))
}

/// The tenant's run `id` (or the one run whose id starts with it), or 404.
async fn run(state: &AppState, tenant: &str, id: &str) -> ApiResult<RunRecord> {
    found(state.engine().store().find_run(tenant, id).await)
}

/// A run looked up by id or prefix, or why not: 404, or a request for more
/// of the id.
fn found(run: Result<RunRecord, weft_store::Error>) -> ApiResult<RunRecord> {
    match run {
        Err(weft_store::Error::AmbiguousRun { prefix, candidates }) => Err(ApiError::invalid_request(format!(
            "{prefix:?} starts several runs' ids ({candidates}); give more characters"
        ))
        .at("id")),
        found => Ok(found?),
    }
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Json(start): Json<StartRun>,
) -> ApiResult<(StatusCode, axum::Json<Started>)> {
    let tenant = caller.tenant(Action::RunWorkflows)?;
    if start.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 255) {
        return Err(ApiError::invalid_request("an idempotency key is 1 to 255 characters").at("$.idempotency_key"));
    }
    let engine = state.engine();
    // A deprecated version is refused by the statement that writes the run.
    let definition = engine
        .version(tenant, &start.workflow)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow version {:?}", start.workflow)))?;
    let key = start.idempotency_key.as_deref();
    // With a free slot here, the run's first steps start in the commit that
    // creates it and go out at once; otherwise it is left to a claim.
    let (run, created) = match state.worker().and_then(|worker| Some((worker, worker.slot()?))) {
        Some((worker, slot)) => {
            let (run, created, started) = engine.start_to_drive(tenant, &definition, start.input, key).await?;
            if let Some(started) = started {
                worker.drive_started(started, slot);
            }
            (run, created)
        }
        None => {
            let (run, created) = engine.start_once(tenant, &definition, start.input, key).await?;
            // A run written parked (its first steps only wait) is left to
            // the worker that claims it when due.
            if created && run.lease_owner.is_some() {
                state.drive(tenant, &run.id).await;
            }
            (run, created)
        }
    };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(Started { run: run.into(), created })))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<RunPage>> {
    let tenant = caller.tenant(Action::Read)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(name) => Some(name.parse::<RunStatus>().map_err(|_| {
            ApiError::invalid_request("`status` is one of running, completed, failed, cancelled").at("status")
        })?),
    };
    let limit = page_size(query.limit)?;
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter =
        RunFilter { workflow: query.workflow, status, since: query.since, until: query.until, after, limit: limit + 1 };
    let mut runs = state.engine().store().filter_runs(tenant, &filter).await?;
    let next_cursor = if runs.len() as i64 > limit {
        runs.truncate(limit as usize);
        runs.last().map(cursor)
    } else {
        None
    };
    Ok(axum::Json(RunPage { runs: runs.into_iter().map(RunView::from).collect(), next_cursor }))
}

/// How long to wait for a run to finish before answering.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// Seconds, at most 30: answer as soon as the run has finished, or
    /// when they have passed (with the run still `running`). Without it,
    /// answer at once.
    #[serde(default)]
    pub wait: Option<u64>,
}

/// The longest `wait` a request may ask for, in seconds.
const MAX_WAIT_SECONDS: u64 = 30;

async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { id }): Path<RunPath>,
    Query(query): Query<GetQuery>,
) -> ApiResult<axum::Json<RunView>> {
    let tenant = caller.tenant(Action::Read)?;
    let found = match query.wait {
        None | Some(0) => run(&state, tenant, &id).await?,
        Some(seconds) if seconds > MAX_WAIT_SECONDS => {
            return Err(ApiError::invalid_request(format!("`wait` is at most {MAX_WAIT_SECONDS} seconds")).at("wait"));
        }
        Some(seconds) => {
            let within = std::time::Duration::from_secs(seconds);
            match state.engine().wait_finished(tenant, &id, within).await {
                Err(weft_runtime::Error::Store(e)) => found(Err(e))?,
                waited => waited?,
            }
        }
    };
    Ok(axum::Json(found.into()))
}

async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { id }): Path<RunPath>,
) -> ApiResult<axum::Json<Timeline>> {
    let tenant = caller.tenant(Action::Read)?;
    let run = run(&state, tenant, &id).await?;
    let inspection = weft_runtime::inspect(state.engine().store(), &run).await?;
    let mut entries = weft_core::timeline(&inspection.definition, inspection.events.iter().map(|e| (e.at, &e.event)));
    if inspection.standing == weft_runtime::Standing::Interrupted {
        weft_core::interrupt(&mut entries);
    }
    let events =
        inspection.events.iter().map(|e| serde_json::json!({ "seq": e.seq, "at": e.at, "event": e.event })).collect();
    Ok(axum::Json(Timeline {
        standing: inspection.standing.as_str().to_string(),
        timeline: serde_json::to_value(entries).map_err(|e| ApiError::internal(&e))?,
        events,
        run: run.into(),
    }))
}

async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { id }): Path<RunPath>,
    body: Option<Json<Cancel>>,
) -> ApiResult<(StatusCode, axum::Json<RunView>)> {
    let tenant = caller.tenant(Action::RunWorkflows)?;
    let reason =
        body.and_then(|Json(c)| c.reason).unwrap_or_else(|| format!("cancelled through the API (key {})", caller.key));
    let found = run(&state, tenant, &id).await?;
    // A run that a driver holds ends at the driver's next look: the answer
    // may still say `running`.
    Ok((StatusCode::ACCEPTED, axum::Json(state.engine().cancel(tenant, &found.id, &reason).await?.into())))
}

async fn signal(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { id }): Path<RunPath>,
    Json(signal): Json<Signal>,
) -> ApiResult<(StatusCode, axum::Json<RunView>)> {
    let tenant = caller.tenant(Action::RunWorkflows)?;
    let found = run(&state, tenant, &id).await?;
    let run = state.engine().signal(tenant, &found.id, &signal.name, signal.payload).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(run.into())))
}

async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { id }): Path<RunPath>,
) -> ApiResult<(StatusCode, axum::Json<RunView>)> {
    let tenant = caller.tenant(Action::RunWorkflows)?;
    let found = run(&state, tenant, &id).await?;
    if let Some(status) = Some(found.status).filter(|s| s.is_terminal()) {
        return Err(ApiError::conflict("run_finished", format!("run {id} has already {status}")));
    }
    // Due now: a worker claims it as soon as no live driver holds it.
    state.engine().store().wake_run(tenant, &found.id, weft_runtime::now_ms()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(run(&state, tenant, &found.id).await?.into())))
}

/// How to retry a run.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Run this step again, and every step that depends on it, even if they
    /// completed. Without it, only the steps that did not complete run again.
    #[serde(default)]
    pub from: Option<String>,
}

async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    Path(RunPath { id }): Path<RunPath>,
    body: Option<Json<Retry>>,
) -> ApiResult<(StatusCode, axum::Json<RunView>)> {
    let tenant = caller.tenant(Action::RunWorkflows)?;
    let from = body.and_then(|Json(r)| r.from);
    let found = run(&state, tenant, &id).await?;
    let engine = state.engine();
    let definition = engine.definition(&found).await?;
    let retry = engine.start_retry(&found, &definition, from.as_deref()).await.map_err(|e| match e {
        e @ weft_runtime::Error::Retry { .. } if from.is_some() => ApiError::from(e).at("$.from"),
        e => ApiError::from(e),
    })?;
    state.drive(tenant, &retry.id).await;
    Ok((StatusCode::CREATED, axum::Json(run(&state, tenant, &retry.id).await?.into())))
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/runs",
            post_with(start, |op| {
                op.summary("Start a run")
                    .description(
                        "Starts a run of a stored workflow version; a worker drives it. With an \
                         `idempotency_key` already used, returns that run (200, `created: false`).",
                    )
                    .tag("runs")
            })
            .get_with(list, |op| op.summary("List runs").description("Newest first, a page at a time.").tag("runs")),
        )
        .api_route(
            "/v1/runs/{id}",
            get_with(get, |op| {
                op.summary("Get a run")
                    .description("With `wait`, the answer waits (up to that many seconds) for the run to finish.")
                    .tag("runs")
            }),
        )
        .api_route(
            "/v1/runs/{id}/timeline",
            get_with(timeline, |op| {
                op.summary("A run's timeline").description("What `weft runs show` draws, and the journal.").tag("runs")
            }),
        )
        .api_route(
            "/v1/runs/{id}/cancel",
            post_with(cancel, |op| {
                op.summary("Cancel a run")
                    .description(
                        "Records the cancellation; the run ends at once when nothing drives it, else at its \
                         driver's next look (then the answer still says `running`).",
                    )
                    .tag("runs")
            }),
        )
        .api_route(
            "/v1/runs/{id}/signal",
            post_with(signal, |op| {
                op.summary("Signal a run")
                    .description("A run not waiting for it yet keeps it until a step asks.")
                    .tag("runs")
            }),
        )
        .api_route(
            "/v1/runs/{id}/resume",
            post_with(resume, |op| {
                op.summary("Resume a run").description("Makes it due now, for a worker to pick up.").tag("runs")
            }),
        )
        .api_route(
            "/v1/runs/{id}/retry",
            post_with(retry, |op| {
                op.summary("Retry a finished run")
                    .description(
                        "Starts a new run of the same workflow version, input and connector builds, reusing the \
                         outputs of the steps that completed (except `from` and what depends on it); a worker \
                         drives it. Each run names the other (`retry_of`). 409 `run_not_finished` for a run that \
                         has not finished, `retry_refused` for a `from` that cannot be retried.",
                    )
                    .tag("runs")
            }),
        )
}
