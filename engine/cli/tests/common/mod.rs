//! Helpers for driving the real `weft` binary: temporary workspaces, both
//! stores, and a local HTTP sink that counts what the connectors send.

#![allow(dead_code)]

pub mod service;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which store a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A scratch directory with a database and the weft binary's settings.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl Workspace {
    pub async fn new(backend: Backend) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let db = match backend {
            Backend::Sqlite => weft_store::testing::sqlite_url(dir.path()),
            Backend::Postgres => weft_store::testing::fresh_postgres().await,
        };
        Workspace { dir, db }
    }

    /// Writes a file in the workspace and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A `weft` command with this workspace's database and a shared cache.
    pub fn weft(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.current_dir(self.dir.path())
            .env("WEFT_DB", &self.db)
            .env("WEFT_CACHE_DIR", cache_dir())
            .env_remove("WEFT_CONNECTORS_DIR")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `weft ARGS…` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.weft().args(args).output().unwrap()
    }

    /// Starts `weft ARGS…` in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.weft().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// The run ids, newest first.
    pub fn run_ids(&self) -> Vec<String> {
        let out = self.run(&["runs", "list", "--json"]);
        assert!(out.status.success(), "runs list: {}", text(&out.stderr));
        let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        runs.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    }

    /// Waits (up to 30 s) for the store to hold a run other than `not`,
    /// and returns the newest run's id.
    pub async fn newest_run_except(&self, not: &str) -> String {
        let mut run = String::new();
        wait_until("a run to start", Duration::from_secs(30), || {
            run = self.run_ids().first().cloned().unwrap_or_default();
            !run.is_empty() && run != not
        })
        .await;
        run
    }

    /// A run's journal, from `weft runs show --json`.
    pub fn journal(&self, run: &str) -> Value {
        let out = self.run(&["runs", "show", run, "--json"]);
        assert!(out.status.success(), "runs show: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// One compile cache for every test process, so components compile once.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until `check` holds, failing after `limit` with `what`.
pub async fn wait_until(what: &str, limit: Duration, check: impl FnMut() -> bool) {
    assert!(poll_until(limit, check).await, "timed out waiting for {what}");
}

/// Whether `check` comes to hold within `limit`.
pub async fn poll_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !check() {
        if start.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

/// One request the sink saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: String,
}

/// A local HTTP server that records every request. Requests to paths in
/// `hang_once` get no answer the first time (the connection stays open), so
/// that a test can kill the process in the middle of that step.
#[derive(Clone)]
pub struct Sink {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Sink {
    pub async fn start(hang_once: &[&str]) -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hang: Arc<Mutex<HashMap<String, bool>>> =
            Arc::new(Mutex::new(hang_once.iter().map(|p| (p.to_string(), true)).collect()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let record = record.clone();
                let hang = hang.clone();
                tokio::spawn(async move { serve(socket, record, hang).await });
            }
        });
        Sink { base, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

async fn serve(
    mut socket: tokio::net::TcpStream,
    record: Arc<Mutex<Vec<Seen>>>,
    hang: Arc<Mutex<HashMap<String, bool>>>,
) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while data.len() < head_end + length {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = String::from_utf8_lossy(&data[head_end..]).into_owned();
    record.lock().unwrap().push(Seen { path: path.clone(), idempotency_key: header("idempotency-key"), body });
    let hang_now = hang.lock().unwrap().get_mut(&path).map(|first| std::mem::replace(first, false)).unwrap_or(false);
    if hang_now {
        // Hold the connection until the client goes away.
        let _ = socket.read(&mut buf).await;
        return;
    }
    let reply = format!(r#"{{"path":"{path}"}}"#);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}
