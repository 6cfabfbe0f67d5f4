//! W5: runs started over HTTP. A `weft server` (API and worker in one
//! process, as `weft server` runs by default) on Postgres; 64 clients, each
//! with a keep-alive connection and one tenant's API key, start a run of a
//! one-step workflow with `POST /v1/runs`, wait for it to complete with
//! `GET /v1/runs/{id}?wait=30` (answered when it ends), and start the next. Reported: runs started and completed
//! per second, and the start latency against the single-row commit floor
//! measured on the same database in the same run: alone before the load,
//! and by one more client on a thread of its own, a commit every 20 ms,
//! while the load runs (what the database gives any commit under it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use weft_server::{RateLimits, Server, ServerConfig};

use crate::floor::{Floor, commit_floor};
use crate::percentile;

/// What W5 measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The commit floor of the same database.
    pub floor: Floor,
    /// The same commit's latency while the clients run, ms: p50, p90.
    pub loaded_floor_ms: (f64, f64),
    /// Clients.
    pub clients: usize,
    /// Runs started and seen completed per second.
    pub runs_per_sec: f64,
    /// `POST /v1/runs` latency, ms: p50, p99.
    pub start_ms: (f64, f64),
    /// Start to completion seen, ms: p50, p99.
    pub complete_ms: (f64, f64),
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    stream: BufReader<TcpStream>,
    key: String,
}

impl Connection {
    async fn open(address: &str, key: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream: BufReader::new(stream), key: key.to_string() })
    }

    async fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: weft\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            self.key,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

/// Measures W5 on the Postgres database at `url` (fresh) for `seconds`,
/// with `clients` clients. Progress goes to stderr.
pub async fn measure(
    url: &str,
    cache_dir: Option<std::path::PathBuf>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Report> {
    eprintln!("[w5] commit floor…");
    let floor = commit_floor(url, 200, 8, Duration::from_secs(3)).await?;
    let mut config = ServerConfig::new(url);
    config.assembly.cache_dir = cache_dir;
    // The clients share one key: no rate limit, so that the API's own cost
    // is what is measured.
    config.rate_limits = RateLimits { per_key: None, per_tenant: None, key_lookups_per_address: None };
    let server = Server::start(config).await?;
    let admin = server.bootstrap().await?.ok_or_else(|| anyhow::anyhow!("the database is not new"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        stopped.await.ok();
    }));

    let mut setup = Connection::open(&address, &admin).await?;
    let (status, _) = setup.call("POST", "/v1/tenants", Some(&json!({ "id": "bench" }))).await?;
    anyhow::ensure!(status == 201, "creating the tenant: {status}");
    let (_, made) =
        setup.call("POST", "/v1/tenants/bench/api-keys", Some(&json!({ "name": "w5", "role": "developer" }))).await?;
    let key = made["secret"].as_str().ok_or_else(|| anyhow::anyhow!("no key: {made}"))?.to_string();
    let mut setup = Connection::open(&address, &key).await?;
    let workflow = json!({ "name": "w5", "steps": [
        { "id": "echo", "uses": "transform/echo", "with": { "n": "{{ input.n }}" } }
    ] });
    let source = json!({ "source": workflow.to_string() });
    let (status, created) = setup.call("POST", "/v1/workflows", Some(&source)).await?;
    anyhow::ensure!(status == 201, "storing the workflow: {status} {created}");
    let hash = created["workflow"]["hash"].as_str().unwrap_or_default().to_string();
    // One run first, untimed: the connector is compiled (or loaded from the
    // cache) on its first call.
    let (status, warm) =
        setup.call("POST", "/v1/runs", Some(&json!({ "workflow": hash, "input": { "n": 0 } }))).await?;
    anyhow::ensure!(status == 201, "starting the warm-up run: {status} {warm}");
    let path = format!("/v1/runs/{}?wait=30", warm["run"]["id"].as_str().unwrap_or_default());
    let (_, warm) = setup.call("GET", &path, None).await?;
    anyhow::ensure!(warm["status"] == "completed", "the warm-up run did not complete: {warm}");

    eprintln!("[w5] {clients} clients for {seconds} s…");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let loaded = tokio::spawn(crate::floor::probe(url, deadline, Duration::from_millis(20)));
    let hash = Arc::new(hash);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (address, key, hash) = (address.clone(), key.clone(), hash.clone());
        tasks.spawn(async move {
            let mut connection = Connection::open(&address, &key).await?;
            let (mut starts, mut completions) = (Vec::new(), Vec::new());
            let mut n = 0u64;
            while Instant::now() < deadline {
                let body = json!({ "workflow": *hash, "input": { "n": n + client as u64 * 1_000_000 } });
                let began = Instant::now();
                let (status, started) = connection.call("POST", "/v1/runs", Some(&body)).await?;
                anyhow::ensure!(status == 201, "starting a run: {status} {started}");
                starts.push(began.elapsed().as_secs_f64() * 1e3);
                let path = format!("/v1/runs/{}?wait=30", started["run"]["id"].as_str().unwrap_or_default());
                loop {
                    let (_, run) = connection.call("GET", &path, None).await?;
                    match run["status"].as_str() {
                        Some("running") => {}
                        Some("completed") => break,
                        other => anyhow::bail!("run {path} ended {other:?}: {run}"),
                    }
                }
                completions.push(began.elapsed().as_secs_f64() * 1e3);
                n += 1;
            }
            Ok::<_, anyhow::Error>((starts, completions))
        });
    }
    let (mut starts, mut completions) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        let (s, c) = joined??;
        starts.extend(s);
        completions.extend(c);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let loaded = loaded.await??;
    let _ = stop.send(());
    serving.await??;
    starts.sort_by(f64::total_cmp);
    completions.sort_by(f64::total_cmp);
    Ok(Report {
        floor,
        loaded_floor_ms: (percentile(&loaded, 0.5), percentile(&loaded, 0.9)),
        clients,
        runs_per_sec: completions.len() as f64 / elapsed,
        start_ms: (percentile(&starts, 0.5), percentile(&starts, 0.99)),
        complete_ms: (percentile(&completions, 0.5), percentile(&completions, 0.99)),
    })
}

/// Prints the report as the Markdown table kept in docs/BENCHMARKS.md.
pub fn print(report: &Report) {
    let floor = report.floor.commit_ms;
    println!("| W5 (Postgres, {} clients, one server) | measured | target |", report.clients);
    println!("|---|---|---|");
    println!("| commit floor (1 client) | {floor:.3} ms | - |");
    println!(
        "| the same commit during the load, p50 / p90 | {:.3} / {:.3} ms ({:.1}x / {:.1}x the floor) | - |",
        report.loaded_floor_ms.0,
        report.loaded_floor_ms.1,
        report.loaded_floor_ms.0 / floor,
        report.loaded_floor_ms.1 / floor
    );
    println!("| runs started and completed | {:.0}/s | ≥ 2,000/s |", report.runs_per_sec);
    println!(
        "| start latency p50 / p99 | {:.2} / {:.2} ms ({:.1}x / {:.1}x the floor) | p50 ≤ 3x the floor |",
        report.start_ms.0,
        report.start_ms.1,
        report.start_ms.0 / floor,
        report.start_ms.1 / floor
    );
    println!(
        "| start to completion seen p50 / p99 | {:.2} / {:.2} ms | - |",
        report.complete_ms.0, report.complete_ms.1
    );
}
