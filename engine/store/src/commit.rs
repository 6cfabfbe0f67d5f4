//! Group commit: one task per store writes every journal append, taking all
//! appends that queued up while the previous transaction committed into the
//! next one. Throughput is then bounded by appends per fsync, not by fsyncs.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use weft_core::Event;

use crate::journal::{EVENTS_PER_BATCH_STATEMENT, append_runs, finish_if_terminal};
use crate::{Backend, Db, Error, Result};

/// Appends one transaction takes at most.
const MAX_BATCH: usize = 512;

struct Job {
    run_id: String,
    events: Vec<Event>,
    reply: oneshot::Sender<Result<i64>>,
}

/// The queue in front of the writer task.
#[derive(Clone)]
pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<Job>,
}

impl Committer {
    /// Starts the writer task. It ends when the last `Store` is dropped.
    pub(crate) fn start(db: Db) -> Committer {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(db, jobs));
        Committer { queue }
    }

    pub(crate) async fn append(&self, run_id: &str, events: Vec<Event>) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let job = Job { run_id: run_id.to_string(), events, reply };
        self.queue.send(job).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

async fn write_loop(db: Db, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::new();
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // One order for row locks across processes: by run, keeping each run's appends in order.
        batch.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        let results = commit_batch(&db, &batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Commits a batch in one transaction. An append to an unknown run fails
/// alone; a database error fails the whole batch, and nothing of it is kept.
async fn commit_batch(db: &Db, batch: &[Job]) -> Vec<Result<i64>> {
    if db.backend == Backend::Postgres {
        return commit_batch_postgres(db, batch).await;
    }
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return batch.iter().map(|_| Err(e.duplicate())).collect(),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if job.events.is_empty() {
            results.push(Ok(0));
            continue;
        }
        match db.append_in(&mut tx, &job.run_id, &job.events).await {
            Ok(first) => results.push(Ok(first)),
            Err(Error::RunNotFound(run)) => results.push(Err(Error::RunNotFound(run))),
            Err(e) => {
                let _ = tx.rollback().await;
                return batch.iter().map(|_| Err(e.duplicate())).collect();
            }
        }
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => {
            let e = Error::Database(e);
            batch.iter().map(|_| Err(e.duplicate())).collect()
        }
    }
}

/// A Postgres batch: one statement per up to `EVENTS_PER_BATCH_STATEMENT`
/// events writes every run's events, in one transaction with the run ends the
/// batch holds (or in autocommit when it is one statement and ends no run).
async fn commit_batch_postgres(db: &Db, batch: &[Job]) -> Vec<Result<i64>> {
    // Each run once, its jobs' events in order; `batch` is sorted by run.
    let mut runs: Vec<(&str, Vec<&Event>)> = Vec::new();
    for job in batch {
        match runs.last_mut() {
            Some((run, events)) if *run == job.run_id => events.extend(&job.events),
            _ => runs.push((&job.run_id, job.events.iter().collect())),
        }
    }
    runs.retain(|(_, events)| !events.is_empty());
    let mut chunks: Vec<&[(&str, Vec<&Event>)]> = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (_, events)) in runs.iter().enumerate() {
        if size > 0 && size + events.len() > EVENTS_PER_BATCH_STATEMENT {
            chunks.push(&runs[start..i]);
            (start, size) = (i, 0);
        }
        size += events.len();
    }
    if start < runs.len() {
        chunks.push(&runs[start..]);
    }
    let ends_run =
        |e: &&Event| matches!(e, Event::RunCompleted { .. } | Event::RunFailed { .. } | Event::RunCancelled { .. });
    let terminal: Vec<&(&str, Vec<&Event>)> = runs.iter().filter(|(_, events)| events.iter().any(ends_run)).collect();

    let written: Result<HashMap<String, i64>> = async {
        match chunks[..] {
            [] => return Ok(HashMap::new()),
            [chunk] if terminal.is_empty() => return append_runs(&db.pool, chunk).await,
            _ => {}
        }
        let mut tx = db.begin_write().await?;
        let mut firsts = HashMap::new();
        for chunk in &chunks {
            firsts.extend(append_runs(&mut *tx, chunk).await?);
        }
        for (run, events) in terminal {
            if firsts.contains_key(*run) {
                finish_if_terminal(&mut tx, run, events.iter().copied()).await?;
            }
        }
        tx.commit().await?;
        Ok(firsts)
    }
    .await;
    let firsts = match written {
        Ok(firsts) => firsts,
        Err(e) => return batch.iter().map(|_| Err(e.duplicate())).collect(),
    };
    // Hand each job its own first seq: its run's first, plus the events of
    // the run's earlier jobs in this batch.
    let mut offsets: HashMap<&str, i64> = HashMap::new();
    batch
        .iter()
        .map(|job| {
            if job.events.is_empty() {
                return Ok(0);
            }
            let first = *firsts.get(&job.run_id).ok_or_else(|| Error::RunNotFound(job.run_id.clone()))?;
            let offset = offsets.entry(&job.run_id).or_insert(0);
            let seq = first + *offset;
            *offset += job.events.len() as i64;
            Ok(seq)
        })
        .collect()
}
