//! Hostile connectors against the engine: each misbehaviour fails its own
//! step with an error that names the limit, while a healthy run in the same
//! engine completes at the same time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_core::RunStatus;
use weft_host::{Host, HostConfig, Limits, guest_component};
use weft_runtime::{Engine, EngineConfig, Outcome};
use weft_store::{DEFAULT_TENANT, Store, testing};

async fn engine(url: &str) -> Engine {
    let store = Store::connect(url).await.unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        max_output_bytes: 64 << 10,
        max_request_body_bytes: 1024,
        ..Limits::default()
    };
    // Compiled components are cached across tests and runs.
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    // The local tenant may reach only localhost, whatever a manifest allows.
    let host = Host::new(HostConfig { cache_dir, limits }).unwrap().with_egress_policy("default", &["localhost"]);
    host.install_builtins().await.unwrap();
    host.install(std::fs::read(guest_component("testkit")).unwrap()).await.unwrap();
    let config = EngineConfig { poll_interval: Duration::from_millis(20), ..EngineConfig::default() };
    Engine::new(store, Arc::new(host), config)
}

/// A one-step workflow that calls a testkit action once, with no retries.
fn hostile(action: &str, with: Value, timeout: Option<&str>) -> Value {
    let mut step =
        json!({ "id": "bad", "uses": format!("testkit/{action}"), "with": with, "retry": { "max_attempts": 1 } });
    if let Some(timeout) = timeout {
        step["timeout"] = json!(timeout);
    }
    json!({ "name": format!("hostile-{action}"), "steps": [step], "output": "{{ steps.bad.output }}" })
}

async fn run(engine: &Engine, workflow: Value, input: Value) -> Outcome {
    let definition = weft_workflows::load("w.json", &workflow.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    engine.run(DEFAULT_TENANT, &definition, input, &mut ()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hostile_connector_gets_its_named_error_while_a_healthy_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&testing::sqlite_url(dir.path())).await;
    let cases: Vec<(Value, &str)> = vec![
        (hostile("spin", json!({}), Some("8s")), "ran past its deadline of 8s"),
        (hostile("hog", json!({}), None), "exceeded its memory limit of 32 MiB"),
        (
            hostile("fetch", json!({ "url": "http://127.0.0.1:1/" }), None),
            "egress refused: testkit@0.1.0 may not connect to `127.0.0.1`",
        ),
        (
            {
                // `http` may call any host; the tenant's policy may not.
                let mut workflow = hostile("fetch", json!({ "url": "http://127.0.0.1:1/" }), None);
                workflow["steps"][0]["uses"] = json!("http/request");
                workflow
            },
            "egress refused: tenant `default`'s policy does not allow `127.0.0.1`",
        ),
        (
            hostile("secret", json!({ "name": "vault_root" }), None),
            "secret refused: testkit@0.1.0 asked for `vault_root`",
        ),
        (hostile("big", json!({ "bytes": 100_000 }), None), "over the output limit of 65536 bytes"),
        (
            hostile("upload", json!({ "url": "http://localhost:1/", "bytes": 4096 }), None),
            "request body refused: testkit@0.1.0 sent more than the limit of 1024 bytes",
        ),
    ];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (workflow, expected) in cases {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move { (run(&engine, workflow, json!({})).await, expected) }));
    }
    let snoop = tokio::spawn({
        let engine = engine.clone();
        async move { run(&engine, hostile("snoop", json!({}), None), json!({})).await }
    });

    let healthy = run(&engine, weft_bench::workloads::chain(5), json!({ "value": 1 })).await;
    assert_eq!((healthy.status, healthy.output), (RunStatus::Completed, Some(json!({ "value": 32 }))));
    // The spinning run holds its deadline of 8 s; the healthy run did not wait for it.
    assert!(!tasks[0].is_finished(), "the healthy run finished only after the spinning one ({:?})", started.elapsed());

    for task in tasks {
        let (outcome, expected) = task.await.unwrap();
        assert_eq!(outcome.status, RunStatus::Failed, "{expected}");
        let error = outcome.error.unwrap();
        assert!(error.message.contains(expected), "expected {expected:?} in {error:?}");
    }
    let snooped = snoop.await.unwrap();
    assert_eq!(snooped.status, RunStatus::Completed);
    let seen = snooped.output.unwrap();
    assert_eq!((seen["env"].clone(), seen["readable"].clone()), (json!(0), json!([])), "files or env leaked: {seen}");
}

/// On one thread, a guest that spins gives the thread back at every epoch
/// tick: other runs go on meanwhile, and its own run sees a cancel long
/// before the step's deadline.
#[tokio::test(flavor = "current_thread")]
async fn a_spinning_step_holds_neither_the_thread_nor_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&testing::sqlite_url(dir.path())).await;
    // Without yielding, this thread would be the guest's for 2 minutes.
    let spin = hostile("spin", json!({}), Some("2m"));
    let definition = weft_workflows::load("w.json", &spin.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    let spinning = engine.start(DEFAULT_TENANT, &definition, json!({})).await.unwrap();
    let driver = tokio::spawn({
        let (engine, run) = (engine.clone(), spinning.clone());
        async move { engine.drive(DEFAULT_TENANT, &run, &mut ()).await }
    });
    let mut started = false;
    for _ in 0..500 {
        let events = engine.store().load_events(DEFAULT_TENANT, &spinning, 0).await.unwrap();
        if events.iter().any(|e| e.event.kind() == "step_started") {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started, "the spinning step started");

    let healthy = run(&engine, weft_bench::workloads::chain(3), json!({ "value": 1 })).await;
    assert_eq!(healthy.status, RunStatus::Completed);
    assert!(!driver.is_finished(), "the spinning run ended by itself");

    engine.cancel(DEFAULT_TENANT, &spinning, "spun long enough").await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(60), driver)
        .await
        .expect("the cancel was not seen while the step spun")
        .unwrap()
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled);
}

/// One policy on values at every door: a run input, a signal payload, a
/// rendered step input and a connector's output or error are checked before
/// anything is journaled, so every journal can be read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_limits_are_refused_before_they_are_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&testing::sqlite_url(dir.path())).await;
    let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));

    // A connector's output nested too deep, and an error message of 1 MiB.
    let outcome = run(&engine, hostile("nest", json!({ "levels": 100 }), None), json!({})).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let error = outcome.error.unwrap().message;
    assert!(error.contains("returned output that nests deeper than the limit of 64 levels"), "{error}");
    let outcome = run(&engine, hostile("shout", json!({ "bytes": 1 << 20 }), None), json!({})).await;
    let error = outcome.error.unwrap().message;
    assert!(error.len() < 9 << 10 && error.ends_with("more bytes cut)"), "{} bytes: {}", error.len(), &error[..80]);
    let journal = engine.store().load_events(DEFAULT_TENANT, &outcome.run_id, 0).await.unwrap();
    let journaled: usize = journal.iter().map(|e| serde_json::to_string(&e.event).unwrap().len()).sum();
    assert!(journaled < 40 << 10, "the journal holds {journaled} bytes");

    // A rendered input over the size limit fails its step unjournaled.
    let mut workflow = hostile("big", json!({ "bytes": "{{ 'x' * 5000000 }}" }), None);
    workflow["steps"][0]["uses"] = json!("transform/echo");
    let outcome = run(&engine, workflow, json!({})).await;
    let error = outcome.error.unwrap().message;
    assert!(error.contains("over the size limit of 4194304 bytes"), "{error}");
    let journal = engine.store().load_events(DEFAULT_TENANT, &outcome.run_id, 0).await.unwrap();
    assert!(journal.iter().all(|e| e.event.kind() != "step_started"), "{journal:?}");

    // A run input and a signal payload nested too deep are refused at the door.
    let definition =
        weft_workflows::load("w.json", &weft_bench::workloads::chain(1).to_string(), &engine.catalog(DEFAULT_TENANT))
            .unwrap();
    let runs_before = engine.store().list_runs(DEFAULT_TENANT, 1000).await.unwrap().len();
    let refused = engine.start(DEFAULT_TENANT, &definition, json!({ "value": nested(70) })).await.unwrap_err();
    assert!(refused.to_string().starts_with("the run input nests deeper than the limit of 64 levels"), "{refused}");
    assert_eq!(engine.store().list_runs(DEFAULT_TENANT, 1000).await.unwrap().len(), runs_before);
    let waiting = json!({
        "name": "waits",
        "steps": [{ "id": "w", "wait_for_signal": { "name": "go", "timeout": "1m" } }],
    });
    let definition = weft_workflows::load("w.json", &waiting.to_string(), &engine.catalog(DEFAULT_TENANT)).unwrap();
    let run_id = engine.start(DEFAULT_TENANT, &definition, json!({})).await.unwrap();
    let refused = engine.signal(DEFAULT_TENANT, &run_id, "go", nested(70)).await.unwrap_err();
    assert!(refused.to_string().starts_with("the signal's payload nests deeper than the limit"), "{refused}");
    let huge = json!("x".repeat(5 << 20));
    let refused = engine.signal(DEFAULT_TENANT, &run_id, "go", huge).await.unwrap_err();
    assert_eq!(refused.to_string(), "the signal's payload is over the size limit of 4194304 bytes");
}
