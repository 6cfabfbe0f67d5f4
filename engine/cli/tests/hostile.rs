//! The `weft` command against hostile input: files that are not files or
//! are too large, values nested too deep, durations past the end of the
//! clock, and a journal that cannot be read. Each gets a precise error, and
//! nothing else is lost.

mod common;

use std::time::Duration;

use common::{Backend, Workspace, text, wait_until};
use serde_json::{Value, json};

fn nested(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

#[tokio::test]
async fn bad_files_and_values_are_refused_with_a_precise_error_and_write_nothing() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let echo = json!({
        "name": "echo",
        "steps": [{ "id": "a", "uses": "transform/echo", "with": { "x": "{{ input }}" } }],
        "output": "{{ steps.a.output }}"
    });
    let workflow = ws.write("echo.json", &echo.to_string());
    let workflow = workflow.to_str().unwrap();
    let fifo = ws.dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo = fifo.to_str().unwrap();
    let large = ws.write("large.json", &format!("{{\"name\": \"{}\", \"steps\": []}}", "x".repeat(5 << 20)));
    let deep = ws.write("deep.json", &nested(100));
    let deep_input = format!("@{}", deep.display());
    let fifo_input = format!("@{fifo}");
    // Files that are not connectors: text, and a WebAssembly core module.
    let plugins = ws.dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::write(plugins.join("notes.wasm"), "hello\n").unwrap();
    let text_file = plugins.join("notes.wasm");
    let core = ws.dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let not_wasm = "the file is not a WebAssembly component (it does not start with WebAssembly's magic bytes";
    let core_module = "the file is a WebAssembly core module, not a component";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["connector", "inspect", text_file.to_str().unwrap()], not_wasm),
        (vec!["connector", "inspect", core.to_str().unwrap()], core_module),
        (vec!["run", workflow, "--connectors-dir", plugins.to_str().unwrap()], not_wasm),
        (vec!["validate", "/dev/zero"], "reading /dev/zero: not a regular file"),
        (vec!["run", fifo], "not a regular file"),
        (vec!["validate", large.to_str().unwrap()], "over the size limit of 4194304 bytes"),
        (vec!["run", workflow, "--input", "@/dev/zero"], "not a regular file"),
        (vec!["run", workflow, "--input", &fifo_input], "not a regular file"),
        (vec!["run", workflow, "--input", &deep_input], "the run input nests deeper than the limit of 64 levels"),
        (vec!["signal", "0000", "go", &deep_input], "the signal's payload nests deeper than the limit of 64 levels"),
    ];
    for (args, expected) in cases {
        // A FIFO that is opened would block until a writer comes; a timeout
        // turns that hang into a failure.
        let mut child = ws.spawn(&args);
        let finished = common::poll_until(Duration::from_secs(30), || child.try_wait().unwrap().is_some()).await;
        if !finished {
            child.kill().ok();
        }
        let out = child.wait_with_output().unwrap();
        assert!(finished, "`weft {}` hung", args.join(" "));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(expected), "{args:?}: expected {expected:?} in {}", text(&out.stderr));
    }
    assert!(ws.run_ids().is_empty(), "nothing was written");
}

#[tokio::test]
async fn deep_yaml_huge_durations_and_numbers_out_of_range_are_reported_at_their_field() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // Block nesting deeper than the limit on values, in YAML.
    let mut deep = String::from("name: deep\nsteps:\n  - id: a\n    uses: transform/echo\n    with:\n");
    for level in 0..2000 {
        deep.push_str(&format!("{}k:\n", " ".repeat(6 + level)));
    }
    deep.push_str(&format!("{}1\n", " ".repeat(2006)));
    let out = ws.run(&["validate", ws.write("deep.yaml", &deep).to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("deep.yaml:67:") && stderr.contains("nests deeper than the limit of 64 levels"),
        "{stderr}"
    );

    let sleep = ws.write("sleep.yaml", "name: s\nsteps:\n  - id: a\n    sleep: 99999999999d\n");
    let out = ws.run(&["validate", sleep.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            r#"sleep.yaml:4:5: $.steps[0].sleep: the duration "99999999999d" is longer than the limit of 36500d"#
        ),
        "{stderr}"
    );
    // Each problem the typed form meets is reported at its own line.
    let too_many = json!({
        "name": "t",
        "steps": [
            { "id": "w", "wait_for_signal": { "name": "go", "timeout": "1s" } },
            { "id": "b", "uses": "transform/echo", "retry": { "max_attempts": 99_999_999_999u64 } }
        ]
    });
    let file = ws.write("t.json", &serde_json::to_string_pretty(&too_many).unwrap());
    let out = ws.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("t.json:15:9: $.steps[1].retry.max_attempts: invalid value"), "{stderr}");
    let too_long = json!({ "name": "t", "timeout": "40000d", "steps": [{ "id": "w", "sleep": "1s" }] });
    std::fs::write(&file, serde_json::to_string_pretty(&too_long).unwrap()).unwrap();
    let stderr = text(&ws.run(&["validate", file.to_str().unwrap()]).stderr);
    assert!(stderr.contains("t.json:3:3: $.timeout: the duration \"40000d\" is longer than the limit"), "{stderr}");
    assert!(!stderr.contains(":1:1:"), "{stderr}");
}

/// A run whose journal cannot be decoded is reported, and `weft resume`
/// carries on with every other run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reports_a_run_it_cannot_read_and_carries_on_with_the_rest() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let sleepy = ws.write(
        "sleepy.json",
        &json!({ "name": "sleepy", "steps": [ { "id": "nap", "sleep": "1s" } ], "output": "rested" }).to_string(),
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut child = ws.spawn(&["run", sleepy.to_str().unwrap()]);
        wait_until("the run to start", Duration::from_secs(30), || ws.run_ids().len() > ids.len()).await;
        child.kill().unwrap();
        child.wait().unwrap();
        ids.push(ws.run_ids().remove(0));
    }
    let (broken, healthy) = (&ids[0], &ids[1]);
    {
        use sqlx::ConnectOptions as _;
        let options: sqlx::sqlite::SqliteConnectOptions = ws.db.parse().unwrap();
        let mut db = options.connect().await.unwrap();
        let changed = sqlx::query("UPDATE events SET body = '{\"type\": ' WHERE run_id = ? AND seq = 1")
            .bind(broken)
            .execute(&mut db)
            .await
            .unwrap();
        assert_eq!(changed.rows_affected(), 1);
    }
    let out = ws.run(&["resume"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: run {broken} cannot be resumed: corrupt stored data in event 1 of run {broken}"
        )),
        "{stderr}"
    );
    assert_eq!(ws.journal(healthy)["status"], "completed", "{stderr}");
    // Its own commands say what is wrong, and the rest of the store works.
    let out = ws.run(&["runs", "show", broken]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&format!("event 1 of run {broken}")), "{}", text(&out.stderr));
    assert_eq!(ws.run_ids().len(), 2);
    let out = ws.run(&["runs", "list", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |id: &str| listed.as_array().unwrap().iter().find(|r| r["id"] == id).unwrap()["status"].clone();
    assert_eq!(status(broken), "unreadable", "a run that cannot be read is listed, and says so");
    assert_eq!(status(healthy), "completed");
    assert!(text(&out.stderr).contains(&format!("warning: run {broken}: ")), "{}", text(&out.stderr));
}

/// Text from outputs, errors and names reaches the terminal with its control
/// characters escaped: a step cannot clear the screen or recolour a line.
#[tokio::test]
async fn control_characters_from_outputs_errors_and_names_are_escaped() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let workflow = json!({
        "name": "clear\u{1b}[2Jscreen",
        "steps": [
            { "id": "say", "uses": "transform/echo", "with": { "text": "red\u{1b}[31m\u{7}" } },
            { "id": "oops", "uses": "transform/echo", "needs": ["say"], "with": { "x": "\u{1b}]0;title\u{7}{{ input.missing }}" } }
        ]
    });
    let file = ws.write("ansi.json", &workflow.to_string());
    let run = ws.run(&["run", file.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
    let id = ws.run_ids().remove(0);
    let list = ws.run(&["runs", "list"]);
    let show = ws.run(&["runs", "show", &id]);
    for (what, bytes) in [("run", &run.stderr), ("runs list", &list.stdout), ("runs show", &show.stdout)] {
        let shown = text(bytes);
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{what} printed a control character:\n{shown:?}"
        );
        assert!(shown.contains("\\u{1b}"), "{what} shows the escape:\n{shown}");
    }
}

/// A run that a live process drives is not taken from it: `weft resume RUN`
/// says who holds it and for how long, in words, and a plain `weft resume`
/// skips it with a line and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_driven_by_a_live_process_is_skipped_and_named() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let waiting = json!({
        "name": "waits",
        "steps": [{ "id": "w", "wait_for_signal": { "name": "go", "timeout": "5m" } }],
        "output": "{{ steps.w.output }}"
    });
    let file = ws.write("waits.json", &waiting.to_string());
    let mut driver = ws.spawn(&["run", file.to_str().unwrap()]);
    let run = ws.newest_run_except("").await;
    let one = ws.run(&["resume", &run]);
    let stderr = text(&one.stderr);
    assert_eq!(one.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is being driven by") && stderr.contains("its lease holds for another"), "{stderr}");
    assert!(!stderr.contains("lease until 1"), "times are for people: {stderr}");
    let all = ws.run(&["resume"]);
    let stderr = text(&all.stderr);
    assert_eq!(all.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("run {run}: skipped, another process")), "{stderr}");
    // `resume --wait` waits for the driver instead of refusing.
    let waiter = ws.spawn(&["resume", "--wait", &run]);
    let waiter_reaper = Reaper(waiter.id());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = ws.run(&["signal", &run, "go", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(driver.wait().unwrap().success());
    let _ = driver.kill();
    let waited = waiter.wait_with_output().unwrap();
    std::mem::forget(waiter_reaper);
    let stderr = text(&waited.stderr);
    assert_eq!(waited.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("waiting: another process (") && stderr.contains(&format!("is driving run {run}")),
        "{stderr}"
    );

    // Resuming a run that is over says so, replays nothing and changes nothing.
    let before = ws.journal(&run);
    let again = ws.run(&["resume", &run]);
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!("run {run} (waits) completed already; nothing to resume (see `weft runs show {run}`)")
    );
    assert!(again.stdout.is_empty(), "{}", text(&again.stdout));
    assert_eq!(ws.journal(&run), before);
    let json = ws.run(&["resume", &run, "--json"]);
    let body: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(body, json!({ "run_id": run, "status": "completed", "output": 1, "resumed": false }));
}

/// Ctrl-C stops `weft run` at once even while the driver is busy in a
/// template (ten million operations in the template sandbox, which take
/// seconds), and the run is left to resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_run_busy_in_a_template() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // Each template stays within its budget of operations (about 2 million
    // loop turns, some 1 s); twenty of them keep `b`'s input rendering for
    // far longer than the test waits before pressing Ctrl-C.
    let busy = "{% for i in range(20000) %}{% for j in range(100) %}{% endfor %}{% endfor %}ok";
    let with: serde_json::Map<String, Value> = (0..20).map(|k| (format!("x{k}"), json!(busy))).collect();
    let slow = json!({
        "name": "slow",
        "steps": [
            { "id": "a", "uses": "transform/echo", "with": { "x": 1 } },
            { "id": "b", "uses": "transform/echo", "needs": ["a"], "with": with }
        ]
    });
    let file = ws.write("slow.json", &slow.to_string());
    let mut child = ws.spawn(&["run", file.to_str().unwrap()]);
    // Should an assertion fail first, the busy process is not left running.
    let reaper = Reaper(child.id());
    let run = ws.newest_run_except("").await;
    // The run is stored and `a` is done in a moment; `b`'s input is then
    // being rendered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let stopped = common::poll_until(Duration::from_secs(10), || child.try_wait().unwrap().is_some()).await;
    if !stopped {
        child.kill().ok();
    }
    let out = child.wait_with_output().unwrap();
    std::mem::forget(reaper);
    assert!(stopped, "Ctrl-C did not stop `weft run` within 10 s");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let resume = format!("interrupted; the run is saved: continue it with `weft resume {run}`");
    assert!(text(&out.stderr).contains(&resume), "{}", text(&out.stderr));
}

/// Kills a process when dropped (by a failing assertion's unwinding).
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
    }
}
