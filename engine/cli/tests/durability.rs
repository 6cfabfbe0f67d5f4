//! Kill the real `weft` process with SIGKILL in the middle of a step and in
//! the middle of a durable sleep; `weft resume` finishes the run, completed
//! steps never run again, and the interrupted step keeps its idempotency key.
//! Several `weft resume` processes share the unfinished runs, and killing
//! them in turn loses no run and completes no step twice.

mod common;

use std::time::Duration;

use common::{Backend, Sink, Workspace, text, wait_until};
use serde_json::{Value, json};

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await }
        )* }
    };
}

both_stores!(
    killed_mid_step_resumes_without_redoing_work,
    killed_mid_sleep_keeps_its_timer,
    killed_inside_a_child_run_resumes_the_child,
    concurrent_resumers_killed_in_turn_finish_every_run_once
);

fn http_step(id: &str, url: String, needs: &[&str]) -> Value {
    json!({ "id": id, "uses": "http/request", "needs": needs,
            "with": { "url": url, "method": "POST", "body": { "step": id, "who": "{{ input.who }}" } } })
}

fn events_of(journal: &Value, kind: &str) -> Vec<Value> {
    journal["events"].as_array().unwrap().iter().map(|e| e["event"].clone()).filter(|e| e["type"] == kind).collect()
}

async fn killed_mid_step_resumes_without_redoing_work(backend: Backend) {
    let ws = Workspace::new(backend).await;
    let sink = Sink::start(&["/slow"]).await;
    let workflow = json!({
        "name": "crashy",
        "steps": [
            http_step("first", format!("{}/first", sink.base), &[]),
            http_step("slow", format!("{}/slow", sink.base), &["first"]),
            http_step("last", format!("{}/last", sink.base), &["slow"])
        ],
        "output": { "first": "{{ steps.first.output.body.path }}", "last": "{{ steps.last.output.body.path }}" }
    });
    let file = ws.write("crashy.json", &workflow.to_string());
    let mut child = ws.spawn(&["run", file.to_str().unwrap(), "--input", r#"{"who":"ada"}"#]);
    wait_until("the slow step to reach the sink", Duration::from_secs(60), || !sink.hits("/slow").is_empty()).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let run = ws.run_ids().remove(0);
    let before = ws.journal(&run);
    assert_eq!(before["status"], "interrupted", "no process drives the killed run: {before:#}");
    let lost: Vec<&str> = before["timeline"].as_array().unwrap().iter().filter_map(|e| e["status"].as_str()).collect();
    assert_eq!(lost, ["completed", "interrupted"], "the step in flight is not running any more");
    let shown = text(&ws.run(&["runs", "show", &run]).stdout);
    assert!(shown.contains(&format!("continue it with `weft resume {run}`")), "{shown}");

    let out = ws.run(&["resume", &run]);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({ "first": "/first", "last": "/last" }));

    assert_eq!(sink.hits("/first").len(), 1, "a completed step never runs again");
    assert_eq!(sink.hits("/last").len(), 1);
    let slow = sink.hits("/slow");
    assert_eq!(slow.len(), 2, "the interrupted step runs again");
    assert_eq!(slow[0].idempotency_key, slow[1].idempotency_key, "with the same idempotency key");
    assert_eq!(slow[0].idempotency_key.as_deref(), Some(format!("{run}:slow:0").as_str()));
    assert!(slow[1].body.contains(r#""who":"ada""#));

    let journal = ws.journal(&run);
    assert_eq!(journal["status"], "completed");
    let failed = events_of(&journal, "step_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"]["kind"], "interrupted");
    let started: Vec<_> = events_of(&journal, "step_started").into_iter().filter(|e| e["step"] == "slow").collect();
    assert_eq!(started.iter().map(|e| e["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);

    let shown = ws.run(&["runs", "show", &run[..13]]);
    let shown = text(&shown.stdout);
    assert!(shown.contains("interrupted"), "the timeline shows the interruption:\n{shown}");
}

async fn killed_mid_sleep_keeps_its_timer(backend: Backend) {
    let ws = Workspace::new(backend).await;
    let sink = Sink::start(&[]).await;
    let workflow = json!({
        "name": "sleepy",
        "steps": [
            http_step("before", format!("{}/before", sink.base), &[]),
            { "id": "nap", "sleep": "2s", "needs": ["before"] },
            http_step("after", format!("{}/after", sink.base), &["nap"])
        ],
        "output": "{{ steps.after.output.body.path }}"
    });
    let file = ws.write("sleepy.json", &workflow.to_string());
    let mut child = ws.spawn(&["run", file.to_str().unwrap(), "--input", r#"{"who":"bob"}"#]);
    wait_until("the first step", Duration::from_secs(60), || !sink.hits("/before").is_empty()).await;
    let run = {
        let mut run = None;
        wait_until("the timer to be journaled", Duration::from_secs(30), || {
            let ids = ws.run_ids();
            run = ids.first().cloned();
            run.as_ref().is_some_and(|r| !events_of(&ws.journal(r), "timer_set").is_empty())
        })
        .await;
        run.unwrap()
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(sink.hits("/after").is_empty(), "killed before the sleep ended");

    let out = ws.run(&["resume"]);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!("/after"));
    assert_eq!(sink.hits("/before").len(), 1, "the step before the sleep ran once");
    assert_eq!(sink.hits("/after").len(), 1);

    let journal = ws.journal(&run);
    let set = events_of(&journal, "timer_set");
    assert_eq!(set.len(), 1, "the timer was set once and survived the restart");
    assert_eq!(events_of(&journal, "timer_fired").len(), 1);
    let fired_at = journal["events"].as_array().unwrap().iter().find(|e| e["event"]["type"] == "timer_fired").unwrap()
        ["at"]
        .clone();
    let fire_at = set[0]["fire_at"].as_i64().unwrap();
    let fired_ms = humantime::parse_rfc3339(fired_at.as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(fired_ms >= fire_at, "the sleep was not cut short by the restart");
}

async fn killed_inside_a_child_run_resumes_the_child(backend: Backend) {
    let ws = Workspace::new(backend).await;
    let sink = Sink::start(&["/slow"]).await;
    let child = json!({
        "name": "inner",
        "steps": [
            http_step("first", format!("{}/first", sink.base), &[]),
            http_step("slow", format!("{}/slow", sink.base), &["first"])
        ],
        "output": "{{ steps.slow.output.body.path }}"
    });
    ws.write("inner.json", &child.to_string());
    let parent = json!({
        "name": "outer",
        "steps": [
            { "id": "inner", "workflow": { "path": "inner.json", "input": { "who": "{{ input.who }}" } } },
            http_step("last", format!("{}/last", sink.base), &["inner"])
        ],
        "output": { "inner": "{{ steps.inner.output }}", "last": "{{ steps.last.output.body.path }}" }
    });
    let file = ws.write("outer.json", &parent.to_string());
    let mut process = ws.spawn(&["run", file.to_str().unwrap(), "--input", r#"{"who":"ada"}"#]);
    wait_until("the child's slow step to reach the sink", Duration::from_secs(60), || !sink.hits("/slow").is_empty())
        .await;
    process.kill().unwrap(); // SIGKILL
    process.wait().unwrap();

    let out = ws.run(&["runs", "list", "--json"]);
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.len(), 2, "a parent and its child: {runs:#?}");
    let parent_run = runs.iter().find(|r| r["parent"].is_null()).unwrap()["id"].as_str().unwrap().to_string();
    let child_run = runs.iter().find(|r| r["parent"] == parent_run.as_str()).expect("the child names its parent")["id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = ws.run(&["resume"]);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({ "inner": "/slow", "last": "/last" }), "resume prints only the parent's output");

    assert_eq!(sink.hits("/first").len(), 1, "the child's completed step never runs again");
    assert_eq!(sink.hits("/last").len(), 1);
    let slow = sink.hits("/slow");
    assert_eq!(slow.len(), 2, "the child's interrupted step runs again");
    assert_eq!(slow[1].idempotency_key.as_deref(), Some(format!("{child_run}:slow:0").as_str()));
    assert_eq!(slow[0].idempotency_key, slow[1].idempotency_key);

    let journal = ws.journal(&parent_run);
    assert_eq!(journal["status"], "completed");
    let started: Vec<_> = events_of(&journal, "step_started").into_iter().filter(|e| e["step"] == "inner").collect();
    assert_eq!(started.len(), 1, "the parent's step was not restarted: it reattached to its child");
    assert_eq!(started[0]["child"], child_run.as_str());
    assert_eq!(ws.journal(&child_run)["status"], "completed");
}

/// Two `weft resume` processes at a time, one of them killed each round:
/// the runs are shared (a run another live process drives is skipped with a
/// line saying so), a dead process's leases are taken over at once, and in
/// the end every run completes with no step completed twice.
async fn concurrent_resumers_killed_in_turn_finish_every_run_once(backend: Backend) {
    const RUNS: usize = 6;
    let ws = Workspace::new(backend).await;
    let sink = Sink::start(&[]).await;
    let mut steps = Vec::new();
    for n in 0..4 {
        let needs: Vec<String> = if n == 0 { vec![] } else { vec![format!("nap{}", n - 1)] };
        let needs: Vec<&str> = needs.iter().map(String::as_str).collect();
        steps.push(http_step(&format!("s{n}"), format!("{}/s{n}", sink.base), &needs));
        steps.push(json!({ "id": format!("nap{n}"), "sleep": "1s", "needs": [format!("s{n}")] }));
    }
    let workflow = json!({ "name": "shared", "steps": steps, "output": "{{ steps.s3.output.body.path }}" });
    let file = ws.write("shared.json", &workflow.to_string());

    // Six runs, each killed in its first sleep.
    let mut first = Vec::new();
    for n in 0..RUNS {
        first.push(ws.spawn(&["run", file.to_str().unwrap(), "--input", &format!(r#"{{"who":"r{n}"}}"#)]));
    }
    wait_until("every run's first step", Duration::from_secs(60), || sink.hits("/s0").len() >= RUNS).await;
    for mut process in first {
        process.kill().unwrap();
        process.wait().unwrap();
    }
    let runs = ws.run_ids();
    assert_eq!(runs.len(), RUNS);

    // Rounds of two resumers started together; one is killed mid-way.
    let mut survivor: Option<std::process::Child> = None;
    let mut stderr = String::new();
    for round in 0..4 {
        let mut a = ws.spawn(&["resume"]);
        let b = match survivor.take() {
            Some(b) => b,
            None => ws.spawn(&["resume"]),
        };
        tokio::time::sleep(Duration::from_millis(500 + 200 * round)).await;
        a.kill().unwrap();
        let out = a.wait_with_output().unwrap();
        stderr.push_str(&text(&out.stderr));
        survivor = Some(b);
    }
    let out = survivor.unwrap().wait_with_output().unwrap();
    stderr.push_str(&text(&out.stderr));
    assert!(out.status.success(), "the last resumer failed: {}", text(&out.stderr));
    assert!(
        stderr.contains("skipped, another process") && stderr.contains("is driving it"),
        "a resumer skips the runs another live process drives:\n{stderr}"
    );
    assert!(!stderr.contains("error:"), "no resumer gave up on a run:\n{stderr}");

    // Whatever the killed resumers left is finished by one more.
    let out = ws.run(&["resume"]);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));

    for run in &runs {
        let journal = ws.journal(run);
        assert_eq!(journal["status"], "completed", "run {run}: {journal:#}");
        let mut completed: Vec<String> =
            events_of(&journal, "step_completed").iter().map(|e| e["step"].as_str().unwrap().to_string()).collect();
        completed.sort();
        let mut once = completed.clone();
        once.dedup();
        assert_eq!(completed, once, "run {run} completed a step twice");
        assert_eq!(completed, ["s0", "s1", "s2", "s3"], "run {run}");
        assert_eq!(events_of(&journal, "timer_fired").len(), 4, "run {run}: every sleep fired once");
    }
    for n in 0..4 {
        assert!(sink.hits(&format!("/s{n}")).len() >= RUNS, "every run reached step s{n}");
    }
}
