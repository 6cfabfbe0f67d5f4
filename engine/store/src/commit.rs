//! Group commit: one task per store writes every journal append, taking all
//! appends that queued up while the previous transaction committed into the
//! next one. Throughput is then bounded by appends per fsync, not by fsyncs.

use tokio::sync::{mpsc, oneshot};
use weft_core::Event;

use crate::{Error, Result, Store};

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
    /// Starts the writer task for `store` (whose own committer is not used).
    pub(crate) fn start(store: Store) -> Committer {
        let (queue, jobs) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(store, jobs));
        Committer { queue }
    }

    /// A committer whose writer is gone; appends through it fail with `Closed`.
    pub(crate) fn closed() -> Committer {
        let (queue, _) = mpsc::unbounded_channel();
        Committer { queue }
    }

    pub(crate) async fn append(&self, run_id: &str, events: Vec<Event>) -> Result<i64> {
        let (reply, answer) = oneshot::channel();
        let job = Job { run_id: run_id.to_string(), events, reply };
        self.queue.send(job).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

async fn write_loop(store: Store, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::new();
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // One order for row locks across processes: by run, keeping each run's appends in order.
        batch.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        let results = commit_batch(&store, &batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Commits a batch in one transaction. An append to an unknown run fails
/// alone; a database error fails the whole batch, and nothing of it is kept.
async fn commit_batch(store: &Store, batch: &[Job]) -> Vec<Result<i64>> {
    if let [job] = batch
        && let Some(result) = store.append_alone(&job.run_id, &job.events).await
    {
        return vec![result];
    }
    let mut tx = match store.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return batch.iter().map(|_| Err(e.duplicate())).collect(),
    };
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        if job.events.is_empty() {
            results.push(Ok(0));
            continue;
        }
        match store.append_in(&mut tx, &job.run_id, &job.events).await {
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
