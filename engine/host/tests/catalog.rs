//! The catalog connectors against local stand-ins that speak each provider's
//! documented request and response shapes. Each test checks what the
//! connector sends (method, path, auth, headers, idempotency key, body) and
//! how it reads answers and errors.

mod standin;

use serde_json::json;
use standin::{Reply, StandIn, ctx};
use weft_host::MemorySecrets;
use weft_workflows::ErrorKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_posts_messages_and_lists_channels_page_by_page() {
    let stand_in = StandIn::start(|req| match req.path() {
        "/api/chat.postMessage" if req.json()["channel"] == "#nowhere" => {
            Reply::json(200, json!({ "ok": false, "error": "channel_not_found" }))
        }
        "/api/chat.postMessage" => Reply::json(
            200,
            json!({ "ok": true, "channel": "C024BE91L", "ts": "1503435956.000247",
                    "message": { "text": req.json()["text"], "type": "message" } }),
        ),
        "/api/conversations.list" => {
            let first = !req.query().iter().any(|(k, _)| k == "cursor");
            let (channels, next) = if first {
                (
                    json!([{ "id": "C1", "name": "general", "is_private": false, "is_archived": false }]),
                    "dGVhbTpDMDYxRkE1UEI=",
                )
            } else {
                (json!([{ "id": "C2", "name": "random", "is_private": false, "is_archived": false }]), "")
            };
            Reply::json(200, json!({ "ok": true, "channels": channels, "response_metadata": { "next_cursor": next } }))
        }
        _ => Reply::json(404, json!({ "ok": false, "error": "unknown_method" })),
    })
    .await;
    let host = stand_in.host(&["slack.com"], MemorySecrets::new().with("bot_token", "xoxb-test")).await;
    let slack = host.resolve("slack", None).unwrap();
    let manifest = &slack.manifest;
    assert_eq!(
        (manifest.secrets.clone(), manifest.egress.clone()),
        (vec!["bot_token".into()], vec!["slack.com".into()])
    );
    assert_eq!(manifest.oauth[0].provider, "slack");

    let out = host
        .invoke(
            &slack.digest,
            &ctx("post"),
            "post_message",
            &json!({ "channel": "#general", "text": "Deployed" }),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out, json!({ "channel": "C024BE91L", "ts": "1503435956.000247" }));
    let post = &stand_in.requests()[0];
    assert_eq!((post.method.as_str(), post.header("authorization")), ("POST", Some("Bearer xoxb-test")));
    assert_eq!(post.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(post.header("host"), Some("slack.com"));
    assert_eq!(post.json(), json!({ "channel": "#general", "text": "Deployed" }));

    let err = host
        .invoke(&slack.digest, &ctx("post"), "post_message", &json!({ "channel": "#nowhere", "text": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("chat.postMessage failed: channel_not_found"), "{err}");

    let out = host.invoke(&slack.digest, &ctx("list"), "list_channels", &json!({}), None).await.unwrap();
    let names: Vec<&str> = out["channels"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["general", "random"]);
    let pages: Vec<_> = stand_in.requests().into_iter().filter(|r| r.path() == "/api/conversations.list").collect();
    assert_eq!(pages.len(), 2);
    assert!(pages[0].query().contains(&("types".into(), "public_channel".into())), "{:?}", pages[0].query());
    assert!(pages[1].query().contains(&("cursor".into(), "dGVhbTpDMDYxRkE1UEI=".into())), "{:?}", pages[1].query());

    // Without the secret (and with no OAuth configured), the error says both.
    let bare = stand_in.host(&["slack.com"], MemorySecrets::new()).await;
    let err = bare
        .invoke(&slack.digest, &ctx("post"), "post_message", &json!({ "channel": "#general", "text": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("`bot_token` is not set") && err.message.contains("OAuth is not configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_opens_issues_and_comments_with_its_api_headers() {
    let stand_in = StandIn::start(|req| match (req.method.as_str(), req.path()) {
        ("POST", "/repos/octo/hello/issues") => Reply::json(
            201,
            json!({ "id": 1, "number": 1347, "state": "open", "title": req.json()["title"],
                    "html_url": "https://github.com/octo/hello/issues/1347" }),
        ),
        ("POST", "/repos/octo/hello/issues/1347/comments") => Reply::json(
            201,
            json!({ "id": 77, "body": req.json()["body"], "html_url": "https://github.com/octo/hello/issues/1347#issuecomment-77" }),
        ),
        ("POST", "/repos/octo/limited/issues") => Reply::json(403, json!({ "message": "API rate limit exceeded" }))
            .with_header("x-ratelimit-remaining", "0")
            .with_header("retry-after", "60"),
        _ => Reply::json(404, json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" })),
    })
    .await;
    let host = stand_in.host(&["api.github.com"], MemorySecrets::new().with("token", "ghp_test")).await;
    let github = host.resolve("github", None).unwrap();
    assert_eq!(github.manifest.egress, ["api.github.com"]);

    let input = json!({ "repo": "octo/hello", "title": "Build broke", "body": "See run 42", "labels": ["ci"] });
    let out = host.invoke(&github.digest, &ctx("open"), "create_issue", &input, None).await.unwrap();
    assert_eq!(
        out,
        json!({ "number": 1347, "html_url": "https://github.com/octo/hello/issues/1347", "state": "open" })
    );
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer ghp_test"));
    assert_eq!(sent.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(sent.header("x-github-api-version"), Some("2022-11-28"));
    assert!(sent.header("user-agent").is_some(), "GitHub refuses requests without a User-Agent");
    assert_eq!(sent.json(), json!({ "title": "Build broke", "body": "See run 42", "labels": ["ci"], "assignees": [] }));

    let input = json!({ "repo": "octo/hello", "number": 1347, "body": "Fixed" });
    let out = host.invoke(&github.digest, &ctx("comment"), "comment", &input, None).await.unwrap();
    assert_eq!(out["id"], 77);
    assert_eq!(stand_in.requests()[1].json(), json!({ "body": "Fixed" }));

    let err = host
        .invoke(&github.digest, &ctx("open"), "create_issue", &json!({ "repo": "octo/limited", "title": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.retry_after_ms), (ErrorKind::RateLimited, Some(60_000)), "{err}");
    let err = host
        .invoke(&github.digest, &ctx("open"), "create_issue", &json!({ "repo": "octo/missing", "title": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("GitHub answered HTTP 404: Not Found"), "{err}");
    let err = host
        .invoke(&github.digest, &ctx("open"), "create_issue", &json!({ "repo": "../etc", "title": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_creates_customers_once_per_key_and_looks_up_payments() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    // Stripe replays the first answer for a repeated Idempotency-Key.
    let created: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    let stand_in = StandIn::start(move |req| match (req.method.as_str(), req.path()) {
        ("POST", "/v1/customers") => {
            let key = req.header("idempotency-key").unwrap_or("").to_string();
            let mut created = created.lock().unwrap();
            let next = format!("cus_{}", created.len() + 1);
            let id = created.entry(key).or_insert(next).clone();
            let form: HashMap<String, String> = req.form().into_iter().collect();
            Reply::json(
                200,
                json!({ "id": id, "object": "customer", "email": form.get("email"), "name": form.get("name"),
                        "created": 1_700_000_000, "livemode": false, "metadata": {} }),
            )
        }
        ("GET", "/v1/payment_intents/pi_3MtwBw") => Reply::json(
            200,
            json!({ "id": "pi_3MtwBw", "object": "payment_intent", "amount": 2000, "amount_received": 2000,
                    "currency": "usd", "status": "succeeded", "customer": "cus_1", "created": 1_680_000_000 }),
        ),
        _ => Reply::json(
            404,
            json!({ "error": { "type": "invalid_request_error", "code": "resource_missing",
                               "message": "No such payment_intent: 'pi_nope'" } }),
        ),
    })
    .await;
    let host = stand_in.host(&["api.stripe.com"], MemorySecrets::new().with("api_key", "sk_test_123")).await;
    let stripe = host.resolve("stripe", None).unwrap();

    let input = json!({ "email": "ada@example.com", "name": "Ada", "metadata": { "plan": "pro" } });
    let first = host.invoke(&stripe.digest, &ctx("customer"), "create_customer", &input, None).await.unwrap();
    let mut retry = ctx("customer");
    retry.attempt = 2;
    let again = host.invoke(&stripe.digest, &retry, "create_customer", &input, None).await.unwrap();
    assert_eq!(first["id"], "cus_1");
    assert_eq!(again["id"], "cus_1", "a retried attempt sends the same key, so Stripe makes one customer");
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer sk_test_123"));
    assert_eq!(sent.header("idempotency-key"), Some("run-1:customer:0"));
    assert_eq!(sent.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        sent.form(),
        [
            ("email".to_string(), "ada@example.com".to_string()),
            ("name".into(), "Ada".into()),
            ("metadata[plan]".into(), "pro".into())
        ]
    );

    let payment =
        host.invoke(&stripe.digest, &ctx("look"), "get_payment", &json!({ "id": "pi_3MtwBw" }), None).await.unwrap();
    assert_eq!((payment["status"].as_str(), payment["amount"].as_i64()), (Some("succeeded"), Some(2000)));
    let err =
        host.invoke(&stripe.digest, &ctx("look"), "get_payment", &json!({ "id": "pi_nope" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("(resource_missing): No such payment_intent"), "{err}");
    let err = host
        .invoke(&stripe.digest, &ctx("look"), "get_payment", &json!({ "id": "../customers" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_posts_through_the_secret_webhook() {
    let stand_in = StandIn::start(|req| match req.path() {
        "/api/webhooks/123/tok" if req.json()["content"] == "slow" => {
            Reply::json(429, json!({ "message": "You are being rate limited.", "retry_after": 1.5, "global": false }))
        }
        "/api/webhooks/123/tok" => Reply::json(
            200,
            json!({ "id": "1180000000000000001", "channel_id": "99", "content": req.json()["content"] }),
        ),
        _ => Reply::json(404, json!({ "message": "Unknown Webhook", "code": 10015 })),
    })
    .await;
    let secrets = MemorySecrets::new().with("webhook_url", "https://discord.com/api/webhooks/123/tok");
    let host = stand_in.host(&["discord.com"], secrets).await;
    let discord = host.resolve("discord", None).unwrap();

    let out =
        host.invoke(&discord.digest, &ctx("tell"), "send", &json!({ "content": "Deployed" }), None).await.unwrap();
    assert_eq!(out, json!({ "id": "1180000000000000001", "channel_id": "99" }));
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.target, "/api/webhooks/123/tok?wait=true");
    assert_eq!(sent.json()["allowed_mentions"], json!({ "parse": [] }), "no surprise @everyone pings");

    let err =
        host.invoke(&discord.digest, &ctx("tell"), "send", &json!({ "content": "slow" }), None).await.unwrap_err();
    assert_eq!((err.kind, err.retry_after_ms), (ErrorKind::RateLimited, Some(2000)), "{err}");
    let err = host.invoke(&discord.digest, &ctx("tell"), "send", &json!({}), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");

    // A webhook URL pointing elsewhere is refused, before egress even matters.
    let elsewhere =
        stand_in.host(&["discord.com"], MemorySecrets::new().with("webhook_url", "https://evil.example/x")).await;
    let err =
        elsewhere.invoke(&discord.digest, &ctx("tell"), "send", &json!({ "content": "x" }), None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}
