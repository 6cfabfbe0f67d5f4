//! The host as the engine uses it: built-in connectors, typed errors, and the
//! sandbox's limits against a misbehaving guest.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_host::{
    AddressPolicy, CallContext, Host, HostConfig, Limits, MemoryAudit, MemorySecrets, MemoryTokens, REDACTED, Reveal,
    guest_component,
};
use weft_workflows::ErrorKind;

fn ctx() -> CallContext {
    CallContext {
        tenant: "default".into(),
        run_id: "run-1".into(),
        step_id: "s".into(),
        attempt: 1,
        idempotency_key: "run-1:s:0".into(),
    }
}

async fn host_with_testkit(limits: Limits) -> (Host, String) {
    // Compiled components are cached across tests and runs.
    let cache_dir = Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("weft-cache"));
    let host = Host::new(HostConfig { cache_dir, limits }).unwrap();
    host.install_builtins().await.unwrap();
    let testkit = host.install(std::fs::read(guest_component("testkit")).unwrap()).await.unwrap();
    (host, testkit.digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_describe_and_run_actions() {
    let (host, _) = host_with_testkit(Limits::default()).await;
    let transform = host.resolve("default", "transform", None).expect("transform is built in");
    assert!(transform.manifest.actions.iter().any(|a| a.name == "double"));
    assert!(host.resolve("default", "http", None).is_some());
    let out = host.invoke(&transform.digest, &ctx(), "double", &json!({ "value": 21 }), None).await.unwrap();
    assert_eq!(out, json!({ "value": 42 }));
    let err = host
        .invoke(&transform.digest, &ctx(), "fail", &json!({ "kind": "rate-limited", "retry_after_ms": 250 }), None)
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.retry_after_ms), (ErrorKind::RateLimited, Some(250)));
    let err = host.invoke(&transform.digest, &ctx(), "nope", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_deadlines_and_memory_caps_are_named_errors() {
    let limits = Limits { timeout: Duration::from_millis(300), memory_bytes: 16 << 20, ..Limits::default() };
    let (host, testkit) = host_with_testkit(limits).await;
    let err = host.invoke(&testkit, &ctx(), "trap", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Trap, "{err}");
    assert!(err.message.contains("trapped"), "{err}");

    let started = Instant::now();
    let err = host.invoke(&testkit, &ctx(), "spin", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.contains("deadline of 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "an infinite loop is stopped");

    let err = host.invoke(&testkit, &ctx(), "hog", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Trap, "{err}");
    assert!(err.message.contains("memory limit of 16 MiB"), "{err}");

    // The host keeps serving after all that.
    let transform = host.resolve("default", "transform", None).unwrap();
    assert_eq!(host.invoke(&transform.digest, &ctx(), "echo", &json!([1]), None).await.unwrap(), json!([1]));
}

/// wasi:http resources live in host memory, outside the guest's memory
/// cap: a guest that creates them without end traps at the call's limit of
/// host resources, and header fields stop growing at their byte limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_resources_count_against_the_call() {
    let (host, testkit) = host_with_testkit(Limits::default()).await;
    let err = host.invoke(&testkit, &ctx(), "hoard", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Trap, "{err}");
    assert!(err.message.contains("exceeded its limit of 1000 host resources"), "{err}");

    // A header map stops at its byte limit.
    let input = json!({ "fields": 3, "header_bytes": 1 << 20 });
    let err = host.invoke(&testkit, &ctx(), "hoard", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Trap, "{err}");
    assert!(err.message.contains("exceeded its limit of 65536 bytes for one set of HTTP header fields"), "{err}");
    let input = json!({ "fields": 3, "header_bytes": 32 << 10 });
    let out = host.invoke(&testkit, &ctx(), "hoard", &input, None).await.unwrap();
    assert_eq!(out, json!({ "held": 3, "refused_appends": 0 }));

    let limits = Limits { max_host_resources: 50, ..Limits::default() };
    let (host, testkit) = host_with_testkit(limits).await;
    let out = host.invoke(&testkit, &ctx(), "hoard", &json!({ "fields": 40 }), None).await.unwrap();
    assert_eq!(out["held"], 40, "under the limit a call keeps its resources");
    let err = host.invoke(&testkit, &ctx(), "hoard", &json!({ "fields": 60 }), None).await.unwrap_err();
    assert!(err.message.contains("limit of 50 host resources"), "{err}");
    // And the host keeps serving.
    let transform = host.resolve("default", "transform", None).unwrap();
    assert_eq!(host.invoke(&transform.digest, &ctx(), "echo", &json!([1]), None).await.unwrap(), json!([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_inputs_are_refused() {
    let limits = Limits { max_input_bytes: 1024, ..Limits::default() };
    let (host, _) = host_with_testkit(limits).await;
    let transform = host.resolve("default", "transform", None).unwrap();
    let err = host.invoke(&transform.digest, &ctx(), "echo", &json!("x".repeat(2000)), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("request limit of 1024 bytes"), "{err}");
}

/// Answers one HTTP request with `status` and a JSON body, and returns the
/// request head it saw.
async fn one_shot_server(status: u16) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/items?x=1", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"ok":true}"#;
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nretry-after: 2\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&seen).into_owned()
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_the_idempotency_key_and_maps_statuses() {
    let (host, _) = host_with_testkit(Limits::default()).await;
    let http = host.resolve("default", "http", None).unwrap();
    let (url, server) = one_shot_server(200).await;
    let out = host
        .invoke(&http.digest, &ctx(), "request", &json!({ "url": url, "headers": { "x-a": "b" } }), None)
        .await
        .unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], json!({ "ok": true }));
    let head = server.await.unwrap().to_lowercase();
    assert!(head.starts_with("get /items?x=1 "), "{head}");
    assert!(head.contains("idempotency-key: run-1:s:0"), "{head}");
    assert!(head.contains("x-a: b"), "{head}");

    let (url, _server) = one_shot_server(429).await;
    let err = host.invoke(&http.digest, &ctx(), "request", &json!({ "url": url }), None).await.unwrap_err();
    assert_eq!((err.kind, err.retry_after_ms), (ErrorKind::RateLimited, Some(2000)));

    let err =
        host.invoke(&http.digest, &ctx(), "request", &json!({ "url": "http://127.0.0.1:1/" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient, "a refused connection is retryable: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtins_are_precompiled_and_other_components_compile_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig { cache_dir: Some(dir.path().to_path_buf()), limits: Limits::default() };
    let artifacts =
        |ext: &str| walk(dir.path()).into_iter().filter(|p| p.to_string_lossy().ends_with(ext)).collect::<Vec<_>>();
    let first = Host::new(config.clone()).unwrap();
    first.install_builtins().await.unwrap();
    let transform = first.resolve("default", "transform", None).unwrap();
    first.invoke(&transform.digest, &ctx(), "echo", &json!(1), None).await.unwrap();
    assert_eq!(artifacts(".cwasm"), Vec::<std::path::PathBuf>::new(), "no built-in was compiled at run time");
    assert_eq!(artifacts(".manifest.json").len(), weft_host::BUILTINS.len(), "each manifest is kept");

    let testkit = first.install(std::fs::read(guest_component("testkit")).unwrap()).await.unwrap();
    first.invoke(&testkit.digest, &ctx(), "big", &json!({"bytes": 1}), None).await.unwrap();
    let compiled = artifacts(".cwasm");
    assert_eq!(compiled.len(), 1, "a component that is not built in is compiled once: {compiled:?}");
    let stamp = std::fs::metadata(&compiled[0]).unwrap().modified().unwrap();
    drop(first);

    let second = Host::new(config).unwrap();
    second.install_builtins().await.unwrap();
    let testkit = second.install(std::fs::read(guest_component("testkit")).unwrap()).await.unwrap();
    second.invoke(&testkit.digest, &ctx(), "big", &json!({"bytes": 2}), None).await.unwrap();
    assert_eq!(artifacts(".cwasm"), compiled);
    assert_eq!(std::fs::metadata(&compiled[0]).unwrap().modified().unwrap(), stamp, "nothing was recompiled");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// A server on 127.0.0.1 that counts the connections it accepts and answers
/// each request head with 204, then reads the rest of the request.
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    answering_server(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n", true).await
}

/// A server that counts connections and gives `answer` as soon as it has a
/// request's head, before reading the body. With `drain`, it then reads and
/// drops whatever the client still sends until the client closes, as real
/// servers do; without it, it closes at once, and a client still sending is
/// reset.
async fn answering_server(answer: &'static [u8], drain: bool) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(answer).await;
                while drain && let Ok(1..) = socket.read(&mut buf).await {}
            });
        }
    });
    (port, accepted)
}

fn testkit_bytes() -> Vec<u8> {
    std::fs::read(guest_component("testkit")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_secrets_are_revealed_and_audited_and_others_refused() {
    let audit = MemoryAudit::default();
    let source = MemorySecrets::new().with("declared", "s3cret").with("other", "not for testkit");
    let host =
        Host::new(HostConfig::default()).unwrap().with_secrets(Arc::new(source)).with_audit(Arc::new(audit.clone()));
    let testkit = host.install(testkit_bytes()).await.unwrap().digest;

    let out = host.invoke(&testkit, &ctx(), "secret", &json!({ "name": "declared" }), None).await.unwrap();
    assert_eq!(out["length"], 6);
    let reveal = Reveal {
        tenant: "default".into(),
        run_id: "run-1".into(),
        step_id: "s".into(),
        connector: "testkit@0.1.0".into(),
        secret: "declared".into(),
    };
    assert_eq!(audit.reveals(), vec![reveal]);

    let err = host.invoke(&testkit, &ctx(), "secret", &json!({ "name": "other" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("secret refused: testkit@0.1.0 asked for `other`"), "{err}");
    assert_eq!(audit.reveals().len(), 1, "a refused secret is never revealed");

    let bare = Host::new(HostConfig::default()).unwrap();
    let testkit = bare.install(testkit_bytes()).await.unwrap().digest;
    let err = bare.invoke(&testkit, &ctx(), "secret", &json!({ "name": "declared" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("secret `declared` is not set"), "{err}");
}

/// A tracing writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A connector that reveals a secret and then echoes it (in its output, in
/// an error, in its log, encoded or not) gives nothing away: every form of
/// the value is redacted before the engine sees the result.
#[tokio::test]
async fn a_revealed_secret_never_leaves_the_call() {
    let secret = "tok_9f8e7d6c/5b4a+3210 x";
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("connector.log=trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let source = MemorySecrets::new().with("declared", secret);
    let host = Host::new(HostConfig::default()).unwrap().with_secrets(Arc::new(source));
    let testkit = host.install(testkit_bytes()).await.unwrap().digest;

    let out = host.invoke(&testkit, &ctx(), "leak", &json!({}), None).await.unwrap();
    assert_eq!(
        out,
        json!({ "raw": REDACTED, "base64": REDACTED, "hex": REDACTED, "percent": REDACTED,
                "header": format!("Authorization: Bearer {REDACTED}") })
    );
    let kept = host.invoke_logged(&testkit, &ctx(), "leak", &json!({}), None).await.logs;
    let kept: Vec<String> = kept.lines.iter().map(|line| format!("{} {}", line.level, line.message)).collect();
    assert_eq!(kept, ["info the secret is [redacted]"], "the lines kept with the result are redacted too");
    let err = host.invoke(&testkit, &ctx(), "leak", &json!({ "fail": true }), None).await.unwrap_err();
    assert!(err.message.starts_with("upstream echoed the request:"), "{err}");
    assert!(err.message.contains(REDACTED), "{err}");
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("the secret is [redacted]"), "{logged}");
    for text in [out.to_string(), err.message.clone(), logged] {
        for leak in [secret, "tok_9f8e7d6c", "dG9rXzlmOGU3ZDZjLzViNGErMzIxMCB4", "746f6b5f"] {
            assert!(!text.contains(leak), "`{leak}` leaked in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_first_log_lines_come_back_with_its_result_whether_it_succeeds_or_fails() {
    let (host, testkit) = host_with_testkit(Limits::default()).await;
    let call = host.invoke_logged(&testkit, &ctx(), "chatter", &json!({ "lines": 3 }), None).await;
    assert_eq!(call.result.unwrap(), json!({ "logged": 3 }));
    let lines: Vec<(&str, &str)> = call.logs.lines.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(lines, [("info", "line 0"), ("warn", "line 1"), ("error", "line 2")]);
    assert_eq!(call.logs.dropped, 0);

    let call = host.invoke_logged(&testkit, &ctx(), "chatter", &json!({ "lines": 1200, "fail": true }), None).await;
    assert_eq!(call.result.unwrap_err().message, "failed after logging");
    assert_eq!(call.logs.lines.len(), weft_host::MAX_KEPT_LINES);
    assert_eq!(call.logs.lines.last().unwrap().message, format!("line {}", weft_host::MAX_KEPT_LINES - 1));
    assert_eq!(call.logs.dropped, 1200 - weft_host::MAX_KEPT_LINES, "every line not kept is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_declared_and_come_from_the_hosts_source() {
    let host = Host::new(HostConfig::default()).unwrap();
    let testkit = host.install(testkit_bytes()).await.unwrap().digest;
    let err = host.invoke(&testkit, &ctx(), "token", &json!({ "name": "github" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("OAuth is not configured"), "{err}");
    let err = host.invoke(&testkit, &ctx(), "token", &json!({ "name": "gitlab" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("OAuth refused: testkit@0.1.0 asked for `gitlab`"), "{err}");

    // A token source gives declared providers their token, which never
    // comes back out in an output.
    let host = host.with_tokens(Arc::new(MemoryTokens::new().with("github", "gho_given").with("gitlab", "glpat")));
    let out = host.invoke(&testkit, &ctx(), "token", &json!({ "name": "github" }), None).await.unwrap();
    assert_eq!(out, json!({ "token": REDACTED }));
    let err = host.invoke(&testkit, &ctx(), "token", &json!({ "name": "gitlab" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "an undeclared provider stays refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_outside_the_manifest_is_refused_before_any_connection() {
    let (port, accepted) = counting_server().await;
    let host = Host::new(HostConfig::default()).unwrap();
    let testkit = host.install(testkit_bytes()).await.unwrap().digest;

    let refused = json!({ "url": format!("http://127.0.0.1:{port}/") });
    let err = host.invoke(&testkit, &ctx(), "fetch", &refused, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(
        err.message.contains(
            "egress refused: testkit@0.1.0 may not connect to `127.0.0.1`; its manifest allows only localhost"
        ),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the refused request opened a connection");

    let allowed = json!({ "url": format!("http://localhost:{port}/") });
    let out = host.invoke(&testkit, &ctx(), "fetch", &allowed, None).await.unwrap();
    assert_eq!(out["status"], 204);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// The address a host name resolves to is checked when the connection
/// opens: link-local and metadata addresses are refused whatever the
/// manifest allows, and with `PublicOnly` so is every private or loopback
/// address, reached by name (`localhost`) or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_checks_the_address_a_name_resolves_to() {
    let (host, _) = host_with_testkit(Limits::default()).await;
    let http = host.resolve("default", "http", None).unwrap();
    for url in
        ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/"]
    {
        let input = json!({ "url": url });
        let err = host.invoke(&http.digest, &ctx(), "request", &input, None).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Fatal, "{url}: {err}");
        assert!(err.message.contains("egress refused:"), "{url}: {err}");
        assert!(err.message.contains("address policy does not let connectors reach"), "{url}: {err}");
    }

    // A name is checked on what it resolves to, and the connection goes
    // to the address that was checked.
    let (port, accepted) = counting_server().await;
    let host = Host::new(HostConfig::default()).unwrap();
    let testkit = host.install(testkit_bytes()).await.unwrap().digest;
    let by_name = json!({ "url": format!("http://localhost:{port}/") });
    let out = host.invoke(&testkit, &ctx(), "fetch", &by_name, None).await.unwrap();
    assert_eq!(out["status"], 204, "loopback is allowed by default, for local runs");
    let strict = Host::new(HostConfig::default()).unwrap().with_address_policy(AddressPolicy::PublicOnly);
    let testkit = strict.install(testkit_bytes()).await.unwrap().digest;
    let err = strict.invoke(&testkit, &ctx(), "fetch", &by_name, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("`localhost` (asked for by testkit@0.1.0) resolves to"), "{err}");
    assert!(err.message.contains("a loopback address"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the refused request opened no connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_outside_the_tenants_policy_is_refused_before_any_connection() {
    let (port, accepted) = counting_server().await;
    // `http` may call any host; tenant `acme` may reach only its own.
    let host = Host::new(HostConfig::default())
        .unwrap()
        .with_egress_policy("acme", &["api.acme.example", "*.internal.acme.example"])
        .with_egress_policy("lab", &["localhost"]);
    host.install_builtins().await.unwrap();
    let http = host.resolve("default", "http", None).unwrap().digest;
    let request = json!({ "url": format!("http://localhost:{port}/") });
    let as_tenant = |tenant: &str| CallContext { tenant: tenant.into(), ..ctx() };

    let err = host.invoke(&http, &as_tenant("acme"), "request", &request, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(
        err.message.contains(
            "egress refused: tenant `acme`'s policy does not allow `localhost` (asked for by http@0.1.0); \
             it allows only api.acme.example, *.internal.acme.example"
        ),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the refused request opened a connection");

    // The same call for a tenant whose policy names the host, or that has no policy, goes out.
    for tenant in ["lab", "default"] {
        let out = host.invoke(&http, &as_tenant(tenant), "request", &request, None).await.unwrap();
        assert_eq!(out["status"], 204, "{tenant}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_installed_for_one_tenant_is_invisible_to_another() {
    let host = Host::new(HostConfig::default()).unwrap();
    host.install_builtins().await.unwrap();
    let testkit = host.install_for("acme", testkit_bytes()).await.unwrap();
    let as_tenant = |tenant: &str| CallContext { tenant: tenant.into(), ..ctx() };

    // acme resolves, lists and calls it, next to the built-ins.
    assert_eq!(host.resolve("acme", "testkit", None).map(|c| c.digest), Some(testkit.digest.clone()));
    assert!(host.connectors("acme").iter().any(|c| c.digest == testkit.digest));
    assert!(host.is_installed("acme", &testkit.digest));
    host.invoke(&testkit.digest, &as_tenant("acme"), "snoop", &json!({}), None).await.unwrap();

    // Another tenant sees the built-ins only, and cannot call it by digest.
    assert!(host.resolve("lab", "testkit", None).is_none());
    assert!(host.resolve("lab", "transform", None).is_some());
    assert!(!host.connectors("lab").iter().any(|c| c.digest == testkit.digest));
    assert!(!host.is_installed("lab", &testkit.digest));
    let err = host.invoke(&testkit.digest, &as_tenant("lab"), "snoop", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("is installed for tenant `lab`"), "{err}");

    // Installing the same bytes for lab too shares the compiled component.
    host.install_for("lab", testkit_bytes()).await.unwrap();
    assert!(host.is_installed("lab", &testkit.digest));
    assert!(host.resolve("other", "testkit", None).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_finds_no_files_and_no_environment() {
    let host = Host::new(HostConfig::default()).unwrap();
    let testkit = host.install(testkit_bytes()).await.unwrap().digest;
    let out = host.invoke(&testkit, &ctx(), "snoop", &json!({}), None).await.unwrap();
    assert_eq!(out["env"], 0, "{out}");
    assert_eq!(out["readable"], json!([]), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_output_is_capped() {
    let limits = Limits { max_output_bytes: 1024, ..Limits::default() };
    let (host, testkit) = host_with_testkit(limits).await;
    let err = host.invoke(&testkit, &ctx(), "big", &json!({ "bytes": 4096 }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("over the output limit of 1024 bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_body_is_refused_before_it_is_sent() {
    let (port, accepted) = counting_server().await;
    let limits = Limits { max_request_body_bytes: 1024, ..Limits::default() };
    let (host, testkit) = host_with_testkit(limits).await;
    let url = format!("http://localhost:{port}/upload");

    let err = host.invoke(&testkit, &ctx(), "upload", &json!({ "url": url, "bytes": 4096 }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(
        err.message.contains("request body refused: testkit@0.1.0 sent more than the limit of 1024 bytes"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the oversized request opened a connection");

    let out = host.invoke(&testkit, &ctx(), "upload", &json!({ "url": url, "bytes": 512 }), None).await.unwrap();
    assert_eq!(out["status"], 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_before_reading_the_body_gets_its_answer_through() {
    let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (host, testkit) = host_with_testkit(Limits::default()).await;

    // A server that reads the rest of the body after answering.
    let (port, accepted) = answering_server(answer, true).await;
    let url = format!("http://localhost:{port}/upload");
    for bytes in [512, 8 << 20] {
        let out = host.invoke(&testkit, &ctx(), "upload", &json!({ "url": url, "bytes": bytes }), None).await;
        assert_eq!(out.unwrap()["status"], 413, "{bytes} bytes");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // A server that closes at once resets a client that is still sending:
    // the step gets a retryable error that says what happened.
    let (port, _) = answering_server(answer, false).await;
    let url = format!("http://localhost:{port}/upload");
    match host.invoke(&testkit, &ctx(), "upload", &json!({ "url": url, "bytes": 8 << 20 }), None).await {
        // The answer can win the race against the reset.
        Ok(out) => assert_eq!(out["status"], 413),
        Err(err) => {
            assert_eq!(err.kind, ErrorKind::Transient, "{err}");
            assert!(err.message.contains("closed the connection before it answered"), "{err}");
        }
    }
}
