//! `--server URL`: the commands that act on runs (`run`, `runs list/show`,
//! `signal`, `cancel`, `resume`, `validate`) talk to a `weft server` through
//! its /v1 API instead of opening a store, and print what they print
//! locally. The server validates workflows with its own connectors and a
//! worker drives the runs; this process only watches.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use weft_core::{Event, RunState, RunStatus, StepError};
use weft_runtime::{Inspection, Standing};
use weft_store::{RunRecord, StoredEvent};
use weft_workflows::{Definition, Stored};

use crate::progress::Progress;
use crate::{Cli, Command, Failure, bad, failed};

/// How often a watched run is looked at.
const POLL: Duration = Duration::from_millis(250);
/// How many times a request refused for its rate (429) or for an outage
/// (503) is tried again, after the wait the server asks for.
const RETRIES: u32 = 5;

/// A server and the key that acts on it.
pub(crate) struct Remote {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
    /// Definitions read so far, by hash (versions never change).
    definitions: tokio::sync::Mutex<HashMap<String, Definition>>,
}

/// A run as the API shows it.
#[derive(Deserialize)]
struct RunView {
    id: String,
    workflow: String,
    workflow_hash: String,
    status: String,
    input: Value,
    output: Option<Value>,
    error: Option<Value>,
    idempotency_key: Option<String>,
    parent: Option<String>,
    retry_of: Option<String>,
    created_at: i64,
    updated_at: i64,
    last_seq: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    wake_at: i64,
}

impl RunView {
    fn into_record(self) -> Result<RunRecord, Failure> {
        let status = self.status.parse::<RunStatus>().map_err(|_| {
            failed(anyhow!("the server answered run {} with an unknown status {:?}", self.id, self.status))
        })?;
        Ok(RunRecord {
            tenant: String::new(),
            status,
            input: self.input.to_string(),
            output: self.output.map(|v| v.to_string()),
            error: self.error.map(|v| v.to_string()),
            id: self.id,
            workflow_name: self.workflow,
            workflow_hash: self.workflow_hash,
            last_seq: self.last_seq,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until,
            created_at: self.created_at,
            updated_at: self.updated_at,
            parent_id: self.parent,
            retry_of: self.retry_of,
            idempotency_key: self.idempotency_key,
            wake_at: self.wake_at,
        })
    }
}

/// A journal entry as the API shows it.
#[derive(Deserialize)]
struct JournalEntry {
    seq: i64,
    at: i64,
    event: Event,
}

/// A problem in a workflow source, as the API reports it.
#[derive(Deserialize)]
struct Problem {
    path: String,
    line: usize,
    column: usize,
    message: String,
}

/// Prints a file's problems as `weft validate` does locally.
fn print_problems(file: &str, problems: &[Problem]) {
    let count = problems.len();
    let mut text = format!("{file}: {count} error{}\n", if count == 1 { "" } else { "s" });
    for p in problems {
        text.push_str(&format!("  {file}:{}:{}: {}: {}\n", p.line, p.column, p.path, p.message));
    }
    eprint!("{}", crate::terminal::safe_lines(&text));
}

/// The API's language for a file's source: YAML by its extension, else JSON.
fn format_of(file: &std::path::Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => "yaml",
        _ => "json",
    }
}

/// The request body that sends a workflow file to the server: its text,
/// its language, and the child workflows it names by path (and theirs),
/// read here and sent along, since the server reads no files.
fn source_body(file: &std::path::Path, source: String) -> Value {
    let format = format_of(file);
    let children = Children { dir: file.parent().unwrap_or(std::path::Path::new("")), files: Default::default() };
    // Only the reading matters here; the server validates.
    let _ = weft_workflows::load_with(
        &format!("workflow.{format}"),
        &source,
        &weft_workflows::Catalog::new(Vec::new()),
        &children,
    );
    let files = children.files.into_inner();
    if files.is_empty() {
        json!({ "source": source, "format": format })
    } else {
        json!({ "source": source, "format": format, "files": files })
    }
}

/// Reads the child workflows a workflow file names, under the names the
/// server's bundle gives them ([`weft_workflows::child_name`]).
struct Children<'a> {
    dir: &'a std::path::Path,
    files: std::cell::RefCell<std::collections::BTreeMap<String, String>>,
}

impl weft_workflows::Loader for Children<'_> {
    fn child(&self, parent: &str, path: &str) -> Result<weft_workflows::Source, String> {
        let name = weft_workflows::child_name(parent, path);
        let file = self.dir.join(&name);
        let text = weft_workflows::limits::read_text_file(&file, weft_workflows::limits::MAX_FILE_BYTES)
            .map_err(|e| format!("cannot read child workflow `{}`: {e}", file.display()))?;
        self.files.borrow_mut().insert(name.clone(), text.clone());
        Ok(weft_workflows::Source { name, text })
    }
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A server's error answer, as a failure with the exit code it deserves:
/// 2 for what the request asked (4xx), 1 for the server's trouble.
fn api_failure(status: StatusCode, body: &Value, what: &str) -> Failure {
    let error = &body["error"];
    let message = error["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let code = error["code"].as_str().unwrap_or("unknown");
    let error = match status {
        StatusCode::UNAUTHORIZED => {
            anyhow!("{what}: the server refused the API key ({message}); set WEFT_API_KEY or --api-key")
        }
        _ => anyhow!("{what}: {message} ({code})"),
    };
    if status.is_client_error() { bad(error) } else { failed(error) }
}

impl Remote {
    /// A client of the server at `url` (`http://` or `https://`).
    pub(crate) fn new(url: &str, key: Option<String>) -> Result<Remote, Failure> {
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(anyhow!("--server {url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(anyhow!("--server {url:?}: use http://HOST:PORT or https://HOST")));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| failed(anyhow!("setting up the HTTP client: {e}")))?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            key: key.filter(|k| !k.is_empty()),
            http,
            definitions: Default::default(),
        })
    }

    /// The server, for messages.
    pub(crate) fn url(&self) -> &str {
        &self.base
    }

    /// One API call; `what` names it in errors. Answers 429 and 503 are
    /// tried again after the wait the server asks for (`Retry-After`).
    async fn call(&self, method: Method, path: &str, body: impl Into<Body>, what: &str) -> Result<Value, Failure> {
        let (status, answer) = self.exchange(method, path, body, what).await?;
        if status.is_success() { Ok(answer) } else { Err(api_failure(status, &answer, what)) }
    }

    /// [`Remote::call`], returning error answers rather than failing on them.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Body>,
        what: &str,
    ) -> Result<(StatusCode, Value), Failure> {
        let body = body.into();
        let mut attempt = 0;
        loop {
            let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
            if let Some(key) = &self.key {
                request = request.bearer_auth(key);
            }
            request = match &body {
                Body::Empty => request,
                Body::Json(body) => request.json(body),
                Body::Wasm(bytes) => {
                    request.header(reqwest::header::CONTENT_TYPE, "application/wasm").body(bytes.clone())
                }
            };
            let response = request.send().await.map_err(|e| {
                failed(anyhow!(
                    "{what}: cannot reach the server at {}: {}",
                    self.base,
                    crate::terminal::error_chain(&e)
                ))
            })?;
            let status = response.status();
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .min(10);
            let text = response.text().await.map_err(|e| failed(anyhow!("{what}: reading the answer: {e}")))?;
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) && attempt < RETRIES {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            return Ok((status, answer));
        }
    }

    /// Installs a connector component for the key's tenant, printing what
    /// `weft connector install` prints.
    pub(crate) async fn install(&self, file: &std::path::Path) -> Result<(), Failure> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display())).map_err(bad)?;
        let what = format!("installing {}", file.display());
        let answer = self.call(Method::POST, "/v1/connectors", Body::Wasm(bytes), &what).await?;
        let connector = &answer["connector"];
        let key =
            format!("{}@{}", connector["name"].as_str().unwrap_or("?"), connector["version"].as_str().unwrap_or("?"));
        let digest = connector["digest"].as_str().unwrap_or("?");
        if answer["created"] == Value::Bool(true) {
            eprintln!("installed {key} ({digest})");
        } else {
            eprintln!("{key} ({digest}) is already installed");
        }
        Ok(())
    }

    fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, Failure> {
        serde_json::from_value(value)
            .map_err(|e| failed(anyhow!("{what}: the server's answer is not what it documents: {e}")))
    }

    /// The run with this id (or unique id prefix).
    pub(crate) async fn run(&self, id: &str) -> Result<RunRecord, Failure> {
        let what = format!("reading run {id}");
        let answer = self.call(Method::GET, &format!("/v1/runs/{}", encode(id)), None, &what).await?;
        Self::decode::<RunView>(answer, &what)?.into_record()
    }

    /// The run's journal after `seq`.
    pub(crate) async fn events_after(&self, id: &str, seq: i64) -> Result<Vec<StoredEvent>, Failure> {
        let what = format!("reading the journal of run {id}");
        let mut answer = self.call(Method::GET, &format!("/v1/runs/{}/timeline", encode(id)), None, &what).await?;
        let entries: Vec<JournalEntry> = Self::decode(answer["events"].take(), &what)?;
        Ok(entries
            .into_iter()
            .filter(|e| e.seq > seq)
            .map(|JournalEntry { seq, at, event }| StoredEvent { seq, at, event })
            .collect())
    }

    /// The workflow version `hash`, with its child workflows.
    pub(crate) async fn definition(&self, hash: &str) -> Result<Definition, Failure> {
        if let Some(found) = self.definitions.lock().await.get(hash) {
            return Ok(found.clone());
        }
        let what = format!("reading workflow version {hash}");
        let answer = self.call(Method::GET, &format!("/v1/workflows/{}", encode(hash)), None, &what).await?;
        let stored = Stored::parse(&answer["definition"].to_string())
            .map_err(|e| failed(anyhow!("{what}: the stored definition does not parse: {e}")))?;
        let mut children = std::collections::BTreeMap::new();
        for (step, child) in &stored.children {
            children.insert(step.clone(), Box::pin(self.definition(child)).await?);
        }
        let definition = Definition::with_children(stored.workflow, children);
        self.definitions.lock().await.insert(hash.to_string(), definition.clone());
        Ok(definition)
    }

    /// A run's definition, journal and where it stands, as `weft runs show`
    /// reads them from a store.
    pub(crate) async fn inspect(&self, run: &RunRecord) -> Result<Inspection, Failure> {
        let definition = self.definition(&run.workflow_hash).await?;
        let events = self.events_after(&run.id, 0).await?;
        let state = RunState::replay(&run.id, &definition, events.iter().map(|e| &e.event));
        let standing = Standing::of(run, &definition, &state, weft_runtime::now_ms());
        Ok(Inspection { definition, state, events, standing })
    }

    /// The runs `query` asks for, newest first, with where each stands.
    pub(crate) async fn find(&self, query: &crate::timeline::Query) -> Result<Vec<crate::timeline::Listed>, Failure> {
        // `waiting` and `interrupted` are `running` to the server.
        let stored = query.status.as_deref().map(|name| name.parse::<RunStatus>().unwrap_or(RunStatus::Running));
        let by_standing = stored == Some(RunStatus::Running);
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/runs?limit={}", if by_standing { 500 } else { query.limit.min(500) });
            if let Some(status) = stored {
                path.push_str(&format!("&status={}", status.as_str()));
            }
            if let Some(workflow) = &query.workflow {
                path.push_str(&format!("&workflow={}", encode(workflow)));
            }
            if let Some(since) = query.since {
                path.push_str(&format!("&since={since}"));
            }
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let mut page = self.call(Method::GET, &path, None, "listing runs").await?;
            let runs: Vec<RunView> = Self::decode(page["runs"].take(), "listing runs")?;
            for run in runs {
                let run = run.into_record()?;
                let standing = match run.status {
                    RunStatus::Completed => Some(Standing::Completed),
                    RunStatus::Failed => Some(Standing::Failed),
                    RunStatus::Cancelled => Some(Standing::Cancelled),
                    RunStatus::Running => match self.inspect(&run).await {
                        Ok(inspection) => Some(inspection.standing),
                        Err(Failure { error, .. }) => {
                            eprintln!("warning: run {}: {}", run.id, crate::terminal::safe(&error.to_string()));
                            None
                        }
                    },
                };
                let shown = standing.as_ref().map_or("unreadable", Standing::as_str);
                if query.status.as_deref().is_none_or(|s| s == shown) {
                    found.push((run, standing));
                }
                if found.len() as i64 >= query.limit {
                    return Ok(found);
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) if by_standing || (found.len() as i64) < query.limit => cursor = Some(next.to_string()),
                _ => return Ok(found),
            }
        }
    }

    /// Checks a workflow file on the server; prints what local `validate`
    /// prints. Returns whether it is valid.
    pub(crate) async fn validate(&self, file: &std::path::Path, source: String) -> Result<bool, Failure> {
        let name = file.display().to_string();
        let body = source_body(file, source);
        let answer =
            self.call(Method::POST, "/v1/workflows/validate", Some(body), &format!("validating {name}")).await?;
        if answer["valid"] == Value::Bool(true) {
            let steps = answer["steps"].as_u64().unwrap_or(0) as usize;
            let hash = answer["hash"].as_str().unwrap_or("");
            println!("{name}: ok ({}, {hash})", crate::terminal::count(steps, "step"));
            return Ok(true);
        }
        let problems: Vec<Problem> = Self::decode(answer["diagnostics"].clone(), &format!("validating {name}"))?;
        print_problems(&name, &problems);
        Ok(false)
    }

    /// Stores a workflow file's version on the server; returns its hash. A
    /// file with problems prints them as `validate` does and fails with exit
    /// code 2.
    pub(crate) async fn save(&self, file: &std::path::Path, source: String) -> Result<String, Failure> {
        let name = file.display().to_string();
        let body = source_body(file, source);
        let what = format!("storing {name} on the server");
        let (status, answer) = self.exchange(Method::POST, "/v1/workflows", Some(body), &what).await?;
        if !status.is_success() {
            if let Ok(problems) = serde_json::from_value::<Vec<Problem>>(answer["error"]["diagnostics"].clone()) {
                print_problems(&name, &problems);
                return Err(bad(anyhow!("{name} has problems; no run was started")));
            }
            return Err(api_failure(status, &answer, &what));
        }
        let hash = answer["workflow"]["hash"].as_str();
        hash.map(str::to_string).ok_or_else(|| failed(anyhow!("{what}: the answer names no version")))
    }

    /// Starts a run of version `hash`.
    pub(crate) async fn start(&self, hash: &str, input: Value) -> Result<RunRecord, Failure> {
        let body = json!({ "workflow": hash, "input": input });
        let mut answer = self.call(Method::POST, "/v1/runs", Some(body), "starting the run").await?;
        Self::decode::<RunView>(answer["run"].take(), "starting the run")?.into_record()
    }

    /// Posts to a run's `action` (`cancel`, `signal`, `resume`).
    pub(crate) async fn act(&self, id: &str, action: &str, body: Option<Value>) -> Result<RunRecord, Failure> {
        let what = format!("{action} run {id}");
        let path = format!("/v1/runs/{}/{action}", encode(id));
        let answer = self.call(Method::POST, &path, body, &what).await?;
        Self::decode::<RunView>(answer, &what)?.into_record()
    }

    /// Watches a run until it is over, handing each event after `seen` to
    /// `observer` (the progress display) as a local driver does.
    pub(crate) async fn watch(
        &self,
        run: RunRecord,
        mut seen: i64,
        observer: &mut dyn weft_runtime::Observer,
    ) -> Result<RunRecord, Failure> {
        let mut run = run;
        loop {
            for event in self.events_after(&run.id, seen).await? {
                observer.event(&run.id, event.seq, &event.event);
                seen = event.seq;
            }
            if run.status.is_terminal() && seen >= run.last_seq {
                return Ok(run);
            }
            tokio::time::sleep(POLL).await;
            run = self.run(&run.id).await?;
        }
    }
}

/// A run that is over, as the outcome `weft run` reports.
pub(crate) fn outcome(run: &RunRecord) -> weft_runtime::Outcome {
    weft_runtime::Outcome {
        run_id: run.id.clone(),
        status: run.status,
        output: run.output.as_deref().and_then(|o| serde_json::from_str(o).ok()),
        error: run.error.as_deref().and_then(|e| serde_json::from_str::<StepError>(e).ok()),
    }
}

/// Runs `cli`'s command against the server at `url`, when it is one that
/// acts on runs; `None` for the others, which run locally.
pub(crate) async fn dispatch(cli: &Cli, url: &str) -> Result<Option<u8>, Failure> {
    use crate::{RunsCommand, over_already, parse_json_arg, report, run_tags};
    let remote = || Remote::new(url, cli.api_key.clone());
    let code = match &cli.command {
        Command::Validate { files } => {
            let remote = remote()?;
            let mut broken = 0;
            for file in files {
                let source = read_source(file)?;
                if !remote.validate(file, source).await? {
                    broken += 1;
                }
            }
            if broken == 0 { 0 } else { 2 }
        }
        Command::Run { file, input, json } => {
            let remote = remote()?;
            let source = read_source(file)?;
            let input = parse_json_arg(input, "--input")?;
            let hash = remote.save(file, source).await?;
            let definition = remote.definition(&hash).await?;
            let mut progress = Progress::new(&definition, !*json);
            progress.announce_start();
            let run = remote.start(&hash, input).await?;
            let id = run.id.clone();
            let watched = watch_in_foreground(&remote, run, 0, &mut progress).await;
            progress.finish();
            report(&outcome(&watched.map_err(|e| stopped_watching(e, &remote, &id))?), *json)?
        }
        Command::Resume { run: Some(id), json, wait: _ } => {
            let remote = remote()?;
            let run = remote.run(id).await?;
            if run.status.is_terminal() {
                return Ok(Some(over_already(&run, "nothing to resume", *json)));
            }
            let definition = remote.definition(&run.workflow_hash).await?;
            let mut progress = Progress::new(&definition, !*json);
            progress.note(&format!("resuming run {} ({})", run.id, run.workflow_name));
            let run = remote.act(&run.id, "resume", None).await?;
            let (id, seen) = (run.id.clone(), run.last_seq);
            let watched = watch_in_foreground(&remote, run, seen, &mut progress).await;
            progress.finish();
            report(&outcome(&watched.map_err(|e| stopped_watching(e, &remote, &id))?), *json)?
        }
        Command::Resume { run: None, json, wait: _ } => {
            let remote = remote()?;
            let query =
                crate::timeline::Query { limit: 500, status: Some("interrupted".into()), workflow: None, since: None };
            let runs: Vec<RunRecord> = remote.find(&query).await?.into_iter().map(|(run, _)| run).collect();
            if runs.is_empty() {
                eprintln!("no unfinished runs");
                return Ok(Some(0));
            }
            // Every run is made due at once; then each is watched to its end,
            // their lines tagged, as local `resume` drives them together.
            let tags = run_tags(&runs.iter().map(|run| run.id.as_str()).collect::<Vec<_>>());
            let mut watches = Vec::new();
            for (run, tag) in runs.into_iter().zip(tags) {
                let definition = remote.definition(&run.workflow_hash).await?;
                let mut progress = Progress::new(&definition, !*json);
                progress.prefix_lines(&tag);
                progress.note(&format!("resuming run {} ({})", run.id, run.workflow_name));
                let run = remote.act(&run.id, "resume", None).await?;
                watches.push((run, progress));
            }
            let remote = &remote;
            let watched = futures_util::future::join_all(watches.into_iter().map(|(run, mut progress)| async move {
                let seen = run.last_seq;
                let watched = remote.watch(run, seen, &mut progress).await;
                progress.finish();
                watched
            }));
            let watched = tokio::select! {
                watched = watched => watched,
                _ = tokio::signal::ctrl_c() => {
                    let error = anyhow!("stopped watching; the runs go on on the server (see `weft runs list`)");
                    return Err(Failure { code: 130, error });
                }
            };
            let mut worst = 0;
            for run in watched {
                worst = worst.max(report(&outcome(&run?), *json)?);
            }
            worst
        }
        Command::Signal { run, name, payload } => {
            let payload = parse_json_arg(payload, "the payload")?;
            let run = remote()?.act(run, "signal", Some(json!({ "name": name, "payload": payload }))).await?;
            eprintln!("signal `{name}` delivered to run {}", run.id);
            0
        }
        Command::Cancel { run, reason } => {
            let run = remote()?.act(run, "cancel", Some(json!({ "reason": reason }))).await?;
            match run.status {
                RunStatus::Cancelled => eprintln!("run {} cancelled", run.id),
                _ => eprintln!("cancellation of run {} requested; the process driving it will stop it", run.id),
            }
            0
        }
        Command::Runs(RunsCommand::List { limit, status, workflow, since, json }) => {
            let remote = remote()?;
            let query = crate::timeline::Query {
                limit: *limit,
                status: status.clone(),
                workflow: workflow.clone(),
                since: *since,
            };
            let runs = remote.find(&query).await?;
            let filtered = status.is_some() || workflow.is_some() || since.is_some();
            crate::timeline::list(&runs, remote.url(), filtered, *json);
            0
        }
        Command::Runs(RunsCommand::Show { run, json, follow }) => {
            let remote = remote()?;
            let run = remote.run(run).await?;
            if *follow {
                let ended = tokio::select! {
                    ended = crate::timeline::follow(&remote, run) => ended?,
                    _ = tokio::signal::ctrl_c() => return Ok(Some(130)),
                };
                return Ok(Some(crate::exit_code(ended.status)));
            }
            let inspection = remote.inspect(&run).await?;
            crate::timeline::show(&run, &inspection, &[], *json);
            0
        }
        Command::Runs(RunsCommand::Retry { run, from, json }) => {
            let remote = remote()?;
            let retried = remote.run(run).await?;
            let definition = remote.definition(&retried.workflow_hash).await?;
            let mut progress = Progress::new(&definition, !*json);
            progress.announce_start();
            let body = from.as_ref().map(|step| json!({ "from": step }));
            let run = remote.act(&retried.id, "retry", body).await?;
            let id = run.id.clone();
            let watched = watch_in_foreground(&remote, run, 0, &mut progress).await;
            progress.finish();
            report(&outcome(&watched.map_err(|e| stopped_watching(e, &remote, &id))?), *json)?
        }
        Command::Connector(crate::connector::ConnectorCommand::Install { file }) => {
            remote()?.install(file).await?;
            0
        }
        _ => return Ok(None),
    };
    Ok(Some(code))
}

/// A workflow file's text, as local commands read it.
fn read_source(file: &std::path::Path) -> Result<String, Failure> {
    use anyhow::Context as _;
    weft_workflows::limits::read_text_file(file, weft_workflows::limits::MAX_FILE_BYTES)
        .with_context(|| format!("reading {}", file.display()))
        .map_err(bad)
}

/// Why watching stopped: Ctrl-C (the run goes on on the server).
enum Stopped {
    Interrupted,
    Failed(Failure),
}

/// Watches a run until it is over or Ctrl-C.
async fn watch_in_foreground(
    remote: &Remote,
    run: RunRecord,
    seen: i64,
    progress: &mut Progress,
) -> Result<RunRecord, Stopped> {
    tokio::select! {
        watched = remote.watch(run, seen, progress) => watched.map_err(Stopped::Failed),
        _ = tokio::signal::ctrl_c() => Err(Stopped::Interrupted),
    }
}

/// Ctrl-C while watching: the server goes on with the run.
fn stopped_watching(stopped: Stopped, remote: &Remote, id: &str) -> Failure {
    match stopped {
        Stopped::Failed(failure) => failure,
        Stopped::Interrupted => Failure {
            code: 130,
            error: anyhow!(
                "stopped watching; run {id} goes on on the server: `weft --server {} runs show {id} --follow`",
                remote.url()
            ),
        },
    }
}

/// A request's body.
enum Body {
    Empty,
    Json(Value),
    /// A component (`application/wasm`).
    Wasm(Vec<u8>),
}

impl From<Option<Value>> for Body {
    fn from(body: Option<Value>) -> Body {
        body.map_or(Body::Empty, Body::Json)
    }
}
