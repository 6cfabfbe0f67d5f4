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
