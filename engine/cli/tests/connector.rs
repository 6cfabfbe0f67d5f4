//! `weft connector new|build|inspect|test`, end to end with cargo: what a
//! connector author does in their first minutes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::service::{Service, bootstrap_key, http, tenant};
use common::{Backend, Workspace, text};
use serde_json::{Value, json};

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// One target directory for every connector these tests build, so the SDK
/// and its dependencies compile once.
fn target_dir() -> PathBuf {
    repo().join("target/connector-tests")
}

fn build(ws: &Workspace, crate_dir: &Path) -> PathBuf {
    let out = ws
        .weft()
        .args(["connector", "build", "--path", crate_dir.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "weft connector build failed:\n{}", text(&out.stderr));
    let wasm = PathBuf::from(text(&out.stdout).trim());
    assert!(wasm.is_file(), "build printed {wasm:?}, which is not a file");
    wasm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connector_builds_inspects_answers_and_runs_in_a_workflow() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // `new` from an unrelated directory, finding this checkout's SDK by default.
    let out = ws.run(&["connector", "new", "demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let crate_dir = ws.dir.path().join("demo");
    assert!(crate_dir.join("src/lib.rs").is_file());

    let again = ws.run(&["connector", "new", "demo"]);
    assert_eq!(again.status.code(), Some(2), "a second `new` must not overwrite the crate");
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    let bad_name = ws.run(&["connector", "new", "Bad_Name"]);
    assert_eq!(bad_name.status.code(), Some(2));
    assert!(text(&bad_name.stderr).contains("not a valid connector name"), "{}", text(&bad_name.stderr));

    let wasm = build(&ws, &crate_dir);
    let wasm_arg = wasm.to_str().unwrap();

    let out = ws.run(&["connector", "inspect", wasm_arg, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = &inspected["manifest"];
    assert_eq!(manifest["name"], "demo");
    assert_eq!(manifest["version"], "0.1.0");
    assert!(inspected["digest"].as_str().unwrap().starts_with("sha256:"));
    let greet = &manifest["actions"][0];
    assert_eq!(greet["name"], "greet");
    assert_eq!(greet["idempotent"], true);
    assert_eq!(greet["input_schema"]["required"], json!(["name"]));
    assert_eq!(greet["input_schema"]["additionalProperties"], false);
    assert_eq!(greet["output_schema"]["properties"]["message"]["type"], "string");

    let human = text(&ws.run(&["connector", "inspect", wasm_arg]).stdout);
    for expected in ["demo@0.1.0", "secrets: none", "egress: none", "greet [idempotent]", "input schema:"] {
        assert!(human.contains(expected), "inspect output lacks {expected:?}:\n{human}");
    }

    let out = ws.run(&["connector", "test", wasm_arg, "greet", "--input", r#"{"name": "Ada", "excitement": 2}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["message"], "Hello, Ada!!");

    let out = ws.run(&["connector", "test", wasm_arg, "greet", "--input", r#"{"name": "Ada", "mood": 1}"#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid_input: input.mood: unknown field `mood`"), "{}", text(&out.stderr));

    // A workflow uses the new connector.
    let connectors = ws.dir.path().join("connectors");
    std::fs::create_dir_all(&connectors).unwrap();
    std::fs::copy(&wasm, connectors.join("demo.wasm")).unwrap();
    let workflow = ws.write(
        "uses-demo.json",
        &json!({ "name": "uses-demo", "steps": [
            { "id": "hi", "uses": "demo/greet", "with": { "name": "{{ input.who }}" } }
        ], "output": "{{ steps.hi.output }}" })
        .to_string(),
    );
    let out = ws
        .weft()
        .args(["run", workflow.to_str().unwrap(), "--json", "--input", r#"{"who": "Grace"}"#])
        .env("WEFT_CONNECTORS_DIR", &connectors)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"]["message"], "Hello, Grace!");
    let run_id = outcome["run_id"].as_str().unwrap();
    assert_eq!(outcome["output"]["idempotency_key"], format!("{run_id}:hi:0"), "the connector sees the step's key");

    // Installed into the database, the connector needs no --connectors-dir.
    let out = ws.run(&["connector", "install", wasm_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("installed demo@0.1.0 (sha256:"), "{}", text(&out.stderr));
    let out = ws.run(&["connector", "install", wasm_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is already installed"), "{}", text(&out.stderr));
    let out = ws.run(&["run", workflow.to_str().unwrap(), "--json", "--input", r#"{"who": "Alan"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"]["message"], "Hello, Alan!");
    let listed: Value = serde_json::from_slice(&ws.run(&["connector", "list", "--json"]).stdout).unwrap();
    let sources: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["source"].as_str().unwrap().to_string()))
        .collect();
    assert!(sources.contains(&("demo".into(), "installed".into())), "{sources:?}");
    assert!(sources.contains(&("http".into(), "built-in".into())), "{sources:?}");

    // Through a server: installed for the key's tenant only, and it runs there.
    let server_ws = Workspace::new(Backend::Sqlite).await;
    let server = Service::start(&server_ws, &["server", "--listen", "127.0.0.1:0"]);
    let address = server.address().await;
    let admin = bootstrap_key(&server).await;
    let acme = tenant(&address, &admin, "acme").await;
    let other = tenant(&address, &admin, "other").await;
    let remote = |key: &str, args: &[&str]| {
        let server = format!("http://{address}");
        ws.weft().env("WEFT_SERVER", server).env("WEFT_API_KEY", key).args(args).output().unwrap()
    };
    let out = remote(&acme, &["connector", "install", wasm_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("installed demo@0.1.0 (sha256:"), "{}", text(&out.stderr));
    let out = remote(&acme, &["connector", "install", wasm_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is already installed"), "{}", text(&out.stderr));
    let out = remote(&acme, &["run", workflow.to_str().unwrap(), "--json", "--input", r#"{"who": "Edsger"}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["output"]["message"], "Hello, Edsger!");
    let (status, answer) = http(&address, "GET", "/v1/connectors/demo", Some(&other), None).await;
    assert_eq!(status, 404, "another tenant sees it: {answer}");
    let out = remote(&other, &["run", workflow.to_str().unwrap(), "--input", r#"{"who": "Ada"}"#]);
    assert_eq!(out.status.code(), Some(2), "another tenant runs it: {}", text(&out.stderr));
    let out = remote(&acme, &["connector", "install", workflow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a WebAssembly component"), "{}", text(&out.stderr));
    assert!(!server.stderr().contains(r#""status":500"#), "{}", server.stderr());
    drop(server);

    // Another component under the same name@version is refused.
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap().replace("Greets people", "Greets people differently");
    let source = source.replacen(
        ".idempotent())",
        ".idempotent())\n            .action(Action::new(\"wave\", \"Wave at someone.\", greet))",
        1,
    );
    std::fs::write(&lib, source).unwrap();
    let changed = build(&ws, &crate_dir);
    let out = ws.run(&["connector", "install", changed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("demo@0.1.0 is already installed with digest"), "{}", text(&out.stderr));

    // The rebuild in --connectors-dir, under the installed build's
    // name@version, serves: checking and running resolve it every time
    // (several tries, since a random choice would pass some of them), and
    // `connector list` says which build serves.
    std::fs::copy(&changed, connectors.join("demo.wasm")).unwrap();
    let waves = ws.write(
        "waves.json",
        &json!({ "name": "waves", "steps": [{ "id": "w", "uses": "demo/wave", "with": { "name": "Ada" } }],
                 "output": "{{ steps.w.output.message }}" })
        .to_string(),
    );
    let with_dir = |args: &[&str]| ws.weft().args(args).env("WEFT_CONNECTORS_DIR", &connectors).output().unwrap();
    for _ in 0..10 {
        let out = with_dir(&["validate", waves.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "validate picked the installed build: {}", text(&out.stderr));
    }
    for _ in 0..3 {
        let out = with_dir(&["run", waves.to_str().unwrap(), "--json"]);
        assert_eq!(out.status.code(), Some(0), "run picked the installed build: {}", text(&out.stderr));
    }
    let listed: Value = serde_json::from_slice(&with_dir(&["connector", "list", "--json"]).stdout).unwrap();
    let demos: Vec<(String, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "demo")
        .map(|c| (c["source"].as_str().unwrap().to_string(), c["serves"].as_bool().unwrap()))
        .collect();
    assert_eq!(demos, [("installed".to_string(), false), ("connectors-dir".to_string(), true)]);
    let human = text(&with_dir(&["connector", "list"]).stdout);
    assert!(human.contains("(not serving: sha256:"), "{human}");

    // Validation knows the connector's schema.
    let broken = ws.write(
        "broken.json",
        &json!({ "name": "b", "steps": [{ "id": "hi", "uses": "demo/greet", "with": { "nme": "x" } }] }).to_string(),
    );
    let out = ws
        .weft()
        .args(["validate", broken.to_str().unwrap()])
        .env("WEFT_CONNECTORS_DIR", &connectors)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_example_is_the_template_and_its_workflow_runs() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let fresh = ws.dir.path().join("hello");
    let sdk = repo().join("sdk");
    let out = ws.run(&["connector", "new", "hello", "--sdk-path", sdk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let example = repo().join("examples/connector-hello");
    for file in ["Cargo.toml", "src/lib.rs", ".cargo/config.toml", ".gitignore"] {
        let generated = std::fs::read_to_string(fresh.join(file)).unwrap().replace(sdk.to_str().unwrap(), "../../sdk");
        let committed = std::fs::read_to_string(example.join(file)).unwrap();
        assert_eq!(
            generated, committed,
            "examples/connector-hello/{file} differs from the template; regenerate it with \
             `weft connector new hello --dir examples/connector-hello` (sdk path ../../sdk)"
        );
    }

    let wasm = build(&ws, &example);
    let connectors = wasm.parent().unwrap().to_path_buf();
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .current_dir(ws.dir.path())
        .env("WEFT_DB", &ws.db)
        .env("WEFT_CACHE_DIR", ws.dir.path().join("cache"))
        .args(["run", example.join("workflow.json").to_str().unwrap(), "--input", r#"{"name": "Ada"}"#])
        .args(["--connectors-dir", connectors.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output["message"], "Hello, Ada!!");
}

#[tokio::test]
async fn every_catalog_connector_has_a_complete_manifest() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // Every built-in beyond the two basic ones is a catalog connector.
    let catalog =
        weft_host::BUILTINS.iter().map(|(name, _)| *name).filter(|name| !["transform", "http"].contains(name));
    assert!(catalog.clone().count() >= 10, "the catalog has at least ten connectors");
    for name in catalog {
        let out = ws.run(&["connector", "inspect", name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let manifest = serde_json::from_slice::<Value>(&out.stdout).unwrap()["manifest"].clone();
        assert_eq!(manifest["name"], name);
        assert!(!manifest["description"].as_str().unwrap().is_empty(), "{name}");
        assert!(!manifest["egress"].as_array().unwrap().is_empty(), "{name} declares no egress");
        // A WordPress site is the user's own host, so only the tenant's policy can name it.
        if name != "wordpress" {
            assert!(!manifest["egress"].as_array().unwrap().contains(&json!("*")), "{name} may call any host");
        }
        let needs = manifest["secrets"].as_array().unwrap().len() + manifest["oauth"].as_array().unwrap().len();
        assert!(needs > 0, "{name} declares neither secrets nor OAuth");
        for action in manifest["actions"].as_array().unwrap() {
            for schema in ["input_schema", "output_schema"] {
                assert_eq!(action[schema]["type"], "object", "{name}.{} {schema}", action["name"]);
            }
            assert!(!action["description"].as_str().unwrap().is_empty());
        }
    }
    let out = ws.run(&["connector", "inspect", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_named_like_the_builtins_builds_under_its_own_name() {
    let ws = Workspace::new(Backend::Sqlite).await;
    // The built-ins' own style of name is accepted.
    let out = ws.run(&["connector", "new", "sheets_v2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cargo_toml = std::fs::read_to_string(ws.dir.path().join("sheets_v2/Cargo.toml")).unwrap();
    assert!(cargo_toml.contains(r#"name = "sheets_v2""#), "{cargo_toml}");
    for bad in ["sheets_", "_sheets", "9lives", "Sheets"] {
        let out = ws.run(&["connector", "new", bad]);
        assert_eq!(out.status.code(), Some(2), "`{bad}` was accepted");
        assert!(text(&out.stderr).contains("`-` and `_`"), "{}", text(&out.stderr));
    }

    // Cargo names the file of `my-api` my_api.wasm; the build is also
    // printed and kept under the connector's own name.
    let out = ws.run(&["connector", "new", "my-api"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let wasm = build(&ws, &ws.dir.path().join("my-api"));
    assert_eq!(wasm.file_name().unwrap(), "my-api.wasm", "{wasm:?}");
    let out = ws.run(&["connector", "inspect", wasm.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["manifest"]["name"], "my-api");
}

/// A stand-in for GitHub's REST API: it records the `Authorization` header
/// and path of each request and answers as GitHub does when an issue is
/// created.
async fn github_stand_in() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    // The handler takes the body, so that the answer is sent after the whole
    // request is read, as GitHub does: answering first and closing the
    // connection races the connector's body under load.
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, _body: axum::body::Bytes| {
        let log = log.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            log.lock().unwrap().push((uri.path().to_string(), auth));
            let body = json!({ "number": 7, "html_url": "https://github.com/octo/demo/issues/7", "state": "open" });
            (StatusCode::CREATED, axum::Json(body))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth_connector_is_tried_against_a_stand_in_with_a_token_given_by_hand() {
    let ws = Workspace::new(Backend::Sqlite).await;
    let (address, seen) = github_stand_in().await;
    let github = weft_host::guest_component("github");
    let route = format!("api.github.com={address}");
    let test = |extra: &[&str]| {
        let mut args = vec!["connector", "test", github.to_str().unwrap(), "create_issue"];
        args.extend(["--input", r#"{"repo": "octo/demo", "title": "Hello"}"#, "--route", &route]);
        args.extend(extra);
        ws.run(&args)
    };

    // Without a token the connector is refused, and told how to give one.
    let out = tokio::task::block_in_place(|| test(&[]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--oauth-token github=TOKEN"), "{}", text(&out.stderr));
    assert!(seen.lock().unwrap().is_empty(), "no request leaves without a token");

    let out = tokio::task::block_in_place(|| test(&["--oauth-token", "github=gho_by_hand"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let issue: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(issue["number"], 7);
    assert_eq!(
        *seen.lock().unwrap(),
        [("/repos/octo/demo/issues".to_string(), "Bearer gho_by_hand".to_string())],
        "the routed request carries the token"
    );

    // A provider other than the manifest's gives nothing; bad pairs are exit 2.
    let out = tokio::task::block_in_place(|| test(&["--oauth-token", "gitlab=glpat"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    for (flag, value) in [("--oauth-token", "github"), ("--route", "=127.0.0.1:1"), ("--route", "api.github.com=:::")] {
        let out = tokio::task::block_in_place(|| test(&[flag, value]));
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(flag), "{}", text(&out.stderr));
    }
}
