//! Many runs in one process share group commits; each still gets its own
//! correct, contiguous journal. Run against both stores.

use std::sync::Arc;

use serde_json::json;
use weft_host::{Host, HostConfig};
use weft_runtime::{Engine, EngineConfig};
use weft_store::{Store, testing};

fn chain() -> String {
    weft_runtime::workloads::chain(5).to_string()
}

async fn concurrent_runs_commit_together(url: String) {
    let store = Store::connect(&url).await.unwrap();
    // Compiled components are cached across tests and runs.
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    let engine = Engine::new(store, Arc::new(host), EngineConfig::default());
    let definition = weft_workflows::load("chain.json", &chain(), &engine.catalog()).unwrap();
    let mut tasks = Vec::new();
    for n in 0..24i64 {
        let (engine, definition) = (engine.clone(), definition.clone());
        tasks.push(tokio::spawn(async move {
            let run = engine.start(&definition, json!({ "value": n })).await.unwrap();
            let outcome = engine.drive(&run, &mut ()).await.unwrap();
            (run, n, outcome)
        }));
    }
    for task in tasks {
        let (run, n, outcome) = task.await.unwrap();
        assert_eq!(outcome.output, Some(json!({ "value": n * 32 })), "run {run}");
        let events = engine.store().load_events(&run, 0).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>(), "run {run} has a contiguous journal");
        let record = engine.store().find_run(&run).await.unwrap();
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
