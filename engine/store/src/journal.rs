//! Workflow versions and the append-only event journal.

use sqlx::{AssertSqlSafe, Row};
use weft_core::{Event, RunStatus};

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
        sqlx::query(
            "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, hash) DO NOTHING",
        )
        .bind(tenant)
        .bind(hash)
        .bind(name)
        .bind(definition)
        .bind(at)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// The definition (JSON text) of a stored workflow version.
    pub async fn get_workflow(&self, tenant: &str, hash: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT definition FROM workflows WHERE tenant_id = $1 AND hash = $2")
            .bind(tenant)
            .bind(hash)
            .fetch_optional(&self.db.pool)
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
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
        self.committer.append(tenant, run_id, events.to_vec(), at).await
    }

    /// The tenant's run's events with seq greater than `after`, in order
    /// (none for another tenant's run).
    pub async fn load_events(&self, tenant: &str, run_id: &str, after: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, at, body FROM events WHERE run_id = $1 AND seq > $2 AND tenant_id = $3 ORDER BY seq",
        )
        .bind(run_id)
        .bind(after)
        .bind(tenant)
        .fetch_all(&self.db.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let seq: i64 = row.get(0);
                let body: String = row.get(2);
                let event = serde_json::from_str(&body).map_err(|e| Error::Corrupt {
                    what: format!("event {seq} of run {run_id}"),
                    message: e.to_string(),
                })?;
                Ok(StoredEvent { seq, at: row.get(1), event })
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
        let row = sqlx::query(
            "UPDATE runs SET last_seq = last_seq + $1, updated_at = $2, status = COALESCE($4, status), \
             output = COALESCE($5, output), error = COALESCE($6, error), \
             lease_owner = CASE WHEN $4 IS NULL THEN lease_owner END, \
             lease_until = CASE WHEN $4 IS NULL THEN lease_until END \
             WHERE id = $3 AND tenant_id = $7 RETURNING last_seq",
        )
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
        let last = row.get::<i64, _>(0) - events.len() as i64;
        insert_events(tx, tenant, run_id, last, events, now).await?;
        Ok(last + 1)
    }
}

/// Postgres: one statement reserves every run's seqs, inserts all their
/// events and records the end of the runs that end, however many runs the
/// batch holds (one round trip, and in autocommit one fsync). `runs` holds
/// each run once, with its tenant and its events in order. Returns each
/// run's first seq by (run, tenant); a run missing from the answer does not
/// exist under its tenant.
pub(crate) async fn append_runs<'e, E>(
    executor: E,
    runs: &[RunEvents<'_>],
    now: i64,
) -> Result<std::collections::HashMap<(String, String), i64>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut sql = String::from("WITH v(run_id, tenant_id, n, status, output, error) AS (VALUES ");
    let mut p = 1;
    push_rows(&mut sql, &mut p, runs.len(), &["text", "text", "bigint", "text", "text", "text"]);
    // A run that ends takes its status, output or error, and gives up its lease.
    sql.push_str(
        "), r AS (UPDATE runs SET last_seq = runs.last_seq + v.n, updated_at = $1, \
         status = COALESCE(v.status, runs.status), output = COALESCE(v.output, runs.output), \
         error = COALESCE(v.error, runs.error), \
         lease_owner = CASE WHEN v.status IS NULL THEN runs.lease_owner END, \
         lease_until = CASE WHEN v.status IS NULL THEN runs.lease_until END \
         FROM v WHERE runs.id = v.run_id AND runs.tenant_id = v.tenant_id \
         RETURNING runs.id, runs.tenant_id, runs.last_seq - v.n AS base), \
         e(run_id, tenant_id, k, kind, step, body) AS (VALUES ",
    );
    let events = runs.iter().map(|r| r.events.len()).sum();
    push_rows(&mut sql, &mut p, events, &["text", "text", "bigint", "text", "text", "text"]);
    sql.push_str(
        ") INSERT INTO events (run_id, seq, tenant_id, kind, step, body, at) \
         SELECT e.run_id, r.base + e.k, r.tenant_id, e.kind, e.step, e.body, $1 \
         FROM e JOIN r ON r.id = e.run_id AND r.tenant_id = e.tenant_id \
         RETURNING run_id, tenant_id, seq",
    );
    // A lone run's statement has few shapes and is worth preparing once per
    // connection; a batch's shape rarely repeats.
    let mut query = sqlx::query(AssertSqlSafe(sql)).persistent(runs.len() == 1).bind(now);
    for RunEvents { tenant, run, events } in runs {
        let end = RunEnd::of(events.iter().copied());
        query = query
            .bind(*run)
            .bind(*tenant)
            .bind(events.len() as i64)
            .bind(end.as_ref().map(|e| e.status.as_str()))
            .bind(end.as_ref().and_then(|e| e.output.clone()))
            .bind(end.and_then(|e| e.error));
    }
    for RunEvents { tenant, run, events } in runs {
        for (k, event) in events.iter().enumerate() {
            query = query
                .bind(*run)
                .bind(*tenant)
                .bind(k as i64 + 1)
                .bind(event.kind())
                .bind(event.step())
                .bind(serde_json::to_string(event).expect("events serialize"));
        }
    }
    let mut firsts = std::collections::HashMap::new();
    for row in query.fetch_all(executor).await? {
        let (run, tenant, seq): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let entry = firsts.entry((run, tenant)).or_insert(seq);
        *entry = (*entry).min(seq);
    }
    Ok(firsts)
}

/// One run's part of a Postgres batch: its tenant, and its events in order.
pub(crate) struct RunEvents<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) run: &'a str,
    pub(crate) events: Vec<&'a Event>,
}

/// Appends `rows` comma-separated rows of typed placeholders (`$n::type`,
/// one per column), numbered after `last`: the shape of both the per-run and
/// the per-event lists of [`append_runs`].
fn push_rows(sql: &mut String, last: &mut usize, rows: usize, columns: &[&str]) {
    use std::fmt::Write;
    for row in 0..rows {
        sql.push_str(if row > 0 { ", (" } else { "(" });
        for (c, column) in columns.iter().enumerate() {
            *last += 1;
            let _ = write!(sql, "{}${}::{column}", if c > 0 { ", " } else { "" }, *last);
        }
        sql.push(')');
    }
}

/// Events one batched statement takes at most (5 parameters each).
pub(crate) const EVENTS_PER_BATCH_STATEMENT: usize = 2000;

/// Rows per INSERT statement (7 parameters each, well under every backend's limit).
pub(crate) const ROWS_PER_INSERT: usize = 100;

pub(crate) async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    run_id: &str,
    last: i64,
    events: &[Event],
    now: i64,
) -> Result<()> {
    for (chunk_no, chunk) in events.chunks(ROWS_PER_INSERT).enumerate() {
        let mut sql = String::from("INSERT INTO events (run_id, seq, tenant_id, kind, step, body, at) VALUES ");
        push_event_rows(&mut sql, 0, chunk.len());
        let first = last + 1 + (chunk_no * ROWS_PER_INSERT) as i64;
        bind_events(sqlx::query(AssertSqlSafe(sql)), tenant, run_id, first, chunk, now).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends `rows` placeholder rows of the events table's seven columns to an
/// INSERT, numbering parameters after `offset`.
pub(crate) fn push_event_rows(sql: &mut String, offset: usize, rows: usize) {
    for row in 0..rows {
        let p = offset + row * 7;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${}, ${}, ${}, ${}, ${})", p + 1, p + 2, p + 3, p + 4, p + 5, p + 6, p + 7));
    }
}

/// Binds the rows that [`push_event_rows`] placed, numbering seqs from `first`.
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
