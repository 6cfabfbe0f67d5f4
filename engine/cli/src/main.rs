//! `weft`: run durable workflows locally, and inspect, resume, signal and
//! cancel their runs.
//!
//! Exit codes: 0 success; 1 the run failed or was cancelled (or the engine
//! failed while running it); 2 bad input (a workflow file, a run input, a
//! database URL, a run id).

mod connector;
mod progress;
mod remote;
mod serve;
mod terminal;
mod timeline;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use weft_core::RunStatus;
use weft_host::{EnvSecrets, Host};
use weft_runtime::{Assembly, AssemblyError, Engine, Outcome};
use weft_store::{DEFAULT_TENANT, Store};
use weft_workflows::limits;

/// mimalloc in place of the system allocator: a run's steps allocate and
/// free many small values across threads, which glibc's malloc serves
/// with more CPU (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The help heading of the options every command takes, so that each
/// command's own options come first in its `--help`.
const GLOBAL: &str = "Global options";

/// The end of `weft --help`: a first session.
const EXAMPLES: &str = "\
Every step's result is journaled, so a run that stops (Ctrl-C, a crash) picks up where it left off.

Examples:
  weft run examples/workflows/hello.json --input '{\"name\": \"Ada\"}'
  weft runs list                       the latest runs and where each stands
  weft runs show RUN --follow          a run's steps, live until it ends
  weft resume                          continue every interrupted run
  weft connector list                  the connectors workflows can use

Exit codes: 0 success; 1 a run failed or was cancelled, or an error such as an unreachable store;
2 refused input (a bad file, flag, input or run state), with nothing written; 130 stopped by Ctrl-C.";

#[derive(Parser)]
#[command(name = "weft", version, about, long_about = None, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// Where runs are kept: a SQLite file (sqlite://PATH) or a Postgres URL
    /// [default: .weft/weft.db in the nearest directory, this one or a parent,
    /// that has a .weft/ folder; else ./.weft/weft.db].
    #[arg(long = "db", global = true, help_heading = GLOBAL, env = "WEFT_DB", value_name = "URL")]
    db_given: Option<String>,
    /// The store in use: --db, or the default found from the current directory.
    #[arg(skip)]
    db: String,
    /// A directory of extra connector components (*.wasm) to install.
    #[arg(long, global = true, help_heading = GLOBAL, env = "WEFT_CONNECTORS_DIR", value_name = "DIR")]
    connectors_dir: Option<PathBuf>,
    /// Where compiled components are cached [default: $XDG_CACHE_HOME/weft or ~/.cache/weft].
    #[arg(long, global = true, help_heading = GLOBAL, env = "WEFT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Narrows where connectors may connect: a host must be on its
    /// connector's own egress list and on this one (exact names, *.domain or
    /// *; comma-separated or repeated). It never widens a connector's list.
    /// By default each connector's manifest alone decides.
    #[arg(long = "allow-host", global = true, help_heading = GLOBAL, env = "WEFT_ALLOW_HOSTS", value_delimiter = ',', value_name = "HOST")]
    allow_hosts: Option<Vec<String>>,
    /// Drive a `weft server` instead of a local store: run, runs
    /// list/show/retry, signal, cancel, resume, validate and connector
    /// install go through its /v1 API (the server validates with its
    /// connectors; its workers drive the runs).
    #[arg(long, global = true, help_heading = GLOBAL, env = "WEFT_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The API key that --server acts with (`weft_…`).
    #[arg(long, global = true, help_heading = GLOBAL, env = "WEFT_API_KEY", hide_env_values = true, value_name = "KEY")]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow to the end, showing each step's progress, and print its output.
    ///
    /// The workflow is validated first; nothing is written if it (or the
    /// input) is refused. Ctrl-C stops the process and prints the `weft
    /// resume` command that continues the run. Exits 0 when the run
    /// completes, 1 when it fails or is cancelled, 2 when the file or input
    /// is refused.
    ///
    /// Secrets that connectors reveal come from environment variables named
    /// WEFT_SECRET_<CONNECTOR>_<SECRET>, for example WEFT_SECRET_SLACK_BOT_TOKEN.
    Run {
        /// The workflow file: JSON, or YAML when its name ends in .yaml or .yml.
        file: PathBuf,
        /// The run input: JSON text, or @FILE to read it from a file.
        #[arg(long, short, default_value = "{}")]
        input: String,
        /// Print the outcome as JSON, with no progress display.
        #[arg(long)]
        json: bool,
    },
    /// Check workflow files and list every problem with its line:column.
    ///
    /// Checks the schema, the steps' references, the connectors and actions
    /// they use (and the fields their templates read), cron expressions and
    /// time zones. Exits 2 when any file has a problem.
    Validate {
        /// The workflow files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List and inspect runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Continue runs that were interrupted: one run, or every unfinished run.
    ///
    /// A run that is already over (completed, failed or cancelled) is
    /// reported and left as it is. A run that another live process drives is
    /// refused, or with --wait waited for.
    Resume {
        /// A run id (or a unique prefix of one); all unfinished runs when absent.
        run: Option<String>,
        /// Print outcomes as JSON.
        #[arg(long)]
        json: bool,
        /// Wait for a run that another process drives until it lets the run
        /// go (or finishes it), instead of refusing.
        #[arg(long)]
        wait: bool,
    },
    /// Deliver a signal to a run that waits (or will wait) for it.
    Signal {
        /// A run id (or a unique prefix).
        run: String,
        /// The signal's name.
        name: String,
        /// Its payload: JSON text, or @FILE.
        #[arg(default_value = "null")]
        payload: String,
    },
    /// Cancel a run.
    Cancel {
        /// A run id (or a unique prefix).
        run: String,
        /// Why, for the journal.
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
    },
    /// Write, build, inspect and try connectors (WebAssembly components).
    #[command(subcommand)]
    Connector(connector::ConnectorCommand),
    /// Serve the /v1 HTTP API, and drive runs (unless --no-worker).
    ///
    /// With no --db this is a local service on the SQLite store: sleeps wake
    /// and signals arrive without a terminal held open per run. With a
    /// Postgres URL, run as many servers and `weft worker`s as you like
    /// against it. The first start on a database makes a super-admin API key
    /// and prints it once. Stops on Ctrl-C or SIGTERM, finishing requests and
    /// giving runs under way up to 10 s.
    Server {
        /// The address to listen on.
        #[arg(long, env = "WEFT_LISTEN", default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: String,
        /// Serve the API only; `weft worker` processes drive the runs.
        #[arg(long)]
        no_worker: bool,
        #[command(flatten)]
        worker: serve::WorkerArgs,
        #[command(flatten)]
        limits: serve::LimitArgs,
    },
    /// Drive runs, next to `weft server`, on the same database.
    ///
    /// A worker claims runs that are due (new, woken, or left by a process
    /// that died) so that no two workers drive one run. Stops on Ctrl-C or
    /// SIGTERM, giving runs under way up to 10 s.
    Worker {
        #[command(flatten)]
        worker: serve::WorkerArgs,
    },
    /// Service administration: the first API key.
    #[command(subcommand)]
    Admin(serve::AdminCommand),
    /// Print the JSON Schema of workflow files (for editors, via `$schema`).
    Schema,
    /// Measure a benchmark workload (W1 to W5) against its floor or target, in the same run.
    ///
    /// W1 is ten sequential wasm steps against the commit floor, W2 one
    /// connector call against a bare wasmtime call, W3 a first `weft run`
    /// against starting the binary, W4 100,000 runs asleep at once on one
    /// `weft worker` (on Postgres), waking over --spread, with the worker
    /// killed halfway and another taking over, W5 runs started over HTTP by
    /// 64 clients (--concurrency) for --seconds, next to the commit floor.
    ///
    /// W1 runs on SQLite and Postgres next to the single-row commit floor
    /// measured in the same run, with durable settings: SQLite WAL with
    /// synchronous=FULL; Postgres (a throwaway cluster unless --postgres is
    /// given) with fsync on. W2 times `transform/echo` through the host and
    /// as a bare instantiate+call of the same component, alternating. W3
    /// times this binary running examples/workflows/hello.json (without its
    /// sleep) with an empty cache and store, and again warm, next to `weft
    /// --version`. Prints Markdown tables for docs/BENCHMARKS.md.
    Bench {
        /// Which workload: w1, w2, w3, w4 or w5.
        #[arg(long, default_value = "w1", value_parser = ["w1", "w2", "w3", "w4", "w5"])]
        workload: String,
        /// W2: calls measured each way.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
        calls: u32,
        /// W1: the stores to measure.
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        stores: Vec<String>,
        /// W1: a Postgres server to use (postgres://user@host:port); by
        /// default a throwaway cluster with fsync on is started.
        #[arg(long, env = "WEFT_BENCH_POSTGRES")]
        postgres: Option<String>,
        /// W1: warm-up runs before the sequential measurement.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Measured runs: W1's sequential runs [default: 50], W3's
        /// processes of each kind [default: 5], or W4's runs started
        /// [default: 100000].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        runs: Option<u32>,
        /// W1: seconds per throughput level; W5: seconds measured.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// W1: runs in flight for the throughput levels; W5: its largest is
        /// the number of clients [default: 64].
        #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
        concurrency: Vec<usize>,
        /// W4: the time over which runs start, and so fall due.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        spread: std::time::Duration,
        /// W4: leave the worker running instead of killing it halfway.
        #[arg(long)]
        no_kill: bool,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// The most recent runs, newest first, each child run under its parent.
    ///
    /// A run is `running` only while a live process drives it; `waiting`
    /// while it waits for a signal, a timer or a retry; `interrupted` when the
    /// process that drove it stopped (continue it with `weft resume`).
    List {
        /// At most this many runs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// Only runs with this status.
        #[arg(long, value_parser = weft_runtime::Standing::NAMES)]
        status: Option<String>,
        /// Only runs of the workflow with this name.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// Only runs created since then: a time ago (`30m`, `2h`, `1day`) or
        /// a timestamp (`2026-12-01T09:00:00Z`).
        #[arg(long, value_name = "WHEN", value_parser = timeline::parse_since)]
        since: Option<i64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A run's timeline from its journal: steps, attempts, durations, errors, logs.
    ///
    /// Says where the run stands: what a waiting run waits for (and the
    /// `weft signal` command that sends it), and how to resume an interrupted
    /// one. Under each attempt come the first lines its connector logged.
    Show {
        /// A run id (or a unique prefix).
        run: String,
        /// Print the run, its timeline and its raw journal as JSON.
        #[arg(long, conflicts_with = "follow")]
        json: bool,
        /// Keep printing the steps as they start and finish, and where the
        /// run stands, until it is over; then exit as `weft run` does: 0
        /// when it completed, 1 when it failed or was cancelled.
        #[arg(long, short)]
        follow: bool,
    },
    /// Start a finished run again as a new run, keeping what succeeded.
    ///
    /// The new run uses the same workflow version, input and connector
    /// builds. Steps that completed keep their outputs and do not run again;
    /// the steps that failed, were cancelled or never ran do, and so does
    /// every step that depends on them. With --from, STEP and every step
    /// that depends on it run again too. Each run names the other in
    /// `weft runs show`.
    Retry {
        /// The run to retry (an id or a unique prefix); it must have finished.
        run: String,
        /// Run this step again, and every step that depends on it, even if
        /// they completed.
        #[arg(long, value_name = "STEP")]
        from: Option<String>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

/// Bad input: exit code 2.
fn bad(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: error.into() }
}

/// Failure during a run: exit code 1.
fn failed(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 1, error: error.into() }
}

/// Exit code 2 for errors caused by what the user gave, 1 otherwise.
fn classify(error: weft_runtime::Error) -> Failure {
    use weft_runtime::Error as E;
    match &error {
        E::InvalidInput(_)
        | E::Limit(_)
        | E::UnknownConnector(_)
        | E::Finished { .. }
        | E::LeaseHeld { .. }
        | E::UnknownSignal { .. }
        | E::NotFinished { .. }
        | E::Retry { .. } => bad(error),
        E::Store(weft_store::Error::RunNotFound(_) | weft_store::Error::AmbiguousRun { .. }) => bad(error),
        _ => failed(error),
    }
}

/// Output piped into a command that stops reading (`weft runs list | head`)
/// ends `weft` quietly, as it ends other Unix tools, instead of a panic
/// about a broken pipe: Rust ignores SIGPIPE unless told otherwise.
#[cfg(unix)]
#[allow(unsafe_code)]
fn stop_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: the default action is installed before any thread starts, and
    // no handler of ours is replaced.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

#[cfg(not(unix))]
fn stop_quietly_on_a_closed_pipe() {}

fn main() -> ExitCode {
    stop_quietly_on_a_closed_pipe();
    let mut cli = Cli::parse();
    cli.db = cli.db_given.take().unwrap_or_else(|| default_store(std::env::current_dir().ok().as_deref()));
    // A service logs JSON lines (each request's under its request id) at
    // `info`; the other commands log text for people, warnings only.
    let service = matches!(cli.command, Command::Server { .. } | Command::Worker { .. });
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| if service { "info" } else { "warn" }.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if service {
        logs.json().with_current_span(true).with_span_list(false).init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // A task still busy (a run interrupted by Ctrl-C in the middle of a
    // template) is not waited for: what it did is in the journal.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("error: {}", terminal::safe_lines(&terminal::error_chain(error.as_ref())));
            ExitCode::from(code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    if let Some(url) = &cli.server
        && let Some(code) = remote::dispatch(&cli, url).await?
    {
        return Ok(code);
    }
    match &cli.command {
        Command::Schema => {
            print!("{}", weft_workflows::workflow_schema_text());
            Ok(0)
        }
        Command::Validate { files } => {
            let store = existing_store(&cli).await?;
            let host = open_host(&cli, store.as_ref()).await?;
            let catalog = weft_runtime::catalog(&host, DEFAULT_TENANT);
            let mut broken = 0;
            for file in files {
                match read_workflow(file, &catalog) {
                    Ok(def) => println!(
                        "{}: ok ({}, {})",
                        file.display(),
                        terminal::count(def.workflow.steps.len(), "step"),
                        def.hash
                    ),
                    Err(e) => {
                        broken += 1;
                        let text = terminal::safe_lines(&terminal::error_chain(e.error.as_ref())).into_owned();
                        eprint!("{text}");
                        if !text.ends_with('\n') {
                            eprintln!();
                        }
                    }
                }
            }
            Ok(if broken == 0 { 0 } else { 2 })
        }
        Command::Run { file, input, json } => {
            let engine = open_engine(&cli).await?;
            let definition = read_workflow(file, &engine.catalog(DEFAULT_TENANT))?;
            let input = parse_json_arg(input, "--input")?;
            let mut progress = progress::Progress::new(&definition, !*json);
            let run_id = progress.announce_start();
            let outcome = in_foreground(run_id, async move {
                let outcome = engine.run(DEFAULT_TENANT, &definition, input, &mut progress).await;
                progress.finish();
                outcome
            })
            .await?;
            report(&outcome, *json)
        }
        Command::Runs(RunsCommand::Retry { run, from, json }) => {
            let engine = open_engine(&cli).await?;
            let run = engine.store().find_run(DEFAULT_TENANT, run).await.map_err(|e| classify(e.into()))?;
            let definition = engine.definition(&run).await.map_err(classify)?;
            let mut progress = progress::Progress::new(&definition, !*json);
            let run_id = progress.announce_start();
            let from = from.clone();
            let outcome = in_foreground(run_id, async move {
                let outcome = engine.retry(&run, &definition, from.as_deref(), &mut progress).await;
                progress.finish();
                outcome
            })
            .await?;
            report(&outcome, *json)
        }
        Command::Resume { run, json, wait } => {
            let engine = open_engine(&cli).await?;
            let runs = match run {
                Some(id) => {
                    let run = engine.store().find_run(DEFAULT_TENANT, id).await.map_err(|e| classify(e.into()))?;
                    if run.status.is_terminal() {
                        return Ok(over_already(&run, "nothing to resume", *json));
                    }
                    vec![run]
                }
                None => engine.unfinished(DEFAULT_TENANT).await.map_err(classify)?,
            };
            if runs.is_empty() {
                eprintln!("no unfinished runs");
                return Ok(0);
            }
            // Every run is driven at once, so that one waiting for a signal
            // does not hold up the rest; one that cannot be driven is
            // reported and the others carry on.
            let all = run.is_none();
            let several = runs.len() > 1;
            let mut worst = 0;
            let mut tasks = tokio::task::JoinSet::new();
            let tags = run_tags(&runs.iter().map(|run| run.id.as_str()).collect::<Vec<_>>());
            for (run, tag) in runs.into_iter().zip(tags) {
                let definition = match engine.definition(&run).await {
                    Ok(definition) => definition,
                    Err(error) => {
                        worst = worst.max(resume_failed(&run.id, error, all));
                        continue;
                    }
                };
                let mut progress = progress::Progress::new(&definition, !*json);
                if several {
                    progress.prefix_lines(&tag);
                }
                progress.note(&format!("resuming run {} ({})", run.id, run.workflow_name));
                let engine = engine.clone();
                let wait = *wait;
                tasks.spawn(async move {
                    let outcome = resume_one(&engine, &run.id, wait, &mut progress).await;
                    progress.finish();
                    (run.id, outcome)
                });
            }
            loop {
                tokio::select! {
                    next = tasks.join_next() => match next {
                        None => break,
                        Some(joined) => match joined.map_err(failed)? {
                            (_, Ok(Resumed::Driven(outcome))) => worst = worst.max(report(&outcome, *json)?),
                            (_, Ok(Resumed::Elsewhere(run))) => {
                                worst = worst.max(over_already(&run, "another process finished it", *json))
                            }
                            (id, Err(error)) => worst = worst.max(resume_failed(&id, error, all)),
                        },
                    },
                    _ = tokio::signal::ctrl_c() => {
                        let error = anyhow::anyhow!("interrupted; the runs are saved: continue them with `weft resume`");
                        return Err(Failure { code: 130, error });
                    }
                }
            }
            Ok(worst)
        }
        Command::Signal { run, name, payload } => {
            let payload = parse_json_arg(payload, "the payload")?;
            let engine = open_engine(&cli).await?;
            let run = engine.signal(DEFAULT_TENANT, run, name, payload).await.map_err(classify)?;
            eprintln!("signal `{name}` delivered to run {}", run.id);
            Ok(0)
        }
        Command::Cancel { run, reason } => {
            let engine = open_engine(&cli).await?;
            let run = engine.cancel(DEFAULT_TENANT, run, reason).await.map_err(classify)?;
            match run.status {
                RunStatus::Cancelled => eprintln!("run {} cancelled", run.id),
                _ => eprintln!("cancellation of run {} requested; the process driving it will stop it", run.id),
            }
            Ok(0)
        }
        Command::Bench { workload, calls, stores, postgres, warmup, runs, seconds, concurrency, spread, no_kill } => {
            if workload == "w5" {
                let url = bench_database(postgres.as_deref()).await?;
                let clients =
                    if concurrency == &[1, 8, 64] { 64 } else { concurrency.iter().copied().max().unwrap_or(64) };
                let report = weft_bench::w5::measure(&url, cache_dir(&cli), clients, *seconds).await.map_err(failed)?;
                weft_bench::w5::print(&report);
                return Ok(0);
            }
            if workload == "w4" {
                let settings = weft_bench::w4::Settings {
                    runs: runs.unwrap_or(100_000) as usize,
                    spread: *spread,
                    sleep: *spread + std::time::Duration::from_secs(20),
                    slots: 256,
                    kill_halfway: !no_kill,
                };
                let exe = std::env::current_exe().map_err(|e| failed(anyhow::anyhow!("finding this binary: {e}")))?;
                let url = bench_database(postgres.as_deref()).await?;
                let host = open_host(&cli, None).await?;
                let report = weft_bench::w4::measure(&exe, &url, host, &settings).await.map_err(failed)?;
                weft_bench::w4::print(&report, &settings);
                return Ok(if report.lost == 0 { 0 } else { 1 });
            }
            if workload == "w3" {
                let exe = std::env::current_exe().map_err(|e| failed(anyhow::anyhow!("finding this binary: {e}")))?;
                let scratch = weft_bench::w3::scratch_dir();
                let report = weft_bench::w3::measure(&exe, &scratch, runs.unwrap_or(5) as usize);
                let _ = std::fs::remove_dir_all(&scratch);
                weft_bench::w3::print(&report.map_err(failed)?);
                return Ok(0);
            }
            let host = open_host(&cli, None).await?;
            if workload == "w2" {
                weft_bench::w2::run(&host, *calls as usize).await.map_err(failed)?;
                return Ok(0);
            }
            let settings = weft_bench::w1::Settings {
                warmup: *warmup,
                runs: runs.unwrap_or(50) as usize,
                seconds: *seconds,
                concurrency: concurrency.clone(),
            };
            let scratch = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
            let mut reports = Vec::new();
            for store in stores {
                let url = match store.as_str() {
                    "sqlite" => format!("sqlite://{}", scratch.join("bench.db").display()),
                    "postgres" => {
                        let server = match postgres {
                            Some(url) => url.clone(),
                            None => tokio::task::spawn_blocking(weft_store::testing::durable_server)
                                .await
                                .map_err(failed)?,
                        };
                        weft_store::testing::fresh_database(&server)
                            .await
                            .map_err(|e| failed(anyhow::anyhow!("--postgres: {e}")))?
                    }
                    other => return Err(bad(anyhow::anyhow!("unknown store `{other}`; use sqlite and/or postgres"))),
                };
                reports.push(weft_bench::w1::measure(store, &url, host.clone(), &settings).await.map_err(failed)?);
            }
            let _ = std::fs::remove_dir_all(&scratch);
            weft_bench::w1::print(&reports);
            Ok(0)
        }
        Command::Connector(command) => connector::run(command, &cli).await,
        Command::Server { listen, no_worker, worker, limits } => {
            serve::server(&cli, listen, *no_worker, worker, limits).await
        }
        Command::Worker { worker } => serve::worker(&cli, worker).await,
        Command::Admin(command) => serve::admin(&cli, command).await,
        Command::Runs(RunsCommand::List { limit, status, workflow, since, json }) => {
            let runs = match existing_store(&cli).await? {
                Some(store) => {
                    let query = timeline::Query {
                        limit: *limit,
                        status: status.clone(),
                        workflow: workflow.clone(),
                        since: *since,
                    };
                    timeline::find(&store, &query).await.map_err(classify)?
                }
                None => Vec::new(),
            };
            let filtered = status.is_some() || workflow.is_some() || since.is_some();
            timeline::list(&runs, &weft_store::redact(&cli.db), filtered, *json);
            Ok(0)
        }
        Command::Runs(RunsCommand::Show { run, json, follow }) => {
            let store = open_store(&cli).await?;
            let run = store.find_run(DEFAULT_TENANT, run).await.map_err(|e| classify(e.into()))?;
            if *follow {
                let ended = tokio::select! {
                    ended = timeline::follow(&store, run) => ended?,
                    _ = tokio::signal::ctrl_c() => return Ok(130),
                };
                return Ok(exit_code(ended.status));
            }
            let inspection = weft_runtime::inspect(&store, &run).await.map_err(classify)?;
            let retries = store.retries(DEFAULT_TENANT, &run.id).await.map_err(|e| classify(e.into()))?;
            timeline::show(&run, &inspection, &retries, *json);
            Ok(0)
        }
    }
}

/// How `resume` left a run.
enum Resumed {
    /// Driven here to its end.
    Driven(Outcome),
    /// Finished by the process `resume --wait` waited for.
    Elsewhere(weft_store::RunRecord),
}

/// Drives one run for `resume`. With `wait`, a run that another live process
/// drives is waited for, its lease tried again every half second, until that
/// process lets it go or finishes it.
async fn resume_one(
    engine: &Engine,
    run_id: &str,
    wait: bool,
    progress: &mut progress::Progress,
) -> Result<Resumed, weft_runtime::Error> {
    let mut waiting = false;
    loop {
        match engine.drive(DEFAULT_TENANT, run_id, progress).await {
            Err(weft_runtime::Error::LeaseHeld { owner, .. }) if wait => {
                if !waiting {
                    progress.note(&format!("waiting: another process ({owner}) is driving run {run_id}"));
                    waiting = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let run = engine.store().find_run(DEFAULT_TENANT, run_id).await?;
                if run.status.is_terminal() {
                    return Ok(Resumed::Elsewhere(run));
                }
            }
            driven => return driven.map(Resumed::Driven),
        }
    }
}

/// Reports a run that is over without driving it (nothing is replayed or
/// changed), and returns the exit code its status gives.
/// Drives a run here to the end. The driver is a task of its own, so that
/// Ctrl-C is heard even while it is busy (rendering a template, say), and
/// then names the command that resumes the run (`run_id`, once known).
async fn in_foreground(
    run_id: Arc<OnceLock<String>>,
    drive: impl Future<Output = weft_runtime::Result<Outcome>> + Send + 'static,
) -> Result<Outcome, Failure> {
    let mut task = tokio::spawn(drive);
    tokio::select! {
        joined = &mut task => joined.map_err(failed)?.map_err(classify),
        _ = tokio::signal::ctrl_c() => Err(interrupted(run_id.get().map(String::as_str))),
    }
}

fn over_already(run: &weft_store::RunRecord, why: &str, json: bool) -> u8 {
    let code = exit_code(run.status);
    if json {
        let output = run.output.as_deref().and_then(|text| serde_json::from_str::<Value>(text).ok());
        let body = json!({ "run_id": run.id, "status": run.status.as_str(), "output": output, "resumed": false });
        println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
    } else {
        eprintln!(
            "run {} ({}) {} already; {why} (see `weft runs show {}`)",
            run.id,
            terminal::safe(&run.workflow_name),
            run.status.as_str(),
            run.id
        );
    }
    code
}

/// Tags for the lines of runs resumed together: each id's shortest prefix,
/// of 8 characters at least, that none of the others starts with. Ids made
/// in the same minute share their first characters (they are ordered by
/// time), so a fixed length would not tell them apart; a prefix still names
/// its run in other commands.
fn run_tags(ids: &[&str]) -> Vec<String> {
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let shared = ids.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, other)| common(id, other)).max();
            let len = shared.map_or(0, |n| n + 1).clamp(8, id.len());
            id.get(..len).unwrap_or(id).to_string()
        })
        .collect()
}

/// Reports a run that `resume` could not drive, and returns its exit code.
/// When every unfinished run is resumed (`all`), one that another live
/// process drives is skipped, which is no failure; any other error fails
/// that run alone.
fn resume_failed(run_id: &str, error: weft_runtime::Error, all: bool) -> u8 {
    if all && let weft_runtime::Error::LeaseHeld { owner, .. } = &error {
        eprintln!("run {run_id}: skipped, another process ({owner}) is driving it");
        return 0;
    }
    let Failure { code, error } = classify(error);
    eprintln!(
        "error: run {run_id} cannot be resumed: {}",
        terminal::safe_lines(&terminal::error_chain(error.as_ref()))
    );
    code
}

/// Ctrl-C: the run is saved in its journal; say how to continue it.
fn interrupted(run_id: Option<&str>) -> Failure {
    let error = match run_id {
        Some(id) => anyhow::anyhow!("interrupted; the run is saved: continue it with `weft resume {id}`"),
        None => anyhow::anyhow!(
            "interrupted as the run was starting; if `weft runs list` shows it, continue it with `weft resume`"
        ),
    };
    Failure { code: 130, error }
}

/// The exit code for a run that is over: 0 when it completed, 1 when it
/// failed or was cancelled.
fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Completed => 0,
        _ => 1,
    }
}

/// Prints a finished run's outcome; returns the exit code.
fn report(outcome: &Outcome, json: bool) -> Result<u8, Failure> {
    let code = exit_code(outcome.status);
    if json {
        let body = json!({
            "run_id": outcome.run_id,
            "status": outcome.status.as_str(),
            "output": outcome.output,
            "error": outcome.error,
        });
        println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
        return Ok(code);
    }
    match (&outcome.output, &outcome.error) {
        (Some(output), _) => println!("{}", serde_json::to_string_pretty(output).expect("JSON")),
        (_, Some(error)) => {
            eprintln!("run {} {}: {}", outcome.run_id, outcome.status.as_str(), terminal::safe(&error.to_string()))
        }
        _ => eprintln!("run {} {}", outcome.run_id, outcome.status.as_str()),
    }
    Ok(code)
}

pub(crate) fn parse_json_arg(text: &str, what: &str) -> Result<Value, Failure> {
    let (source, text) = match text.strip_prefix('@') {
        Some(path) => {
            let body = limits::read_text_file(path.as_ref(), limits::MAX_FILE_BYTES)
                .with_context(|| format!("reading {what} from {path}"))
                .map_err(bad)?;
            (path.to_string(), body)
        }
        None => (what.to_string(), text.to_string()),
    };
    serde_json::from_str(&text).map_err(|e| bad(anyhow::anyhow!("{source} is not valid JSON: {e}")))
}

fn read_workflow(
    file: &std::path::Path,
    catalog: &weft_workflows::Catalog,
) -> Result<weft_workflows::Definition, Failure> {
    let text = limits::read_text_file(file, limits::MAX_FILE_BYTES)
        .with_context(|| format!("reading {}", file.display()))
        .map_err(bad)?;
    weft_workflows::load_with(&file.display().to_string(), &text, catalog, &weft_workflows::Files)
        .map_err(|d| bad(anyhow::anyhow!("{d}")))
}

pub(crate) fn cache_dir(cli: &Cli) -> Option<PathBuf> {
    cli.cache_dir.clone().or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("weft"))
    })
}

async fn open_host(cli: &Cli, store: Option<&Store>) -> Result<Arc<Host>, Failure> {
    Ok(Arc::new(new_host(cli, store).await?))
}

/// The store when --db is not given, found the way git finds a repository:
/// `.weft/weft.db` in the nearest of `cwd` and its parents that has a
/// `.weft/` folder, so that commands run from a subdirectory see the same
/// runs; `./.weft/weft.db` (created by the first run) when none has.
fn default_store(cwd: Option<&std::path::Path>) -> String {
    let found = cwd.and_then(|cwd| cwd.ancestors().find(|dir| dir.join(".weft").is_dir()));
    match found {
        Some(dir) => format!("sqlite://{}", dir.join(".weft/weft.db").display()),
        None => "sqlite://.weft/weft.db".to_string(),
    }
}

/// How this invocation's engine is built: the local tenant, the store of
/// --db, the compile cache, --allow-host, --connectors-dir and secrets from
/// the environment.
fn assembly(cli: &Cli) -> Assembly {
    Assembly {
        cache_dir: cache_dir(cli),
        allow_hosts: cli.allow_hosts.clone(),
        connectors_dir: cli.connectors_dir.clone(),
        secrets: Arc::new(EnvSecrets::from_env()),
        ..Assembly::new(&cli.db, DEFAULT_TENANT)
    }
}

/// A fresh database for a benchmark: on the `--postgres` server when one is
/// given, else on a throwaway durable cluster.
async fn bench_database(postgres: Option<&str>) -> Result<String, Failure> {
    let server = match postgres {
        Some(url) => url.to_string(),
        None => tokio::task::spawn_blocking(weft_store::testing::durable_server).await.map_err(failed)?,
    };
    weft_store::testing::fresh_database(&server).await.map_err(|e| failed(anyhow::anyhow!("--postgres: {e}")))
}

/// An assembly error as a CLI failure: what the user gave (the database URL,
/// the connectors directory) is bad input; the rest failed.
fn assembly_failure(e: AssemblyError) -> Failure {
    match e {
        AssemblyError::Store(_) | AssemblyError::Read { .. } | AssemblyError::Install { .. } => bad(e),
        AssemblyError::Host(_) | AssemblyError::Installed { .. } => failed(e),
    }
}

/// A host with the built-in connectors, those installed in `store`, and those
/// of --connectors-dir.
pub(crate) async fn new_host(cli: &Cli, store: Option<&Store>) -> Result<Host, Failure> {
    assembly(cli).host(store).await.map_err(assembly_failure)
}

pub(crate) async fn open_store(cli: &Cli) -> Result<Store, Failure> {
    assembly(cli).store().await.map_err(assembly_failure)
}

/// The store, unless it is a SQLite file that does not exist yet (so that
/// read-only commands do not create one).
pub(crate) async fn existing_store(cli: &Cli) -> Result<Option<Store>, Failure> {
    match weft_store::sqlite_file(&cli.db) {
        Some(file) if !file.exists() => Ok(None),
        _ => Ok(Some(open_store(cli).await?)),
    }
}

/// The store, a host with its installed connectors, and an engine on both.
async fn open_engine(cli: &Cli) -> Result<Engine, Failure> {
    assembly(cli).engine().await.map_err(assembly_failure)
}
