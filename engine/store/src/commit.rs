//! Group commit: one task per store writes every journal append, taking all
//! appends that queued up while the previous transaction committed into the
//! next one. Throughput is then bounded by appends per fsync, not by fsyncs.

use tokio::sync::{mpsc, oneshot};
use weft_core::Event;

use crate::{Db, Error, Result};

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
    if let [job] = batch
        && let Some(result) = db.append_alone(&job.run_id, &job.events).await
    {
        return vec![result];
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
