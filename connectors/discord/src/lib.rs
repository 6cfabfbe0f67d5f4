//! The built-in `discord` connector: post through a Discord webhook
//! (`POST /api/webhooks/{id}/{token}?wait=true`).
//!
//! The webhook URL holds its token, so it is the secret `webhook_url`.
//! Discord's webhooks take no idempotency key.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

/// A message to send.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WebhookMessage {
    /// The text, up to 2,000 characters.
    #[serde(default)]
    content: Option<String>,
    /// Override the webhook's name.
    #[serde(default)]
    username: Option<String>,
    /// Override the webhook's avatar.
    #[serde(default)]
    avatar_url: Option<String>,
    /// Up to 10 rich embeds.
    #[serde(default)]
    embeds: Vec<Value>,
}

/// The sent message.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Sent {
    /// The message id (a snowflake).
    id: String,
    /// The channel it went to.
    channel_id: String,
}

fn send(cx: &Context, input: WebhookMessage) -> Result<Sent, Error> {
    if input.content.as_deref().unwrap_or("").is_empty() && input.embeds.is_empty() {
        return Err(Error::invalid_input("give `content` or `embeds`"));
    }
    if input.content.as_deref().is_some_and(|c| c.chars().count() > 2000) {
        return Err(Error::invalid_input("`content` is over Discord's 2,000 characters"));
    }
    let url = cx.secret("webhook_url")?.reveal()?;
    let valid = ["https://discord.com/api/webhooks/", "https://discordapp.com/api/webhooks/"]
        .iter()
        .any(|prefix| url.starts_with(prefix));
    if !valid {
        return Err(Error::invalid_input(
            "the secret `webhook_url` is not a Discord webhook URL (https://discord.com/api/webhooks/…)",
        ));
    }
    let mut body = json!({ "embeds": input.embeds, "allowed_mentions": { "parse": [] } });
    for (field, value) in [("content", input.content), ("username", input.username), ("avatar_url", input.avatar_url)] {
        if let Some(value) = value {
            body[field] = Value::String(value);
        }
    }
    let response = Request::post(url).query(&[("wait", "true")]).json(&body).send()?;
    if !response.is_success() {
        let detail: Value = response.json().unwrap_or_default();
        let message = format!(
            "Discord answered HTTP {}: {}",
            response.status,
            detail["message"].as_str().unwrap_or("no message")
        );
        // Discord sends retry_after (seconds, fractional) in the body of a 429.
        let retry_after = response
            .header("retry-after")
            .map(str::to_string)
            .or_else(|| detail["retry_after"].as_f64().map(|s| (s.ceil() as u64).to_string()));
        return Err(Error::from_status(response.status, retry_after.as_deref(), message));
    }
    response.json()
}

struct Discord;

impl Connector for Discord {
    fn manifest() -> Manifest {
        Manifest::new("discord", env!("CARGO_PKG_VERSION"), "Post messages to Discord through a webhook.")
            .action(Action::new("send", "Post a message through the webhook.", send))
            .secret("webhook_url")
            .egress("discord.com")
            .egress("discordapp.com")
    }
}

weft_sdk::export!(Discord);
