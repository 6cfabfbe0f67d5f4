//! Wide runs on a real store: a `foreach` over many items and a parent
//! waiting for many child runs complete, each item started and completed
//! exactly once. The core's cost per event does not grow with the number of
//! items (engine/core/tests/scale.rs drives a million), and the driver
//! commits the results that finished together in one append. Run against
//! both stores.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use weft_core::{Event, RunStatus};
use weft_host::{Host, HostConfig};
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Store};

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(weft_store::testing::sqlite_url(dir.path()), dir.path()).await
            }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(weft_store::testing::fresh_postgres().await, dir.path()).await
            }
        )* }
    };
}

both_stores!(a_wide_foreach_runs_each_item_once, a_parent_waits_for_thousands_of_children);

async fn engine(url: &str) -> Engine {
    let store = Store::connect(url).await.unwrap();
    // Compiled components are cached across tests and runs.
    let cache_dir = Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    Engine::new(store, Arc::new(host), EngineConfig::default())
}

/// How many attempts the run's journal started and completed.
async fn counts(engine: &Engine, run: &str) -> (usize, usize) {
    let events = engine.store().load_events(DEFAULT_TENANT, run, 0).await.unwrap();
    let started = events.iter().filter(|e| matches!(e.event, Event::StepStarted { .. })).count();
    let completed = events.iter().filter(|e| matches!(e.event, Event::StepCompleted { .. })).count();
    (started, completed)
}

async fn a_wide_foreach_runs_each_item_once(url: String, _dir: &Path) {
    const N: usize = 20_000;
    let engine = engine(&url).await;
    let workflow = json!({ "name": "wide", "steps": [
        { "id": "each", "uses": "transform/double", "foreach": "input.items", "concurrency": 64,
          "with": { "value": "{{ item }}" } }
    ], "output": "{{ steps.each.output | map(attribute='value') | sum }}" });
    let definition = weft_workflows::load("wide.json", &workflow.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    let items: Vec<u64> = (0..N as u64).collect();
    let outcome = engine.run(DEFAULT_TENANT, &definition, json!({ "items": items }), &mut ()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{:?}", outcome.error);
    let sum: u64 = items.iter().map(|n| n * 2).sum();
    assert_eq!(outcome.output, Some(json!(sum)));
    assert_eq!(counts(&engine, &outcome.run_id).await, (N, N));
}

async fn a_parent_waits_for_thousands_of_children(url: String, dir: &Path) {
    const N: usize = 10_000;
    let engine = engine(&url).await;
    let child = json!({ "name": "kid", "steps": [
        { "id": "twice", "uses": "transform/double", "with": { "value": "{{ input.value }}" } }
    ], "output": "{{ steps.twice.output.value }}" });
    let parent = json!({ "name": "parent", "steps": [
        { "id": "kids", "foreach": "input.values", "concurrency": N,
          "workflow": { "path": "kid.json", "input": { "value": "{{ item }}" } } }
    ], "output": "{{ steps.kids.output | sum }}" });
    std::fs::write(dir.join("kid.json"), child.to_string()).unwrap();
    std::fs::write(dir.join("parent.json"), parent.to_string()).unwrap();
    let definition = weft_workflows::load_file(&dir.join("parent.json"), &engine.catalog(DEFAULT_TENANT))
        .unwrap_or_else(|e| panic!("{e}"));
    let values: Vec<u64> = (0..N as u64).collect();
    let outcome = engine.run(DEFAULT_TENANT, &definition, json!({ "values": values }), &mut ()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{:?}", outcome.error);
    assert_eq!(outcome.output, Some(json!(values.iter().map(|n| n * 2).sum::<u64>())));
    assert_eq!(counts(&engine, &outcome.run_id).await, (N, N));
}
