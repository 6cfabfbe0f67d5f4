//! `weft --server URL` (or WEFT_SERVER with WEFT_API_KEY): the commands that
//! act on runs go through a real `weft server` and print what they print
//! locally, and this process opens no store of its own.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::service::{Service, bootstrap_key, tenant};
use common::{Backend, Workspace, text, wait_until};
use serde_json::Value;

/// A client workspace: `weft` pointed at the server with `key`, and at a
/// local store path that must stay untouched.
struct Client {
    ws: Workspace,
    server: String,
    key: String,
}

impl Client {
    fn weft(&self) -> Command {
        let mut cmd = self.ws.weft();
        cmd.env("WEFT_SERVER", format!("http://{}", self.server)).env("WEFT_API_KEY", &self.key);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.weft().args(args).output().unwrap()
    }

    /// Starts `weft ARGS` in the background; the process is killed if the
    /// test fails before it ends, so a failure reports instead of hanging.
    fn spawn(&self, args: &[&str]) -> tokio::task::JoinHandle<Output> {
        let mut cmd = tokio::process::Command::from(self.weft());
        cmd.args(args).kill_on_drop(true);
        tokio::spawn(async move { cmd.output().await.unwrap() })
    }

    /// The runs the server lists with `status`, newest first.
    fn ids(&self, status: &str) -> Vec<String> {
        let out = self.run(&["runs", "list", "--json", "--status", status]);
        assert!(out.status.success(), "runs list: {}", text(&out.stderr));
        let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        runs.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    }

    /// Waits for a run to wait, and returns its id.
    async fn waiting_run(&self) -> String {
        let mut id = String::new();
        wait_until("a run to wait for its signal", Duration::from_secs(30), || {
            id = self.ids("waiting").first().cloned().unwrap_or_default();
            !id.is_empty()
        })
        .await;
        id
    }
}

fn hello() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows/hello.json").display().to_string()
}

const APPROVAL: &str = r#"{
  "name": "approval",
  "steps": [
    { "id": "ask", "wait_for_signal": { "name": "ok" } },
    { "id": "after", "uses": "transform/echo", "with": { "message": "{{ steps.ask.output }}" }, "needs": ["ask"] }
  ]
}"#;

const BROKEN: &str = r#"{"name": "broken", "steps": [{"id": "a", "uses": "transform/nope"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_list_show_signal_cancel_resume_and_validate_go_through_the_server() {
    let server_ws = Workspace::new(Backend::Sqlite).await;
    let server = Service::start(&server_ws, &["server", "--listen", "127.0.0.1:0"]);
    let address = server.address().await;
    let admin = bootstrap_key(&server).await;
    let key = tenant(&address, &admin, "acme").await;
    let client = Client { ws: Workspace::new(Backend::Sqlite).await, server: address.clone(), key };
    let local = Workspace::new(Backend::Sqlite).await;

    // `run`: the same output as a local run, and the run is the server's.
    let input = r#"{"name": "Ada"}"#;
    let here = local.run(&["run", &hello(), "--input", input]);
    let there = client.run(&["run", &hello(), "--input", input]);
    assert!(there.status.success(), "remote run: {}", text(&there.stderr));
    assert_eq!(text(&there.stdout), text(&here.stdout), "the output is the local run's");
    let ids = client.ids("completed");
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    assert!(text(&there.stderr).contains(&format!("run {id} started (hello)")), "{}", text(&there.stderr));
    for step in ["greet", "double", "fan_out", "pause"] {
        assert!(text(&there.stderr).contains(&format!("{step}: ✓")), "progress of {step}: {}", text(&there.stderr));
    }

    // `runs list` and `runs show` (by a prefix) read it from the server.
    let listed = client.run(&["runs", "list"]);
    assert!(text(&listed.stderr).contains(&format!("runs in http://{address}")), "{}", text(&listed.stderr));
    assert!(text(&listed.stdout).lines().any(|l| l.starts_with(id.as_str()) && l.contains("completed")));
    let shown = client.run(&["runs", "show", &id[..20]]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    assert!(shown.contains(&format!("run       {id}")) && shown.contains("status    completed"), "{shown}");
    for step in ["greet", "double", "fan_out", "pause"] {
        assert!(shown.lines().any(|l| l.starts_with(step)), "{step} in:\n{shown}");
    }
    let json: Value = serde_json::from_slice(&client.run(&["runs", "show", id, "--json"]).stdout).unwrap();
    assert_eq!(json["status"], "completed");
    assert_eq!(json["output"]["greeting"], "Hello, Ada!");

    // `validate`: the local diagnostics, with line:column, and exit code 2.
    let broken = client.ws.write("broken.json", BROKEN);
    local.write("broken.json", BROKEN);
    let there = client.run(&["validate", "broken.json"]);
    let here = local.run(&["validate", "broken.json"]);
    assert_eq!(there.status.code(), Some(2));
    assert_eq!(text(&there.stderr), text(&here.stderr), "the local diagnostics");
    assert!(text(&there.stderr).contains("broken.json:1:"), "{}", text(&there.stderr));
    let refused = client.run(&["run", &broken.display().to_string()]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let ok = client.run(&["validate", &hello()]);
    assert_eq!(text(&ok.stdout), text(&local.run(&["validate", &hello()]).stdout));

    // `signal`: a run parked on the server waits for it; the watching
    // process prints the output when it comes.
    client.ws.write("approval.json", APPROVAL);
    let watcher = client.spawn(&["run", "approval.json"]);
    let waiting = client.waiting_run().await;
    let shown = text(&client.run(&["runs", "show", &waiting]).stdout);
    assert!(shown.contains("waits for signal `ok`"), "{shown}");
    let sent = client.run(&["signal", &waiting[..20], "ok", r#""yes""#]);
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    assert!(text(&sent.stderr).contains(&format!("signal `ok` delivered to run {waiting}")));
    let watched = watcher.await.unwrap();
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    let output: Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(output, serde_json::json!({ "message": "yes" }));

    // `cancel`: the watcher exits 1; `resume` of the cancelled run says so.
    let watcher = client.spawn(&["run", "approval.json", "--json"]);
    let waiting = client.waiting_run().await;
    let cancelled = client.run(&["cancel", &waiting, "--reason", "not needed"]);
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let watched = watcher.await.unwrap();
    assert_eq!(watched.status.code(), Some(1), "{}", text(&watched.stderr));
    let outcome: Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(outcome["status"], "cancelled");
    let resumed = client.run(&["resume", &waiting]);
    assert_eq!(resumed.status.code(), Some(1));
    assert!(text(&resumed.stderr).contains("cancelled already"), "{}", text(&resumed.stderr));

    // `runs retry`: a new run on the server, from a step, with the local
    // output; a retry that cannot be made is bad input, as locally.
    let local_id = local.run(&["runs", "list", "--json"]).stdout;
    let local_id: Vec<Value> = serde_json::from_slice(&local_id).unwrap();
    let local_id = local_id[0]["id"].as_str().unwrap();
    let here = local.run(&["runs", "retry", local_id, "--from", "fan_out", "--json"]);
    let there = client.run(&["runs", "retry", &id[..20], "--from", "fan_out", "--json"]);
    assert!(there.status.success(), "remote retry: {}", text(&there.stderr));
    let (here, there): (Value, Value) =
        (serde_json::from_slice(&here.stdout).unwrap(), serde_json::from_slice(&there.stdout).unwrap());
    assert_eq!((&there["status"], &there["output"]), (&here["status"], &here["output"]), "{there}");
    assert_ne!(there["run_id"], Value::from(id.as_str()), "a new run: {there}");
    assert_eq!(client.ids("completed").len(), 3, "hello, approval and the retry, on the server");
    let here = local.run(&["runs", "retry", local_id]);
    let there = client.run(&["runs", "retry", id]);
    assert_eq!((there.status.code(), here.status.code()), (Some(2), Some(2)), "{}", text(&there.stderr));
    assert!(text(&there.stderr).contains("name a step"), "{}", text(&there.stderr));

    // Errors: a refused key and a missing file are bad input.
    let refused = client.weft().env("WEFT_API_KEY", "weft_000000000000_nope").args(["runs", "list"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("refused the API key"), "{}", text(&refused.stderr));
    let install = client.run(&["connector", "install", "x.wasm"]);
    assert_eq!(install.status.code(), Some(2));
    assert!(text(&install.stderr).contains("reading x.wasm"), "{}", text(&install.stderr));
    let unreachable = client.weft().env("WEFT_SERVER", "http://127.0.0.1:1").args(["runs", "list"]).output().unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(text(&unreachable.stderr).contains("cannot reach the server"), "{}", text(&unreachable.stderr));

    // A workflow with child workflows by path: the client sends their files.
    let team = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workflows/team.json").display().to_string();
    let here = local.run(&["run", &team, "--json"]);
    let there = client.run(&["run", &team, "--json"]);
    assert!(there.status.success(), "remote team run: {}", text(&there.stderr));
    let (here, there): (Value, Value) =
        (serde_json::from_slice(&here.stdout).unwrap(), serde_json::from_slice(&there.stdout).unwrap());
    assert_eq!((&there["status"], &there["output"]), (&here["status"], &here["output"]), "{there}");

    // The client opened no store of its own.
    let store = weft_store::sqlite_file(&client.ws.db).unwrap();
    assert!(!store.exists(), "{} was created", store.display());
    assert!(!server.stderr().contains(r#""status":500"#), "{}", server.stderr());
}
