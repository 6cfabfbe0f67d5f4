//! The /v1 API through its router, against both stores: a tenant's whole
//! flow, every documented route, tenants kept apart, and bad input answered
//! with the error shape and a 4xx.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use weft_runtime::WorkerConfig;
use weft_server::{Server, ServerConfig};

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(super::Api::new(weft_store::testing::sqlite_url(dir.path())).await).await
            }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Api::new(weft_store::testing::fresh_postgres().await).await).await
            }
        )* }
    };
}

both_stores!(
    a_tenant_starts_a_run_once_per_key_and_reads_it_back,
    every_documented_route_answers,
    a_tenant_sees_nothing_of_another,
    bad_requests_get_a_4xx_in_the_error_shape,
    keys_are_checked_scoped_and_revocable,
    requests_over_a_rate_get_429_with_retry_after,
    a_plan_limits_what_a_tenant_runs_and_usage_counts_it,
    a_connector_action_is_called_directly_like_a_step,
    a_finished_run_is_retried_and_names_its_retry,
    a_tenant_moved_to_its_own_database_keeps_working,
    a_move_whose_process_died_leaves_the_tenant_where_it_was,
    a_client_waits_for_a_run_to_finish,
    child_workflows_by_path_come_with_their_parent
);

/// The router of a server on `url`, with its super-admin key.
struct Api {
    router: Router,
    admin: String,
    _server: Server,
}

impl Api {
    async fn new(url: String) -> Api {
        Api::with(url, |_| {}).await
    }

    /// A server on `url` with its configuration changed by `change`.
    async fn with(url: String, change: impl FnOnce(&mut ServerConfig)) -> Api {
        let mut config = ServerConfig::new(url);
        config.assembly.cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
        config.assembly.engine.poll_interval = Duration::from_millis(20);
        config.worker = Some(WorkerConfig { poll_interval: Duration::from_millis(50), ..WorkerConfig::default() });
        config.max_body_bytes = 64 * 1024;
        change(&mut config);
        let server = Server::start(config).await.unwrap();
        // A new database gets a key, once; a second server on it makes another.
        let admin = match server.bootstrap().await.unwrap() {
            Some(key) => {
                assert!(server.bootstrap().await.unwrap().is_none(), "only once");
                key
            }
            None => server.admin_key("another server").await.unwrap(),
        };
        // Parked runs need the claim loop, which `serve` would run.
        let worker = server.worker().unwrap().clone();
        tokio::spawn(async move { worker.run(std::future::pending()).await });
        Api { router: server.router(), admin, _server: server }
    }

    /// Sends a request; returns the status and the JSON body (`null` when
    /// empty).
    async fn raw(&self, method: Method, path: &str, key: Option<&str>, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let body = body.map_or_else(Body::empty, Body::from);
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else if path == "/metrics" {
            Value::String(String::from_utf8(bytes.to_vec()).unwrap())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        // 503 `tenant_moving` is the one 5xx a test asks for (a tenant marked moving).
        let moving = status == StatusCode::SERVICE_UNAVAILABLE && value["error"]["code"] == "tenant_moving";
        assert!(status.as_u16() < 500 || moving, "{path}: {status} {value}");
        if !status.is_success() {
            let error = &value["error"];
            assert!(error["code"].is_string() && error["message"].is_string(), "{path}: error shape: {value}");
        }
        (status, value)
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, path, Some(key), body.map(|b| b.to_string().into_bytes())).await
    }

    /// A new tenant and a key of it with `role`.
    async fn tenant(&self, id: &str, role: &str) -> String {
        let (status, _) = self.call(Method::POST, "/v1/tenants", &self.admin, Some(json!({ "id": id }))).await;
        assert_eq!(status, StatusCode::CREATED);
        let path = format!("/v1/tenants/{id}/api-keys");
        let (status, made) =
            self.call(Method::POST, &path, &self.admin, Some(json!({ "name": "test", "role": role }))).await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        made["secret"].as_str().unwrap().to_string()
    }

    /// Stores a workflow for the key's tenant; returns its hash.
    async fn workflow(&self, key: &str, workflow: Value) -> String {
        let source = serde_json::to_string_pretty(&workflow).unwrap();
        let (status, created) = self.call(Method::POST, "/v1/workflows", key, Some(json!({ "source": source }))).await;
        assert!(status.is_success(), "{created}");
        created["workflow"]["hash"].as_str().unwrap().to_string()
    }

    /// Starts a run; returns it.
    async fn start(&self, key: &str, hash: &str, input: Value, idempotency_key: Option<&str>) -> (StatusCode, Value) {
        let body = json!({ "workflow": hash, "input": input, "idempotency_key": idempotency_key });
        self.call(Method::POST, "/v1/runs", key, Some(body)).await
    }

    /// Waits for a run to finish, up to 20 s.
    /// Waits until run `id` is parked: no process holds it.
    async fn parked(&self, key: &str, id: &str) {
        let started = Instant::now();
        loop {
            let (_, run) = self.call(Method::GET, &format!("/v1/runs/{id}"), key, None).await;
            if run["lease_owner"].is_null() {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the run was not parked: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finished(&self, key: &str, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let (_, run) = self.call(Method::GET, &format!("/v1/runs/{id}"), key, None).await;
            if run["status"] != "running" {
                return run;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let (_, timeline) = self.call(Method::GET, &format!("/v1/runs/{id}/timeline"), key, None).await;
                panic!("the run did not finish: {run}\n{:#}", timeline["events"]);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A workflow that sleeps for `sleep`, then echoes.
fn napper(name: &str, sleep: &str) -> Value {
    json!({ "name": name, "steps": [
        { "id": "nap", "sleep": sleep },
        { "id": "done", "uses": "transform/echo", "with": { "ok": true }, "needs": ["nap"] }
    ] })
}

/// A name no other test in this process uses.
fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{nanos:x}-{n}")
}

fn greeter() -> Value {
    json!({ "name": "greeter", "input": { "type": "object", "required": ["name"] }, "steps": [
        { "id": "hello", "uses": "transform/echo", "with": { "greeting": "hello {{ input.name }}" } },
        { "id": "ask", "wait_for_signal": { "name": "go" }, "needs": ["hello"] },
        { "id": "done", "uses": "transform/echo", "with": { "said": "{{ steps.ask.output }}" }, "needs": ["ask"] }
    ] })
}

fn echo() -> Value {
    json!({ "name": "echo", "steps": [{ "id": "a", "uses": "transform/echo", "with": { "v": "{{ input }}" } }] })
}

async fn a_tenant_starts_a_run_once_per_key_and_reads_it_back(api: Api) {
    let key = api.tenant("acme", "developer").await;
    let hash = api.workflow(&key, echo()).await;
    let (status, first) = api.start(&key, &hash, json!({ "n": 1 }), Some("order-1")).await;
    assert_eq!((status, &first["created"]), (StatusCode::CREATED, &json!(true)));
    let (status, again) = api.start(&key, &hash, json!({ "n": 1 }), Some("order-1")).await;
    assert_eq!((status, &again["created"]), (StatusCode::OK, &json!(false)));
    let id = first["run"]["id"].as_str().unwrap();
    assert_eq!(again["run"]["id"], id, "one run per key");
    let run = api.finished(&key, id).await;
    assert_eq!((&run["status"], &run["output"]), (&json!("completed"), &json!({ "v": { "n": 1 } })));

    let (status, timeline) = api.call(Method::GET, &format!("/v1/runs/{id}/timeline"), &key, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(timeline["standing"], "completed");
    assert_eq!(timeline["timeline"][0]["step"], "a", "{timeline}");
    assert!(timeline["events"].as_array().unwrap().len() >= 4);

    // Pages: five more runs, listed two at a time, each once.
    for n in 0..5 {
        api.start(&key, &hash, json!({ "n": n }), None).await;
    }
    let mut seen = Vec::new();
    let mut next = String::from("/v1/runs?limit=2");
    loop {
        let (status, page) = api.call(Method::GET, &next, &key, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(page["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("/v1/runs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (6, 6), "{seen:?}");
    let (_, listed) = api.call(Method::GET, "/v1/runs?workflow=nope", &key, None).await;
    assert_eq!(listed["runs"], json!([]));
}

/// A documented route's call: method, template, concrete path, key, body,
/// and the status expected.
type Call<'a> = (Method, &'a str, String, &'a str, Option<Value>, StatusCode);

/// Every route the document lists, called once, in an order that makes
/// each meaningful; the document must list exactly these.
async fn every_documented_route_answers(api: Api) {
    let (status, document) = api.raw(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|m| m.as_str() != "parameters") {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();

    // A tenant of its own: the metrics it reads are the process's.
    let tenant = unique("docs");
    let key = api.tenant(&tenant, "admin").await;
    let admin = api.admin.clone();
    let hash = api.workflow(&key, greeter()).await;
    let (_, started) = api.start(&key, &hash, json!({ "name": "Ada" }), None).await;
    let run = started["run"]["id"].as_str().unwrap().to_string();
    let (_, other) = api.start(&key, &hash, json!({ "name": "Bo" }), None).await;
    let other = other["run"]["id"].as_str().unwrap().to_string();
    let (_, made) = api
        .call(
            Method::POST,
            &format!("/v1/tenants/{tenant}/api-keys"),
            &key,
            Some(json!({ "name": "spare", "role": "viewer" })),
        )
        .await;
    let spare = made["id"].as_str().unwrap().to_string();
    let source = serde_json::to_string(&echo()).unwrap();
    let idle = unique("idle");
    api.tenant(&idle, "viewer").await;
    let two = api.workflow(&key, two_calls()).await;
    let (_, done) = api.start(&key, &two, json!({}), None).await;
    let done = api.finished(&key, done["run"]["id"].as_str().unwrap()).await["id"].as_str().unwrap().to_string();

    let calls: Vec<Call<'_>> = vec![
        (Method::GET, "/healthz", "/healthz".into(), &key, None, StatusCode::OK),
        (Method::GET, "/readyz", "/readyz".into(), &key, None, StatusCode::OK),
        (Method::GET, "/metrics", "/metrics".into(), &key, None, StatusCode::OK),
        (
            Method::POST,
            "/v1/tenants",
            "/v1/tenants".into(),
            &admin,
            Some(json!({ "id": unique("beta") })),
            StatusCode::CREATED,
        ),
        (Method::GET, "/v1/tenants", "/v1/tenants".into(), &admin, None, StatusCode::OK),
        (Method::GET, "/v1/tenants/{tenant}", format!("/v1/tenants/{tenant}"), &key, None, StatusCode::OK),
        (
            Method::PUT,
            "/v1/tenants/{tenant}/plan",
            format!("/v1/tenants/{tenant}/plan"),
            &admin,
            Some(json!({ "max_concurrent_runs": 100 })),
            StatusCode::OK,
        ),
        (Method::GET, "/v1/tenants/{tenant}/plan", format!("/v1/tenants/{tenant}/plan"), &key, None, StatusCode::OK),
        (
            Method::PUT,
            "/v1/tenants/{tenant}/database",
            format!("/v1/tenants/{idle}/database"),
            &admin,
            Some(json!({ "url": null })),
            StatusCode::OK,
        ),
        (Method::GET, "/v1/tenants/{tenant}/usage", format!("/v1/tenants/{tenant}/usage"), &key, None, StatusCode::OK),
        (
            Method::POST,
            "/v1/tenants/{tenant}/api-keys",
            format!("/v1/tenants/{tenant}/api-keys"),
            &key,
            Some(json!({ "name": "ci", "role": "operator" })),
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/v1/tenants/{tenant}/api-keys",
            format!("/v1/tenants/{tenant}/api-keys"),
            &key,
            None,
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/v1/tenants/{tenant}/api-keys/{key}",
            format!("/v1/tenants/{tenant}/api-keys/{spare}"),
            &key,
            None,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            "/v1/workflows",
            "/v1/workflows".into(),
            &key,
            Some(json!({ "source": source })),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/workflows/validate",
            "/v1/workflows/validate".into(),
            &key,
            Some(json!({ "source": "name: y\nsteps: []\n", "format": "yaml" })),
            StatusCode::OK,
        ),
        (Method::GET, "/v1/workflows", "/v1/workflows".into(), &key, None, StatusCode::OK),
        (Method::GET, "/v1/workflows/{hash}", format!("/v1/workflows/{hash}"), &key, None, StatusCode::OK),
        (Method::GET, "/v1/runs", "/v1/runs".into(), &key, None, StatusCode::OK),
        (Method::GET, "/v1/runs/{id}", format!("/v1/runs/{run}"), &key, None, StatusCode::OK),
        (Method::GET, "/v1/runs/{id}/timeline", format!("/v1/runs/{run}/timeline"), &key, None, StatusCode::OK),
        (
            Method::POST,
            "/v1/runs/{id}/signal",
            format!("/v1/runs/{run}/signal"),
            &key,
            Some(json!({ "name": "go", "payload": 1 })),
            StatusCode::ACCEPTED,
        ),
        (Method::POST, "/v1/runs/{id}/resume", format!("/v1/runs/{other}/resume"), &key, None, StatusCode::ACCEPTED),
        (Method::POST, "/v1/runs/{id}/cancel", format!("/v1/runs/{other}/cancel"), &key, None, StatusCode::ACCEPTED),
        (
            Method::POST,
            "/v1/runs/{id}/retry",
            format!("/v1/runs/{done}/retry"),
            &key,
            Some(json!({ "from": "b" })),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/v1/runs",
            "/v1/runs".into(),
            &key,
            Some(json!({ "workflow": hash })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/workflows/{hash}/deprecate",
            format!("/v1/workflows/{hash}/deprecate"),
            &key,
            None,
            StatusCode::OK,
        ),
        (Method::GET, "/v1/connectors", "/v1/connectors".into(), &key, None, StatusCode::OK),
        (
            Method::POST,
            "/v1/connectors",
            "/v1/connectors".into(),
            &key,
            Some(json!({ "not": "a component" })),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (Method::GET, "/v1/connectors/{name}", "/v1/connectors/transform".into(), &key, None, StatusCode::OK),
        (
            Method::POST,
            "/v1/connectors/{name}/invoke",
            "/v1/connectors/transform/invoke".into(),
            &key,
            Some(json!({ "action": "echo", "input": { "hi": 1 } })),
            StatusCode::OK,
        ),
    ];
    let mut called: Vec<String> = calls.iter().map(|(m, template, ..)| format!("{m} {template}")).collect();
    called.sort();
    called.dedup();
    assert_eq!(called, documented, "the calls below cover exactly the documented routes");
    for (method, _, path, key, body, expected) in calls {
        let (status, answer) = api.call(method.clone(), &path, key, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let run = api.finished(&key, &run).await;
    assert_eq!(run["output"], json!({ "said": 1 }), "the signal reached the run");
    assert_eq!(api.finished(&key, &other).await["status"], "cancelled");
    let (status, refused) = api.start(&key, &hash, json!({ "name": "Cy" }), None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::CONFLICT, &json!("workflow_deprecated")));

    // The metrics count this tenant's runs by workflow and status (a cancel
    // is answered before the run's driver ends it, so they may lag a little).
    let lines = [
        format!(r#"weft_runs_started_total{{tenant="{tenant}",workflow="greeter"}} 2"#),
        format!(r#"weft_runs_finished_total{{tenant="{tenant}",workflow="greeter",status="completed"}} 1"#),
        format!(r#"weft_runs_finished_total{{tenant="{tenant}",workflow="greeter",status="cancelled"}} 1"#),
    ];
    let started = Instant::now();
    let metrics = loop {
        let (_, metrics) = api.raw(Method::GET, "/metrics", None, None).await;
        let metrics = metrics.as_str().unwrap().to_string();
        let missing = lines.iter().find(|line| !metrics.lines().any(|l| l == line.as_str()));
        match missing {
            None => break metrics,
            Some(line) if started.elapsed() > Duration::from_secs(10) => panic!("{line} in:\n{metrics}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let metrics = metrics.as_str();
    for name in ["weft_step_duration_seconds_bucket", "weft_runs_due ", "weft_http_request_duration_seconds_count"] {
        assert!(metrics.contains(name), "{name} in:\n{metrics}");
    }
}

async fn a_tenant_sees_nothing_of_another(api: Api) {
    let a = api.tenant("tenant-a", "owner").await;
    let b = api.tenant("tenant-b", "owner").await;
    let hash = api.workflow(&b, greeter()).await;
    let (_, started) = api.start(&b, &hash, json!({ "name": "B" }), Some("b-key")).await;
    let run = started["run"]["id"].as_str().unwrap().to_string();
    let (_, keys) = api.call(Method::GET, "/v1/tenants/tenant-b/api-keys", &b, None).await;
    let b_key = keys["api_keys"][0]["id"].as_str().unwrap().to_string();

    // Every route that names one of B's things, with A's key: 404.
    let probes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/tenants/tenant-b".into(), None),
        (Method::GET, "/v1/tenants/tenant-b/api-keys".into(), None),
        (Method::POST, "/v1/tenants/tenant-b/api-keys".into(), Some(json!({ "name": "x", "role": "admin" }))),
        (Method::DELETE, format!("/v1/tenants/tenant-b/api-keys/{b_key}"), None),
        (Method::GET, "/v1/tenants/tenant-b/plan".into(), None),
        (Method::PUT, "/v1/tenants/tenant-b/plan".into(), Some(json!({ "steps_per_month": 0 }))),
        (Method::GET, "/v1/tenants/tenant-b/usage".into(), None),
        (Method::PUT, "/v1/tenants/tenant-b/database".into(), Some(json!({ "url": null }))),
        (Method::GET, format!("/v1/workflows/{hash}"), None),
        (Method::POST, format!("/v1/workflows/{hash}/deprecate"), None),
        (Method::POST, "/v1/runs".into(), Some(json!({ "workflow": hash, "input": { "name": "A" } }))),
        (Method::GET, format!("/v1/runs/{run}"), None),
        (Method::GET, format!("/v1/runs/{run}/timeline"), None),
        (Method::POST, format!("/v1/runs/{run}/cancel"), None),
        (Method::POST, format!("/v1/runs/{run}/signal"), Some(json!({ "name": "go" }))),
        (Method::POST, format!("/v1/runs/{run}/resume"), None),
        (Method::POST, format!("/v1/runs/{run}/retry"), None),
    ];
    for (method, path, body) in probes {
        let (status, answer) = api.call(method.clone(), &path, &a, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    // Lists show A's own things only; B's key is still good, its run still waits.
    for path in ["/v1/runs", "/v1/workflows"] {
        let (_, listed) = api.call(Method::GET, path, &a, None).await;
        let items = listed.as_object().unwrap().values().find_map(Value::as_array).unwrap();
        assert!(items.is_empty(), "{path}: {listed}");
    }
    let (status, _) = api.start(&a, &hash, json!({ "name": "A" }), Some("b-key")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "B's idempotency key means nothing to A");
    let (_, run) = api.call(Method::GET, &format!("/v1/runs/{run}"), &b, None).await;
    assert_eq!(run["status"], "running", "{run}");
    let (_, keys) = api.call(Method::GET, "/v1/tenants/tenant-b/api-keys", &b, None).await;
    assert_eq!(keys["api_keys"][0]["revoked_at"], Value::Null);
}

async fn bad_requests_get_a_4xx_in_the_error_shape(api: Api) {
    let key = api.tenant("acme", "developer").await;
    let send = |method: Method, path: &'static str, body: &'static [u8]| {
        let key = key.clone();
        let api = &api;
        async move { api.raw(method, path, Some(&key), Some(body.to_vec())).await }
    };
    let expect = |(status, body): (StatusCode, Value), want: StatusCode, code: &str| {
        assert_eq!((status, body["error"]["code"].as_str().unwrap_or("<no error>")), (want, code), "{body}");
        body
    };
    let body =
        expect(send(Method::POST, "/v1/workflows", b"{\"source\": ").await, StatusCode::BAD_REQUEST, "malformed_json");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 1"), "{body}");
    expect(send(Method::POST, "/v1/workflows", b"").await, StatusCode::BAD_REQUEST, "malformed_json");
    let body = expect(
        send(Method::POST, "/v1/workflows", br#"{"source": "{}", "sauce": 1}"#).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("sauce"), "{body}");
    let body =
        expect(send(Method::POST, "/v1/runs", br#"{"workflow": 7}"#).await, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(body["error"]["path"], "$.workflow");
    let big = format!(r#"{{"source": "{}"}}"#, "x".repeat(100 * 1024));
    let (status, body) = api.raw(Method::POST, "/v1/workflows", Some(&key), Some(big.into_bytes())).await;
    expect((status, body), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // A workflow that does not validate: every problem with line:column.
    let source = "{\n  \"name\": \"bad\",\n  \"steps\": [\n    { \"id\": \"a\", \"uses\": \"nope/nothing\" }\n  ]\n}";
    let (status, body) = api.call(Method::POST, "/v1/workflows", &key, Some(json!({ "source": source }))).await;
    let body = expect((status, body), StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow");
    let problem = &body["error"]["diagnostics"][0];
    assert_eq!((&problem["path"], &problem["line"]), (&json!("$.steps[0].uses"), &json!(4)), "{body}");
    let (_, validation) =
        api.call(Method::POST, "/v1/workflows/validate", &key, Some(json!({ "source": source }))).await;
    assert_eq!((&validation["valid"], &validation["diagnostics"][0]["line"]), (&json!(false), &json!(4)));

    // Ids, cursors, queries and routes that do not exist.
    let get = |path: &'static str| api.call(Method::GET, path, &key, None);
    expect(get("/v1/runs/not-a-run").await, StatusCode::NOT_FOUND, "not_found");
    expect(get("/v1/runs/%00%ff").await, StatusCode::BAD_REQUEST, "invalid_request");
    expect(get("/v1/workflows/sha256:nope").await, StatusCode::NOT_FOUND, "not_found");
    expect(get("/v1/runs?cursor=!!!").await, StatusCode::BAD_REQUEST, "invalid_cursor");
    expect(get("/v1/runs?cursor=MTIz").await, StatusCode::BAD_REQUEST, "invalid_cursor");
    expect(get("/v1/runs?limit=0").await, StatusCode::BAD_REQUEST, "invalid_request");
    expect(get("/v1/runs?limit=ten").await, StatusCode::BAD_REQUEST, "invalid_request");
    expect(get("/v1/runs?status=sleepy").await, StatusCode::BAD_REQUEST, "invalid_request");
    expect(get("/v1/runs?colour=red").await, StatusCode::BAD_REQUEST, "invalid_request");
    expect(get("/v1/nothing-here").await, StatusCode::NOT_FOUND, "not_found");
    let hash = api.workflow(&key, greeter()).await;
    let (status, body) = api.start(&key, &hash, json!({ "nom": "x" }), None).await;
    expect((status, body), StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let (_, started) = api.start(&key, &hash, json!({ "name": "x" }), None).await;
    let run = started["run"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/runs/{run}/signal");
    let (status, body) = api.call(Method::POST, &path, &key, Some(json!({ "name": "stop" }))).await;
    expect((status, body), StatusCode::UNPROCESSABLE_ENTITY, "unknown_signal");
    let (status, body) =
        api.call(Method::POST, &format!("/v1/runs/{run}/cancel"), &key, Some(json!({ "why": 1 }))).await;
    expect((status, body), StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = api.call(Method::POST, &format!("/v1/runs/{run}/cancel"), &key, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(api.finished(&key, &run).await["status"], "cancelled");
    let (status, body) = api.call(Method::POST, &format!("/v1/runs/{run}/cancel"), &key, None).await;
    expect((status, body), StatusCode::CONFLICT, "run_finished");
    let (status, body) = api.call(Method::POST, "/v1/tenants", &api.admin, Some(json!({ "id": "Bad Id" }))).await;
    expect((status, body), StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = api.call(Method::POST, "/v1/tenants", &api.admin, Some(json!({ "id": "acme" }))).await;
    expect((status, body), StatusCode::CONFLICT, "tenant_exists");
}

async fn keys_are_checked_scoped_and_revocable(api: Api) {
    let viewer = api.tenant("acme", "viewer").await;
    let expect = |(status, body): (StatusCode, Value), want: StatusCode, code: &str| {
        assert_eq!((status, body["error"]["code"].as_str().unwrap_or("")), (want, code), "{body}");
    };
    expect(api.raw(Method::GET, "/v1/runs", None, None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    expect(
        api.call(Method::GET, "/v1/runs", "weft_nope_nope", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    );
    expect(api.call(Method::GET, "/v1/runs", "garbage", None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    let forged = format!("{}x", &viewer[..viewer.len() - 1]);
    expect(api.call(Method::GET, "/v1/runs", &forged, None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(api.call(Method::GET, "/v1/runs", &viewer, None).await.0, StatusCode::OK);
    let body = json!({ "source": serde_json::to_string(&echo()).unwrap() });
    expect(api.call(Method::POST, "/v1/workflows", &viewer, Some(body)).await, StatusCode::FORBIDDEN, "forbidden");
    expect(api.call(Method::GET, "/v1/runs", &api.admin, None).await, StatusCode::FORBIDDEN, "forbidden");
    expect(api.call(Method::GET, "/v1/tenants", &viewer, None).await, StatusCode::FORBIDDEN, "forbidden");
    let make = json!({ "name": "x", "role": "super_admin" });
    let (status, body) = api.call(Method::POST, "/v1/tenants/acme/api-keys", &api.admin, Some(make)).await;
    expect((status, body), StatusCode::UNPROCESSABLE_ENTITY, "invalid_role");

    let (_, listed) = api.call(Method::GET, "/v1/tenants/acme/api-keys", &api.admin, None).await;
    let id = listed["api_keys"][0]["id"].as_str().unwrap().to_string();
    assert!(listed["api_keys"][0]["last_used_at"].is_i64(), "use is recorded: {listed}");
    assert!(!listed.to_string().contains(&viewer[viewer.len() - 20..]), "no secret is listed");
    let path = format!("/v1/tenants/acme/api-keys/{id}");
    assert_eq!(api.call(Method::DELETE, &path, &api.admin, None).await.0, StatusCode::NO_CONTENT);
    expect(api.call(Method::GET, "/v1/runs", &viewer, None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    let (_, listed) = api.call(Method::GET, "/v1/tenants/acme/api-keys", &api.admin, None).await;
    assert!(listed["api_keys"][0]["revoked_at"].is_i64());
}

async fn requests_over_a_rate_get_429_with_retry_after(api: Api) {
    // The same database, served again with low limits: one request a
    // second (bursts of two) per key, per tenant and per client address's
    // look-ups of keys, so that the test's few milliseconds never earn a
    // new one.
    let url = api._server.url().to_string();
    let limited = Api::with(url, |config| {
        config.rate_limits =
            weft_server::RateLimits { per_key: Some(1), per_tenant: Some(1), key_lookups_per_address: Some(1) };
    })
    .await;
    let (one, two) = (api.tenant("acme", "viewer").await, api.tenant("beta", "viewer").await);
    let path = "/v1/tenants/acme/api-keys";
    let (_, made) = api.call(Method::POST, path, &api.admin, Some(json!({ "name": "b", "role": "viewer" }))).await;
    let other = made["secret"].as_str().unwrap().to_string();
    let send = |key: &str| {
        let request = Request::builder().uri("/v1/runs").header("authorization", format!("Bearer {key}"));
        limited.router.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let refusal = |response: axum::response::Response| async move {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert_eq!(retry, 1, "Retry-After in whole seconds");
        let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        body["error"]["message"].as_str().unwrap().to_string()
    };
    // The burst passes; the next is refused for the key.
    for _ in 0..2 {
        assert_eq!(send(&one).await.unwrap().status(), StatusCode::OK);
    }
    assert!(refusal(send(&one).await.unwrap()).await.contains("API key"));
    // Another tenant is counted apart; another key of the same tenant has
    // requests of its own left, but its tenant has none.
    assert_eq!(send(&two).await.unwrap().status(), StatusCode::OK);
    assert!(refusal(send(&other).await.unwrap()).await.contains("tenant"));

    // Keys this server has not checked lately are looked up so often per
    // client address: made-up keys from one address are refused before the
    // database is asked, a key checked lately still passes, and another
    // address is counted apart. (Requests without an address, as above,
    // are not counted.)
    let from = |address: [u8; 4], key: &str| {
        let mut request = Request::builder()
            .uri("/v1/runs")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((address, 40_000))));
        limited.router.clone().oneshot(request)
    };
    let looked = api.tenant(&unique("looked"), "viewer").await;
    assert_eq!(from([10, 0, 0, 1], &looked).await.unwrap().status(), StatusCode::OK);
    assert_eq!(from([10, 0, 0, 1], "weft_madeup1_secret").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert!(refusal(from([10, 0, 0, 1], "weft_madeup2_secret").await.unwrap()).await.contains("client address"));
    assert_eq!(from([10, 0, 0, 1], &looked).await.unwrap().status(), StatusCode::OK, "checked lately");
    assert_eq!(from([10, 0, 0, 2], "weft_madeup3_secret").await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // A tenant's plan sets its own rate in place of the server's (here the
    // default, far above what the test sends).
    let metered = unique("metered");
    let (key, neighbour) = (api.tenant(&metered, "viewer").await, api.tenant(&unique("free"), "viewer").await);
    let plan_path = format!("/v1/tenants/{metered}/plan");
    let (status, plan) = api.call(Method::PUT, &plan_path, &api.admin, Some(json!({ "requests_per_second": 1 }))).await;
    assert_eq!((status, &plan["requests_per_second"]), (StatusCode::OK, &json!(1)), "{plan}");
    let send = |key: &str| {
        let request = Request::builder().uri("/v1/runs").header("authorization", format!("Bearer {key}"));
        api.router.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    for _ in 0..2 {
        assert_eq!(send(&key).await.unwrap().status(), StatusCode::OK);
    }
    assert!(refusal(send(&key).await.unwrap()).await.contains("tenant's plan's request rate"));
    for _ in 0..5 {
        assert_eq!(send(&neighbour).await.unwrap().status(), StatusCode::OK, "the server's rate for the others");
    }
    // Lifted, it no longer holds the tenant back (in this process at once).
    api.call(Method::PUT, &plan_path, &api.admin, Some(json!({}))).await;
    for _ in 0..5 {
        assert_eq!(send(&key).await.unwrap().status(), StatusCode::OK);
    }
    let (status, refused) =
        api.call(Method::PUT, &plan_path, &api.admin, Some(json!({ "requests_per_second": 0 }))).await;
    assert_eq!((status, &refused["error"]["path"]), (StatusCode::BAD_REQUEST, &json!("$.requests_per_second")));
}

/// A two-step workflow that calls `transform/echo` twice.
fn two_calls() -> Value {
    json!({ "name": "two", "steps": [
        { "id": "a", "uses": "transform/echo", "with": { "v": 1 } },
        { "id": "b", "uses": "transform/echo", "with": { "v": "{{ steps.a.output.v }}" }, "needs": ["a"] }
    ] })
}

async fn a_plan_limits_what_a_tenant_runs_and_usage_counts_it(api: Api) {
    let tenant = unique("planned");
    let key = api.tenant(&tenant, "developer").await;
    let (plan_path, usage_path) = (format!("/v1/tenants/{tenant}/plan"), format!("/v1/tenants/{tenant}/usage"));
    let set_plan = |plan: Value| {
        let (api, path) = (&api, &plan_path);
        async move {
            let (status, set) = api.call(Method::PUT, path, &api.admin, Some(plan.clone())).await;
            assert_eq!((status, &set), (StatusCode::OK, &plan));
        }
    };
    let (status, plan) = api.call(Method::GET, &plan_path, &key, None).await;
    assert_eq!((status, plan), (StatusCode::OK, json!({})), "no limits at first");
    let (_, usage) = api.call(Method::GET, &usage_path, &key, None).await;
    assert_eq!((&usage["runs"], &usage["steps"], &usage["wasm_us"]), (&json!(0), &json!(0), &json!(0)));
    let period = usage["period"].as_str().unwrap().to_string();
    assert_eq!(period.len(), 7, "{usage}");

    // Usage counts the runs and each connector call, with its time.
    let two = api.workflow(&key, two_calls()).await;
    for _ in 0..2 {
        let (_, started) = api.start(&key, &two, json!({}), None).await;
        let run = api.finished(&key, started["run"]["id"].as_str().unwrap()).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let (_, usage) = api.call(Method::GET, &format!("{usage_path}?period={period}"), &key, None).await;
    assert_eq!((&usage["runs"], &usage["steps"]), (&json!(2), &json!(4)), "{usage}");
    assert!(usage["wasm_us"].as_i64().unwrap() > 0, "{usage}");
    let (_, other_month) = api.call(Method::GET, &format!("{usage_path}?period=1999-01"), &key, None).await;
    assert_eq!((&other_month["runs"], &other_month["steps"]), (&json!(0), &json!(0)), "{other_month}");

    // Only a super admin sets a plan.
    let (status, refused) = api.call(Method::PUT, &plan_path, &key, Some(json!({}))).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("forbidden")));

    // At most one run at a time: a second start is refused while the first waits.
    set_plan(json!({ "max_concurrent_runs": 1 })).await;
    let waits = api.workflow(&key, greeter()).await;
    let (status, first) = api.start(&key, &waits, json!({ "name": "A" }), None).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first = first["run"]["id"].as_str().unwrap().to_string();
    let (status, refused) = api.start(&key, &waits, json!({ "name": "B" }), None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::TOO_MANY_REQUESTS, &json!("plan_limit")));
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_concurrent_runs") && message.contains("1 running"), "{message}");
    api.call(Method::POST, &format!("/v1/runs/{first}/cancel"), &key, None).await;
    assert_eq!(api.finished(&key, &first).await["status"], "cancelled");
    let (status, second) = api.start(&key, &waits, json!({ "name": "B" }), None).await;
    assert_eq!(status, StatusCode::CREATED, "a finished run frees its place: {second}");
    let second = second["run"]["id"].as_str().unwrap().to_string();
    api.call(Method::POST, &format!("/v1/runs/{second}/cancel"), &key, None).await;
    api.finished(&key, &second).await;

    // Connectors the plan leaves out are refused at the start.
    set_plan(json!({ "connectors": ["http"] })).await;
    let (status, refused) = api.start(&key, &two, json!({}), None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("plan_limit")));
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("connectors") && message.contains("`transform`"), "{message}");

    // Steps per month: one call is left, so a run starts, makes it, and its
    // next step fails naming the limit; then starts are refused.
    let (_, usage) = api.call(Method::GET, &usage_path, &key, None).await;
    let max = usage["steps"].as_i64().unwrap() + 1;
    set_plan(json!({ "steps_per_month": max })).await;
    let (status, started) = api.start(&key, &two, json!({}), None).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let run = api.finished(&key, started["run"]["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].to_string();
    assert!(error.contains("steps_per_month") && error.contains("fatal"), "{error}");
    let (status, refused) = api.start(&key, &two, json!({}), None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("plan_limit")));
    assert!(refused["error"]["message"].as_str().unwrap().contains("steps_per_month"), "{refused}");
    let (_, usage) = api.call(Method::GET, &usage_path, &key, None).await;
    assert_eq!((&usage["steps"], &usage["plan"]), (&json!(max), &json!({ "steps_per_month": max })), "{usage}");

    // Lifting the limit lets runs go again.
    set_plan(json!({})).await;
    let (status, started) = api.start(&key, &two, json!({}), None).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(api.finished(&key, started["run"]["id"].as_str().unwrap()).await["status"], "completed");

    // Bad plans and periods get a 4xx naming the place.
    for (bad, path) in [
        (json!({ "max_concurrent_runs": -1 }), "$.max_concurrent_runs"),
        (json!({ "steps_per_month": "many" }), "$.steps_per_month"),
        (json!({ "connectors": ["http", " "] }), "$.connectors[1]"),
        (json!({ "seats": 3 }), "$"),
    ] {
        let (status, answer) = api.call(Method::PUT, &plan_path, &api.admin, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(answer["error"]["path"].as_str().unwrap_or("$").starts_with(path), "{bad}: {answer}");
    }
    for bad in ["2026-13", "last-month", "2026-1"] {
        let (status, answer) = api.call(Method::GET, &format!("{usage_path}?period={bad}"), &key, None).await;
        assert_eq!((status, &answer["error"]["path"]), (StatusCode::BAD_REQUEST, &json!("period")), "{bad}");
    }
    let (status, _) = api.call(Method::GET, "/v1/tenants/no-such-tenant/usage", &api.admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_connector_action_is_called_directly_like_a_step(api: Api) {
    let tenant = unique("gateway");
    let key = api.tenant(&tenant, "operator").await;
    let invoke = |body: Value| {
        let (api, key) = (&api, &key);
        async move { api.call(Method::POST, "/v1/connectors/transform/invoke", key, Some(body)).await }
    };
    let (status, called) = invoke(json!({ "action": "double", "input": { "value": 21 } })).await;
    assert_eq!(status, StatusCode::OK, "{called}");
    assert_eq!((&called["status"], &called["output"]), (&json!("completed"), &json!({ "value": 42 })), "{called}");
    assert!(called["connector"].as_str().unwrap().starts_with("transform@"), "{called}");
    assert!(called["digest"].as_str().unwrap().starts_with("sha256:"), "{called}");
    assert!(called["call_id"].as_str().unwrap().starts_with("call-"), "{called}");

    // The connector's own failure is the call's outcome, with its kind.
    let (status, failed) =
        invoke(json!({ "action": "fail", "input": { "kind": "rate-limited", "message": "slow down", "retry_after_ms": 1500 } }))
            .await;
    assert_eq!(status, StatusCode::OK, "{failed}");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], json!({ "kind": "rate_limited", "message": "slow down", "retry_after_ms": 1500 }));

    // Calls that are not made: the input does not fit, no such action or connector.
    let (status, refused) = invoke(json!({ "action": "double", "input": { "value": "x" } })).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_input")));
    assert_eq!(refused["error"]["path"], "$.input", "{refused}");
    let (status, refused) = invoke(json!({ "action": "triple" })).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("unknown_action")));
    assert!(refused["error"]["message"].as_str().unwrap().contains("double"), "lists the actions: {refused}");
    let (status, _) = invoke(json!({ "action": "echo", "version": "0.0.0-none" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) =
        api.call(Method::POST, "/v1/connectors/no-such/invoke", &key, Some(json!({ "action": "echo" }))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, refused) = invoke(json!({ "action": "echo", "inputs": {} })).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")));

    // Each call made counts as a step; the plan applies as to a step.
    let usage_path = format!("/v1/tenants/{tenant}/usage");
    let (_, usage) = api.call(Method::GET, &usage_path, &key, None).await;
    assert_eq!((&usage["runs"], &usage["steps"]), (&json!(0), &json!(2)), "{usage}");
    let plan_path = format!("/v1/tenants/{tenant}/plan");
    api.call(Method::PUT, &plan_path, &api.admin, Some(json!({ "connectors": ["http"] }))).await;
    let (status, refused) = invoke(json!({ "action": "echo" })).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("plan_limit")));
    api.call(Method::PUT, &plan_path, &api.admin, Some(json!({ "steps_per_month": 2 }))).await;
    let (status, refused) = invoke(json!({ "action": "echo" })).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::FORBIDDEN, &json!("plan_limit")));
    assert!(refused["error"]["message"].as_str().unwrap().contains("steps_per_month"), "{refused}");

    // A viewer reads connectors but calls none.
    let path = format!("/v1/tenants/{tenant}/api-keys");
    let (_, viewer) = api.call(Method::POST, &path, &api.admin, Some(json!({ "name": "v", "role": "viewer" }))).await;
    let viewer = viewer["secret"].as_str().unwrap();
    let body = json!({ "action": "echo" });
    let (status, _) = api.call(Method::POST, "/v1/connectors/transform/invoke", viewer, Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn a_finished_run_is_retried_and_names_its_retry(api: Api) {
    let key = api.tenant(&unique("retries"), "developer").await;
    let hash = api.workflow(&key, two_calls()).await;
    let (_, started) = api.start(&key, &hash, json!({}), None).await;
    let first = api.finished(&key, started["run"]["id"].as_str().unwrap()).await;
    let first_id = first["id"].as_str().unwrap();
    let retry = |body: Option<Value>| {
        let (api, key) = (&api, &key);
        async move { api.call(Method::POST, &format!("/v1/runs/{first_id}/retry"), key, body).await }
    };

    // From `b`: `a`'s output is reused, `b` runs again.
    let (status, created) = retry(Some(json!({ "from": "b" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["retry_of"], first["id"], "{created}");
    let again = api.finished(&key, created["id"].as_str().unwrap()).await;
    assert_eq!((&again["status"], &again["output"]), (&json!("completed"), &first["output"]), "{again}");
    let path = format!("/v1/runs/{}/timeline", again["id"].as_str().unwrap());
    let (_, timeline) = api.call(Method::GET, &path, &key, None).await;
    let kinds: Vec<&str> =
        timeline["events"].as_array().unwrap().iter().filter_map(|e| e["event"]["type"].as_str()).collect();
    assert!(kinds.contains(&"step_reused"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "step_started").count(), 1, "only b ran: {kinds:?}");

    // Without `from`, only what did not complete runs again: here, nothing.
    let (status, refused) = retry(None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::CONFLICT, &json!("retry_refused")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("name a step"), "{refused}");

    let (status, refused) = retry(Some(json!({ "from": "zzz" }))).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::CONFLICT, &json!("retry_refused")), "{refused}");
    assert_eq!(refused["error"]["path"], "$.from");
    let (status, refused) = retry(Some(json!({ "form": "b" }))).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::BAD_REQUEST, &json!("invalid_request")));
    let waits = api.workflow(&key, greeter()).await;
    let (_, waiting) = api.start(&key, &waits, json!({ "name": "W" }), None).await;
    let path = format!("/v1/runs/{}/retry", waiting["run"]["id"].as_str().unwrap());
    let (status, refused) = api.call(Method::POST, &path, &key, None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::CONFLICT, &json!("run_not_finished")));
}

/// How many rows of `tenant` a table of the database at `url` holds, read
/// with plain SQL as the URL's user.
async fn rows_of(url: &str, table: &str, tenant: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(tenant).fetch_one(&mut conn).await.unwrap()
}

async fn a_tenant_moved_to_its_own_database_keeps_working(api: Api) {
    let tenant = unique("mover");
    let key = api.tenant(&tenant, "owner").await;
    let neighbour = api.tenant(&unique("neighbour"), "owner").await;
    let neighbours = api.workflow(&neighbour, two_calls()).await;
    let two = api.workflow(&key, two_calls()).await;
    let (_, first) = api.start(&key, &two, json!({}), Some("first")).await;
    let first = api.finished(&key, first["run"]["id"].as_str().unwrap()).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let waits = api.workflow(&key, greeter()).await;
    let brief = api.workflow(&key, napper("brief", "1900ms")).await;
    let naps = api.workflow(&key, napper("naps", "2s")).await;

    let shared = api._server.url().to_string();
    let dir = tempfile::tempdir().unwrap();
    let own = if shared.starts_with("sqlite") {
        weft_store::testing::sqlite_url(dir.path())
    } else {
        weft_store::testing::fresh_postgres().await
    };
    let path = format!("/v1/tenants/{tenant}/database");
    let to_own = Some(json!({ "url": own }));
    // Versions enough to take the copy several statements.
    let versions = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600) \
                    INSERT INTO workflows (tenant_id, hash, name, definition, created_at) \
                    SELECT $1, 'sha256:old' || i, 'old', '{}', $2 FROM n";
    as_owner(&shared, versions, &tenant, Some(0)).await;

    // A run its worker drives (through a sleep too short to park it) keeps
    // the tenant where it is.
    let (_, held) = api.start(&key, &brief, json!({}), None).await;
    let held = held["run"]["id"].as_str().unwrap().to_string();
    let (status, refused) = api.call(Method::PUT, &path, &api.admin, to_own.clone()).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::CONFLICT, &json!("tenant_busy")), "{refused}");
    assert_eq!(api.finished(&key, &held).await["status"], "completed");
    let usage_path = format!("/v1/tenants/{tenant}/usage");
    let timeline_path = format!("/v1/runs/{first_id}/timeline");
    let (_, timeline_before) = api.call(Method::GET, &timeline_path, &key, None).await;

    // Parked runs move as they are: one waits for a signal, one sleeps
    // until a time that comes while the tenant moves.
    let (_, waiting) = api.start(&key, &waits, json!({ "name": "W" }), None).await;
    let waiting = waiting["run"]["id"].as_str().unwrap().to_string();
    let (_, napping) = api.start(&key, &naps, json!({}), None).await;
    let napping = napping["run"]["id"].as_str().unwrap().to_string();
    api.parked(&key, &waiting).await;
    let (_, usage_before) = api.call(Method::GET, &usage_path, &key, None).await;
    let (status, moved) = api.call(Method::PUT, &path, &api.admin, to_own.clone()).await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!((&moved["database"], &moved["runs"], &moved["workflows"]), (&json!("own"), &json!(4), &json!(604)));
    assert_eq!(rows_of(&own, "workflows", &tenant).await, 604);
    assert_eq!(rows_of(&shared, "runs", &tenant).await, 0, "the shared database keeps none of its runs");
    assert_eq!(rows_of(&shared, "events", &tenant).await, 0);
    assert_eq!(rows_of(&own, "runs", &tenant).await, 4);
    // They finish where they moved to, each step once.
    let napped = api.finished(&key, &napping).await;
    assert_eq!(napped["status"], "completed", "{napped}");
    api.call(Method::POST, &format!("/v1/runs/{waiting}/signal"), &key, Some(json!({ "name": "go" }))).await;
    assert_eq!(api.finished(&key, &waiting).await["status"], "completed");
    for run in [&napping, &waiting] {
        let (_, timeline) = api.call(Method::GET, &format!("/v1/runs/{run}/timeline"), &key, None).await;
        let events = timeline["events"].as_array().unwrap();
        let done = events.iter().filter(|e| e["event"]["type"] == "step_completed" && e["event"]["step"] == "done");
        assert_eq!(done.count(), 1, "{events:#?}");
    }
    assert_eq!(rows_of(&shared, "runs", &tenant).await, 0);

    // Everything reads as before, from its database; its key still works.
    let (_, run) = api.call(Method::GET, &format!("/v1/runs/{first_id}"), &key, None).await;
    assert_eq!((&run["status"], &run["output"]), (&first["status"], &first["output"]), "{run}");
    let (_, timeline) = api.call(Method::GET, &timeline_path, &key, None).await;
    assert_eq!(timeline["events"], timeline_before["events"], "the journal moved whole, times and all");
    // Usage moved too (the napping run may have taken its step since).
    let (_, usage) = api.call(Method::GET, &usage_path, &key, None).await;
    assert_eq!(usage["runs"], usage_before["runs"], "{usage}");
    assert!(usage["steps"].as_i64() >= usage_before["steps"].as_i64(), "{usage} {usage_before}");
    let (status, again) = api.start(&key, &two, json!({}), Some("first")).await;
    assert_eq!((status, &again["run"]["id"]), (StatusCode::OK, &json!(first_id)), "the idempotency key moved too");

    // New runs start and finish there, a parked one woken by its signal too.
    let (_, fresh) = api.start(&key, &two, json!({}), None).await;
    assert_eq!(api.finished(&key, fresh["run"]["id"].as_str().unwrap()).await["status"], "completed");
    let (_, parked) = api.start(&key, &waits, json!({ "name": "P" }), None).await;
    let parked = parked["run"]["id"].as_str().unwrap().to_string();
    api.call(Method::POST, &format!("/v1/runs/{parked}/signal"), &key, Some(json!({ "name": "go" }))).await;
    assert_eq!(api.finished(&key, &parked).await["status"], "completed");
    assert_eq!(rows_of(&own, "runs", &tenant).await, 6);
    assert_eq!(rows_of(&shared, "runs", &tenant).await, 0);
    let (_, listed) = api.call(Method::GET, "/v1/runs", &key, None).await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 6, "{listed}");

    // Its neighbour in the shared database is untouched.
    let (_, theirs) = api.start(&neighbour, &neighbours, json!({}), None).await;
    assert_eq!(api.finished(&neighbour, theirs["run"]["id"].as_str().unwrap()).await["status"], "completed");
    let (status, _) = api.call(Method::GET, &format!("/v1/runs/{first_id}"), &neighbour, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Back to the shared database, whole, usage too.
    let (_, usage_before) = api.call(Method::GET, &usage_path, &key, None).await;
    let (status, moved) = api.call(Method::PUT, &path, &api.admin, Some(json!({ "url": null }))).await;
    assert_eq!((status, &moved["database"], &moved["runs"]), (StatusCode::OK, &json!("shared"), &json!(6)), "{moved}");
    assert_eq!(rows_of(&shared, "runs", &tenant).await, 6);
    let (_, run) = api.call(Method::GET, &format!("/v1/runs/{first_id}"), &key, None).await;
    assert_eq!(run["output"], first["output"]);
    let (_, usage) = api.call(Method::GET, &usage_path, &key, None).await;
    assert_eq!(usage, usage_before);

    // Only a super admin moves a tenant, to a database it can open.
    let (status, _) = api.call(Method::PUT, &path, &key, to_own.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.call(Method::PUT, &path, &neighbour, to_own.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's key learns nothing");
    let (status, refused) =
        api.call(Method::PUT, &path, &api.admin, Some(json!({ "url": "mysql://db.example/weft" }))).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("invalid_database")));
    let (status, _) = api.call(Method::PUT, "/v1/tenants/nobody/database", &api.admin, to_own).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Runs `sql` on the database at `url` as its owner, with the tenant as $1
/// and `at` as $2 (when given).
async fn as_owner(url: &str, sql: &str, tenant: &str, at: Option<i64>) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(tenant);
    let query = match at {
        Some(at) => query.bind(at),
        None => query,
    };
    query.execute(&mut conn).await.unwrap();
}

async fn a_move_whose_process_died_leaves_the_tenant_where_it_was(api: Api) {
    let tenant = unique("stranded");
    let key = api.tenant(&tenant, "owner").await;
    let two = api.workflow(&key, two_calls()).await;
    let (_, run) = api.start(&key, &two, json!({}), None).await;
    let run = api.finished(&key, run["run"]["id"].as_str().unwrap()).await;
    let run_path = format!("/v1/runs/{}", run["id"].as_str().unwrap());
    let shared = api._server.url().to_string();
    let mark = "UPDATE tenants SET moving_since = $2 WHERE id = $1";
    let past_routes = || tokio::time::sleep(weft_store::ROUTE_FRESH_FOR + Duration::from_millis(200));

    // A move that marked the tenant and is alive: its requests wait.
    as_owner(&shared, mark, &tenant, Some(weft_runtime::now_ms())).await;
    past_routes().await;
    let (status, refused) = api.call(Method::GET, &run_path, &key, None).await;
    assert_eq!((status, &refused["error"]["code"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("tenant_moving")));

    // Its process died: the mark is no longer renewed, and once it is older
    // than a live move's could be, the tenant works from where it was.
    let abandoned = weft_runtime::now_ms() - weft_store::MOVE_ABANDONED_AFTER.as_millis() as i64 - 1_000;
    as_owner(&shared, mark, &tenant, Some(abandoned)).await;
    past_routes().await;
    let (status, again) = api.call(Method::GET, &run_path, &key, None).await;
    assert_eq!((status, &again["output"]), (StatusCode::OK, &run["output"]), "{again}");
    let (status, second) = api.start(&key, &two, json!({}), None).await;
    assert_eq!(status, StatusCode::CREATED);
    api.finished(&key, second["run"]["id"].as_str().unwrap()).await;

    // A move that died after copying left rows in its target, which nothing
    // routes to: the next move there replaces them.
    let dir = tempfile::tempdir().unwrap();
    let own = if shared.starts_with("sqlite") {
        weft_store::testing::sqlite_url(dir.path())
    } else {
        weft_store::testing::fresh_postgres().await
    };
    weft_store::Store::connect(&own).await.unwrap().close().await;
    as_owner(&own, "INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, 0)", &tenant, None).await;
    let left = "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) VALUES ($1, 'sha256:left', 'left', '{}', $2)";
    as_owner(&own, left, &tenant, Some(0)).await;
    let path = format!("/v1/tenants/{tenant}/database");
    let (status, moved) = api.call(Method::PUT, &path, &api.admin, Some(json!({ "url": own }))).await;
    assert_eq!((status, &moved["workflows"], &moved["runs"]), (StatusCode::OK, &json!(1), &json!(2)), "{moved}");
    assert_eq!(rows_of(&own, "workflows", &tenant).await, 1, "what the dead move left is gone");
    let (status, again) = api.call(Method::GET, &run_path, &key, None).await;
    assert_eq!((status, &again["output"]), (StatusCode::OK, &run["output"]));
}

async fn a_client_waits_for_a_run_to_finish(api: Api) {
    let key = api.tenant(&unique("waiter"), "developer").await;
    let hash = api.workflow(&key, greeter()).await;
    let (_, started) = api.start(&key, &hash, json!({ "name": "W" }), None).await;
    let id = started["run"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/runs/{id}");

    // Nothing ends it: the wait runs out and the answer says so.
    let (status, run) = api.call(Method::GET, &format!("{path}?wait=1"), &key, None).await;
    assert_eq!((status, &run["status"]), (StatusCode::OK, &json!("running")), "{run}");

    // A signal while the client waits ends the run; the answer is its end.
    let signal = {
        let (router, key, id) = (api.router.clone(), key.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let body = json!({ "name": "go", "payload": "now" }).to_string();
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!("/v1/runs/{id}/signal"))
                .header("authorization", format!("Bearer {key}"))
                .body(Body::from(body))
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        })
    };
    // Asked for by a prefix of its id, as `runs show` may.
    let prefix = &id[..id.len() - 4];
    let (status, run) = api.call(Method::GET, &format!("/v1/runs/{prefix}?wait=30"), &key, None).await;
    assert_eq!(signal.await.unwrap(), StatusCode::ACCEPTED);
    assert_eq!(
        (status, &run["status"], &run["output"]),
        (StatusCode::OK, &json!("completed"), &json!({ "said": "now" }))
    );
    // A finished run answers at once.
    let (_, again) = api.call(Method::GET, &format!("{path}?wait=30"), &key, None).await;
    assert_eq!(again["status"], "completed");

    let other = api.tenant(&unique("other-waiter"), "developer").await;
    for (who, asked) in [(&key, "/v1/runs/run_nothing_like_it"), (&other, path.as_str())] {
        let (status, answer) = api.call(Method::GET, &format!("{asked}?wait=1"), who, None).await;
        assert_eq!((status, &answer["error"]["code"]), (StatusCode::NOT_FOUND, &json!("not_found")), "{answer}");
    }

    for bad in ["wait=31", "wait=-1", "wait=soon", "watch=1"] {
        let (status, answer) = api.call(Method::GET, &format!("{path}?{bad}"), &key, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
}

async fn child_workflows_by_path_come_with_their_parent(api: Api) {
    let key = api.tenant(&unique("parent"), "developer").await;
    let parent = json!({ "name": "parent", "steps": [
        { "id": "each", "foreach": "[1, 2]", "workflow": { "path": "./kids/child.json", "input": { "n": "{{ item }}" } } }
    ], "output": "{{ steps.each.output }}" });
    let child = json!({ "name": "child", "steps": [
        { "id": "d", "uses": "transform/double", "with": { "value": "{{ input.n }}" } },
        { "id": "g", "workflow": { "path": "../grandchild.yaml", "input": { "v": "{{ steps.d.output.value }}" } }, "needs": ["d"] }
    ], "output": "{{ steps.g.output }}" });
    let grandchild = "name: grandchild\nsteps:\n  - id: e\n    uses: transform/echo\n    with:\n      v: \"{{ input.v }}\"\noutput: \"{{ steps.e.output.v }}\"\n";
    let files = json!({ "kids/child.json": child.to_string(), "grandchild.yaml": grandchild });
    let source = serde_json::to_string_pretty(&parent).unwrap();
    let body = json!({ "source": source, "files": files });
    let (status, created) = api.call(Method::POST, "/v1/workflows", &key, Some(body.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let hash = created["workflow"]["hash"].as_str().unwrap();
    let (_, started) = api.start(&key, hash, json!({}), None).await;
    let run = api.finished(&key, started["run"]["id"].as_str().unwrap()).await;
    assert_eq!((&run["status"], &run["output"]), (&json!("completed"), &json!([2, 4])), "{run}");

    // A child that was not sent is a problem at the step that names it.
    let (status, refused) =
        api.call(Method::POST, "/v1/workflows/validate", &key, Some(json!({ "source": source, "files": {} }))).await;
    assert_eq!(status, StatusCode::OK, "{refused}");
    assert_eq!(refused["valid"], false);
    let problem = &refused["diagnostics"][0];
    assert_eq!(problem["path"], "$.steps[0].workflow.path", "{refused}");
    assert!(problem["message"].as_str().unwrap().contains("`kids/child.json` was not sent"), "{refused}");
}
