//! The built-in `sendgrid` connector: send mail through Twilio SendGrid's
//! v3 Mail Send API (`POST /v3/mail/send`).
//!
//! Auth: the secret `api_key` (`SG.…`, with the Mail Send permission).
//! SendGrid takes no idempotency key, so `send_mail` is not idempotent; the
//! step's key goes out in the message's `custom_args` as
//! `weft_idempotency_key`, so event webhooks and the activity feed can tell
//! a retried step's second message apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://api.sendgrid.com/v3";

/// An address: `"ada@example.com"` or `{"email": …, "name": …}`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum Address {
    /// Just the address.
    Bare(String),
    /// The address with a display name.
    Named {
        /// The address.
        email: String,
        /// The display name.
        #[serde(default)]
        name: Option<String>,
    },
}

impl Address {
    fn to_json(&self, field: &str) -> Result<Value, Error> {
        let (email, name) = match self {
            Address::Bare(email) => (email, None),
            Address::Named { email, name } => (email, name.as_ref()),
        };
        let valid = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        });
        if !valid {
            return Err(Error::invalid_input(format!("`{field}` holds {email:?}, which is not an email address")));
        }
        Ok(match name {
            Some(name) => json!({ "email": email, "name": name }),
            None => json!({ "email": email }),
        })
    }
}

/// A message to send.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Mail {
    /// Recipients (at most 1,000 across to, cc and bcc).
    to: Vec<Address>,
    /// Copied recipients.
    #[serde(default)]
    cc: Vec<Address>,
    /// Blind-copied recipients.
    #[serde(default)]
    bcc: Vec<Address>,
    /// The sender; its address must be a verified sender or domain.
    from: Address,
    /// Where replies go.
    #[serde(default)]
    reply_to: Option<Address>,
    /// The subject line.
    subject: String,
    /// The plain-text body.
    #[serde(default)]
    text: Option<String>,
    /// The HTML body.
    #[serde(default)]
    html: Option<String>,
    /// Up to 10 categories, for SendGrid's statistics.
    #[serde(default)]
    categories: Vec<String>,
    /// Values echoed back in event webhooks.
    #[serde(default)]
    custom_args: BTreeMap<String, String>,
}

/// The accepted message.
#[derive(Serialize, JsonSchema)]
struct Accepted {
    /// SendGrid's `X-Message-Id`, for the activity feed.
    message_id: String,
}

fn addresses(list: &[Address], field: &str) -> Result<Vec<Value>, Error> {
    list.iter().map(|a| a.to_json(field)).collect()
}

fn send_mail(cx: &Context, input: Mail) -> Result<Accepted, Error> {
    if input.to.is_empty() {
        return Err(Error::invalid_input("`to` is empty; give at least one recipient"));
    }
    if input.to.len() + input.cc.len() + input.bcc.len() > 1000 {
        return Err(Error::invalid_input("SendGrid takes at most 1,000 recipients across to, cc and bcc"));
    }
    let mut content = Vec::new();
    // SendGrid wants text/plain first, then text/html.
    if let Some(text) = &input.text {
        content.push(json!({ "type": "text/plain", "value": text }));
    }
    if let Some(html) = &input.html {
        content.push(json!({ "type": "text/html", "value": html }));
    }
    if content.is_empty() {
        return Err(Error::invalid_input("give `text`, `html` or both"));
    }
    let mut personalization = json!({ "to": addresses(&input.to, "to")? });
    if !input.cc.is_empty() {
        personalization["cc"] = Value::Array(addresses(&input.cc, "cc")?);
    }
    if !input.bcc.is_empty() {
        personalization["bcc"] = Value::Array(addresses(&input.bcc, "bcc")?);
    }
    let mut custom_args = input.custom_args;
    custom_args.insert("weft_idempotency_key".into(), cx.idempotency_key.clone());
    let mut body = json!({
        "personalizations": [personalization],
        "from": input.from.to_json("from")?,
        "subject": input.subject,
        "content": content,
        "custom_args": custom_args,
    });
    if let Some(reply_to) = &input.reply_to {
        body["reply_to"] = reply_to.to_json("reply_to")?;
    }
    if !input.categories.is_empty() {
        body["categories"] = json!(input.categories);
    }

    let key = cx.secret("api_key")?.reveal()?;
    let response = Request::post(format!("{API}/mail/send")).bearer(&key).json(&body).send()?;
    if response.is_success() {
        return Ok(Accepted { message_id: response.header("x-message-id").unwrap_or_default().to_string() });
    }
    // {"errors": [{"message", "field", "help"}]}
    let detail: Value = response.json().unwrap_or_default();
    let reasons: Vec<String> = detail["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| match e["field"].as_str() {
                    Some(field) => format!("{field}: {}", e["message"].as_str().unwrap_or("invalid")),
                    None => e["message"].as_str().unwrap_or("error").to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let message = format!(
        "SendGrid answered HTTP {}: {}",
        response.status,
        if reasons.is_empty() { "no detail".to_string() } else { reasons.join("; ") }
    );
    Err(match response.status {
        413 => Error::invalid_input(message),
        status => Error::from_status(status, response.header("retry-after"), message),
    })
}

struct SendGrid;

impl Connector for SendGrid {
    fn manifest() -> Manifest {
        Manifest::new("sendgrid", env!("CARGO_PKG_VERSION"), "Send email through Twilio SendGrid.")
            .action(Action::new("send_mail", "Send one message (v3 mail/send).", send_mail))
            .secret("api_key")
            .egress("api.sendgrid.com")
    }
}

weft_sdk::export!(SendGrid);
