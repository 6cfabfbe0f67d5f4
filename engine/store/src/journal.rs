//! Workflow versions and the append-only event journal.

use sqlx::{AssertSqlSafe, FromRow};
use weft_core::{Event, RunStatus};

use crate::db::Scope;
use crate::sql::{self, AppendedRow, EventRow};
use crate::usage::{Metered, usage_shard};
use crate::{Db, Error, Result, Store};

/// An event as stored: its place in the journal and when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// 1-based position in the run's journal.
    pub seq: i64,
    /// Milliseconds since the epoch when it was committed.
    pub at: i64,
    /// The event.
    pub event: Event,
}

impl Store {
    /// Stores a workflow version under its content hash (a no-op if
    /// present), as created at `at` (ms).
    pub async fn put_workflow(&self, tenant: &str, hash: &str, name: &str, definition: &str, at: i64) -> Result<()> {
        sqlx::query(sql::INSERT_WORKFLOW)
            .bind(tenant)
            .bind(hash)
            .bind(name)
            .bind(definition)
            .bind(at)
            .execute(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(())
    }

    /// The definition (JSON text) of a stored workflow version.
    pub async fn get_workflow(&self, tenant: &str, hash: &str) -> Result<Option<String>> {
        let definition = sqlx::query_scalar(sql::SELECT_WORKFLOW)
            .bind(tenant)
            .bind(hash)
            .fetch_optional(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(definition)
    }

    /// Appends events to a run's journal and updates the run's summary,
    /// atomically. Appends from every run in this process are group-committed:
    /// whatever is queued while a transaction commits goes into the next one,
    /// so many checkpoints share one fsync. Returns the seq of the first
    /// appended event; when it is not `known + 1`, someone else (a signal, a
    /// cancel) wrote in between.
    /// A run of another tenant is not found ([`Error::RunNotFound`]). `at`
    /// (ms) is when the events happened; a batch records the latest of its
    /// appends' times.
    pub async fn append(&self, tenant: &str, run_id: &str, events: &[Event], at: i64) -> Result<i64> {
        self.shard(tenant).await?.committer.append(tenant, run_id, events.to_vec(), at, Metered::default()).await
    }

    /// [`Store::append`], adding the work the events record (connector
    /// calls that ran) to the tenant's usage in the same commit.
    pub async fn append_metered(
        &self,
        tenant: &str,
        run_id: &str,
        events: &[Event],
        at: i64,
        metered: Metered,
    ) -> Result<i64> {
        self.shard(tenant).await?.committer.append(tenant, run_id, events.to_vec(), at, metered).await
    }

    /// Adds work done outside any run (a connector called directly) to the
    /// tenant's usage, group-committed with the journal's appends.
    pub async fn meter(&self, tenant: &str, at: i64, metered: Metered) -> Result<()> {
        self.shard(tenant).await?.committer.append(tenant, "", Vec::new(), at, metered).await.map(drop)
    }

    /// The tenant's run's events with seq greater than `after`, in order
    /// (none for another tenant's run).
    pub async fn load_events(&self, tenant: &str, run_id: &str, after: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query_as::<_, EventRow>(sql::SELECT_EVENTS)
            .bind(run_id)
            .bind(after)
            .bind(tenant)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        rows.into_iter()
            .map(|EventRow { seq, at, body }| {
                let event = serde_json::from_str(&body).map_err(|e| Error::Corrupt {
                    what: format!("event {seq} of run {run_id}"),
                    message: e.to_string(),
                })?;
                Ok(StoredEvent { seq, at, event })
            })
            .collect()
    }
}

impl Db {
    /// Appends within an open write transaction, on SQLite; Postgres batches
    /// go through [`append_runs`]. See [`Store::append`].
    pub(crate) async fn append_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant: &str,
        run_id: &str,
        events: &[Event],
        now: i64,
    ) -> Result<i64> {
        // Reserving the seqs (and recording the run's end, as in
        // `append_runs`) is one `UPDATE … RETURNING`, which also takes the
        // run's row lock; the events go in with one INSERT.
        let end = RunEnd::of(events);
        let last_seq: i64 = sqlx::query_scalar(sql::RESERVE_SEQS)
            .bind(events.len() as i64)
            .bind(now)
            .bind(run_id)
            .bind(end.as_ref().map(|e| e.status.as_str()))
            .bind(end.as_ref().and_then(|e| e.output.clone()))
            .bind(end.and_then(|e| e.error))
            .bind(tenant)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        let last = last_seq - events.len() as i64;
        insert_events(tx, tenant, run_id, last, events, now).await?;
        Ok(last + 1)
    }
}

/// Postgres: one statement reserves every run's seqs, inserts all their
/// events and records the end of the runs that end, however many runs the
/// batch holds (one round trip, and in autocommit one fsync). `runs` holds
/// each run once, with its tenant and its events in order. Returns each
/// run's first seq, in `runs`' order; `None` for a run that does not exist
/// under its tenant.
pub(crate) async fn append_runs<'e, E>(
    executor: E,
    runs: &[RunEvents<'_>],
    now: i64,
    usage: &[(&str, String, Metered)],
) -> Result<Vec<Option<i64>>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let counts: Vec<usize> = runs.iter().map(|r| r.events.len()).collect();
    let sql = sql::append_runs(&counts, usage.len());
    // A lone run's statement has few shapes and is worth preparing once per
    // connection; a batch's shape rarely repeats.
    let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(runs.len() == 1).bind(now);
    for RunEvents { tenant, run, events } in runs {
        let end = RunEnd::of(events.iter().copied());
        query = query
            .bind(*run)
            .bind(*tenant)
            .bind(end.as_ref().map(|e| e.status.as_str()))
            .bind(end.as_ref().and_then(|e| e.output.clone()))
            .bind(end.and_then(|e| e.error));
    }
    for RunEvents { events, .. } in runs {
        for event in events {
            query = query
                .bind(event.kind())
                .bind(event.step())
                .bind(serde_json::to_string(event).expect("events serialize"));
        }
    }
    for (tenant, period, metered) in usage {
        query = query.bind(*tenant).bind(period.as_str()).bind(usage_shard()).bind(metered.steps).bind(metered.wasm_us);
    }
    let mut firsts = vec![None; runs.len()];
    for row in query.fetch_all(executor).await? {
        let AppendedRow { i, base } = AppendedRow::from_row(&row)?;
        if let Some(first) = usize::try_from(i).ok().and_then(|i| firsts.get_mut(i)) {
            *first = Some(base + 1);
        }
    }
    Ok(firsts)
}

/// One run's part of a Postgres batch: its tenant, and its events in order.
pub(crate) struct RunEvents<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) run: &'a str,
    pub(crate) events: Vec<&'a Event>,
}

/// Events one batched statement takes at most (3 parameters each).
pub(crate) const EVENTS_PER_BATCH_STATEMENT: usize = 2000;

/// Rows per INSERT statement (7 parameters each, well under every backend's limit).
pub(crate) const ROWS_PER_INSERT: usize = 100;

pub(crate) async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    run_id: &str,
    last: i64,
    events: &[Event],
    now: i64,
) -> Result<()> {
    for (chunk_no, chunk) in events.chunks(ROWS_PER_INSERT).enumerate() {
        let sql = sql::insert_events(chunk.len());
        let first = last + 1 + (chunk_no * ROWS_PER_INSERT) as i64;
        bind_events(sqlx::query(AssertSqlSafe(sql)), tenant, run_id, first, chunk, now).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Binds the event rows of [`sql::insert_events`] (or of the end of
/// [`sql::insert_run_with_events`]), numbering seqs from `first`.
pub(crate) fn bind_events<'q>(
    mut query: AnyQuery<'q>,
    tenant: &str,
    run_id: &str,
    first: i64,
    events: &[Event],
    now: i64,
) -> AnyQuery<'q> {
    for (n, event) in events.iter().enumerate() {
        query = query
            .bind(run_id.to_string())
            .bind(first + n as i64)
            .bind(tenant.to_string())
            .bind(event.kind())
            .bind(event.step().map(str::to_string))
            .bind(serde_json::to_string(event).expect("events serialize"))
            .bind(now);
    }
    query
}

/// A query on the `Any` driver.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// How a run ended, as its summary row records it.
pub(crate) struct RunEnd {
    pub(crate) status: RunStatus,
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
}

impl RunEnd {
    /// The end that the last terminal event among `events` records, if any.
    pub(crate) fn of<'e>(events: impl IntoIterator<Item = &'e Event, IntoIter: DoubleEndedIterator>) -> Option<RunEnd> {
        events.into_iter().rev().find_map(|event| {
            let (status, output, error) = match event {
                Event::RunCompleted { output } => (RunStatus::Completed, Some(output.to_string()), None),
                Event::RunFailed { error } => {
                    (RunStatus::Failed, None, Some(serde_json::to_string(error).expect("errors serialize")))
                }
                Event::RunCancelled { reason } => (
                    RunStatus::Cancelled,
                    None,
                    Some(serde_json::json!({ "kind": "cancelled", "message": reason }).to_string()),
                ),
                _ => return None,
            };
            Some(RunEnd { status, output, error })
        })
    }
}
