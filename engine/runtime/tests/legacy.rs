//! Runs journaled by an earlier weft resume under this one. The fixture holds
//! the rows that weft wrote at commit 871af73 (see its `note`): a run killed
//! while its child run waited for a signal, and the same journal cut while
//! two `foreach` calls were in flight. They are written into a fresh store of
//! each backend as they were, and driven to their end here.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weft_core::{Event, RunStatus};
use weft_host::{BUILTINS, Host, HostConfig, digest_of};
use weft_runtime::{Engine, EngineConfig};
use weft_store::{DEFAULT_TENANT, Store, testing};

const PARENT: &str = "01a230f7-3073-7002-b7c4-0b7ae9430454";
const CHILD: &str = "c87c9b48-320d-8fec-b62c-ef4782979356";
const CUT: &str = "01a230f7-3073-7002-b7c4-0b7ae9430cut";

/// An engine over `url` whose store holds the fixture's rows.
async fn engine_with_fixture(url: &str) -> Engine {
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    host.install_builtins().await.unwrap();
    let store = Store::connect(url).await.unwrap();
    let fixture: Value = serde_json::from_str(include_str!("fixtures/journal-871af73.json")).unwrap();
    // The runs are pinned to the `transform` build of that day; a later
    // build of the same version stands in for it, as a reinstall would.
    let transform = BUILTINS.iter().find(|(name, _)| *name == "transform").unwrap().1;
    let pinned = "sha256:22070e813c9ee87c10a18722fc4028179825d43142637841cc1d8a6d0731cd34";
    let now = digest_of(transform);

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let text = |row: &Value, key: &str| row[key].as_str().map(str::to_string);
    // The fixture's times move to now, as if it had just been written:
    // otherwise the run's one-day timeout expires a day after the fixture
    // was made, and the test with it.
    let last = fixture["events"].as_array().unwrap().iter().filter_map(|e| e["at"].as_i64()).max().unwrap();
    let shift = weft_runtime::now_ms() - last;
    let int = |row: &Value, key: &str| row[key].as_i64();
    let time = |row: &Value, key: &str| int(row, key).map(|t| t + shift);
    let body = |row: &Value| {
        let mut event: Value = serde_json::from_str(row["body"].as_str().unwrap()).unwrap();
        for key in ["timeout_at", "fire_at", "retry_at"] {
            if let Some(t) = event[key].as_i64() {
                event[key] = json!(t + shift);
            }
        }
        event.to_string().replace(pinned, &now)
    };
    for row in fixture["workflows"].as_array().unwrap() {
        sqlx::query(
            "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(text(row, "tenant_id"))
        .bind(text(row, "hash"))
        .bind(text(row, "name"))
        .bind(text(row, "definition"))
        .bind(time(row, "created_at"))
        .execute(&pool)
        .await
        .unwrap();
    }
    for row in fixture["runs"].as_array().unwrap() {
        sqlx::query(
            "INSERT INTO runs (id, tenant_id, workflow_name, workflow_hash, status, input, output, error, last_seq, \
             lease_owner, lease_until, created_at, updated_at, parent_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(text(row, "id"))
        .bind(text(row, "tenant_id"))
        .bind(text(row, "workflow_name"))
        .bind(text(row, "workflow_hash"))
        .bind(text(row, "status"))
        .bind(text(row, "input"))
        .bind(text(row, "output"))
        .bind(text(row, "error"))
        .bind(int(row, "last_seq"))
        .bind(text(row, "lease_owner"))
        .bind(time(row, "lease_until"))
        .bind(time(row, "created_at"))
        .bind(time(row, "updated_at"))
        .bind(text(row, "parent_id"))
        .execute(&pool)
        .await
        .unwrap();
    }
    for row in fixture["events"].as_array().unwrap() {
        sqlx::query(
            "INSERT INTO events (run_id, seq, tenant_id, kind, step, body, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(text(row, "run_id"))
        .bind(int(row, "seq"))
        .bind(text(row, "tenant_id"))
        .bind(text(row, "kind"))
        .bind(text(row, "step"))
        .bind(body(row))
        .bind(time(row, "at"))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let config = EngineConfig {
        poll_interval: Duration::from_millis(20),
        lease_ttl: Duration::from_millis(500),
        park_after: None,
    };
    Engine::new(store, Arc::new(host), config)
}

/// How often each step's iteration completed in a run's journal.
async fn completions(engine: &Engine, run: &str) -> Vec<(String, Option<u32>)> {
    let events = engine.store().load_events(DEFAULT_TENANT, run, 0).await.unwrap();
    let mut done: Vec<(String, Option<u32>)> = events
        .into_iter()
        .filter_map(|e| match e.event {
            Event::StepCompleted { step, iteration, .. } => Some((step, iteration)),
            _ => None,
        })
        .collect();
    done.sort();
    done
}

/// Delivers `go` to a child run once it exists.
async fn release_child(engine: &Engine, child: &str) {
    for _ in 0..500 {
        if engine.store().get_run(DEFAULT_TENANT, child).await.unwrap().is_some() {
            engine.signal(DEFAULT_TENANT, child, "go", json!({ "v": 10 })).await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("child run {child} was never created");
}

async fn old_runs_resume(url: &str) {
    let engine = engine_with_fixture(url).await;
    let unfinished: Vec<String> = engine.unfinished(DEFAULT_TENANT).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(unfinished, [PARENT, CUT], "child runs are left to their parents");
    let expected = json!({ "a": 10, "each": [{ "i": 1 }, { "i": 2 }, { "i": 3 }], "last": 40 });

    // The killed run: its child waits for `go`; the parent picks the child
    // up under the id its journal holds, and nothing done is done again.
    engine.signal(DEFAULT_TENANT, CHILD, "go", json!({ "v": 10 })).await.unwrap();
    let outcome = engine.drive(DEFAULT_TENANT, PARENT, &mut ()).await.unwrap();
    assert_eq!((outcome.status, outcome.output), (RunStatus::Completed, Some(expected.clone())), "{:?}", outcome.error);
    let child = engine.store().get_run(DEFAULT_TENANT, CHILD).await.unwrap().unwrap();
    assert_eq!(child.status, RunStatus::Completed);
    assert_eq!(
        completions(&engine, PARENT).await,
        [
            ("a".to_string(), None),
            ("each".to_string(), Some(0)),
            ("each".to_string(), Some(1)),
            ("each".to_string(), Some(2)),
            ("kid".to_string(), None),
            ("last".to_string(), None)
        ],
        "each step completed once"
    );

    // The cut run: the two calls in flight are interrupted and retried under
    // the same idempotency keys.
    let child = weft_core::child_run_id(CUT, "kid", None, 1);
    let mut observer = ();
    let (outcome, ()) = tokio::join!(engine.drive(DEFAULT_TENANT, CUT, &mut observer), release_child(&engine, &child));
    let outcome = outcome.unwrap();
    assert_eq!((outcome.status, outcome.output), (RunStatus::Completed, Some(expected)));
    let events = engine.store().load_events(DEFAULT_TENANT, CUT, 0).await.unwrap();
    for n in [0, 1] {
        let interrupted = events.iter().any(|e| {
            matches!(&e.event, Event::StepFailed { step, iteration: Some(i), attempt: 1, error, .. }
                if step == "each" && *i == n && error.kind == weft_core::ErrorKind::Interrupted)
        });
        assert!(interrupted, "iteration {n} was recorded as interrupted");
        let retried = events.iter().any(|e| {
            matches!(&e.event, Event::StepStarted { step, iteration: Some(i), attempt: 2, key, .. }
                if step == "each" && *i == n && *key == format!("{CUT}:each:{n}"))
        });
        assert!(retried, "iteration {n} was retried with its key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_runs_journaled_by_an_earlier_weft_resume() {
    let dir = tempfile::tempdir().unwrap();
    old_runs_resume(&testing::sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_journaled_by_an_earlier_weft_resume() {
    old_runs_resume(&testing::fresh_postgres().await).await;
}
