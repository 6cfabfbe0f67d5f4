//! The built-in `wordpress` connector: create a post on a self-hosted
//! WordPress site (5.6 or later) through its REST API
//! (`POST {site}/wp-json/wp/v2/posts`), signed in with an application password.
//!
//! Secrets: `site_url` (e.g. `https://blog.example.com`), `username`, and
//! `application_password` (Users → Profile → Application Passwords).
//! Because the site is yours, the manifest allows any egress host; the
//! tenant's egress policy is where to pin it to your site.
//! WordPress takes no idempotency key, so `create_post` is not idempotent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

/// A post to create.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewPost {
    /// The title.
    title: String,
    /// The body, as HTML or block markup.
    content: String,
    /// `draft` (the default), `publish`, `pending`, `private` or `future`.
    #[serde(default = "draft")]
    #[schemars(default = "draft")]
    status: Status,
    /// A short summary.
    #[serde(default)]
    excerpt: Option<String>,
    /// The URL slug; WordPress derives one from the title when absent.
    #[serde(default)]
    slug: Option<String>,
    /// Category ids.
    #[serde(default)]
    categories: Vec<u64>,
    /// Tag ids.
    #[serde(default)]
    tags: Vec<u64>,
    /// Publish date in the site's time zone, for `future` posts (`2026-12-01T09:00:00`).
    #[serde(default)]
    date: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// Saved, not public.
    Draft,
    /// Public now.
    Publish,
    /// Awaiting review.
    Pending,
    /// Visible to editors only.
    Private,
    /// Scheduled for `date`.
    Future,
}

fn draft() -> Status {
    Status::Draft
}

/// The created post.
#[derive(Serialize, JsonSchema)]
struct Post {
    /// The post's id.
    id: u64,
    /// Its permalink.
    link: String,
    /// Its status.
    status: String,
    /// Its slug.
    slug: String,
}

fn site(cx: &Context) -> Result<String, Error> {
    let url = cx.secret("site_url")?.reveal()?;
    let url = url.trim().trim_end_matches('/');
    let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match host {
        Some(rest) if !rest.is_empty() && !rest.contains(['?', '#']) => Ok(url.to_string()),
        _ => Err(Error::invalid_input(format!(
            "the secret `site_url` must be the site's address, such as https://blog.example.com; got {url:?}"
        ))),
    }
}

fn create_post(cx: &Context, input: NewPost) -> Result<Post, Error> {
    if matches!(input.status, Status::Future) && input.date.is_none() {
        return Err(Error::invalid_input("a `future` post needs a `date`"));
    }
    let mut body = json!({
        "title": input.title,
        "content": input.content,
        "status": input.status,
        "categories": input.categories,
        "tags": input.tags,
    });
    for (field, value) in [("excerpt", input.excerpt), ("slug", input.slug), ("date", input.date)] {
        if let Some(value) = value {
            body[field] = Value::String(value);
        }
    }
    let site = site(cx)?;
    let user = cx.secret("username")?.reveal()?;
    let password = cx.secret("application_password")?.reveal()?;
    let response = Request::post(format!("{site}/wp-json/wp/v2/posts")).basic(&user, &password).json(&body).send()?;
    let answer: Value = response.json().unwrap_or_default();
    if response.is_success() {
        return Ok(Post {
            id: answer["id"].as_u64().ok_or_else(|| Error::fatal("WordPress answered without a post id"))?,
            link: answer["link"].as_str().unwrap_or_default().to_string(),
            status: answer["status"].as_str().unwrap_or_default().to_string(),
            slug: answer["slug"].as_str().unwrap_or_default().to_string(),
        });
    }
    // {"code": "rest_…", "message", "data": {"status"}}
    let code = answer["code"].as_str().unwrap_or("error");
    let mut message = format!(
        "WordPress answered HTTP {} ({code}): {}",
        response.status,
        answer["message"].as_str().unwrap_or("no message")
    );
    if code == "rest_no_route" || (response.status == 404 && answer["code"].is_null()) {
        message.push_str(" — is `site_url` right, and is the REST API reachable at /wp-json/?");
    }
    Err(Error::from_status(response.status, response.header("retry-after"), message))
}

struct WordPress;

impl Connector for WordPress {
    fn manifest() -> Manifest {
        Manifest::new("wordpress", env!("CARGO_PKG_VERSION"), "Create posts on a WordPress site.")
            .action(Action::new(
                "create_post",
                "Create a post (wp/v2/posts) with an application password.",
                create_post,
            ))
            .secret("site_url")
            .secret("username")
            .secret("application_password")
            .egress("*")
    }
}

weft_sdk::export!(WordPress);
