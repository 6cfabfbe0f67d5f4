//! Runs that wait hold no process: an engine that parks gives a sleeping or
//! signal-waiting run back to the store, and a worker claims it when its
//! time comes or its signal arrives. Run against both stores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::{Event, RunStatus};
use weft_host::{Host, HostConfig};
use weft_runtime::{Engine, EngineConfig, Worker, WorkerConfig};
use weft_store::{DEFAULT_TENANT, PARKED_UNTIL_SIGNALLED, RunRecord, Store};

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(weft_store::testing::sqlite_url(dir.path())).await
            }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(weft_store::testing::fresh_postgres().await).await
            }
        )* }
    };
}

both_stores!(
    a_waiting_run_is_parked_and_woken_by_its_time_and_its_signal,
    an_idempotency_key_starts_one_run,
    a_run_that_starts_with_a_sleep_is_written_parked
);

async fn engine(url: &str) -> Engine {
    let store = Store::connect(url).await.unwrap();
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    let config = EngineConfig {
        poll_interval: Duration::from_millis(20),
        park_after: Some(Duration::from_millis(300)),
        ..EngineConfig::default()
    };
    Engine::new(store, Arc::new(host), config)
}

fn definition(engine: &Engine) -> weft_workflows::Definition {
    let text = json!({ "name": "patient", "steps": [
        { "id": "nap", "sleep": "1500ms" },
        { "id": "ask", "wait_for_signal": { "name": "go" }, "needs": ["nap"] },
        { "id": "done", "uses": "transform/echo", "with": { "said": "{{ steps.ask.output }}" }, "needs": ["ask"] }
    ] });
    weft_workflows::load("patient.json", &text.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap()
}

async fn record(engine: &Engine, id: &str) -> RunRecord {
    engine.store().get_run(DEFAULT_TENANT, id).await.unwrap().unwrap()
}

/// Waits until `check` holds for the run, up to 20 s.
async fn until(engine: &Engine, id: &str, what: &str, check: impl Fn(&RunRecord) -> bool) -> RunRecord {
    let start = Instant::now();
    loop {
        let run = record(engine, id).await;
        if check(&run) {
            return run;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for the run to be {what}: {run:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_waiting_run_is_parked_and_woken_by_its_time_and_its_signal(url: String) {
    let engine = engine(&url).await;
    let def = definition(&engine);
    let worker =
        Worker::new(engine.clone(), WorkerConfig { poll_interval: Duration::from_millis(50), ..Default::default() });
    let (run, created) = engine.start_once(DEFAULT_TENANT, &def, json!({}), None).await.unwrap();
    assert!(created);
    let started = Instant::now();
    // It begins with a sleep: it is written parked, with nothing to adopt.
    assert_eq!(run.lease_owner, None);

    // The sleep parks it: no lease, due when the nap ends, no task.
    let parked = until(&engine, &run.id, "parked for its sleep", |r| r.wake_at > 0).await;
    assert_eq!(parked.lease_owner, None);
    assert!(parked.wake_at >= parked.created_at + 1_500, "{parked:?}");
    assert_eq!(worker.driving(), 0, "a parked run holds no slot");

    // Nobody claims it before it is due; a worker does after.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let claiming = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(async { stopped.await.unwrap_or(()) }).await }
    });
    let waiting = until(&engine, &run.id, "parked for its signal", |r| r.wake_at == PARKED_UNTIL_SIGNALLED).await;
    assert!(started.elapsed() >= Duration::from_millis(1_500), "woken early");
    assert_eq!((waiting.status, waiting.lease_owner), (RunStatus::Running, None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(record(&engine, &run.id).await.wake_at, PARKED_UNTIL_SIGNALLED, "no signal, no claim");

    // The signal makes it due; the worker finishes it.
    engine.signal(DEFAULT_TENANT, &run.id, "go", json!({ "ok": true })).await.unwrap();
    let done = until(&engine, &run.id, "completed", |r| r.status.is_terminal()).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    assert_eq!(done.output.as_deref(), Some(r#"{"said":{"ok":true}}"#));
    let events = engine.store().load_events(DEFAULT_TENANT, &run.id, 0).await.unwrap();
    let ended: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::TimerFired { step } | Event::StepCompleted { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ended, ["nap", "ask", "done"], "each step ended once");
    stop.send(()).unwrap();
    claiming.await.unwrap();
    assert_eq!(worker.driving(), 0);
}

async fn an_idempotency_key_starts_one_run(url: String) {
    let engine = engine(&url).await;
    let def = definition(&engine);
    let (first, created) = engine.start_once(DEFAULT_TENANT, &def, json!({}), Some("k-1")).await.unwrap();
    assert!(created);
    let (again, created) = engine.start_once(DEFAULT_TENANT, &def, json!({}), Some("k-1")).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    // Concurrent starts with one new key: one run.
    let starts = (0..8).map(|_| {
        let (engine, def) = (engine.clone(), def.clone());
        tokio::spawn(async move { engine.start_once(DEFAULT_TENANT, &def, json!({}), Some("k-2")).await.unwrap() })
    });
    let mut ids = Vec::new();
    let mut new = 0;
    for start in starts {
        let (run, created) = start.await.unwrap();
        new += usize::from(created);
        ids.push(run.id);
    }
    ids.dedup();
    assert_eq!((ids.len(), new), (1, 1), "{ids:?}");
}

async fn a_run_that_starts_with_a_sleep_is_written_parked(url: String) {
    let engine = engine(&url).await;
    let text = json!({ "name": "later", "steps": [
        { "id": "nap", "sleep": "800ms" },
        { "id": "done", "uses": "transform/echo", "with": { "ok": true }, "needs": ["nap"] }
    ] });
    let def = weft_workflows::load("later.json", &text.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    let (run, created) = engine.start_once(DEFAULT_TENANT, &def, json!({}), None).await.unwrap();
    assert!(created);
    assert_eq!(run.lease_owner, None, "nobody holds it");
    let stored = record(&engine, &run.id).await;
    assert_eq!((stored.lease_owner.as_deref(), stored.wake_at), (None, run.wake_at));
    assert!(stored.wake_at >= stored.created_at + 800, "due when its sleep ends: {stored:?}");
    let events = engine.store().load_events(DEFAULT_TENANT, &run.id, 0).await.unwrap();
    assert!(events.iter().any(|e| matches!(e.event, Event::TimerSet { .. })), "its sleep started as it was written");

    let worker =
        Worker::new(engine.clone(), WorkerConfig { poll_interval: Duration::from_millis(50), ..Default::default() });
    let claiming = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run(std::future::pending()).await }
    });
    let done = until(&engine, &run.id, "completed", |r| r.status.is_terminal()).await;
    assert_eq!(done.status, RunStatus::Completed, "{done:?}");
    claiming.abort();

    // A run whose first step is a call is leased to its starter, to drive.
    let (busy, _) = engine.start_once(DEFAULT_TENANT, &definition(&engine), json!({}), None).await.unwrap();
    let (next, _) = engine
        .start_once(
            DEFAULT_TENANT,
            &{
                let text = json!({ "name": "now", "steps": [{ "id": "a", "uses": "transform/echo", "with": {} }] });
                weft_workflows::load("now.json", &text.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap()
            },
            json!({}),
            None,
        )
        .await
        .unwrap();
    assert!(busy.lease_owner.is_none(), "`patient` starts with a sleep");
    assert!(next.lease_owner.is_some());
}
