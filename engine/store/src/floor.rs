//! The commit floor for benchmarks: single-row INSERT+COMMIT on the same
//! database, with the same durability settings, measured in the same run.

use std::time::{Duration, Instant};

use crate::{Result, Store};

/// What the floor measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floor {
    /// Median latency of one commit with one client.
    pub commit_ms: f64,
    /// Commits per second with `clients` clients.
    pub commits_per_sec: f64,
    /// How many clients the throughput figure used.
    pub clients: usize,
}

impl Store {
    /// Measures single-row INSERT+COMMIT: the median latency over `samples`
    /// commits with one client, and commits/s with `clients` clients for
    /// `duration`. Writes only to its own table, `bench_floor`.
    pub async fn commit_floor(&self, samples: usize, clients: usize, duration: Duration) -> Result<Floor> {
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_floor (id BIGINT NOT NULL, note TEXT NOT NULL)")
            .execute(&self.db.pool)
            .await?;
        let mut latencies = Vec::with_capacity(samples);
        for n in 0..samples {
            let start = Instant::now();
            self.floor_commit(n as i64).await?;
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);
        let commit_ms = latencies.get(latencies.len() / 2).copied().unwrap_or(0.0);

        let deadline = Instant::now() + duration;
        let mut tasks = Vec::new();
        for client in 0..clients {
            let store = self.clone();
            tasks.push(tokio::spawn(async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    store.floor_commit(client as i64).await?;
                    count += 1;
                }
                Ok::<u64, crate::Error>(count)
            }));
        }
        let started = Instant::now();
        let mut total = 0u64;
        for task in tasks {
            total += task.await.map_err(|e| crate::Error::GroupCommit(e.to_string()))??;
        }
        let commits_per_sec = total as f64 / started.elapsed().as_secs_f64();
        Ok(Floor { commit_ms, commits_per_sec, clients })
    }

    async fn floor_commit(&self, id: i64) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("INSERT INTO bench_floor (id, note) VALUES ($1, 'x')").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
