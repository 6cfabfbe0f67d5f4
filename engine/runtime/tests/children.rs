//! Child workflow steps: a child run is created, driven and recorded with
//! its parent; its outcome becomes the step's; ending the parent ends the
//! child. Run against both stores.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::RunStatus;
use weft_host::{Host, HostConfig};
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Store};
use weft_workflows::Definition;

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

both_stores!(a_child_run_feeds_its_parent, a_failed_child_fails_its_step, cancelling_a_parent_cancels_its_child);

async fn engine(url: &str) -> Engine {
    let store = Store::connect(url).await.unwrap();
    // Compiled components are cached across tests and runs.
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    let config = EngineConfig { poll_interval: Duration::from_millis(20), ..EngineConfig::default() };
    Engine::new(store, Arc::new(host), config)
}

/// Writes `parent.json` and `child.json` into `dir` and loads the parent.
fn load(engine: &Engine, dir: &Path, parent: Value, child: Value) -> Definition {
    std::fs::write(dir.join("child.json"), child.to_string()).unwrap();
    std::fs::write(dir.join("parent.json"), parent.to_string()).unwrap();
    weft_workflows::load_file(&dir.join("parent.json"), &engine.catalog(DEFAULT_TENANT))
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn a_child_run_feeds_its_parent(url: String, dir: &Path) {
    let engine = engine(&url).await;
    let child = json!({ "name": "doubler", "input": { "type": "object", "required": ["value"] }, "steps": [
        { "id": "twice", "uses": "transform/double", "with": { "value": "{{ input.value }}" } }
    ] });
    let parent = json!({ "name": "parent", "steps": [
        { "id": "kids", "foreach": "input.values", "workflow": { "path": "child.json", "input": { "value": "{{ item }}" } } },
        { "id": "sum", "uses": "transform/echo", "with": { "outputs": "{{ steps.kids.output }}" } }
    ] });
    let def = load(&engine, dir, parent, child);
    let run = engine.start(DEFAULT_TENANT, &def, json!({ "values": [1, 2, 3] })).await.unwrap();
    let outcome = engine.drive(DEFAULT_TENANT, &run, &mut ()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    assert_eq!(outcome.output, Some(json!({ "outputs": [{ "value": 2 }, { "value": 4 }, { "value": 6 }] })));

    let store = engine.store();
    for n in 0..3 {
        let id = weft_core::child_run_id(&run, "kids", Some(n), 1);
        let child = store.get_run(DEFAULT_TENANT, &id).await.unwrap().expect("each iteration has its child run");
        assert_eq!((child.status.as_str(), child.parent_id.as_deref()), ("completed", Some(run.as_str())));
        assert_eq!(child.workflow_hash, def.children["kids"].hash, "the child is pinned to the loaded version");
        assert_eq!(child.lease_owner, None);
    }
    let listed = store.list_runs(weft_store::DEFAULT_TENANT, 10).await.unwrap();
    assert_eq!(listed.len(), 4);
    // The pinned definition, children included, reads back from the store.
    let record = store.find_run(DEFAULT_TENANT, &run).await.unwrap();
    assert_eq!(engine.definition(&record).await.unwrap(), def);
}

async fn a_failed_child_fails_its_step(url: String, dir: &Path) {
    let engine = engine(&url).await;
    let child = json!({ "name": "failing", "steps": [
        { "id": "boom", "uses": "transform/fail", "with": { "kind": "fatal", "message": "no such customer" } }
    ] });
    let parent = json!({ "name": "parent", "steps": [
        { "id": "kid", "workflow": { "path": "child.json" }, "on_error": "continue" },
        { "id": "after", "uses": "transform/echo", "needs": ["kid"], "with": { "error": "{{ steps.kid.error }}" } }
    ] });
    let def = load(&engine, dir, parent, child);
    let run = engine.start(DEFAULT_TENANT, &def, json!({})).await.unwrap();
    let outcome = engine.drive(DEFAULT_TENANT, &run, &mut ()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Completed, "{outcome:?}");
    let error = &outcome.output.unwrap()["error"];
    assert_eq!(error["kind"], "fatal", "the child's error kind carries over: {error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("child run") && message.contains("no such customer"), "{message}");
    let events = engine.store().load_events(DEFAULT_TENANT, &run, 0).await.unwrap();
    let attempts = events.iter().filter(|e| e.event.kind() == "step_started" && e.event.step() == Some("kid")).count();
    assert_eq!(attempts, 1, "a child workflow step is not retried without a retry policy");
}

async fn cancelling_a_parent_cancels_its_child(url: String, dir: &Path) {
    let engine = engine(&url).await;
    let child = json!({ "name": "waiter", "steps": [ { "id": "wait", "wait_for_signal": { "name": "go" } } ] });
    let parent = json!({ "name": "parent", "steps": [ { "id": "kid", "workflow": { "path": "child.json" } } ] });
    let def = load(&engine, dir, parent, child);
    let run = engine.start(DEFAULT_TENANT, &def, json!({})).await.unwrap();
    let driver = {
        let (engine, run) = (engine.clone(), run.clone());
        tokio::spawn(async move { engine.drive(DEFAULT_TENANT, &run, &mut ()).await })
    };
    let child_id = weft_core::child_run_id(&run, "kid", None, 1);
    let store = engine.store().clone();
    let mut waiting = false;
    for _ in 0..500 {
        let events = store.load_events(DEFAULT_TENANT, &child_id, 0).await.unwrap();
        if events.iter().any(|e| e.event.kind() == "step_started") {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "the child run started and waits for its signal");

    // Another process (another engine) cancels the parent while it is driven.
    let other = self::engine(&url).await;
    other.cancel(DEFAULT_TENANT, &run, "changed my mind").await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), driver).await.unwrap().unwrap().unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled);
    let child = store.get_run(DEFAULT_TENANT, &child_id).await.unwrap().unwrap();
    assert_eq!(child.status, RunStatus::Cancelled, "the child ended with its parent");
    let reason =
        store.load_events(DEFAULT_TENANT, &child_id, 0).await.unwrap().into_iter().find_map(|e| match e.event {
            weft_core::Event::CancelRequested { reason } => Some(reason),
            _ => None,
        });
    assert!(reason.unwrap().contains(&run), "the child's journal says which parent ended it");
}
