//! `weft bench`: workload W1 (ten sequential steps, each a trivial wasm
//! action whose input references the previous step's output) on SQLite and
//! Postgres with durable commits, next to the single-row commit floor
//! measured in the same run; and workload W2 (one connector call through the
//! host, next to a bare wasmtime instantiate+call of the same component).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_host::Host;
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Floor, Store};

/// The W1 workflow: `transform/double` ten times in a chain.
pub fn w1_workflow() -> Value {
    weft_runtime::workloads::chain(10)
}

/// Settings of one benchmark run.
pub struct Settings {
    pub warmup: usize,
    pub runs: usize,
    pub seconds: u64,
    pub concurrency: Vec<usize>,
}

/// What one store measured.
pub struct Report {
    pub store: String,
    pub floor: Floor,
    pub run_median_ms: f64,
    pub run_p90_ms: f64,
    pub throughput: Vec<(usize, f64, f64)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs W1 against one store.
pub async fn measure(name: &str, url: &str, host: Arc<Host>, settings: &Settings) -> anyhow::Result<Report> {
    let store = Store::connect(url).await?;
    eprintln!("[{name}] commit floor…");
    let floor = store.commit_floor(200, 8, Duration::from_secs(3)).await?;
    let engine = Engine::new(store, host, EngineConfig::default());
    let definition = weft_workflows::load("w1.json", &w1_workflow().to_string(), &engine.catalog())
        .map_err(|d| anyhow::anyhow!("{d}"))?;

    let one = |engine: Engine, definition: weft_workflows::Definition| async move {
        let outcome = engine.run(DEFAULT_TENANT, &definition, json!({ "value": 1 }), &mut ()).await?;
        anyhow::ensure!(outcome.output == Some(json!({ "value": 1024 })), "W1 gave {:?}", outcome.output);
        Ok::<(), anyhow::Error>(())
    };

    eprintln!("[{name}] sequential: {} warm-up + {} measured runs…", settings.warmup, settings.runs);
    let mut times = Vec::new();
    for n in 0..settings.warmup + settings.runs {
        let start = Instant::now();
        one(engine.clone(), definition.clone()).await?;
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
            let (engine, definition) = (engine.clone(), definition.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    one(engine.clone(), definition.clone()).await?;
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
        throughput.push((inflight, runs as f64 / secs, runs as f64 * 10.0 / secs));
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

/// Prints the reports as a Markdown table, next to the targets.
pub fn print(reports: &[Report]) {
    println!(
        "| store | commit floor, 1 client | floor, 8 clients | W1 run median (p90) | per step | per step / floor | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in reports {
        let per_step = r.run_median_ms / 10.0;
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

/// W2: `calls` calls of `transform/echo` through the host and bare, printed
/// as a Markdown table next to the targets.
pub async fn w2(host: &Host, calls: usize) -> anyhow::Result<()> {
    let echo = host
        .resolve("transform", None)
        .ok_or_else(|| anyhow::anyhow!("the built-in transform connector is missing"))?;
    let input = json!({ "order": 42, "items": ["a", "b"] });
    eprintln!("W2: {calls} calls each way, alternating in batches of 100…");
    let times = host.time_calls(&echo.digest, "echo", &input, calls).await?;
    let stats = |samples: &[f64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        (percentile(&sorted, 0.5), percentile(&sorted, 0.99))
    };
    let (host_median, host_p99) = stats(&times.host);
    let (bare_median, bare_p99) = stats(&times.bare);
    println!("| call | median | p99 | median / bare | target |");
    println!("|---|---|---|---|---|");
    println!("| bare wasmtime instantiate+call (floor) | {bare_median:.1} µs | {bare_p99:.1} µs | 1.00x | - |");
    println!(
        "| weft host invoke (`transform/echo`) | {host_median:.1} µs | {host_p99:.1} µs | {:.2}x | ≤ 20 µs and ≤ 2x |",
        host_median / bare_median
    );
    Ok(())
}
