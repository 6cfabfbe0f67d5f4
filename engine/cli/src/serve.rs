//! `weft server`, `weft worker` and `weft admin`: Weft as a service. The
//! server answers the `/v1` API and, unless told not to, drives runs too;
//! a worker only drives runs, next to servers on the same Postgres.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Subcommand;
use weft_runtime::{Worker, WorkerConfig};
use weft_server::{Server, ServerConfig};

use crate::{Cli, Failure, assembly, assembly_failure, bad, failed};

/// `weft admin`'s commands.
#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Make the first super-admin API key, if the database has no live key,
    /// and print it (once: only its hash is kept).
    ///
    /// `weft server` does this on its first start; use this command to make
    /// the key before starting servers, e.g. from a deployment script.
    Bootstrap,
    /// Make another super-admin API key and print it.
    AdminKey {
        /// A name for the key, e.g. who holds it.
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

/// The options `weft server` and `weft worker` share.
#[derive(clap::Args)]
pub(crate) struct WorkerArgs {
    /// How many runs this process drives at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: u32,
    /// Park a run that waits (a sleep, a signal) when its next wake-up is at
    /// least this far off: it then holds no memory here, and a worker claims
    /// it when due.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub park_after: Duration,
}

/// `weft server`'s rate limits.
#[derive(clap::Args)]
pub(crate) struct LimitArgs {
    /// Requests per second one API key may make (bursts of twice that);
    /// over it, 429 with Retry-After. 0: no limit.
    #[arg(long, env = "WEFT_RATE_LIMIT_KEY", default_value_t = 2_000, value_name = "N")]
    pub rate_limit_key: u32,
    /// Requests per second one tenant may make over all its keys. 0: no limit.
    #[arg(long, env = "WEFT_RATE_LIMIT_TENANT", default_value_t = 5_000, value_name = "N")]
    pub rate_limit_tenant: u32,
    /// Look-ups per second of API keys not checked in the last few seconds
    /// (new clients, made-up keys) one client address may cause; over it,
    /// 429 with Retry-After, before the database is asked. 0: no limit.
    #[arg(long, env = "WEFT_RATE_LIMIT_KEY_LOOKUPS", default_value_t = 20, value_name = "N")]
    pub rate_limit_key_lookups: u32,
}

fn config(cli: &Cli, args: &WorkerArgs, worker: bool) -> ServerConfig {
    let mut config = ServerConfig::new(cli.db.clone());
    config.assembly = assembly(cli);
    config.assembly.engine.park_after = Some(args.park_after);
    config.worker = worker.then(|| WorkerConfig { slots: args.slots as usize, ..WorkerConfig::default() });
    config
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, () = term => {} }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.ok();
    }
}

/// `weft server`.
pub(crate) async fn server(
    cli: &Cli,
    listen: &str,
    no_worker: bool,
    args: &WorkerArgs,
    limits: &LimitArgs,
) -> Result<u8, Failure> {
    let addr: SocketAddr = listen.parse().map_err(|e| bad(anyhow::anyhow!("--listen {listen:?}: {e}")))?;
    let mut config = config(cli, args, !no_worker);
    config.rate_limits = weft_server::RateLimits {
        per_key: Some(limits.rate_limit_key).filter(|n| *n > 0),
        per_tenant: Some(limits.rate_limit_tenant).filter(|n| *n > 0),
        key_lookups_per_address: Some(limits.rate_limit_key_lookups).filter(|n| *n > 0),
    };
    let server = Server::start(config).await.map_err(start_failure)?;
    if let Some(key) = server.bootstrap().await.map_err(failed)? {
        eprintln!("The database had no API key; this super-admin key was made for it and is shown only now:");
        println!("{key}");
    }
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| failed(anyhow::anyhow!("listening on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(failed)?;
    tracing::info!(address = %bound, store = %weft_store::redact(&cli.db), worker = !no_worker, "weft server listening");
    eprintln!("weft server listening on http://{bound} (store {})", weft_store::redact(&cli.db));
    server.serve(listener, shutdown_signal()).await.map_err(failed)?;
    Ok(0)
}

/// `weft worker`.
pub(crate) async fn worker(cli: &Cli, args: &WorkerArgs) -> Result<u8, Failure> {
    let mut assembly = assembly(cli);
    assembly.engine.park_after = Some(args.park_after);
    let engine = assembly.engine().await.map_err(assembly_failure)?;
    let worker = Worker::new(engine.clone(), WorkerConfig { slots: args.slots as usize, ..WorkerConfig::default() });
    tracing::info!(store = %weft_store::redact(&cli.db), slots = args.slots, "weft worker started");
    eprintln!("weft worker driving runs from {}", weft_store::redact(&cli.db));
    worker.run(shutdown_signal()).await;
    engine.store().close().await;
    Ok(0)
}

/// `weft admin …`.
pub(crate) async fn admin(cli: &Cli, command: &AdminCommand) -> Result<u8, Failure> {
    let mut config = ServerConfig::new(cli.db.clone());
    config.assembly = assembly(cli);
    config.worker = None;
    let server = Server::start(config).await.map_err(start_failure)?;
    match command {
        AdminCommand::Bootstrap => match server.bootstrap().await.map_err(failed)? {
            Some(key) => {
                eprintln!("A super-admin key was made; it is shown only now:");
                println!("{key}");
                Ok(0)
            }
            None => Err(bad(anyhow::anyhow!(
                "the database already has API keys; make another super-admin key with `weft admin admin-key`"
            ))),
        },
        AdminCommand::AdminKey { name } => {
            println!("{}", server.admin_key(name).await.map_err(failed)?);
            Ok(0)
        }
    }
}

fn start_failure(e: weft_server::Error) -> Failure {
    match e {
        weft_server::Error::Assembly(e) => assembly_failure(e),
        other => failed(other),
    }
}
