//! Group commit: every journal append of a store goes through one writer,
//! which takes all appends that queued up while its previous batch committed
//! into the next one. Throughput is then bounded by appends per fsync, not by
//! fsyncs.
//!
//! There is no writer task: the caller that finds the writer free commits the
//! queue itself (leader and followers). An append alone in the queue is
//! committed in its caller's task, so a lone run's step costs no hand-off
//! between threads; a batch that holds other callers' appends is committed
//! in a task of its own, so that a caller dropped mid-commit cannot lose
//! their answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::pool::PoolConnection;
use tokio::sync::oneshot;
use weft_core::Event;

use crate::conn::Held;
use crate::db::Scope;
use crate::journal::{EVENTS_PER_BATCH_STATEMENT, RunEvents, append_runs};
use crate::usage::{Metered, usage_rows, usage_shard};
use crate::{Db, Error, Result, sql};

/// Appends one transaction takes at most.
const MAX_BATCH: usize = 512;

struct Job {
    /// Tells a caller's own append from others'.
    id: u64,
    tenant: String,
    run_id: String,
    /// When the events happened (ms).
    at: i64,
    events: Vec<Event>,
    /// The work the events record, added to the tenant's usage.
    metered: Metered,
    reply: oneshot::Sender<Result<i64>>,
}

/// The queue of appends and the writer that commits them.
#[derive(Clone)]
pub(crate) struct Committer {
    queue: Arc<Mutex<Vec<Job>>>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    ids: Arc<AtomicU64>,
}

/// The connection that appends are written on, kept out of the pool between
/// batches (a pooled statement costs a task per connection returned).
///
/// A caller dropped mid-write leaves its statement in flight on this
/// connection, and the connection is kept: sqlx sends what was queued and
/// reads the answers before the next statement, so the abandoned append is
/// committed (or not) before any later one. Closing the connection instead
/// would let the database finish that statement after later appends, out of
/// order. What the abandoned statement answers, even an error, belongs to
/// the caller who left, so the next batch first settles it with a no-op.
struct Writer {
    db: Db,
    conn: Option<Held<PoolConnection<sqlx::Any>>>,
    /// A batch began and did not finish: its caller was dropped mid-write.
    abandoned: bool,
}

impl Committer {
    pub(crate) fn new(db: Db) -> Committer {
        Committer {
            queue: Arc::default(),
            writer: Arc::new(tokio::sync::Mutex::new(Writer { db, conn: None, abandoned: false })),
            ids: Arc::default(),
        }
    }

    pub(crate) async fn append(
        &self,
        tenant: &str,
        run_id: &str,
        events: Vec<Event>,
        at: i64,
        metered: Metered,
    ) -> Result<i64> {
        let (reply, mut answer) = oneshot::channel();
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let job = Job { id, tenant: tenant.to_string(), run_id: run_id.to_string(), at, events, metered, reply };
        self.queue.lock().expect("append queue").push(job);
        loop {
            tokio::select! {
                biased;
                result = &mut answer => return result.map_err(|_| Error::Closed)?,
                mut writer = self.writer.clone().lock_owned() => {
                    let mut batch = {
                        let mut queue = self.queue.lock().expect("append queue");
                        let take = queue.len().min(MAX_BATCH);
                        queue.drain(..take).collect::<Vec<_>>()
                    };
                    if batch.is_empty() {
                        // An earlier batch held this append; its answer is in.
                        continue;
                    }
                    if batch.len() == 1 && batch[0].id == id {
                        writer.write(&mut batch).await;
                    } else {
                        let task = tokio::spawn(async move { writer.write(&mut batch).await });
                        if let Err(e) = task.await {
                            return Err(Error::GroupCommit(e.to_string()));
                        }
                    }
                }
            }
        }
    }

    /// Gives the writer's connection back to the pool (before closing it).
    pub(crate) async fn release(&self) {
        self.writer.lock().await.conn = None;
    }
}

impl Writer {
    /// Commits a batch and answers each of its appends.
    async fn write(&mut self, batch: &mut Vec<Job>) {
        // One order for row locks across processes: by run, keeping each run's appends in order.
        batch.sort_by(|a, b| (&a.run_id, &a.tenant).cmp(&(&b.run_id, &b.tenant)));
        let results = self.commit(batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
    }

    async fn commit(&mut self, batch: &[Job]) -> Vec<Result<i64>> {
        if std::mem::replace(&mut self.abandoned, true)
            && let Some(conn) = &mut self.conn
        {
            // Its answer is not this batch's: read it (and drop it) here. A
            // connection that is really broken fails the batch below.
            let _ = sqlx::query("SELECT 1").execute(&mut **conn).await;
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => match self.db.raw_conn(Scope::All).await {
                Ok(conn) => self.conn.insert(conn),
                Err(e) => {
                    self.abandoned = false;
                    let e = Error::Database(e);
                    return batch.iter().map(|_| Err(e.duplicate())).collect();
                }
            },
        };
        let results = if self.db.appends_across_runs() {
            commit_across_runs(conn, batch).await
        } else {
            commit_run_by_run(&self.db, conn, batch).await
        };
        // After a database error the connection may be broken: take a fresh
        // one next time. The error is most often the server going away, as
        // it then has for the parked connections too: they go back to the
        // pool, which pings each before use (at worst one setting each, when
        // the server was fine).
        if results.iter().any(|r| matches!(r, Err(Error::GroupCommit(_))))
            && let Some(mut conn) = self.conn.take()
        {
            conn.close_on_drop();
            self.db.parked.release();
        }
        self.abandoned = false;
        results
    }
}

/// Commits a batch run by run in one write transaction (SQLite). An append
/// to an unknown run fails alone; a database error fails the whole batch,
/// and nothing of it is kept.
async fn commit_run_by_run(db: &Db, conn: &mut sqlx::AnyConnection, batch: &[Job]) -> Vec<Result<i64>> {
    let mut tx = match db.begin_write_on(conn).await {
        Ok(tx) => tx,
        Err(e) => {
            let e = Error::Database(e);
            return batch.iter().map(|_| Err(e.duplicate())).collect();
        }
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if job.events.is_empty() {
            results.push(Ok(0));
            continue;
        }
        match db.append_in(&mut tx, &job.tenant, &job.run_id, &job.events, job.at).await {
            Ok(first) => results.push(Ok(first)),
            Err(Error::RunNotFound(run)) => results.push(Err(Error::RunNotFound(run))),
            Err(e) => {
                let _ = tx.rollback().await;
                return batch.iter().map(|_| Err(e.duplicate())).collect();
            }
        }
    }
    let usage = usage_rows(batch.iter().map(|job| (job.tenant.as_str(), job.at, job.metered)));
    if let Err(e) = add_usage(&mut tx, &usage).await {
        let _ = tx.rollback().await;
        let e = Error::Database(e);
        return batch.iter().map(|_| Err(e.duplicate())).collect();
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => {
            let e = Error::Database(e);
            batch.iter().map(|_| Err(e.duplicate())).collect()
        }
    }
}

/// Commits a batch with statements across runs (Postgres): one statement per
/// up to `EVENTS_PER_BATCH_STATEMENT` events writes every run's events and
/// ends, in autocommit when it is one statement and in one transaction
/// otherwise.
async fn commit_across_runs(conn: &mut sqlx::AnyConnection, batch: &[Job]) -> Vec<Result<i64>> {
    // Each run once, its jobs' events in order; `batch` is sorted by run.
    // (Appends to one run id under two tenants stay apart: at most one of
    // them finds the run.) `place` is each job's run in `runs`, and how many
    // of that run's events come before the job's.
    let mut runs: Vec<RunEvents<'_>> = Vec::new();
    let mut place = Vec::with_capacity(batch.len());
    for job in batch {
        if job.events.is_empty() {
            place.push(None);
            continue;
        }
        let n = runs.len();
        match runs.last_mut() {
            Some(run) if run.run == job.run_id && run.tenant == job.tenant => {
                place.push(Some((n - 1, run.events.len() as i64)));
                run.events.extend(&job.events);
            }
            _ => {
                place.push(Some((n, 0)));
                runs.push(RunEvents { tenant: &job.tenant, run: &job.run_id, events: job.events.iter().collect() });
            }
        }
    }
    let at = batch.iter().map(|job| job.at).max().unwrap_or_default();
    // The batch's usage goes into its first statement.
    let usage = usage_rows(batch.iter().map(|job| (job.tenant.as_str(), job.at, job.metered)));
    let mut chunks: Vec<&[RunEvents<'_>]> = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        if size > 0 && size + run.events.len() > EVENTS_PER_BATCH_STATEMENT {
            chunks.push(&runs[start..i]);
            (start, size) = (i, 0);
        }
        size += run.events.len();
    }
    if start < runs.len() {
        chunks.push(&runs[start..]);
    }

    let firsts: Result<Vec<Option<i64>>> = async {
        match chunks[..] {
            [] => {
                // Only work to count (calls whose results were written earlier).
                add_usage(&mut *conn, &usage).await?;
                return Ok(Vec::new());
            }
            [chunk] => return append_runs(&mut *conn, chunk, at, &usage).await,
            _ => {}
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let mut firsts = Vec::new();
        for (n, chunk) in chunks.into_iter().enumerate() {
            let usage = if n == 0 { &usage[..] } else { &[] };
            firsts.extend(append_runs(&mut *tx, chunk, at, usage).await?);
        }
        tx.commit().await?;
        Ok(firsts)
    }
    .await;
    let firsts = match firsts {
        Ok(firsts) => firsts,
        Err(e) => return batch.iter().map(|_| Err(e.duplicate())).collect(),
    };
    // Each job's own first seq: its run's first, plus the events of the
    // run's earlier jobs in this batch.
    batch
        .iter()
        .zip(place)
        .map(|(job, place)| {
            let Some((run, before)) = place else { return Ok(0) };
            let first = firsts.get(run).copied().flatten().ok_or_else(|| Error::RunNotFound(job.run_id.clone()))?;
            Ok(first + before)
        })
        .collect()
}

/// Adds a batch's usage rows with a statement each (SQLite's batches, and
/// Postgres batches that hold no events).
async fn add_usage(conn: &mut sqlx::AnyConnection, rows: &[(&str, String, Metered)]) -> Result<(), sqlx::Error> {
    for (tenant, period, metered) in rows {
        sqlx::query(sql::ADD_USAGE)
            .bind(*tenant)
            .bind(period.as_str())
            .bind(usage_shard())
            .bind(metered.steps)
            .bind(metered.wasm_us)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
