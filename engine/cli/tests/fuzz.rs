//! schemathesis drives a running `weft server` from its own
//! `/v1/openapi.json`: every documented operation, with generated valid and
//! invalid requests (bodies, queries, paths), with a tenant's key and with
//! the super admin's. No answer may be a 5xx.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::service::{Service, bootstrap_key, http, tenant};
use common::{Backend, Workspace, text};
use serde_json::json;

/// schemathesis's `st`, as scripts/dev-deps.sh installs it.
fn schemathesis() -> PathBuf {
    let st = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.deps/venv/bin/st"));
    assert!(
        st.exists(),
        "schemathesis is missing: run scripts/dev-deps.sh (it installs schemathesis==4.32.5 into .deps/venv)"
    );
    st
}

/// Runs schemathesis in `dir`, where it keeps its cache.
fn fuzz(st: &PathBuf, dir: &Path, address: &str, key: &str, seconds: u32, operations: usize) {
    let out = Command::new(st)
        .current_dir(dir)
        .args(["run", &format!("http://{address}/v1/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        // One worker: on Python 3.11, hypothesis parsing source from two
        // threads trips CPython's "AST constructor recursion depth
        // mismatch" (its ast module's depth counter is not per thread).
        .args(["--checks", "not_a_server_error", "--max-time", &seconds.to_string(), "--workers", "1"])
        .args(["--seed", "20261204"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{report}");
    let tested = format!("Tested: {operations}\n");
    assert!(report.contains(&tested), "all {operations} documented operations are tested:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_invalid_requests_never_get_a_5xx() {
    let st = schemathesis();
    let ws = Workspace::new(Backend::Sqlite).await;
    let server = Service::start(&ws, &["server", "--listen", "127.0.0.1:0"]);
    let address = server.address().await;
    let admin = bootstrap_key(&server).await;
    let key = tenant(&address, &admin, "acme").await;
    // Some data for the generated requests to find.
    let source = json!({ "name": "w", "steps": [{ "id": "a", "sleep": "1h" }] }).to_string();
    let (_, created) = http(&address, "POST", "/v1/workflows", Some(&key), Some(json!({ "source": source }))).await;
    let hash = created["workflow"]["hash"].as_str().unwrap().to_string();
    http(&address, "POST", "/v1/runs", Some(&key), Some(json!({ "workflow": hash }))).await;

    let (_, document) = http(&address, "GET", "/v1/openapi.json", None, None).await;
    let operations: usize = document["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();

    let dir = ws.dir.path().to_path_buf();
    let (st2, dir2, address2) = (st.clone(), dir.clone(), address.clone());
    tokio::task::spawn_blocking(move || fuzz(&st2, &dir2, &address2, &key, 40, operations)).await.unwrap();
    tokio::task::spawn_blocking(move || fuzz(&st, &dir, &address, &admin, 15, operations)).await.unwrap();
    assert!(!server.stderr().contains(r#""status":500"#), "no request failed on the server:\n{}", server.stderr());
}
