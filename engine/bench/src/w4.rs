//! W4: many runs waiting at once. Runs that each sleep, then take one wasm
//! step, are started at an even pace over a spread (one minute by
//! default), so that they are all asleep together and fall due across that
//! spread; one `weft worker` process drives them. Reported: the worker's
//! peak RSS, the database's transactions per second while every run
//! sleeps, the wake-up lag (when the sleep was recorded as over, against
//! when it was due), runs lost, and the time to finish every run after the
//! worker is killed halfway through the wake-ups and another takes over.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Row;
use weft_host::Host;
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Store};

use crate::percentile;

/// Settings of a W4 measurement.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runs started.
    pub runs: usize,
    /// Over how long they are started, and so fall due.
    pub spread: Duration,
    /// How long each sleeps: longer than the spread, so that all sleep at
    /// once before the first wakes.
    pub sleep: Duration,
    /// The worker's slots.
    pub slots: usize,
    /// Kill the worker when half the runs have finished, and start another.
    pub kill_halfway: bool,
}

/// What W4 measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Runs started.
    pub runs: usize,
    /// Seconds the starts took (the spread when the store kept up).
    pub start_secs: f64,
    /// Runs waiting at once, at most (started and not finished).
    pub peak_waiting: usize,
    /// The first worker's peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// Database transactions per second while every run slept.
    pub sleeping_tps: f64,
    /// Wake-up lag, ms: p50, p99, max.
    pub lag_ms: (f64, f64, f64),
    /// Runs that never completed.
    pub lost: usize,
    /// Seconds from killing the first worker to the last run's end.
    pub takeover_secs: Option<f64>,
    /// Seconds from the first due time to the last run's end.
    pub wake_secs: f64,
}

/// The W4 workflow: sleep, then one step.
pub fn workflow(sleep: Duration) -> Value {
    json!({ "name": "w4", "steps": [
        { "id": "nap", "sleep": format!("{}ms", sleep.as_millis()) },
        { "id": "done", "uses": "transform/echo", "with": { "n": "{{ input.n }}" }, "needs": ["nap"] }
    ] })
}

/// A `weft worker` process on `url`.
fn worker(exe: &Path, url: &str, slots: usize) -> std::io::Result<Child> {
    Command::new(exe)
        .args(["worker", "--slots", &slots.to_string(), "--park-after", "1s"])
        .env("WEFT_DB", url)
        .env("WEFT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
}

/// A process's peak resident memory (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn count(pool: &sqlx::PgPool, status: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = $1").bind(status).fetch_one(pool).await?)
}

async fn transactions(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    let sql = "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()";
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// Measures W4 on the Postgres database at `url` (fresh), with `exe` (this
/// `weft` binary) as the worker. Progress goes to stderr.
pub async fn measure(exe: &Path, url: &str, host: Arc<Host>, settings: &Settings) -> anyhow::Result<Report> {
    anyhow::ensure!(settings.sleep > settings.spread, "the sleep must outlast the spread");
    let store = Store::connect(url).await?;
    let pool = sqlx::PgPool::connect(url).await?;
    let config = EngineConfig { park_after: Some(Duration::from_secs(1)), ..EngineConfig::default() };
    let engine = Engine::new(store, host, config);
    let text = workflow(settings.sleep).to_string();
    let definition =
        weft_workflows::load("w4.json", &text, &engine.catalog(DEFAULT_TENANT)).map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut first = worker(exe, url, settings.slots)?;

    // Start the runs at an even pace over the spread.
    eprintln!("[w4] starting {} runs over {:?}…", settings.runs, settings.spread);
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut starters = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (engine, definition, next) = (engine.clone(), definition.clone(), next.clone());
        let (runs, spread) = (settings.runs, settings.spread);
        starters.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= runs {
                    return Ok::<_, anyhow::Error>(());
                }
                let due = spread.mul_f64(n as f64 / runs as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let (run, _) = engine.start_once(DEFAULT_TENANT, &definition, json!({ "n": n }), None).await?;
                anyhow::ensure!(run.lease_owner.is_none(), "run {} was not written parked", run.id);
            }
        });
    }
    let mut last_note = Instant::now();
    while !starters.is_empty() {
        tokio::select! {
            joined = starters.join_next() => { if let Some(joined) = joined { joined??; } }
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            eprintln!("[w4] {} started", next.load(Ordering::Relaxed).min(settings.runs));
            last_note = Instant::now();
        }
    }
    let start_secs = started.elapsed().as_secs_f64();
    let finished_early = count(&pool, "completed").await? as usize;
    let peak_waiting = settings.runs - finished_early;
    eprintln!("[w4] started in {start_secs:.1} s; {peak_waiting} runs asleep at once");

    // Transactions per second while every run sleeps (until the first is due).
    let first_due = settings.sleep.as_secs_f64();
    let quiet = (first_due - started.elapsed().as_secs_f64() - 2.0).clamp(0.0, 10.0);
    let sleeping_tps = if quiet >= 2.0 {
        let before = transactions(&pool).await?;
        tokio::time::sleep(Duration::from_secs_f64(quiet)).await;
        (transactions(&pool).await? - before - 1) as f64 / quiet
    } else {
        f64::NAN
    };

    // Wake-ups: wait for every run, killing the worker halfway.
    let mut second: Option<Child> = None;
    let mut killed_at = None;
    let mut peak_rss = 0.0f64;
    let mut progress = (0usize, Instant::now());
    loop {
        peak_rss = peak_rss.max(peak_rss_mib(first.id()));
        let done = count(&pool, "completed").await? as usize;
        if done >= settings.runs {
            break;
        }
        if settings.kill_halfway && killed_at.is_none() && done >= settings.runs / 2 {
            eprintln!("[w4] {done} finished: killing the worker, starting another");
            peak_rss = peak_rss.max(peak_rss_mib(first.id()));
            first.kill()?;
            first.wait()?;
            killed_at = Some(Instant::now());
            second = Some(worker(exe, url, settings.slots)?);
        }
        if done > progress.0 {
            progress = (done, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(120) {
            eprintln!("[w4] no run finished in 120 s; {} are lost", settings.runs - done);
            break;
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            eprintln!("[w4] {done} of {} finished", settings.runs);
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ended = Instant::now();
    let wake_secs = ended.duration_since(started).as_secs_f64() - first_due;
    let takeover_secs = killed_at.map(|at| ended.duration_since(at).as_secs_f64());
    if killed_at.is_none() {
        peak_rss = peak_rss.max(peak_rss_mib(first.id()));
        first.kill().ok();
        first.wait().ok();
    }
    if let Some(mut second) = second {
        second.kill().ok();
        second.wait().ok();
    }
    let lost = settings.runs - count(&pool, "completed").await? as usize;

    // Lag: each run's `timer_fired` against its `timer_set`'s due time.
    let rows = sqlx::query(
        "SELECT f.at AS fired, s.body AS set FROM events f JOIN events s ON s.run_id = f.run_id \
         AND s.kind = 'timer_set' WHERE f.kind = 'timer_fired'",
    )
    .fetch_all(&pool)
    .await?;
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|row| {
            let fired: i64 = row.get("fired");
            let set: Value = serde_json::from_str(row.get::<&str, _>("set")).ok()?;
            Some((fired - set["fire_at"].as_i64()?) as f64)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let lag_ms = (percentile(&lags, 0.5), percentile(&lags, 0.99), lags.last().copied().unwrap_or(0.0));
    engine.store().close().await;
    Ok(Report {
        runs: settings.runs,
        start_secs,
        peak_waiting,
        peak_rss_mib: peak_rss,
        sleeping_tps,
        lag_ms,
        lost,
        takeover_secs,
        wake_secs,
    })
}

/// Prints the report as the Markdown table kept in docs/BENCHMARKS.md.
pub fn print(report: &Report, settings: &Settings) {
    println!("| W4 (Postgres, one worker) | measured | target |");
    println!("|---|---|---|");
    println!(
        "| runs started | {} in {:.1} s ({} asleep at once) | 100,000 |",
        report.runs, report.start_secs, report.peak_waiting
    );
    println!("| worker peak RSS | {:.0} MiB | ≤ 200 MiB |", report.peak_rss_mib);
    println!("| database transactions/s while all sleep | {:.1} | - |", report.sleeping_tps);
    println!(
        "| wake-up lag p50 / p99 / max | {:.0} / {:.0} / {:.0} ms | p99 ≤ 1,000 ms |",
        report.lag_ms.0, report.lag_ms.1, report.lag_ms.2
    );
    println!(
        "| wake-ups: first due to last finished | {:.1} s (due over {:.0} s) | - |",
        report.wake_secs,
        settings.spread.as_secs_f64()
    );
    match report.takeover_secs {
        Some(s) => println!("| worker killed halfway: kill to last finished | {s:.1} s | - |"),
        None => println!("| worker killed halfway | not asked | - |"),
    }
    println!("| runs lost | {} | 0 |", report.lost);
}
