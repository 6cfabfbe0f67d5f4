//! The commit floor: single-row INSERT+COMMIT on the database a workload
//! runs on, with the store's durability settings, measured in the same run.

use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection, Executor};

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

/// Measures single-row INSERT+COMMIT on the database at `url` (which the
/// store has already created): the median latency over `samples` commits
/// with one client, and commits/s with `clients` clients for `duration`.
/// Each client has its own connection, set up as the store sets up its own
/// (on SQLite, [`weft_store::SQLITE_SETTINGS`] and `BEGIN IMMEDIATE`).
/// Writes only to its own table, `bench_floor`.
pub async fn commit_floor(url: &str, samples: usize, clients: usize, duration: Duration) -> anyhow::Result<Floor> {
    let mut conn = connect(url).await?;
    conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id BIGINT NOT NULL, note TEXT NOT NULL)").await?;
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let start = Instant::now();
        commit(&mut conn, url, n as i64).await?;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    conn.close().await?;
    latencies.sort_by(f64::total_cmp);
    let commit_ms = crate::percentile(&latencies, 0.5);

    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(connect(url).await?);
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (client, mut conn) in connections.into_iter().enumerate() {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut count = 0u64;
            while Instant::now() < deadline {
                commit(&mut conn, &url, client as i64).await?;
                count += 1;
            }
            conn.close().await?;
            Ok::<u64, anyhow::Error>(count)
        }));
    }
    let mut total = 0u64;
    for task in tasks {
        total += task.await??;
    }
    let commits_per_sec = total as f64 / started.elapsed().as_secs_f64();
    Ok(Floor { commit_ms, commits_per_sec, clients })
}

/// Commit latencies (ms), sorted, of one client doing single-row
/// INSERT+COMMIT on the database at `url` every `pause` until `until`: the
/// floor as the database gives it under whatever else runs meanwhile. The
/// client has a thread of its own, so that it waits on the database alone,
/// not on the caller's tasks. Needs the table [`commit_floor`] creates.
pub fn probe(
    url: &str,
    until: Instant,
    pause: Duration,
) -> impl Future<Output = anyhow::Result<Vec<f64>>> + Send + 'static {
    let url = url.to_string();
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let probed =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(anyhow::Error::from).and_then(
                |runtime| {
                    runtime.block_on(async {
                        let mut conn = connect(&url).await?;
                        let mut latencies = Vec::new();
                        while Instant::now() < until {
                            let start = Instant::now();
                            commit(&mut conn, &url, -1).await?;
                            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                            tokio::time::sleep(pause).await;
                        }
                        conn.close().await?;
                        latencies.sort_by(f64::total_cmp);
                        Ok(latencies)
                    })
                },
            );
        let _ = done.send(probed);
    });
    async { result.await.map_err(|_| anyhow::anyhow!("the commit probe's thread ended without an answer"))? }
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

async fn connect(url: &str) -> anyhow::Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await?;
    if is_sqlite(url) {
        conn.execute(weft_store::SQLITE_SETTINGS).await?;
    }
    Ok(conn)
}

async fn commit(conn: &mut AnyConnection, url: &str, id: i64) -> anyhow::Result<()> {
    let mut tx = if is_sqlite(url) { conn.begin_with("BEGIN IMMEDIATE").await? } else { conn.begin().await? };
    sqlx::query("INSERT INTO bench_floor (id, note) VALUES ($1, 'x')").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
