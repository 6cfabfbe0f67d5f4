//! W1: ten sequential steps of `transform/double`, each reading the previous
//! step's output, run to completion one at a time (latency) and with many
//! runs in flight (throughput), next to the commit floor of the same store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_host::Host;
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Store};

use crate::floor::{Floor, commit_floor};
use crate::percentile;

/// Steps in a W1 run.
pub const STEPS: usize = 10;

/// Settings of one measurement.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runs before the sequential measurement, not counted.
    pub warmup: usize,
    /// Sequential runs measured.
    pub runs: usize,
    /// Seconds per throughput level.
    pub seconds: u64,
    /// Runs in flight, one throughput level each.
    pub concurrency: Vec<usize>,
}

/// What one store measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The store's name (`sqlite`, `postgres`).
    pub store: String,
    /// Its commit floor.
    pub floor: Floor,
    /// Median and 90th percentile of one sequential run, in milliseconds.
    pub run_median_ms: f64,
    pub run_p90_ms: f64,
    /// Per level: runs in flight, runs/s, steps/s.
    pub throughput: Vec<(usize, f64, f64)>,
}

/// Measures W1 on the store at `url` (named `name` in the report), with the
/// connectors of `host`. Progress goes to stderr.
pub async fn measure(name: &str, url: &str, host: Arc<Host>, settings: &Settings) -> anyhow::Result<Report> {
    let store = Store::connect(url).await?;
    eprintln!("[{name}] commit floor…");
    let floor = commit_floor(url, 200, 8, Duration::from_secs(3)).await?;
    let engine = Engine::new(store, host, EngineConfig::default());
    let workflow = crate::workloads::chain(STEPS).to_string();
    let definition = weft_workflows::load("w1.json", &workflow, &engine.catalog(DEFAULT_TENANT))
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let expected = json!({ "value": 1 << STEPS });

    let one = |engine: Engine, definition: weft_workflows::Definition, expected: serde_json::Value| async move {
        let outcome = engine.run(DEFAULT_TENANT, &definition, json!({ "value": 1 }), &mut ()).await?;
        anyhow::ensure!(outcome.output.as_ref() == Some(&expected), "W1 gave {:?}", outcome.output);
        Ok::<(), anyhow::Error>(())
    };

    eprintln!("[{name}] sequential: {} warm-up + {} measured runs…", settings.warmup, settings.runs);
    let mut times = Vec::new();
    for n in 0..settings.warmup + settings.runs {
        let start = Instant::now();
        one(engine.clone(), definition.clone(), expected.clone()).await?;
        if n >= settings.warmup {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);

    let mut throughput = Vec::new();
    for &inflight in &settings.concurrency {
        eprintln!("[{name}] throughput with {inflight} runs in flight for {}s…", settings.seconds);
        let deadline = Instant::now() + Duration::from_secs(settings.seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..inflight {
            let (engine, definition, expected) = (engine.clone(), definition.clone(), expected.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    one(engine.clone(), definition.clone(), expected.clone()).await?;
                    done += 1;
                }
                Ok::<u64, anyhow::Error>(done)
            }));
        }
        let mut runs = 0u64;
        for task in tasks {
            runs += task.await??;
        }
        let secs = started.elapsed().as_secs_f64();
        throughput.push((inflight, runs as f64 / secs, runs as f64 * STEPS as f64 / secs));
    }
    engine.store().close().await;
    Ok(Report {
        store: name.to_string(),
        floor,
        run_median_ms: percentile(&times, 0.5),
        run_p90_ms: percentile(&times, 0.9),
        throughput,
    })
}

/// Prints the reports as Markdown tables, next to the targets.
pub fn print(reports: &[Report]) {
    println!(
        "| store | commit floor, 1 client | floor, 8 clients | W1 run median (p90) | per step | per step / floor | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in reports {
        let per_step = r.run_median_ms / STEPS as f64;
        let target = if r.store == "postgres" { "≤ 1.5x" } else { "-" };
        println!(
            "| {} | {:.2} ms | {:.0} commits/s | {:.1} ms ({:.1} ms) | {:.2} ms | {:.2}x | {} |",
            r.store,
            r.floor.commit_ms,
            r.floor.commits_per_sec,
            r.run_median_ms,
            r.run_p90_ms,
            per_step,
            per_step / r.floor.commit_ms,
            target
        );
    }
    println!();
    println!("| store | runs in flight | runs/s | steps/s | steps/s ÷ floor commits/s (8 clients) | target |");
    println!("|---|---|---|---|---|---|");
    for r in reports {
        for (inflight, runs, steps) in &r.throughput {
            let target = if r.store == "postgres" { "≥ 5,000 steps/s" } else { "-" };
            println!(
                "| {} | {inflight} | {runs:.0} | {steps:.0} | {:.2}x | {target} |",
                r.store,
                steps / r.floor.commits_per_sec
            );
        }
    }
}
