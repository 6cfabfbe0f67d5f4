//! `weft server` and `weft worker` as an operator runs them: real
//! processes on a throwaway Postgres, driven over HTTP with API keys.

mod common;

use std::time::Duration;

use common::service::{Service, bootstrap_key, http, store_workflow, tenant};
use common::{Backend, Sink, Workspace, text, wait_until};
use serde_json::{Value, json};

/// The steps a journal (the API's `events`) records as completed, sorted:
/// a step completed twice shows twice.
fn completed_steps(events: &Value) -> Vec<&str> {
    let mut completed: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == "step_completed")
        .map(|e| e["event"]["step"].as_str().unwrap())
        .collect();
    completed.sort();
    completed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_a_worker_on_postgres_serve_one_flow() {
    let ws = Workspace::new(Backend::Postgres).await;
    let server = Service::start(&ws, &["server", "--listen", "127.0.0.1:0", "--no-worker"]);
    let address = server.address().await;
    let admin = bootstrap_key(&server).await;
    let _worker = Service::start(&ws, &["worker", "--park-after", "500ms"]);

    let (status, ready) = http(&address, "GET", "/readyz", None, None).await;
    assert_eq!((status, &ready["status"]), (200, &json!("ok")));
    let key = tenant(&address, &admin, "acme").await;
    let workflow = json!({ "name": "nap", "input": { "type": "object", "required": ["name"] }, "steps": [
        { "id": "hello", "uses": "transform/echo", "with": { "greeting": "hello {{ input.name }}" } },
        { "id": "nap", "sleep": "1500ms", "needs": ["hello"] },
        { "id": "bye", "uses": "transform/echo", "with": { "was": "{{ steps.hello.output.greeting }}" }, "needs": ["nap"] }
    ] });
    let hash = store_workflow(&address, &key, &workflow).await;
    let start = json!({ "workflow": hash, "input": { "name": "Ada" }, "idempotency_key": "order-1" });
    let (status, first) = http(&address, "POST", "/v1/runs", Some(&key), Some(start.clone())).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = http(&address, "POST", "/v1/runs", Some(&key), Some(start)).await;
    assert_eq!((status, &again["created"]), (200, &json!(false)));
    let run = first["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(again["run"]["id"], json!(run), "one run per idempotency key");

    let mut done = Value::Null;
    let path = format!("/v1/runs/{run}");
    for _ in 0..600 {
        done = http(&address, "GET", &path, Some(&key), None).await.1;
        if done["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done["status"], "completed", "{done}\nworker: {}", _worker.stderr());
    assert_eq!(done["output"], json!({ "was": "hello Ada" }));
    let (_, timeline) = http(&address, "GET", &format!("/v1/runs/{run}/timeline"), Some(&key), None).await;
    let steps: Vec<&str> = timeline["timeline"].as_array().unwrap().iter().filter_map(|e| e["step"].as_str()).collect();
    assert_eq!(steps, ["hello", "nap", "bye"], "{timeline:#}");
    let (_, listed) = http(&address, "GET", "/v1/runs", Some(&key), None).await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1);

    // The server started the run; the worker ended it, so the server's
    // metrics count the start, and the queue is empty.
    let (status, metrics) = http(&address, "GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"weft_runs_started_total{tenant="acme",workflow="nap"} 1"#), "{metrics}");
    assert!(metrics.lines().any(|l| l == "weft_runs_due 0"), "{metrics}");
    assert!(server.stderr().contains(r#""request_id""#), "JSON logs carry request ids");

    // The database has keys now: `weft admin bootstrap` refuses.
    let out = ws.run(&["admin", "bootstrap"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("already has API keys"));
}

/// Three workers share the runs; one is killed with SIGKILL while they are
/// under way. Its runs are taken over once its leases expire, and every run
/// completes with no step completed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_finish_every_run_once() {
    const RUNS: usize = 30;
    let ws = Workspace::new(Backend::Postgres).await;
    let sink = Sink::start(&[]).await;
    let server = Service::start(&ws, &["server", "--listen", "127.0.0.1:0", "--no-worker"]);
    let address = server.address().await;
    let admin = bootstrap_key(&server).await;
    // Runs stay in their worker through their short sleeps (no parking), so
    // the killed worker holds some of them under lease when it dies.
    let mut workers: Vec<Service> =
        (0..3).map(|_| Service::start(&ws, &["worker", "--slots", "8", "--park-after", "1h"])).collect();
    let key = tenant(&address, &admin, "acme").await;
    let mut steps = Vec::new();
    for n in 0..3 {
        let needs: Vec<String> = if n == 0 { vec![] } else { vec![format!("nap{}", n - 1)] };
        steps.push(json!({ "id": format!("s{n}"), "uses": "http/request", "needs": needs,
            "with": { "method": "POST", "url": format!("{}/s{n}", sink.base), "body": { "run": "{{ input.n }}" } } }));
        steps.push(json!({ "id": format!("nap{n}"), "sleep": "400ms", "needs": [format!("s{n}")] }));
    }
    let hash = store_workflow(&address, &key, &json!({ "name": "shared", "steps": steps })).await;
    let mut runs = Vec::new();
    for n in 0..RUNS {
        let start = json!({ "workflow": hash, "input": { "n": n } });
        let (status, started) = http(&address, "POST", "/v1/runs", Some(&key), Some(start)).await;
        assert_eq!(status, 201, "{started}");
        runs.push(started["run"]["id"].as_str().unwrap().to_string());
    }
    wait_until("runs under way", Duration::from_secs(60), || sink.hits("/s1").len() >= RUNS / 3).await;
    workers[0].kill();

    for run in &runs {
        let path = format!("/v1/runs/{run}");
        let mut status = Value::Null;
        for _ in 0..1200 {
            status = http(&address, "GET", &path, Some(&key), None).await.1["status"].clone();
            if status != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status, "completed", "run {run}\n{}", workers[1].stderr());
        let (_, timeline) = http(&address, "GET", &format!("/v1/runs/{run}/timeline"), Some(&key), None).await;
        assert_eq!(completed_steps(&timeline["events"]), ["s0", "s1", "s2"], "run {run}: each step completed once");
    }
    for n in 0..3 {
        assert!(sink.hits(&format!("/s{n}")).len() >= RUNS, "every run reached s{n}");
    }
    let took_over = workers[1..].iter().any(|w| w.stderr().contains("run.takeover"));
    assert!(took_over, "the killed worker's runs were taken over");
}

/// The compose file starts what docs/server.md says, and every setting it
/// gives the weft services is one the binary reads.
#[test]
fn the_compose_file_matches_the_servers_configuration() {
    use saphyr::{LoadableYamlNode, Yaml};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker-compose.yml");
    let docs = Yaml::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let services = &docs[0]["services"];
    let names: Vec<&str> = services.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["postgres", "openbao", "server", "worker"]);

    // The environment variables the binary reads, from its own help.
    let help = |command: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft")).args([command, "--help"]).output().unwrap();
        text(&out.stdout)
    };
    let known = |help: &str| -> Vec<String> {
        let mut names: Vec<String> =
            help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_string()).collect();
        names.push("WEFT_LOG".into());
        names
    };
    let postgres = &services["postgres"]["environment"];
    let expected_db = format!(
        "postgres://{}:{}@postgres:5432/{}",
        postgres["POSTGRES_USER"].as_str().unwrap(),
        postgres["POSTGRES_PASSWORD"].as_str().unwrap(),
        postgres["POSTGRES_DB"].as_str().unwrap()
    );
    for (service, command) in [("server", "server"), ("worker", "worker")] {
        let known = known(&help(command));
        let spec = &services[service];
        assert_eq!(spec["command"][0].as_str(), Some(command), "{service} runs `weft {command}`");
        let environment = spec["environment"].as_mapping().unwrap();
        for (name, value) in environment {
            let name = name.as_str().unwrap();
            assert!(
                known.iter().any(|k| k == name),
                "{service}: `weft {command}` reads no {name} (it reads {known:?})"
            );
            if name == "WEFT_DB" {
                assert_eq!(value.as_str(), Some(expected_db.as_str()), "{service} uses the postgres service");
            }
        }
        assert!(environment.keys().any(|k| k.as_str() == Some("WEFT_DB")), "{service} names its database");
    }
    // The server listens on the port it publishes, where its health check looks.
    let listen = services["server"]["environment"]["WEFT_LISTEN"].as_str().unwrap();
    let port = listen.rsplit(':').next().unwrap();
    let published = services["server"]["ports"][0].as_str().unwrap();
    assert_eq!(published, format!("{port}:{port}"));
    let check = services["server"]["healthcheck"]["test"][3].as_str().unwrap();
    assert_eq!(check, format!("http://127.0.0.1:{port}/readyz"));
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Dockerfile")).unwrap();
    assert!(dockerfile.contains(&format!("EXPOSE {port}")) && dockerfile.contains("ENTRYPOINT [\"weft\"]"));
}

/// Postgres restarts (immediate mode, as a crash) while runs are under way:
/// the server reports the outage on /readyz and recovers without a restart
/// of its own, and every run completes with each step completed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_no_run() {
    const RUNS: usize = 20;
    let cluster = weft_store::testing::Cluster::start();
    let db = weft_store::testing::fresh_database(&cluster.url).await.unwrap();
    let ws = Workspace { dir: tempfile::tempdir().unwrap(), db };
    let server = Service::start(&ws, &["server", "--listen", "127.0.0.1:0", "--park-after", "1h"]);
    let address = server.address().await;
    let admin = bootstrap_key(&server).await;
    let key = tenant(&address, &admin, "acme").await;
    let mut steps = Vec::new();
    for n in 0..4 {
        let needs: Vec<String> = if n == 0 { vec![] } else { vec![format!("nap{}", n - 1)] };
        steps.push(json!({ "id": format!("s{n}"), "uses": "transform/echo", "with": { "n": n }, "needs": needs }));
        steps.push(json!({ "id": format!("nap{n}"), "sleep": "500ms", "needs": [format!("s{n}")] }));
    }
    let hash = store_workflow(&address, &key, &json!({ "name": "steady", "steps": steps })).await;
    let mut runs = Vec::new();
    for n in 0..RUNS {
        let (status, started) =
            http(&address, "POST", "/v1/runs", Some(&key), Some(json!({ "workflow": hash, "input": { "n": n } })))
                .await;
        assert_eq!(status, 201, "{started}");
        runs.push(started["run"]["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;

    // Down for three seconds; /readyz says so meanwhile.
    let restart = std::thread::spawn(move || {
        cluster.restart(Duration::from_secs(3));
        cluster
    });
    // Until the restart is over (stopping Postgres takes a while on a busy
    // machine): it is down for three seconds of that, and polled every 100 ms.
    let mut saw_outage = false;
    let begun = std::time::Instant::now();
    while !restart.is_finished() && begun.elapsed() < Duration::from_secs(60) {
        let (status, ready) = http(&address, "GET", "/readyz", None, None).await;
        if status == 503 {
            assert!(ready["status"].is_string(), "{ready}");
            saw_outage = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_outage, "/readyz reported the outage");
    let _cluster = restart.join().unwrap();
    let mut ready = 0;
    for _ in 0..100 {
        ready = http(&address, "GET", "/readyz", None, None).await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200, "ready again once Postgres is back");

    for run in &runs {
        let path = format!("/v1/runs/{run}");
        let mut status = Value::Null;
        for _ in 0..1200 {
            let (code, body) = http(&address, "GET", &path, Some(&key), None).await;
            status = if code == 200 { body["status"].clone() } else { Value::Null };
            if code == 200 && status != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, timeline) = http(&address, "GET", &format!("/v1/runs/{run}/timeline"), Some(&key), None).await;
        let events = &timeline["events"];
        assert_eq!(status, "completed", "run {run}: {events:#}\n{}", server.stderr());
        assert_eq!(completed_steps(events), ["s0", "s1", "s2", "s3"], "run {run}: each step completed once");
    }
}
