//! A run records the digests of the connectors it started with and keeps
//! using them: a later build under the same name does not replace them
//! mid-run, and a missing build is a clear error rather than a silent swap.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use weft_core::{Event, RunStatus};
use weft_host::{BUILTINS, Host, HostConfig, digest_of};
use weft_runtime::{Engine, EngineConfig, Error};
use weft_store::{DEFAULT_TENANT, Store, testing};

/// The built-in `transform`, and the same component with a custom section
/// appended: the same name@version and behaviour, another digest.
fn two_builds() -> (Vec<u8>, Vec<u8>) {
    let original = BUILTINS.iter().find(|(name, _)| *name == "transform").unwrap().1.to_vec();
    let mut rebuilt = original.clone();
    let (name, payload) = (b"weft-rebuild", b"2");
    rebuilt.push(0); // custom section
    rebuilt.push((1 + name.len() + payload.len()) as u8);
    rebuilt.push(name.len() as u8);
    rebuilt.extend_from_slice(name);
    rebuilt.extend_from_slice(payload);
    (original, rebuilt)
}

async fn engine(url: &str, builds: &[&[u8]]) -> Engine {
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
    for build in builds {
        host.install(build.to_vec()).await.unwrap();
    }
    let config = EngineConfig {
        poll_interval: Duration::from_millis(20),
        lease_ttl: Duration::from_millis(200),
        park_after: None,
    };
    Engine::new(Store::connect(url).await.unwrap(), Arc::new(host), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_the_connector_digest_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let url = testing::sqlite_url(dir.path());
    let (original, rebuilt) = two_builds();
    let (a, b) = (digest_of(&original), digest_of(&rebuilt));
    assert_ne!(a, b);
    let workflow = json!({ "name": "pinned", "steps": [
        { "id": "twice", "uses": "transform/double", "with": { "value": "{{ input.n }}" } }
    ], "output": "{{ steps.twice.output.value }}" });

    // Started where only the original is installed: pinned to it.
    let first = engine(&url, &[&original]).await;
    let definition = weft_workflows::load("w.json", &workflow.to_string(), &first.catalog(DEFAULT_TENANT)).unwrap();
    let run = first.start(DEFAULT_TENANT, &definition, json!({ "n": 21 })).await.unwrap();
    let journal = first.store().load_events(DEFAULT_TENANT, &run, 0).await.unwrap();
    let Event::RunStarted { connectors, .. } = &journal[0].event else { panic!("{:?}", journal[0]) };
    assert_eq!(connectors.get("transform@0.1.0"), Some(&a));
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await; // its lease runs out

    // Where only the rebuild is installed, the run does not silently switch.
    let other = engine(&url, &[&rebuilt]).await;
    match other.drive(DEFAULT_TENANT, &run, &mut ()).await {
        Err(Error::PinnedConnectorMissing { connector, digest, .. }) => {
            assert_eq!((connector.as_str(), digest.as_str()), ("transform@0.1.0", a.as_str()))
        }
        other => panic!("expected PinnedConnectorMissing, got {other:?}"),
    }
    // A new run there pins the rebuild.
    let fresh = other.start(DEFAULT_TENANT, &definition, json!({ "n": 1 })).await.unwrap();
    let Event::RunStarted { connectors, .. } =
        other.store().load_events(DEFAULT_TENANT, &fresh, 0).await.unwrap().remove(0).event
    else {
        panic!()
    };
    assert_eq!(connectors.get("transform@0.1.0"), Some(&b));
    drop(other);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // With both builds installed (the rebuild last), the run finishes on its own.
    let both = engine(&url, &[&original, &rebuilt]).await;
    let outcome = both.drive(DEFAULT_TENANT, &run, &mut ()).await.unwrap();
    assert_eq!((outcome.status, outcome.output), (RunStatus::Completed, Some(json!(42))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_builds_of_one_version_new_runs_get_the_one_loaded_last() {
    let (original, rebuilt) = two_builds();
    for (first, last) in [(&original, &rebuilt), (&rebuilt, &original)] {
        let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
        let host = Host::new(HostConfig { cache_dir, limits: Default::default() }).unwrap();
        host.install(first.clone()).await.unwrap();
        host.install(last.clone()).await.unwrap();
        assert_eq!(host.resolve(DEFAULT_TENANT, "transform", None).unwrap().digest, digest_of(last));
        assert_eq!(host.resolve(DEFAULT_TENANT, "transform", Some("0.1.0")).unwrap().digest, digest_of(last));
    }
}
