//! The built-in `notion` connector: create a page (`POST /v1/pages`) in a
//! database or under a page, with the Notion API version `2022-06-28`.
//!
//! Auth: the secret `token` (an internal integration's `secret_…`/`ntn_…`)
//! when set, else an OAuth token for the provider `notion`. The page or
//! database must be shared with the integration. Notion takes no idempotency
//! key, so `create_page` is not idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://api.notion.com/v1";
const VERSION: &str = "2022-06-28";
/// Notion's limit on one rich-text object's content.
const TEXT_LIMIT: usize = 2000;
/// Notion's limit on the blocks of one request.
const BLOCK_LIMIT: usize = 100;

/// A page to create. Give exactly one of `database_id` and `page_id`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewPage {
    /// Create the page as a row of this database.
    #[serde(default)]
    database_id: Option<String>,
    /// Create the page under this page.
    #[serde(default)]
    page_id: Option<String>,
    /// The page's title.
    title: String,
    /// The database's title property (only with `database_id`).
    #[serde(default = "name")]
    #[schemars(default = "name")]
    title_property: String,
    /// More database properties, as Notion's property values
    /// (e.g. `{"Status": {"select": {"name": "Open"}}}`).
    #[serde(default)]
    properties: BTreeMap<String, Value>,
    /// Body text; each blank-line-separated part becomes a paragraph.
    #[serde(default)]
    content: Option<String>,
    /// More blocks, as Notion's block objects, after `content`.
    #[serde(default)]
    children: Vec<Value>,
    /// An emoji for the page's icon.
    #[serde(default)]
    icon_emoji: Option<String>,
}

fn name() -> String {
    "Name".into()
}

/// The created page.
#[derive(Serialize, JsonSchema)]
struct Page {
    /// The page's id (a UUID).
    id: String,
    /// Its notion.so URL.
    url: String,
    /// When it was made (ISO 8601).
    created_time: String,
}

/// Rich text, split at Notion's per-object limit.
fn rich_text(text: &str) -> Value {
    let chars: Vec<char> = text.chars().collect();
    let parts: Vec<Value> = chars
        .chunks(TEXT_LIMIT)
        .map(|chunk| json!({ "type": "text", "text": { "content": chunk.iter().collect::<String>() } }))
        .collect();
    Value::Array(parts)
}

fn check_id(field: &str, id: &str) -> Result<(), Error> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid_input(format!(
            "`{field}` must be a Notion id (32 hex digits, dashes allowed), got {id:?}"
        )));
    }
    Ok(())
}

fn create_page(cx: &Context, input: NewPage) -> Result<Page, Error> {
    let (parent, title_property) = match (&input.database_id, &input.page_id) {
        (Some(id), None) => {
            check_id("database_id", id)?;
            (json!({ "database_id": id }), input.title_property.as_str())
        }
        (None, Some(id)) => {
            check_id("page_id", id)?;
            if !input.properties.is_empty() {
                return Err(Error::invalid_input(
                    "`properties` needs a `database_id` parent; a page's child has only a title",
                ));
            }
            (json!({ "page_id": id }), "title")
        }
        _ => return Err(Error::invalid_input("give exactly one of `database_id` and `page_id`")),
    };
    let mut properties: serde_json::Map<String, Value> = input.properties.into_iter().collect();
    properties.insert(title_property.to_string(), json!({ "title": rich_text(&input.title) }));

    let mut children: Vec<Value> = input
        .content
        .as_deref()
        .unwrap_or("")
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| json!({ "object": "block", "type": "paragraph", "paragraph": { "rich_text": rich_text(p) } }))
        .collect();
    children.extend(input.children);
    if children.len() > BLOCK_LIMIT {
        return Err(Error::invalid_input(format!(
            "the page would have {} blocks; Notion takes at most {BLOCK_LIMIT} in one request",
            children.len()
        )));
    }
    let mut body = json!({ "parent": parent, "properties": properties });
    if !children.is_empty() {
        body["children"] = Value::Array(children);
    }
    if let Some(emoji) = input.icon_emoji {
        body["icon"] = json!({ "type": "emoji", "emoji": emoji });
    }

    let token = cx.secret_or_oauth("token", "notion")?;
    let response =
        Request::post(format!("{API}/pages")).bearer(&token).header("notion-version", VERSION).json(&body).send()?;
    let answer: Value = response.json().unwrap_or_default();
    if response.is_success() {
        return Ok(Page {
            id: answer["id"].as_str().unwrap_or_default().to_string(),
            url: answer["url"].as_str().unwrap_or_default().to_string(),
            created_time: answer["created_time"].as_str().unwrap_or_default().to_string(),
        });
    }
    // {"object": "error", "status", "code", "message"}
    let code = answer["code"].as_str().unwrap_or("error");
    let message = format!(
        "Notion answered HTTP {} ({code}): {}",
        response.status,
        answer["message"].as_str().unwrap_or("no message")
    );
    Err(match code {
        "validation_error" | "invalid_json" | "invalid_request" | "invalid_request_url" => {
            Error::invalid_input(message)
        }
        "unauthorized" | "restricted_resource" => Error::unauthorized(message),
        "conflict_error" => Error::transient(message),
        _ => Error::from_status(response.status, response.header("retry-after"), message),
    })
}

struct Notion;

impl Connector for Notion {
    fn manifest() -> Manifest {
        Manifest::new("notion", env!("CARGO_PKG_VERSION"), "Create pages in Notion.")
            .action(Action::new("create_page", "Create a page in a database or under a page.", create_page))
            .secret("token")
            .oauth("notion", &[])
            .egress("api.notion.com")
    }
}

weft_sdk::export!(Notion);
