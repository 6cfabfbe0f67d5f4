//! The built-in `github` connector, over GitHub's REST API (version
//! 2022-11-28).
//!
//! - `create_issue`: `POST /repos/{owner}/{repo}/issues`.
//! - `comment`: `POST /repos/{owner}/{repo}/issues/{number}/comments`.
//!
//! Auth: the secret `token` (a personal access token or app token) when set,
//! else an OAuth token for the provider `github`. GitHub takes no idempotency
//! key, so neither action is idempotent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft_sdk::http::{Request, Response};
use weft_sdk::{Action, Connector, Context, Error, JsonSchema, Manifest};

const API: &str = "https://api.github.com";

/// An issue to open.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewIssue {
    /// `owner/name`.
    repo: String,
    /// The title.
    title: String,
    /// The body, in Markdown.
    #[serde(default)]
    body: Option<String>,
    /// Label names.
    #[serde(default)]
    labels: Vec<String>,
    /// Logins to assign.
    #[serde(default)]
    assignees: Vec<String>,
}

/// The opened issue.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Issue {
    /// Its number in the repository.
    number: u64,
    /// Its web page.
    html_url: String,
    /// `open`.
    state: String,
}

/// A comment on an issue or pull request.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewComment {
    /// `owner/name`.
    repo: String,
    /// The issue or pull request number.
    number: u64,
    /// The comment, in Markdown.
    body: String,
}

/// The posted comment.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Comment {
    /// Its id.
    id: u64,
    /// Its web page.
    html_url: String,
}

fn repo_path(repo: &str) -> Result<&str, Error> {
    let valid = repo.split('/').count() == 2
        && repo.split('/').all(|p| {
            !p.is_empty() && p != "." && p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if valid { Ok(repo) } else { Err(Error::invalid_input(format!("`repo` must be owner/name, got {repo:?}"))) }
}

fn github(cx: &Context, url: String, body: Value) -> Result<Response, Error> {
    let token = cx.secret_or_oauth("token", "github")?;
    let response = Request::post(url)
        .bearer(&token)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("user-agent", "weft-connector-github")
        .json(&body)
        .send()?;
    // A spent rate limit is a 403 (or 429) with x-ratelimit-remaining: 0.
    if matches!(response.status, 403 | 429) && response.header("x-ratelimit-remaining") == Some("0") {
        let retry_after = response.header("retry-after").map(str::to_string).or_else(|| {
            let reset: u64 = response.header("x-ratelimit-reset")?.parse().ok()?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            Some(reset.saturating_sub(now).to_string())
        });
        return Err(Error::from_status(429, retry_after.as_deref(), "GitHub's rate limit is spent"));
    }
    if !response.is_success() {
        let message = response.json::<Value>().ok().and_then(|b| b["message"].as_str().map(str::to_string));
        let message =
            format!("GitHub answered HTTP {}: {}", response.status, message.unwrap_or_else(|| response.text()));
        return Err(Error::from_status(response.status, response.header("retry-after"), message));
    }
    Ok(response)
}

fn create_issue(cx: &Context, input: NewIssue) -> Result<Issue, Error> {
    let repo = repo_path(&input.repo)?;
    let mut body = json!({ "title": input.title, "labels": input.labels, "assignees": input.assignees });
    if let Some(text) = input.body {
        body["body"] = Value::String(text);
    }
    github(cx, format!("{API}/repos/{repo}/issues"), body)?.json()
}

fn comment(cx: &Context, input: NewComment) -> Result<Comment, Error> {
    let repo = repo_path(&input.repo)?;
    github(cx, format!("{API}/repos/{repo}/issues/{}/comments", input.number), json!({ "body": input.body }))?.json()
}

struct GitHub;

impl Connector for GitHub {
    fn manifest() -> Manifest {
        Manifest::new("github", env!("CARGO_PKG_VERSION"), "Open issues and comment on GitHub.")
            .action(Action::new("create_issue", "Open an issue in a repository.", create_issue))
            .action(Action::new("comment", "Comment on an issue or pull request.", comment))
            .secret("token")
            .oauth("github", &["repo"])
            .egress("api.github.com")
    }
}

weft_sdk::export!(GitHub);
