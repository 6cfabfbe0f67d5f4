//! The built-in `slack` connector, over Slack's Web API.
//!
//! - `post_message`: `chat.postMessage`.
//! - `list_channels`: `conversations.list`, following cursors.
//!
//! Auth: the secret `bot_token` (`xoxb-…`) when set, else an OAuth token for
//! the provider `slack`. Slack answers most errors with HTTP 200 and
//! `{"ok": false, "error": "…"}`; those become typed errors here. Slack takes
//! no idempotency key, so `post_message` is not idempotent.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_sdk::http::{Request, Response};
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://slack.com/api";

/// A message to post.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    /// A channel id (`C…`) or name (`#general`).
    channel: String,
    /// The text (also the notification fallback when `blocks` are given).
    text: String,
    /// Block Kit blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocks: Option<Vec<Value>>,
    /// Reply in the thread of this message timestamp.
    #[serde(default)]
    thread_ts: Option<String>,
}

/// The posted message.
#[derive(Serialize, JsonSchema)]
struct Posted {
    /// The channel id it went to.
    channel: String,
    /// Its timestamp, which is its id within the channel.
    ts: String,
}

/// Which channels to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListChannels {
    /// Comma-separated: `public_channel`, `private_channel`, `mpim`, `im`.
    #[serde(default = "public")]
    #[schemars(default = "public")]
    types: String,
    /// Leave out archived channels.
    #[serde(default = "yes")]
    #[schemars(default = "yes")]
    exclude_archived: bool,
    /// At most this many channels in all.
    #[serde(default = "thousand")]
    #[schemars(default = "thousand", range(min = 1, max = 10000))]
    limit: u32,
}

fn public() -> String {
    "public_channel".into()
}
fn yes() -> bool {
    true
}
fn thousand() -> u32 {
    1000
}

/// One channel.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Channel {
    /// `C…`.
    id: String,
    /// Its name, without `#`.
    #[serde(default)]
    name: String,
    /// Whether it is private.
    #[serde(default)]
    is_private: bool,
    /// Whether it is archived.
    #[serde(default)]
    is_archived: bool,
}

/// The channels.
#[derive(Serialize, JsonSchema)]
struct Channels {
    /// In Slack's order.
    channels: Vec<Channel>,
}

fn token(cx: &Context) -> Result<String, Error> {
    cx.secret_or_oauth("bot_token", "slack")
}

/// Slack's envelope: HTTP errors first, then `ok: false`.
fn slack_json(response: Response, method: &str) -> Result<Value, Error> {
    let body: Value = response.error_for_status()?.json()?;
    if body["ok"].as_bool() == Some(true) {
        return Ok(body);
    }
    let code = body["error"].as_str().unwrap_or("unknown_error");
    let message = format!("Slack {method} failed: {code}");
    Err(match code {
        "not_authed"
        | "invalid_auth"
        | "account_inactive"
        | "token_revoked"
        | "token_expired"
        | "missing_scope"
        | "not_allowed_token_type"
        | "no_permission" => Error::Unauthorized(message),
        "ratelimited" => Error::RateLimited { retry_after: None, message },
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => Error::Transient(message),
        "channel_not_found" | "not_in_channel" | "is_archived" | "msg_too_long" | "no_text" | "invalid_blocks"
        | "invalid_arguments" | "invalid_cursor" => Error::InvalidInput(message),
        _ => Error::Fatal(message),
    })
}

fn post_message(cx: &Context, input: PostMessage) -> Result<Posted, Error> {
    let mut body = serde_json::json!({ "channel": input.channel, "text": input.text });
    if let Some(blocks) = input.blocks {
        body["blocks"] = Value::Array(blocks);
    }
    if let Some(ts) = input.thread_ts {
        body["thread_ts"] = Value::String(ts);
    }
    let response = Request::post(format!("{API}/chat.postMessage"))
        .bearer(&token(cx)?)
        .header("content-type", "application/json; charset=utf-8")
        .body_raw(body.to_string())
        .send()?;
    let answer = slack_json(response, "chat.postMessage")?;
    Ok(Posted {
        channel: answer["channel"].as_str().unwrap_or_default().to_string(),
        ts: answer["ts"].as_str().unwrap_or_default().to_string(),
    })
}

fn list_channels(cx: &Context, input: ListChannels) -> Result<Channels, Error> {
    let token = token(cx)?;
    let mut channels = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = (input.limit as usize - channels.len()).min(200).to_string();
        let exclude = input.exclude_archived.to_string();
        let mut query = vec![("types", input.types.as_str()), ("exclude_archived", &exclude), ("limit", &page)];
        if !cursor.is_empty() {
            query.push(("cursor", &cursor));
        }
        let response = Request::get(format!("{API}/conversations.list")).query(&query).bearer(&token).send()?;
        let answer = slack_json(response, "conversations.list")?;
        let batch: Vec<Channel> = serde_json::from_value(answer["channels"].clone())
            .map_err(|e| Error::fatal(format!("Slack conversations.list answered an unexpected shape: {e}")))?;
        channels.extend(batch);
        cursor = answer["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_string();
        if cursor.is_empty() || channels.len() >= input.limit as usize {
            break;
        }
    }
    channels.truncate(input.limit as usize);
    Ok(Channels { channels })
}

struct Slack;

impl Connector for Slack {
    fn manifest() -> Manifest {
        Manifest::new("slack", env!("CARGO_PKG_VERSION"), "Post messages and list channels in Slack.")
            .action(Action::new("post_message", "Post a message to a channel (chat.postMessage).", post_message))
            .action(Action::new("list_channels", "List channels (conversations.list).", list_channels).idempotent())
            .secret("bot_token")
            .oauth("slack", &["chat:write", "channels:read"])
            .egress("slack.com")
    }
}

weft_sdk::export!(Slack);
