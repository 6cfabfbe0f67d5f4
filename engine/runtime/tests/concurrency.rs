//! Many runs in one process share group commits; each still gets its own
//! correct, contiguous journal. Run against both stores.

use std::sync::Arc;

use serde_json::json;
use weft_host::{Host, HostConfig};
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Store, testing};

fn chain() -> String {
    weft_bench::workloads::chain(5).to_string()
}

async fn concurrent_runs_commit_together(url: String) {
    let store = Store::connect(&url).await.unwrap();
    // Compiled components are cached across tests and runs.
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    let engine = Engine::new(store, Arc::new(host), EngineConfig::default());
    let definition = weft_workflows::load("chain.json", &chain(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    let mut tasks = Vec::new();
    for n in 0..24i64 {
        let (engine, definition) = (engine.clone(), definition.clone());
        tasks.push(tokio::spawn(async move {
            let run = engine.start(DEFAULT_TENANT, &definition, json!({ "value": n })).await.unwrap();
            let outcome = engine.drive(DEFAULT_TENANT, &run, &mut ()).await.unwrap();
            (run, n, outcome)
        }));
    }
    for task in tasks {
        let (run, n, outcome) = task.await.unwrap();
        assert_eq!(outcome.output, Some(json!({ "value": n * 32 })), "run {run}");
        let events = engine.store().load_events(DEFAULT_TENANT, &run, 0).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "run {run} has a contiguous journal");
        let record = engine.store().find_run(DEFAULT_TENANT, &run).await.unwrap();
        assert_eq!(
            (record.status.as_str(), record.last_seq, record.lease_owner),
            ("completed", events.len() as i64, None)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_runs_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_runs_commit_together(testing::sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_runs_commit_together() {
    concurrent_runs_commit_together(testing::fresh_postgres().await).await;
}

/// A run is its tenant's: under another tenant, the engine's calls do not
/// find it, and it goes on as if nobody had asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_reach_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&testing::sqlite_url(dir.path())).await.unwrap();
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    let engine = Engine::new(store, Arc::new(host), EngineConfig::default());
    let text = json!({ "name": "wait", "steps": [ { "id": "w", "wait_for_signal": { "name": "go" } } ],
                       "output": "{{ steps.w.output }}" });
    let definition = weft_workflows::load("wait.json", &text.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    let run = engine.start(DEFAULT_TENANT, &definition, json!({})).await.unwrap();
    let not_found = |e: weft_runtime::Error| matches!(e, weft_runtime::Error::Store(weft_store::Error::RunNotFound(_)));
    let other = "other";
    assert!(not_found(engine.signal(other, &run, "go", json!(1)).await.unwrap_err()));
    assert!(not_found(engine.cancel(other, &run, "not yours").await.unwrap_err()));
    assert!(not_found(engine.drive(other, &run, &mut ()).await.unwrap_err()));
    assert!(engine.unfinished(other).await.unwrap().is_empty());
    // Its own tenant still finishes it.
    engine.signal(DEFAULT_TENANT, &run, "go", json!("ok")).await.unwrap();
    let outcome = engine.drive(DEFAULT_TENANT, &run, &mut ()).await.unwrap();
    assert_eq!(outcome.output, Some(json!("ok")));
}
