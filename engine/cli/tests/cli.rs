//! The `weft` command as a user meets it: exit codes, precise errors on bad
//! input with nothing half-written, signals and cancellation.

mod common;

use std::time::Duration;

use common::{Backend, Sink, Workspace, text, wait_until};
use serde_json::{Value, json};

fn wait_workflow() -> String {
    json!({
        "name": "approval",
        "steps": [
            { "id": "ask", "uses": "transform/echo", "with": { "q": "ok?" } },
            { "id": "decision", "wait_for_signal": { "name": "approve", "timeout": "5m" }, "needs": ["ask"] }
        ],
        "output": "{{ steps.decision.output }}"
    })
    .to_string()
}

#[tokio::test]
async fn the_example_runs_and_prints_its_output() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/hello.json");
    let out = ws.run(&["run", example, "--input", r#"{"name":"Ada","n":2}"#, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["status"], "completed");
    assert_eq!(outcome["output"], json!({ "greeting": "Hello, Ada!", "doubled": 4, "fan_out": [8, 16, 24] }));

    // The child workflow example runs hello.json once per name.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/team.json");
    let out = ws.run(&["run", example, "--input", r#"{"team":["Ada","Alan"]}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!(["Hello, Ada!", "Hello, Alan!"]));
    let listed = text(&ws.run(&["runs", "list"]).stdout);
    assert_eq!(listed.matches("↳ hello").count(), 2, "children are listed under the parent:\n{listed}");
}

#[tokio::test]
async fn a_first_run_compiles_nothing() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let cache = ws.dir.path().join("empty-cache");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/hello.json");
    // hello uses a built-in connector and a template the sandbox evaluates
    // (`item * …`): both were compiled when weft was built.
    for args in [&["validate", example][..], &["connector", "list"], &["run", example, "--input", r#"{"n":2}"#]] {
        let out = ws.weft().env("WEFT_CACHE_DIR", &cache).args(args).output().unwrap();
        assert!(out.status.success(), "weft {args:?}: {}", text(&out.stderr));
    }
    let compiled: Vec<_> =
        walkdir(&cache).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    assert_eq!(compiled, Vec::<std::path::PathBuf>::new(), "nothing was compiled");
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).flat_map(|p| if p.is_dir() { walkdir(&p) } else { vec![p] }).collect()
}

#[tokio::test]
async fn invalid_workflows_list_every_error_and_exit_2() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write(
        "bad.json",
        "{\n  \"name\": \"bad\",\n  \"steps\": [\n    { \"id\": \"a\", \"uses\": \"nosuch/thing\" },\n    { \"id\": \"b\", \"uses\": \"transform/echo\", \"needs\": [\"zz\"], \"retries\": 3 }\n  ]\n}\n",
    );
    let out = ws.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("5:61: $.steps[1].retries: unknown field `retries`"), "{err}");
    let out = ws.run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let file = ws.write("bad2.json", "{\n  \"name\": \"bad\",\n  \"steps\": [\n    { \"id\": \"a\", \"uses\": \"nosuch/thing\" },\n    { \"id\": \"b\", \"uses\": \"transform/echo\", \"needs\": [\"zz\"] }\n  ]\n}\n");
    let out = ws.run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("bad2.json: 2 errors"), "{err}");
    assert!(err.contains("4:18: $.steps[0].uses: unknown connector `nosuch`"), "{err}");
    assert!(err.contains("5:54: $.steps[1].needs[0]: unknown step `zz`"), "{err}");
    assert!(ws.run_ids().is_empty(), "nothing was written");
}

#[tokio::test]
async fn yaml_workflows_run_and_validate_like_json_ones() {
    let ws = Workspace::new(Backend::Sqlite).await;
    ws.write(
        "greet.yml",
        "name: greet\nsteps:\n  - id: say\n    uses: transform/echo\n    with:\n      message: \"Hello, {{ input.who }}!\"\noutput: \"{{ steps.say.output.message }}\"\n",
    );
    let file = ws.write(
        "team.yaml",
        "# A parent in YAML with a child in YAML.\nname: team\nsteps:\n  - id: each\n    foreach: input.team\n    workflow:\n      path: greet.yml\n      input: { who: \"{{ item }}\" }\noutput: \"{{ steps.each.output }}\"\n",
    );
    let out = ws.run(&["run", file.to_str().unwrap(), "--input", r#"{"team":["Ada","Alan"]}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!(["Hello, Ada!", "Hello, Alan!"]));

    let broken = ws.write("broken.yaml", "name: broken\nsteps:\n  - id: a\n    uses: nosuch/thing\n    retries: 3\n");
    let out = ws.run(&["validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("5:5: $.steps[0].retries: unknown field `retries`"), "{err}");
    assert!(err.contains("4:5: $.steps[0].uses: unknown connector `nosuch`"), "the schema hides nothing: {err}");
    let runs = ws.run_ids().len();
    let out = ws.run(&["run", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(ws.run_ids().len(), runs, "nothing was written");
}

#[tokio::test]
async fn counts_read_in_the_singular_and_the_plural() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let one = ws.write(
        "one.json",
        &json!({ "name": "one", "steps": [
            { "id": "each", "uses": "transform/echo", "foreach": "input.items", "with": { "v": "{{ item }}" } }
        ] })
        .to_string(),
    );
    let out = ws.run(&["validate", one.to_str().unwrap()]);
    assert!(text(&out.stdout).contains(": ok (1 step, sha256:"), "{}", text(&out.stdout));
    let out = ws.run(&["run", one.to_str().unwrap(), "--input", r#"{"items": [1]}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("each: ✓ 1 item in"), "{}", text(&out.stderr));
    let out = ws.run(&["run", one.to_str().unwrap(), "--input", r#"{"items": [1, 2]}"#]);
    assert!(text(&out.stderr).contains("each: ✓ 2 items in"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn validate_knows_what_each_action_outputs() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write(
        "typo.json",
        &json!({ "name": "typo", "steps": [
            { "id": "d", "uses": "transform/double", "with": { "value": 2 } }
        ], "output": "{{ steps.d.output.valeu }}" })
        .to_string(),
    );
    let out = ws.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("$.output: `steps.d.output` (transform/double) has no field `valeu`; it has: value"), "{err}");
}

#[tokio::test]
async fn missing_input_is_refused_before_anything_is_written() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write(
        "needs-input.json",
        &json!({ "name": "n", "input": { "type": "object", "required": ["email"] },
                 "steps": [ { "id": "a", "uses": "transform/echo", "with": { "to": "{{ input.email }}" } } ] })
        .to_string(),
    );
    let out = ws.run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("\"email\" is a required property"), "{}", text(&out.stderr));
    let out = ws.run(&["run", file.to_str().unwrap(), "--input", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--input is not valid JSON"), "{}", text(&out.stderr));
    assert!(ws.run_ids().is_empty());
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/hello.json");
    let out = ws.weft().args(["run", example]).env("WEFT_DB", "postgres://weft:pw@127.0.0.1:1/weft").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("cannot open the database at postgres://weft:***@127.0.0.1:1/weft"), "{err}");
    // The cause is printed once, not once per error that names it.
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    let out = ws.weft().args(["runs", "list"]).env("WEFT_DB", "mysql://x").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A connectors directory in the workspace holding the test-only `testkit`.
fn testkit_dir(ws: &Workspace) -> std::path::PathBuf {
    let connectors = ws.dir.path().join("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    std::fs::copy(weft_host::guest_component("testkit"), connectors.join("testkit.wasm")).unwrap();
    connectors
}

#[tokio::test]
async fn a_trapping_connector_fails_the_step_with_a_precise_error() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let connectors = testkit_dir(&ws);
    let file = ws.write(
        "trap.json",
        &json!({ "name": "t", "steps": [
            { "id": "ok", "uses": "transform/echo" },
            { "id": "boom", "uses": "testkit/trap", "needs": ["ok"] }
        ] })
        .to_string(),
    );
    let out = ws.weft().args(["run", file.to_str().unwrap()]).env("WEFT_CONNECTORS_DIR", &connectors).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("step `boom` failed: testkit@0.1.0 `trap` trapped"), "{err}");
    let run = ws.run_ids().remove(0);
    assert_eq!(ws.journal(&run)["status"], "failed");
}

#[tokio::test]
async fn runs_show_prints_what_a_connector_logged_under_its_step() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let connectors = testkit_dir(&ws);
    let file = ws.write(
        "chatty.json",
        &json!({ "name": "chatty", "steps": [
            { "id": "talk", "uses": "testkit/chatter", "with": { "lines": 2 } },
            { "id": "flood", "uses": "testkit/chatter", "with": { "lines": 60, "fail": true }, "needs": ["talk"] }
        ] })
        .to_string(),
    );
    let out = ws.weft().args(["run", file.to_str().unwrap()]).env("WEFT_CONNECTORS_DIR", &connectors).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let run = ws.run_ids().remove(0);

    let shown = text(&ws.run(&["runs", "show", &run]).stdout);
    let talk = shown.lines().position(|l| l.starts_with("talk ")).expect(&shown);
    assert_eq!(
        &shown.lines().collect::<Vec<_>>()[talk + 1..talk + 3],
        ["  info   line 0", "  warn   line 1"],
        "{shown}"
    );
    assert!(shown.contains("  warn   line 49\n"), "{shown}");
    assert!(!shown.contains("line 50"), "only the first 50 lines are kept:\n{shown}");
    assert!(shown.contains("… 10 more lines not kept in the journal"), "{shown}");

    let journal = ws.journal(&run);
    let entries = journal["timeline"].as_array().unwrap();
    let talk = entries.iter().find(|e| e["step"] == "talk").unwrap();
    assert_eq!(
        talk["logs"]["lines"],
        json!([{ "level": "info", "message": "line 0" }, { "level": "warn", "message": "line 1" }])
    );
    let flood = entries.iter().find(|e| e["step"] == "flood").unwrap();
    assert_eq!((flood["status"].as_str(), flood["logs"]["dropped"].as_u64()), (Some("failed"), Some(10)));
}

#[tokio::test]
async fn secrets_come_from_the_environment_and_stay_out_of_the_journal() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let connectors = testkit_dir(&ws);
    let file = ws.write(
        "secret.json",
        &json!({ "name": "s", "steps": [
            { "id": "reveal", "uses": "testkit/secret", "with": { "name": "declared" } }
        ], "output": "{{ steps.reveal.output.length }}" })
        .to_string(),
    );
    let file = file.to_str().unwrap();

    // Unset: the step fails and says which variable to set.
    let out = ws.weft().args(["run", file]).env("WEFT_CONNECTORS_DIR", &connectors).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("secret `declared` is not set")
            && err.contains("set the environment variable WEFT_SECRET_TESTKIT_DECLARED"),
        "{err}"
    );

    let value = "s3cr3t-value-for-the-test";
    let out = ws
        .weft()
        .args(["run", file, "--json"])
        .env("WEFT_CONNECTORS_DIR", &connectors)
        .env("WEFT_SECRET_TESTKIT_DECLARED", value)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"], json!(value.len()));
    for run in ws.run_ids() {
        let journal = ws.journal(&run).to_string();
        assert!(!journal.contains(value), "the secret is in the journal: {journal}");
    }
}

#[tokio::test]
async fn a_failed_run_is_retried_keeping_what_completed() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let connectors = testkit_dir(&ws);
    let file = ws.write(
        "retry.json",
        &json!({ "name": "r", "steps": [
            { "id": "first", "uses": "transform/double", "with": { "value": "{{ input.n }}" } },
            { "id": "reveal", "uses": "testkit/secret", "with": { "name": "declared" }, "needs": ["first"],
              "retry": { "max_attempts": 1 } },
            { "id": "last", "uses": "transform/echo",
              "with": { "length": "{{ steps.reveal.output.length }}", "doubled": "{{ steps.first.output.value }}" } }
        ], "output": "{{ steps.last.output }}" })
        .to_string(),
    );
    let weft = |args: &[&str], secret: Option<&str>| {
        let mut cmd = ws.weft();
        cmd.args(args).env("WEFT_CONNECTORS_DIR", &connectors);
        if let Some(value) = secret {
            cmd.env("WEFT_SECRET_TESTKIT_DECLARED", value);
        }
        cmd.output().unwrap()
    };
    // The secret is missing: `reveal` fails, after `first` completed.
    let out = weft(&["run", file.to_str().unwrap(), "--input", r#"{"n": 21}"#], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let failed = ws.run_ids().remove(0);

    // The retry reuses `first` and runs the rest, with the same input.
    let out = weft(&["runs", "retry", &failed[..13], "--json"], Some("abc"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"], json!({ "length": 3, "doubled": 42 }));
    let retry = outcome["run_id"].as_str().unwrap().to_string();
    assert_ne!(retry, failed);
    let shown = ws.journal(&retry);
    assert_eq!(shown["retry_of"], json!({ "run": failed }));
    assert_eq!(shown["workflow_hash"], ws.journal(&failed)["workflow_hash"], "pinned to the same version");
    let steps: Vec<(String, String)> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["step"].as_str().unwrap().to_string(), e["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        steps,
        [("first".into(), "reused".into()), ("reveal".into(), "completed".into()), ("last".into(), "completed".into())]
    );
    assert_eq!(ws.journal(&failed)["retries"], json!([retry]), "the failed run names its retry");
    let human = text(&ws.run(&["runs", "show", &failed]).stdout);
    assert!(human.contains(&format!("retried   as {retry}")), "{human}");
    let human = text(&ws.run(&["runs", "show", &retry]).stdout);
    assert!(human.contains(&format!("retry of  {failed}")) && human.contains("reused"), "{human}");

    // From a step: it and its dependents run again, even though they completed.
    let out = weft(&["runs", "retry", &retry, "--from", "first", "--json"], Some("abcd"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"], json!({ "length": 4, "doubled": 42 }));
    let again = ws.journal(outcome["run_id"].as_str().unwrap());
    assert_eq!(again["retry_of"], json!({ "run": retry, "from": "first" }));
    assert!(again["timeline"].as_array().unwrap().iter().all(|e| e["status"] == "completed"), "{again}");

    // What cannot be retried says why, with exit code 2.
    let out = weft(&["runs", "retry", &retry], Some("abc"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nothing to run again"), "{}", text(&out.stderr));
    let out = weft(&["runs", "retry", &failed, "--from", "nope"], Some("abc"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no step `nope`; its steps are first, reveal, last"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn foreach_with_continue_keeps_the_outputs_of_the_items_that_succeed() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write(
        "each.json",
        &json!({ "name": "each", "steps": [
            { "id": "each", "uses": "transform/double", "foreach": "input.items", "with": { "value": "{{ item }}" },
              "on_error": "continue", "retry": { "max_attempts": 1 } }
        ], "output": { "out": "{{ steps.each.output }}", "error": "{{ steps.each.error.kind }}" } })
        .to_string(),
    );
    let out = ws.run(&["run", file.to_str().unwrap(), "--json", "--input", r#"{"items": [1, "two", 3]}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = &outcome["output"]["out"];
    assert_eq!(out[0], json!({ "value": 2 }));
    assert_eq!(out[1]["error"]["kind"], "invalid_input", "{outcome}");
    assert_eq!(out[2], json!({ "value": 6 }));
    assert_eq!(outcome["output"]["error"], "invalid_input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_show_puts_an_http_responses_body_before_its_headers() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let sink = Sink::start(&[]).await;
    let file = ws.write(
        "get.json",
        &json!({ "name": "get", "steps": [
            { "id": "get", "uses": "http/request", "with": { "url": format!("{}/the-answer", sink.base) } }
        ] })
        .to_string(),
    );
    let out = tokio::task::block_in_place(|| ws.run(&["run", file.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run = ws.run_ids().remove(0);
    let shown = text(&ws.run(&["runs", "show", &run]).stdout);
    let row = shown.lines().find(|l| l.starts_with("get ")).unwrap_or_else(|| panic!("{shown}"));
    assert!(row.contains(r#"→ {"status":200,"body":{"path":"/the-answer"},"headers":"#), "{shown}");
}

#[tokio::test]
async fn runs_show_follow_tails_a_run_until_it_ends() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write("approval.json", &wait_workflow());
    let mut driver = ws.spawn(&["run", file.to_str().unwrap()]);
    let run = ws.newest_run_except("").await;
    wait_until("the run to wait for its signal", Duration::from_secs(30), || ws.journal(&run)["status"] == "waiting")
        .await;
    let follow = ws.spawn(&["runs", "show", &run, "--follow"]);
    // What it has printed so far is not readable from here until it ends,
    // so the signal goes once `follow` has surely started polling.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ws.run(&["signal", &run, "approve", r#"{"ok": true}"#]).status.success());
    let out = follow.wait_with_output().unwrap();
    driver.wait().unwrap();
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{printed}{}", text(&out.stderr));
    assert!(printed.contains("waits for signal `approve`"), "{printed}");
    assert!(printed.contains("(signal approve)") && printed.contains("received"), "{printed}");
    assert!(printed.contains("status    completed"), "{printed}");
    let decision_rows: Vec<&str> = printed.lines().filter(|l| l.starts_with("decision ")).collect();
    assert!(decision_rows.len() >= 2 && decision_rows.last().unwrap().contains("completed"), "{printed}");

    let out = ws.run(&["runs", "show", &run, "--follow", "--json"]);
    assert_eq!(out.status.code(), Some(2), "--follow prints no JSON: {}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_host_limits_where_connectors_may_connect() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // The help says which way the flag works.
    let help = text(&ws.run(&["run", "--help"]).stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("Narrows where connectors may connect") && help.contains("never widens"), "{help}");
    let sink = Sink::start(&[]).await;
    let file = ws.write(
        "call.json",
        &json!({ "name": "call", "steps": [
            { "id": "ping", "uses": "http/request", "with": { "url": format!("{}/ping", sink.base) } }
        ] })
        .to_string(),
    );
    let file = file.to_str().unwrap();
    // `http` may call any host; the operator's list narrows that.
    let out = ws.run(&["run", file, "--allow-host", "api.example.com,*.example.org"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("egress refused: tenant `default`'s policy does not allow `127.0.0.1`")
            && err.contains("it allows only api.example.com, *.example.org"),
        "{err}"
    );
    assert!(sink.seen().is_empty(), "the refused request reached the server");

    let out = ws.weft().args(["run", file]).env("WEFT_ALLOW_HOSTS", "127.0.0.1").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(sink.hits("/ping").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_a_waiting_run() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write("approval.json", &wait_workflow());
    let mut child = ws.spawn(&["run", file.to_str().unwrap(), "--json"]);
    let mut run = String::new();
    let waiting = common::poll_until(Duration::from_secs(30), || {
        let Some(id) = ws.run_ids().first().cloned() else { return false };
        run = id;
        ws.journal(&run)["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"]["step"] == "decision" && e["event"]["type"] == "step_started")
    })
    .await;
    if !waiting {
        child.kill().ok();
        let out = child.wait_with_output().unwrap();
        let journal = if run.is_empty() { Value::Null } else { ws.journal(&run) };
        panic!("the run never waited for its signal\nstderr: {}\njournal: {journal:#}", text(&out.stderr));
    }
    // A name no step waits for is refused, with the names that are.
    let out = ws.run(&["signal", &run, "aprove", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let expected = format!("run {run} waits for no signal named `aprove`; its workflow waits for `approve`");
    assert!(text(&out.stderr).contains(&expected), "{}", text(&out.stderr));
    let out = ws.run(&["signal", &run, "approve", r#"{"by":"ada"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"], json!({ "by": "ada" }));
    let out = ws.run(&["signal", &run, "approve", "1"]);
    assert_eq!(out.status.code(), Some(2), "a finished run takes no signal");
    assert!(text(&out.stderr).contains("has already completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_a_live_run_and_an_orphaned_one() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write("approval.json", &wait_workflow());
    let child = ws.spawn(&["run", file.to_str().unwrap()]);
    let run = ws.newest_run_except("").await;
    let out = ws.run(&["cancel", &run]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "a cancelled run exits 1");
    assert!(text(&out.stderr).contains("cancelled"), "{}", text(&out.stderr));
    assert_eq!(ws.journal(&run)["status"], "cancelled");

    // A run whose process died is cancelled by the cancel command itself.
    let mut child = ws.spawn(&["run", file.to_str().unwrap()]);
    let second = ws.newest_run_except(&run).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let out = ws.run(&["cancel", &second]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cancelled"));
    assert_eq!(ws.journal(&second)["status"], "cancelled");
}

/// `running` only while a live process drives a run; `waiting` says for
/// what and how to send it; steps in flight end cancelled with the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_say_what_a_run_does() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let file = ws.write("approval.json", &wait_workflow());
    let mut child = ws.spawn(&["run", file.to_str().unwrap()]);
    let run = ws.newest_run_except("").await;
    wait_until("the run to wait for its signal", Duration::from_secs(30), || ws.journal(&run)["status"] == "waiting")
        .await;
    let shown = ws.journal(&run);
    assert_eq!(shown["waiting_for"][0]["kind"], "signal", "{shown:#}");
    assert_eq!(shown["waiting_for"][0]["signal"], "approve");
    assert!(shown["waiting_for"][0]["timeout_at"].is_string(), "the wait's timeout is shown: {shown:#}");
    assert!(shown["driver"].is_string(), "its process drives it: {shown:#}");
    let text_shown = text(&ws.run(&["runs", "show", &run]).stdout);
    assert!(text_shown.contains(&format!("`weft signal {run} approve [PAYLOAD]`")), "{text_shown}");
    assert!(text_shown.contains("times out"), "{text_shown}");
    let listed = |status: &str| -> Vec<Value> {
        let out = ws.run(&["runs", "list", "--status", status, "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(listed("waiting").len(), 1);
    assert!(listed("running").is_empty(), "a run that waits is not running");

    // Its process dies: the wait is kept in the journal, and the run says
    // that nothing will go on after the signal without a resume.
    child.kill().unwrap();
    child.wait().unwrap();
    let shown = ws.journal(&run);
    assert_eq!(shown["status"], "waiting", "{shown:#}");
    assert!(shown["driver"].is_null(), "{shown:#}");
    let text_shown = text(&ws.run(&["runs", "show", &run]).stdout);
    assert!(text_shown.contains(&format!("continue it with `weft resume {run}`")), "{text_shown}");

    // Cancelled, the wait under way ends cancelled, not waiting forever.
    assert!(ws.run(&["cancel", &run]).status.success());
    let shown = ws.journal(&run);
    assert_eq!(shown["status"], "cancelled");
    let statuses: Vec<(String, String)> = shown["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["step"].as_str().unwrap_or("-").to_string(), e["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(statuses, [("ask".into(), "completed".into()), ("decision".into(), "cancelled".into())]);
    assert_eq!(listed("cancelled").len(), 1);
    let out = ws.run(&["runs", "list", "--status", "sleeping"]);
    assert_eq!(out.status.code(), Some(2), "an unknown status is refused");
}

#[tokio::test]
async fn runs_list_filters_and_nests() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/team.json");
    let out = ws.run(&["run", example, "--input", r#"{"team":["Ada","Alan"]}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hello = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/hello.json");
    assert!(ws.run(&["run", hello, "--input", r#"{"name":"Bo","n":1}"#]).status.success());
    let list = |args: &[&str]| -> String {
        let mut all = vec!["runs", "list"];
        all.extend_from_slice(args);
        let out = ws.run(&all);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let table = list(&[]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RUN") && lines[0].contains("STATUS"), "a header:\n{table}");
    // Newest first, each child right under its parent.
    let workflows: Vec<&str> = lines[1..].iter().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(workflows, ["hello", "team", "↳", "↳"], "{table}");
    assert_eq!(list(&["--workflow", "team"]).lines().count(), 2, "the header and the team run");
    assert_eq!(list(&["--status", "completed", "--workflow", "hello", "--json"]).matches("\"id\"").count(), 3);
    assert_eq!(list(&["--since", "1h"]).lines().count(), 5);
    assert_eq!(list(&["--since", "2999-01-01T00:00:00Z"]).lines().count(), 0);
    let out = ws.run(&["runs", "list", "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("neither a time ago"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn schema_prints_the_committed_schema() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let out = ws.run(&["schema"]);
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../workflows/schema/workflow.schema.json"))
            .unwrap();
    assert_eq!(text(&out.stdout), committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_drives_every_unfinished_run_at_once() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let waiting = ws.write("approval.json", &wait_workflow());
    let sleepy = ws.write(
        "sleepy.json",
        &json!({ "name": "sleepy", "steps": [ { "id": "nap", "sleep": "2s" } ], "output": "rested" }).to_string(),
    );
    // Two runs whose processes die: one waits for a signal, one sleeps.
    let mut ids = Vec::new();
    for file in [&waiting, &sleepy] {
        let mut child = ws.spawn(&["run", file.to_str().unwrap()]);
        wait_until("the run to start", Duration::from_secs(30), || ws.run_ids().len() > ids.len()).await;
        child.kill().unwrap();
        child.wait().unwrap();
        ids.push(ws.run_ids().remove(0));
    }
    let (wait_run, sleep_run) = (ids[0].clone(), ids[1].clone());
    let resume = ws.spawn(&["resume"]);
    wait_until("the sleeping run to finish while the other waits", Duration::from_secs(30), || {
        ws.journal(&sleep_run)["status"] == "completed"
    })
    .await;
    let waiting = ws.journal(&wait_run);
    assert_eq!(waiting["status"], "waiting", "{waiting:#}");
    assert!(waiting["driver"].is_string(), "the resume process drives it: {waiting:#}");
    let out = ws.run(&["signal", &wait_run, "approve", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = resume.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(ws.journal(&wait_run)["status"], "completed");
    // Each line is tagged with a prefix of its own run's id that the other's
    // id does not start with, though both were made within seconds.
    let stderr = text(&out.stderr);
    let tags: std::collections::BTreeSet<&str> =
        stderr.lines().filter_map(|line| line.strip_prefix('[')?.split_once(']')).map(|(tag, _)| tag).collect();
    assert_eq!(tags.len(), 2, "{stderr}");
    for (run, other) in [(&wait_run, &sleep_run), (&sleep_run, &wait_run)] {
        let own: Vec<&&str> = tags.iter().filter(|tag| run.starts_with(**tag)).collect();
        assert_eq!(own.len(), 1, "one tag names run {run}: {stderr}");
        assert!(!other.starts_with(*own[0]), "tag {} names both runs: {stderr}", own[0]);
    }
}

/// Without --db, the store is found the way git finds a repository: the
/// nearest `.weft/` from the current directory up, so a command run from a
/// subdirectory sees the runs made at the top; `runs list` names the store.
#[tokio::test]
async fn the_store_is_the_nearest_dot_weft_from_here_up() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let top = ws.dir.path().join("project");
    let sub = top.join("flows/deeper");
    std::fs::create_dir_all(&sub).unwrap();
    let here = |dir: &std::path::Path, args: &[&str]| {
        ws.weft().env_remove("WEFT_DB").current_dir(dir).args(args).output().unwrap()
    };
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/workflows/hello.json");

    // No .weft/ anywhere above: the first run creates ./.weft/ where it runs.
    let out = here(&top, &["run", example, "--input", r#"{"name":"Ada","n":1}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(top.join(".weft/weft.db").is_file(), "the first run creates .weft/weft.db in its directory");

    // From a subdirectory, the same store and its run.
    let out = here(&sub, &["runs", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store = format!("sqlite://{}", top.join(".weft/weft.db").display());
    assert!(text(&out.stderr).contains(&format!("runs in {store}")), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches(" hello ").count(), 1, "{}", text(&out.stdout));
    assert!(!sub.join(".weft").exists(), "reading runs creates no store");

    // --db (and WEFT_DB) still decide when given.
    let elsewhere = ws.dir.path().join("other.db");
    let out = here(&sub, &["--db", &format!("sqlite://{}", elsewhere.display()), "runs", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no runs yet in sqlite://"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty(), "{}", text(&out.stdout));
    assert!(!elsewhere.exists(), "listing runs creates no store");
}

/// A network failure reads as one, with no Rust debug text.
#[tokio::test]
async fn a_host_name_that_does_not_resolve_is_said_in_words() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // `.invalid` never resolves (RFC 6761).
    let file = ws.write(
        "dns.json",
        &json!({ "name": "dns", "steps": [{
            "id": "a", "uses": "http/request", "with": { "url": "http://no-such-host.invalid/x" },
            "retry": { "max_attempts": 1 }
        }] })
        .to_string(),
    );
    let out = ws.run(&["run", file.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the request to no-such-host.invalid failed: the host name could not be resolved"),
        "{stderr}"
    );
    assert!(!stderr.contains("ErrorCode") && !stderr.contains("Payload {"), "{stderr}");
}

/// A command's own options come first in its help; the options every command
/// takes follow under a heading of their own.
#[tokio::test]
async fn help_puts_a_commands_own_options_first() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let help = text(&ws.run(&["runs", "list", "--help"]).stdout);
    let (own, global) = help.split_once("Global options:").expect("a heading for the global options");
    for flag in ["--status", "--workflow", "--since", "--limit"] {
        assert!(own.contains(flag), "{flag} is with the command's own options:\n{help}");
    }
    for flag in ["--db", "--connectors-dir", "--cache-dir", "--allow-host"] {
        assert!(global.contains(flag) && !own.contains(flag), "{flag} is under the global heading:\n{help}");
    }

    // The top-level help starts a new user off: the everyday commands first,
    // examples, and what the exit codes mean.
    let help = text(&ws.run(&["--help"]).stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(commands[..3], ["run", "validate", "runs"], "{help}");
    assert!(help.contains("Examples:\n  weft run examples/workflows/hello.json"), "{help}");
    assert!(help.contains("Exit codes: 0 success"), "{help}");
}
