//! The catalog connectors against local stand-ins that speak each provider's
//! documented request and response shapes. Each test checks what the
//! connector sends (method, path, auth, headers, idempotency key, body) and
//! how it reads answers and errors.

mod standin;

use serde_json::json;
use standin::{Reply, StandIn, ctx};
use weft_host::{MemorySecrets, REDACTED};
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
    let slack = host.resolve("default", "slack", None).unwrap();
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
    let github = host.resolve("default", "github", None).unwrap();
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
    let stripe = host.resolve("default", "stripe", None).unwrap();

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
    let discord = host.resolve("default", "discord", None).unwrap();

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

/// The `http` connector sends credentials from secrets, so a token never
/// travels through a step's input, and a provider that echoes the request
/// back gets its echo redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_secrets_as_headers_and_never_returns_them() {
    let stand_in = StandIn::start(|req| {
        let echo: serde_json::Map<String, serde_json::Value> =
            req.headers.iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("")))).collect();
        if req.header("authorization") == Some("Bearer ghp_abcdef123456") {
            Reply::json(200, json!({ "you_sent": echo }))
        } else {
            Reply::json(401, json!({ "message": "Bad credentials", "you_sent": echo }))
        }
    })
    .await;
    let secrets = MemorySecrets::new().with("github_token", "ghp_abcdef123456").with("api_key", "key-0987654321");
    let host = stand_in.host(&["api.example.com"], secrets).await;
    let http = host.resolve("default", "http", None).unwrap();
    let input = json!({ "url": "https://api.example.com/user", "bearer_secret": "github_token",
                        "secret_headers": { "X-Api-Key": "api_key" } });
    let out = host.invoke(&http.digest, &ctx("get"), "request", &input, None).await.unwrap();
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer ghp_abcdef123456"));
    assert_eq!(sent.header("x-api-key"), Some("key-0987654321"));
    assert_eq!(out["body"]["you_sent"]["authorization"], json!(format!("Bearer {REDACTED}")));
    assert_eq!(out["body"]["you_sent"]["x-api-key"], json!(REDACTED));

    // The provider's error echoes the headers; the step's error does not.
    let secrets = MemorySecrets::new().with("github_token", "ghp_wrong_000000");
    let host = stand_in.host(&["api.example.com"], secrets).await;
    let input = json!({ "url": "https://api.example.com/user", "bearer_secret": "github_token" });
    let err = host.invoke(&http.digest, &ctx("get"), "request", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(!err.message.contains("ghp_wrong_000000"), "{err}");

    // A secret that is not set says how to set it.
    let host = stand_in.host(&["api.example.com"], MemorySecrets::new()).await;
    let err = host.invoke(&http.digest, &ctx("get"), "request", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("secret `github_token` is not set"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sheets_appends_rows_and_reads_ranges() {
    let stand_in = StandIn::start(|req| {
        let sheet = "/v4/spreadsheets/1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms/values/";
        match (req.method.as_str(), req.path().strip_prefix(sheet)) {
            ("POST", Some("Leads%21A%3AC:append")) => Reply::json(
                200,
                json!({ "spreadsheetId": "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms", "tableRange": "Leads!A1:C4",
                        "updates": { "spreadsheetId": "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms",
                                     "updatedRange": "Leads!A5:C5", "updatedRows": 1, "updatedColumns": 3, "updatedCells": 3 } }),
            ),
            ("GET", Some("%27Q3%20plan%27%21A1%3AB2")) => Reply::json(
                200,
                json!({ "range": "'Q3 plan'!A1:B2", "majorDimension": "ROWS", "values": [["Name", "Score"], ["Ada", "9"]] }),
            ),
            // Google leaves `values` out of an empty range.
            ("GET", Some("Empty%21A1%3AB2")) => {
                Reply::json(200, json!({ "range": "Empty!A1:B2", "majorDimension": "ROWS" }))
            }
            ("GET", Some("Busy%21A1")) => Reply::json(
                429,
                json!({ "error": { "code": 429, "status": "RESOURCE_EXHAUSTED",
                                   "message": "Quota exceeded for quota metric 'Read requests'" } }),
            ),
            _ => Reply::json(
                404,
                json!({ "error": { "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND" } }),
            ),
        }
    })
    .await;
    let host = stand_in.host(&["sheets.googleapis.com"], MemorySecrets::new().with("access_token", "ya29.test")).await;
    let sheets = host.resolve("default", "google_sheets", None).unwrap();
    assert_eq!(sheets.manifest.oauth[0].scopes, ["https://www.googleapis.com/auth/spreadsheets"]);
    let id = "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms";

    let input = json!({ "spreadsheet_id": id, "range": "Leads!A:C", "values": ["Ada", "ada@example.com", 42] });
    let out = host.invoke(&sheets.digest, &ctx("row"), "append_row", &input, None).await.unwrap();
    assert_eq!(out, json!({ "updated_range": "Leads!A5:C5", "updated_rows": 1, "updated_cells": 3 }));
    let sent = &stand_in.requests()[0];
    assert_eq!(sent.header("authorization"), Some("Bearer ya29.test"));
    assert_eq!(
        sent.query(),
        [
            ("valueInputOption".to_string(), "USER_ENTERED".to_string()),
            ("insertDataOption".into(), "INSERT_ROWS".into())
        ]
    );
    assert_eq!(
        sent.json(),
        json!({ "range": "Leads!A:C", "majorDimension": "ROWS", "values": [["Ada", "ada@example.com", 42]] })
    );

    let input = json!({ "spreadsheet_id": id, "range": "'Q3 plan'!A1:B2" });
    let out = host.invoke(&sheets.digest, &ctx("read"), "read_range", &input, None).await.unwrap();
    assert_eq!(out, json!({ "range": "'Q3 plan'!A1:B2", "values": [["Name", "Score"], ["Ada", "9"]] }));
    assert!(stand_in.requests()[1].query().contains(&("valueRenderOption".into(), "FORMATTED_VALUE".into())));
    let input = json!({ "spreadsheet_id": id, "range": "Empty!A1:B2" });
    let out = host.invoke(&sheets.digest, &ctx("read"), "read_range", &input, None).await.unwrap();
    assert_eq!(out["values"], json!([]));

    let input = json!({ "spreadsheet_id": id, "range": "Busy!A1" });
    let err = host.invoke(&sheets.digest, &ctx("read"), "read_range", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited, "{err}");
    assert!(err.message.contains("RESOURCE_EXHAUSTED"), "{err}");
    let input = json!({ "spreadsheet_id": "nope", "range": "A1" });
    let err = host.invoke(&sheets.digest, &ctx("read"), "read_range", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("(NOT_FOUND): Requested entity was not found."), "{err}");
    let input = json!({ "spreadsheet_id": "a/../b", "range": "A1" });
    let err = host.invoke(&sheets.digest, &ctx("read"), "read_range", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    // A bad option is refused by the action's schema before the guest runs.
    let input = json!({ "spreadsheet_id": id, "range": "A1", "value_render_option": "PRETTY" });
    let err = host.invoke(&sheets.digest, &ctx("read"), "read_range", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_sends_mail_in_the_v3_shape() {
    let stand_in = StandIn::start(|req| match req.json()["subject"].as_str() {
        Some("Bounce") => Reply::json(
            400,
            json!({ "errors": [{ "message": "The from address does not match a verified Sender Identity.",
                                 "field": "from", "help": null }] }),
        ),
        Some("Revoked") => Reply::json(
            401,
            json!({ "errors": [{ "message": "The provided authorization grant is invalid, expired, or revoked",
                                 "field": null, "help": null }] }),
        ),
        _ => Reply::empty(202).with_header("x-message-id", "W4c2HHvGSz6ZgSKYOZ4oVQ"),
    })
    .await;
    let host = stand_in.host(&["api.sendgrid.com"], MemorySecrets::new().with("api_key", "SG.test")).await;
    let sendgrid = host.resolve("default", "sendgrid", None).unwrap();

    let input = json!({
        "to": ["ada@example.com", { "email": "bob@example.com", "name": "Bob" }],
        "from": { "email": "ops@example.com", "name": "Ops" },
        "subject": "Weekly report",
        "text": "All green.",
        "html": "<p>All green.</p>",
        "categories": ["report"]
    });
    let out = host.invoke(&sendgrid.digest, &ctx("mail"), "send_mail", &input, None).await.unwrap();
    assert_eq!(out, json!({ "message_id": "W4c2HHvGSz6ZgSKYOZ4oVQ" }));
    let sent = &stand_in.requests()[0];
    assert_eq!((sent.method.as_str(), sent.path()), ("POST", "/v3/mail/send"));
    assert_eq!(sent.header("authorization"), Some("Bearer SG.test"));
    assert_eq!(
        sent.json(),
        json!({
            "personalizations": [{ "to": [{ "email": "ada@example.com" }, { "email": "bob@example.com", "name": "Bob" }] }],
            "from": { "email": "ops@example.com", "name": "Ops" },
            "subject": "Weekly report",
            "content": [{ "type": "text/plain", "value": "All green." }, { "type": "text/html", "value": "<p>All green.</p>" }],
            "custom_args": { "weft_idempotency_key": "run-1:mail:0" },
            "categories": ["report"]
        })
    );

    let bounce = json!({ "to": ["a@example.com"], "from": "x@example.com", "subject": "Bounce", "text": "x" });
    let err = host.invoke(&sendgrid.digest, &ctx("mail"), "send_mail", &bounce, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("from: The from address does not match"), "{err}");
    let revoked = json!({ "to": ["a@example.com"], "from": "x@example.com", "subject": "Revoked", "text": "x" });
    let err = host.invoke(&sendgrid.digest, &ctx("mail"), "send_mail", &revoked, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    let no_body = json!({ "to": ["a@example.com"], "from": "x@example.com", "subject": "Hi" });
    let err = host.invoke(&sendgrid.digest, &ctx("mail"), "send_mail", &no_body, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    let bad_to = json!({ "to": ["not an address"], "from": "x@example.com", "subject": "Hi", "text": "x" });
    let err = host.invoke(&sendgrid.digest, &ctx("mail"), "send_mail", &bad_to, None).await.unwrap_err();
    assert!(err.message.contains("`to` holds \"not an address\""), "{err}");
    assert_eq!(stand_in.requests().len(), 3, "invalid input is refused before any request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notion_creates_pages_in_databases_and_under_pages() {
    let stand_in = StandIn::start(|req| {
        if req.json()["parent"]["database_id"] == "00000000000000000000000000000bad" {
            return Reply::json(
                404,
                json!({ "object": "error", "status": 404, "code": "object_not_found",
                        "message": "Could not find database with ID: 00000000-0000-0000-0000-000000000bad." }),
            );
        }
        if req.json()["properties"]["Name"]["title"][0]["text"]["content"] == "slow" {
            return Reply::json(
                429,
                json!({ "object": "error", "status": 429, "code": "rate_limited", "message": "You have been rate limited." }),
            )
            .with_header("retry-after", "3");
        }
        Reply::json(
            200,
            json!({ "object": "page", "id": "59833787-2cf9-4fdf-8782-e53db20768a5",
                    "created_time": "2026-11-29T12:00:00.000Z",
                    "url": "https://www.notion.so/Launch-598337872cf94fdf8782e53db20768a5",
                    "parent": req.json()["parent"], "properties": {} }),
        )
    })
    .await;
    let host = stand_in.host(&["api.notion.com"], MemorySecrets::new().with("token", "secret_test")).await;
    let notion = host.resolve("default", "notion", None).unwrap();
    let db = "d9824bdc84454327be8b5b47500af6ce";

    let input = json!({
        "database_id": db, "title": "Launch", "icon_emoji": "🚀",
        "properties": { "Status": { "select": { "name": "Open" } } },
        "content": "First paragraph.\n\nSecond paragraph."
    });
    let out = host.invoke(&notion.digest, &ctx("page"), "create_page", &input, None).await.unwrap();
    assert_eq!(out["id"], "59833787-2cf9-4fdf-8782-e53db20768a5");
    assert_eq!(out["url"], "https://www.notion.so/Launch-598337872cf94fdf8782e53db20768a5");
    let sent = &stand_in.requests()[0];
    assert_eq!((sent.method.as_str(), sent.path()), ("POST", "/v1/pages"));
    assert_eq!(sent.header("authorization"), Some("Bearer secret_test"));
    assert_eq!(sent.header("notion-version"), Some("2022-06-28"));
    let paragraph = |text: &str| {
        json!({ "object": "block", "type": "paragraph",
                "paragraph": { "rich_text": [{ "type": "text", "text": { "content": text } }] } })
    };
    assert_eq!(
        sent.json(),
        json!({
            "parent": { "database_id": db },
            "properties": {
                "Name": { "title": [{ "type": "text", "text": { "content": "Launch" } }] },
                "Status": { "select": { "name": "Open" } }
            },
            "children": [paragraph("First paragraph."), paragraph("Second paragraph.")],
            "icon": { "type": "emoji", "emoji": "🚀" }
        })
    );

    // Under a page, the title property is `title`; long text is split at 2,000 characters.
    let long = "x".repeat(2500);
    let input = json!({ "page_id": "59833787-2cf9-4fdf-8782-e53db20768a5", "title": "Notes", "content": long });
    host.invoke(&notion.digest, &ctx("page"), "create_page", &input, None).await.unwrap();
    let sent = stand_in.requests()[1].json();
    assert_eq!(sent["parent"], json!({ "page_id": "59833787-2cf9-4fdf-8782-e53db20768a5" }));
    assert_eq!(sent["properties"]["title"]["title"][0]["text"]["content"], "Notes");
    let parts = sent["children"][0]["paragraph"]["rich_text"].as_array().unwrap();
    assert_eq!(parts.iter().map(|p| p["text"]["content"].as_str().unwrap().len()).collect::<Vec<_>>(), [2000, 500]);

    let input = json!({ "database_id": "00000000000000000000000000000bad", "title": "x" });
    let err = host.invoke(&notion.digest, &ctx("page"), "create_page", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("(object_not_found): Could not find database"), "{err}");
    let input = json!({ "database_id": db, "title": "slow" });
    let err = host.invoke(&notion.digest, &ctx("page"), "create_page", &input, None).await.unwrap_err();
    assert_eq!((err.kind, err.retry_after_ms), (ErrorKind::RateLimited, Some(3000)), "{err}");
    let input = json!({ "database_id": db, "page_id": db, "title": "x" });
    let err = host.invoke(&notion.digest, &ctx("page"), "create_page", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("exactly one of `database_id` and `page_id`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubspot_upserts_contacts_by_email() {
    use std::collections::HashMap;
    use std::sync::Mutex;
    // HubSpot keeps one contact per email: the second upsert updates it.
    let contacts: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    let stand_in = StandIn::start(move |req| {
        let input = &req.json()["inputs"][0];
        if input["properties"]["lifecyclestage"] == "bogus" {
            return Reply::json(
                400,
                json!({ "status": "error", "category": "VALIDATION_ERROR", "correlationId": "aeb5f871",
                        "message": "Property values were not valid: lifecyclestage 'bogus' is not a valid option" }),
            );
        }
        let email = input["id"].as_str().unwrap().to_string();
        let mut contacts = contacts.lock().unwrap();
        let next = 512 + contacts.len() as u64;
        let new = !contacts.contains_key(&email);
        let id = *contacts.entry(email).or_insert(next);
        Reply::json(
            200,
            json!({ "status": "COMPLETE", "startedAt": "2026-11-29T12:00:00Z", "completedAt": "2026-11-29T12:00:00Z",
                    "results": [{ "id": id.to_string(), "new": new, "archived": false,
                                  "createdAt": "2026-11-29T12:00:00Z", "updatedAt": "2026-11-29T12:00:01Z",
                                  "properties": input["properties"] }] }),
        )
    })
    .await;
    let host = stand_in.host(&["api.hubapi.com"], MemorySecrets::new().with("access_token", "pat-na1-test")).await;
    let hubspot = host.resolve("default", "hubspot", None).unwrap();
    assert!(hubspot.manifest.actions.iter().all(|a| a.idempotent), "an upsert by email is idempotent");

    let input = json!({ "email": "Ada@Example.com", "firstname": "Ada", "properties": { "lifecyclestage": "lead" } });
    let first = host.invoke(&hubspot.digest, &ctx("contact"), "upsert_contact", &input, None).await.unwrap();
    assert_eq!((first["id"].as_str(), first["created"].as_bool()), (Some("512"), Some(true)));
    let again = host.invoke(&hubspot.digest, &ctx("contact"), "upsert_contact", &input, None).await.unwrap();
    assert_eq!((again["id"].as_str(), again["created"].as_bool()), (Some("512"), Some(false)));
    let sent = &stand_in.requests()[0];
    assert_eq!((sent.method.as_str(), sent.path()), ("POST", "/crm/v3/objects/contacts/batch/upsert"));
    assert_eq!(sent.header("authorization"), Some("Bearer pat-na1-test"));
    assert_eq!(
        sent.json(),
        json!({ "inputs": [{ "idProperty": "email", "id": "ada@example.com", "objectWriteTraceId": "run-1:contact:0",
                             "properties": { "email": "ada@example.com", "firstname": "Ada", "lifecyclestage": "lead" } }] })
    );

    let input = json!({ "email": "bob@example.com", "properties": { "lifecyclestage": "bogus" } });
    let err = host.invoke(&hubspot.digest, &ctx("contact"), "upsert_contact", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("(VALIDATION_ERROR): Property values were not valid"), "{err}");
    let err = host
        .invoke(&hubspot.digest, &ctx("contact"), "upsert_contact", &json!({ "email": "nobody" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wordpress_creates_posts_with_an_application_password() {
    let stand_in = StandIn::start(|req| {
        if req.header("authorization") != Some("Basic ZWRpdG9yOmFiY2QgRUZHSCAxMjM0IGlqa2wgTU5PUCA1Njc4") {
            return Reply::json(
                401,
                json!({ "code": "rest_cannot_create", "message": "Sorry, you are not allowed to create posts as this user.",
                        "data": { "status": 401 } }),
            );
        }
        if req.path() != "/wp-json/wp/v2/posts" {
            return Reply::json(
                404,
                json!({ "code": "rest_no_route", "message": "No route was found matching the URL and request method.",
                        "data": { "status": 404 } }),
            );
        }
        let post = req.json();
        Reply::json(
            201,
            json!({ "id": 1234, "status": post["status"], "slug": "hello-from-weft", "type": "post",
                    "link": "https://blog.example.com/?p=1234", "title": { "raw": post["title"], "rendered": post["title"] } }),
        )
    })
    .await;
    let secrets = MemorySecrets::new()
        .with("site_url", "https://blog.example.com/")
        .with("username", "editor")
        .with("application_password", "abcd EFGH 1234 ijkl MNOP 5678");
    let host = stand_in.host(&["blog.example.com"], secrets).await;
    let wordpress = host.resolve("default", "wordpress", None).unwrap();
    assert_eq!(wordpress.manifest.secrets, ["site_url", "username", "application_password"]);

    let input = json!({ "title": "Hello from Weft", "content": "<p>Body</p>", "tags": [7] });
    let out = host.invoke(&wordpress.digest, &ctx("post"), "create_post", &input, None).await.unwrap();
    // `site_url` is a secret, so the post's link (which holds it) comes back
    // redacted, like every revealed value.
    assert_eq!(out, json!({ "id": 1234, "link": "[redacted]?p=1234", "status": "draft", "slug": "hello-from-weft" }));
    let sent = &stand_in.requests()[0];
    assert_eq!((sent.method.as_str(), sent.path()), ("POST", "/wp-json/wp/v2/posts"));
    assert_eq!(sent.header("host"), Some("blog.example.com"));
    assert_eq!(
        sent.json(),
        json!({ "title": "Hello from Weft", "content": "<p>Body</p>", "status": "draft", "categories": [], "tags": [7] })
    );

    let input = json!({ "title": "Later", "content": "x", "status": "future" });
    let err = host.invoke(&wordpress.digest, &ctx("post"), "create_post", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");

    let wrong = MemorySecrets::new()
        .with("site_url", "https://blog.example.com")
        .with("username", "editor")
        .with("application_password", "wrong");
    let err = stand_in
        .host(&["blog.example.com"], wrong)
        .await
        .invoke(&wordpress.digest, &ctx("post"), "create_post", &json!({ "title": "x", "content": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("(rest_cannot_create): Sorry, you are not allowed"), "{err}");

    let not_a_site = MemorySecrets::new()
        .with("site_url", "blog.example.com")
        .with("username", "editor")
        .with("application_password", "x");
    let err = stand_in
        .host(&["blog.example.com"], not_a_site)
        .await
        .invoke(&wordpress.digest, &ctx("post"), "create_post", &json!({ "title": "x", "content": "x" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("`site_url` must be the site's address"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zoho_crm_creates_leads_in_the_accounts_data_centre() {
    let stand_in = StandIn::start(|req| {
        if req.header("authorization") != Some("Zoho-oauthtoken 1000.test") {
            return Reply::json(
                401,
                json!({ "code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error" }),
            );
        }
        let record = &req.json()["data"][0];
        if record["Company"] == "Dup Ltd" {
            return Reply::json(
                400,
                json!({ "data": [{ "code": "DUPLICATE_DATA", "status": "error", "message": "duplicate data",
                                   "details": { "api_name": "Email", "json_path": "$.data[0].Email",
                                                "duplicate_record": { "id": "554023000000999001" } } }] }),
            );
        }
        Reply::json(
            201,
            json!({ "data": [{ "code": "SUCCESS", "status": "success", "message": "record added",
                               "details": { "id": "554023000000527002", "Created_Time": "2026-11-29T12:00:00+00:00",
                                            "Modified_Time": "2026-11-29T12:00:00+00:00",
                                            "Created_By": { "name": "Ops", "id": "554023000000235011" } } }] }),
        )
    })
    .await;
    let host = stand_in
        .host(&["www.zohoapis.com", "www.zohoapis.eu"], MemorySecrets::new().with("access_token", "1000.test"))
        .await;
    let zoho = host.resolve("default", "zoho_crm", None).unwrap();
    assert!(zoho.manifest.egress.contains(&"www.zohoapis.eu".to_string()));

    let input = json!({ "last_name": "Lovelace", "first_name": "Ada", "email": "ada@example.com",
                        "company": "Analytical Engines", "fields": { "Industry": "ASP" } });
    let out = host.invoke(&zoho.digest, &ctx("lead"), "create_lead", &input, None).await.unwrap();
    assert_eq!(out, json!({ "id": "554023000000527002", "created_time": "2026-11-29T12:00:00+00:00" }));
    let sent = &stand_in.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path(), sent.header("host")),
        ("POST", "/crm/v6/Leads", Some("www.zohoapis.com"))
    );
    assert_eq!(
        sent.json(),
        json!({ "data": [{ "Last_Name": "Lovelace", "First_Name": "Ada", "Email": "ada@example.com",
                           "Company": "Analytical Engines", "Industry": "ASP" }] })
    );

    let input = json!({ "last_name": "Curie", "data_centre": "eu", "trigger": ["workflow"] });
    host.invoke(&zoho.digest, &ctx("lead"), "create_lead", &input, None).await.unwrap();
    let sent = &stand_in.requests()[1];
    assert_eq!(sent.header("host"), Some("www.zohoapis.eu"));
    assert_eq!(sent.json()["trigger"], json!(["workflow"]));

    let input = json!({ "last_name": "Again", "company": "Dup Ltd" });
    let err = host.invoke(&zoho.digest, &ctx("lead"), "create_lead", &input, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fatal, "{err}");
    assert!(err.message.contains("(DUPLICATE_DATA): duplicate data (field Email)"), "{err}");
    let err = host
        .invoke(&zoho.digest, &ctx("lead"), "create_lead", &json!({ "last_name": "X", "data_centre": "mars" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    assert!(err.message.contains("use one of us, eu, in, au, jp, ca, cn, sa"), "{err}");

    let expired = stand_in.host(&["www.zohoapis.com"], MemorySecrets::new().with("access_token", "1000.old")).await;
    let err = expired
        .invoke(&zoho.digest, &ctx("lead"), "create_lead", &json!({ "last_name": "X" }), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{err}");
    assert!(err.message.contains("(INVALID_TOKEN): invalid oauth token"), "{err}");
}
