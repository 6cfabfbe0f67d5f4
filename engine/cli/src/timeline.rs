//! `weft runs list` and `weft runs show`: runs and their timelines, drawn
//! from the journal.

use std::time::{Duration, UNIX_EPOCH};

use std::collections::{HashMap, HashSet};
use std::io::Write as _;

use serde_json::{Value, json};
use weft_core::{Awaiting, Entry, EntryStatus, Event, Logs, RetryOf, RunStatus};
use weft_runtime::{Inspection, Standing};
use weft_store::{DEFAULT_TENANT, RunFilter, RunRecord, Store};

use crate::{Failure, classify};

fn timestamp(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

fn duration(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// `text` on one line, safe for a terminal, cut to `max` characters.
fn short(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let one_line = crate::terminal::safe(&one_line).into_owned();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// An output on one line, for the timeline: an object's `headers` go last,
/// so that an HTTP response shows its status and body before they are cut.
fn summary(output: &Value) -> String {
    match output.as_object() {
        Some(object) if object.contains_key("headers") => {
            let mut reordered: serde_json::Map<String, Value> =
                object.iter().filter(|(k, _)| *k != "headers").map(|(k, v)| (k.clone(), v.clone())).collect();
            reordered.insert("headers".into(), object["headers"].clone());
            Value::Object(reordered).to_string()
        }
        _ => output.to_string(),
    }
}

/// What `weft runs list` asks for.
pub struct Query {
    /// At most this many runs.
    pub limit: i64,
    /// Only runs that stand so (one of [`Standing::NAMES`]).
    pub status: Option<String>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs created since then (ms).
    pub since: Option<i64>,
}

/// Runs that are not over are looked at at most this many at a time when
/// listing them by what they do (their journals say it, not their rows).
const UNFINISHED_SCANNED: i64 = 10_000;

/// A listed run and where it stands; none when its journal or definition
/// cannot be read (it is listed anyway, as `unreadable`, with a warning).
pub type Listed = (RunRecord, Option<Standing>);

/// What the status column says of a listed run.
fn status_of(standing: &Option<Standing>) -> &'static str {
    standing.as_ref().map_or("unreadable", Standing::as_str)
}

/// The runs `query` asks for, newest first, with where each stands.
pub async fn find(store: &Store, query: &Query) -> Result<Vec<Listed>, weft_runtime::Error> {
    // `running`, `waiting` and `interrupted` are all unfinished in the store.
    let stored = query.status.as_deref().map(|name| name.parse::<RunStatus>().unwrap_or(RunStatus::Running));
    let by_standing = stored == Some(RunStatus::Running);
    let filter = RunFilter {
        workflow: query.workflow.clone(),
        status: stored,
        since: query.since,
        limit: if by_standing { UNFINISHED_SCANNED } else { query.limit },
        ..RunFilter::default()
    };
    let mut found = Vec::new();
    for run in store.filter_runs(DEFAULT_TENANT, &filter).await? {
        let standing = match weft_runtime::standing(store, &run).await {
            Ok(standing) => Some(standing),
            Err(error) => {
                let error = crate::terminal::safe(&error.to_string()).into_owned();
                eprintln!("warning: run {}: {error}", run.id);
                None
            }
        };
        if query.status.as_deref().is_none_or(|s| s == status_of(&standing)) {
            found.push((run, standing));
        }
        if found.len() as i64 >= query.limit {
            break;
        }
    }
    Ok(found)
}

/// Reads `--since`: a time ago (`30m`, `2h`) or an RFC 3339 timestamp, as
/// ms since the epoch.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(weft_runtime::now_ms().saturating_sub(ago.as_millis() as i64));
    }
    match humantime::parse_rfc3339_weak(text) {
        Ok(time) => Ok(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)),
        Err(_) => Err(format!(
            "`{text}` is neither a time ago (like 30m, 2h or 7days) nor a timestamp (like 2026-12-01T09:00:00Z)"
        )),
    }
}

/// The runs in list order: each child right under its parent (when its
/// parent is listed too), with its depth.
fn nested(runs: &[Listed]) -> Vec<(&RunRecord, &Option<Standing>, usize)> {
    let listed: HashSet<&str> = runs.iter().map(|(r, _)| r.id.as_str()).collect();
    let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, (run, _)) in runs.iter().enumerate() {
        match run.parent_id.as_deref().filter(|p| listed.contains(p)) {
            Some(parent) => children.entry(parent).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut out = Vec::with_capacity(runs.len());
    // Children come oldest first, in the order their parent started them.
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        let (run, standing) = &runs[i];
        out.push((run, standing, depth));
        if let Some(kids) = children.get(run.id.as_str()) {
            stack.extend(kids.iter().map(|&k| (k, depth + 1)));
        }
    }
    out
}

/// Prints runs as a table or as JSON.
pub fn list(runs: &[Listed], store: &str, filtered: bool, json: bool) {
    let rows = nested(runs);
    if json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(r, standing, _)| {
                json!({
                    "id": r.id, "workflow": r.workflow_name, "status": status_of(standing), "parent": r.parent_id,
                    "created_at": timestamp(r.created_at), "updated_at": timestamp(r.updated_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
        return;
    }
    let store = crate::terminal::safe(store);
    if runs.is_empty() {
        match filtered {
            true => eprintln!("no runs in {store} match"),
            false => eprintln!("no runs yet in {store}; start one with `weft run FILE`"),
        }
        return;
    }
    eprintln!("runs in {store}:");
    println!("{:<36}  {:<24}  {:<11}  {:<24}  DURATION", "RUN", "WORKFLOW", "STATUS", "CREATED");
    for (run, standing, depth) in rows {
        let took = if !run.status.is_terminal() { "-".to_string() } else { duration(run.updated_at - run.created_at) };
        let workflow = match depth {
            0 => short(&run.workflow_name, 24),
            _ => {
                let indent = "  ".repeat(depth - 1);
                let room = 24usize.saturating_sub(indent.len() + 2).max(4);
                format!("{indent}↳ {}", short(&run.workflow_name, room))
            }
        };
        println!(
            "{:<36}  {:<24}  {:<11}  {:<24}  {}",
            run.id,
            workflow,
            status_of(standing),
            timestamp(run.created_at),
            took
        );
    }
}

/// `step`, or `step[i]` for a `foreach` iteration.
fn label(step: &str, iteration: Option<u32>) -> String {
    iteration.map_or(step.to_string(), |i| format!("{step}[{i}]"))
}

/// One timeline entry as the table shows it.
#[derive(PartialEq)]
struct Row {
    step: String,
    attempt: String,
    status: &'static str,
    start: i64,
    end: Option<i64>,
    detail: String,
    /// What the attempt's connector logged, one line each.
    logs: Vec<String>,
}

/// What a waiting run waits for, as JSON.
fn waits_json(waits: &[Awaiting]) -> Vec<Value> {
    waits
        .iter()
        .map(|wait| match wait {
            Awaiting::Signal { step, name, timeout_at } => json!({
                "kind": "signal", "step": step, "signal": name, "timeout_at": timeout_at.map(timestamp),
            }),
            Awaiting::Timer { step, until } => json!({ "kind": "timer", "step": step, "until": timestamp(*until) }),
            Awaiting::Retry { step, iteration, at } => {
                json!({ "kind": "retry", "step": step, "iteration": iteration, "at": timestamp(*at) })
            }
        })
        .collect()
}

/// `at` as a timestamp with how far off it is from now.
fn when(at: i64) -> String {
    let now = weft_runtime::now_ms();
    if at >= now { format!("{} (in {})", timestamp(at), duration(at - now)) } else { timestamp(at) }
}

/// The lines under `status` that say what the run does and what to do.
fn standing_lines(run: &RunRecord, standing: &Standing) -> Vec<String> {
    let id = &run.id;
    let driver = |owner: &str| {
        let mut parts = owner.split(':');
        match (parts.next(), parts.next()) {
            (Some(host), Some(pid)) => format!("process {pid} on {host}"),
            _ => owner.to_string(),
        }
    };
    match standing {
        Standing::Running { driver: owner } => vec![format!("running, driven by {}", driver(owner))],
        Standing::Interrupted => vec![
            "interrupted: no process drives it any more".to_string(),
            format!("continue it with `weft resume {id}`"),
        ],
        Standing::Waiting { waits, driver: owner } => {
            let mut lines = vec!["waiting".to_string()];
            let mut signals = false;
            for wait in waits {
                lines.push(match wait {
                    Awaiting::Signal { step, name, timeout_at } => {
                        signals = true;
                        let name = crate::terminal::safe(name);
                        let timeout = timeout_at.map(|t| format!(", times out {}", when(t))).unwrap_or_default();
                        format!("step `{step}` waits for signal `{name}`{timeout}: send it with `weft signal {id} {name} [PAYLOAD]`")
                    }
                    Awaiting::Timer { step, until } => format!("step `{step}` sleeps until {}", when(*until)),
                    Awaiting::Retry { step, iteration, at } => {
                        format!("step `{}` is retried at {}", label(step, *iteration), when(*at))
                    }
                });
            }
            lines.push(match owner {
                Some(owner) => format!("{} goes on when it comes", driver(owner)),
                // Parked by a server's worker: its due time is in the database.
                None if run.wake_at > 0 => "parked: a worker of the server goes on when it comes".to_string(),
                None if signals => {
                    format!("no process drives it: after the signal, continue it with `weft resume {id}`")
                }
                None => format!("no process drives it: continue it with `weft resume {id}`, which waits until then"),
            });
            lines
        }
        Standing::Completed | Standing::Failed | Standing::Cancelled => vec![standing.as_str().to_string()],
    }
}

/// The run a journal retries, if it is a retry.
fn retry_of(events: &[weft_store::StoredEvent]) -> Option<RetryOf> {
    events.iter().find_map(|e| match &e.event {
        Event::RunStarted { retry_of, .. } => retry_of.clone(),
        _ => None,
    })
}

/// The timeline of an inspected run.
fn entries(inspection: &Inspection) -> Vec<Entry> {
    let Inspection { definition, events, standing, .. } = inspection;
    let mut entries = weft_core::timeline(definition, events.iter().map(|e| (e.at, &e.event)));
    if *standing == Standing::Interrupted {
        weft_core::interrupt(&mut entries);
    }
    entries
}

/// Prints a run's timeline, or the run, its timeline and its raw journal as
/// JSON. `retries` are the runs that retry it.
pub fn show(run: &RunRecord, inspection: &Inspection, retries: &[RunRecord], json: bool) {
    let Inspection { events, standing, .. } = inspection;
    let retry_of = retry_of(events);
    let retry_ids: Vec<&str> = retries.iter().map(|r| r.id.as_str()).collect();
    let entries = entries(inspection);
    if json {
        let journal: Vec<Value> =
            events.iter().map(|e| json!({ "seq": e.seq, "at": timestamp(e.at), "event": e.event })).collect();
        let (waits, driver) = match standing {
            Standing::Waiting { waits, driver } => (Some(waits_json(waits)), driver.clone()),
            Standing::Running { driver } => (None, Some(driver.clone())),
            _ => (None, None),
        };
        let body = json!({
            "id": run.id, "workflow": run.workflow_name, "workflow_hash": run.workflow_hash, "status": standing.as_str(),
            "waiting_for": waits, "driver": driver,
            "parent": run.parent_id,
            "retry_of": retry_of, "retries": retry_ids,
            "input": serde_json::from_str::<Value>(&run.input).unwrap_or(Value::Null),
            "output": run.output.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
            "error": run.error.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
            "timeline": entries,
            "events": journal,
        });
        println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
        return;
    }
    let origin = print_head(run, inspection, &retry_ids);
    let rows = rows(entries, retry_of.as_ref());
    print_table_head();
    for row in &rows {
        print_row(row, origin);
    }
    println!();
    print_end(run);
}

/// Prints the run's summary lines; returns when it started, which the
/// table's times count from.
fn print_head(run: &RunRecord, inspection: &Inspection, retries: &[&str]) -> i64 {
    let Inspection { events, standing, .. } = inspection;
    let origin = events.first().map_or(run.created_at, |e| e.at);
    let pins = events.iter().find_map(|e| match &e.event {
        Event::RunStarted { connectors, .. } => Some(connectors.clone()),
        _ => None,
    });
    println!("run       {}", run.id);
    println!("workflow  {} ({})", crate::terminal::safe(&run.workflow_name), run.workflow_hash);
    if let Some(parent) = &run.parent_id {
        println!("parent    {parent}");
    }
    if let Some(of) = retry_of(events) {
        let from = of.from.as_ref().map(|step| format!(", from step `{step}`")).unwrap_or_default();
        println!("retry of  {}{from}", of.run);
    }
    if !retries.is_empty() {
        println!("retried   as {}", retries.join(", "));
    }
    if let Some(pins) = pins.filter(|p| !p.is_empty()) {
        let pins: Vec<String> = pins.iter().map(|(k, d)| format!("{k} {}", short(d, 19))).collect();
        println!("pinned    {}", pins.join(", "));
    }
    print_standing(run, standing);
    println!("started   {}", timestamp(origin));
    if run.status.is_terminal() {
        println!("took      {}", duration(run.updated_at - origin));
    }
    println!("input     {}", short(&run.input, 100));
    origin
}

fn print_standing(run: &RunRecord, standing: &Standing) {
    for (i, line) in standing_lines(run, standing).iter().enumerate() {
        println!("{}{line}", if i == 0 { "status    " } else { "          " });
    }
}

/// The table's rows, one per timeline entry.
fn rows(entries: Vec<Entry>, retry_of: Option<&RetryOf>) -> Vec<Row> {
    entries
        .into_iter()
        .map(|entry| {
            let step = match (&entry.step, &entry.signal) {
                (Some(step), _) => label(step, entry.iteration),
                (None, signal) => format!("(signal {})", crate::terminal::safe(signal.as_deref().unwrap_or_default())),
            };
            let child = entry.child.as_deref();
            let detail = match entry.status {
                EntryStatus::Waiting => format!(
                    "waiting for signal `{}`",
                    crate::terminal::safe(entry.signal.as_deref().unwrap_or_default())
                ),
                EntryStatus::Running => child.map(|id| format!("child run {id}")).unwrap_or_default(),
                EntryStatus::Sleeping => {
                    entry.sleeping_until.map(|t| format!("until {}", timestamp(t))).unwrap_or_default()
                }
                EntryStatus::Completed => {
                    let child = child.map(|id| format!("child run {} ", id.get(..8).unwrap_or(id)));
                    let output = entry.output.as_ref().map(summary).unwrap_or_default();
                    format!("{}→ {}", child.unwrap_or_default(), short(&output, 80))
                }
                EntryStatus::Failed => {
                    let error = entry.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
                    let retry =
                        entry.retry_at.map(|t| format!(" (retry in {})", duration(t - entry.ended_at.unwrap_or(t))));
                    format!("{}{}", short(&error, 80), retry.unwrap_or_default())
                }
                EntryStatus::Skipped => entry.reason.clone().unwrap_or_default(),
                EntryStatus::Reused => {
                    let output = entry.output.as_ref().map(summary).unwrap_or_default();
                    let from = retry_of.map(|of| of.run.get(..8).unwrap_or(&of.run)).unwrap_or_default();
                    format!("→ {} (from run {from})", short(&output, 60))
                }
                EntryStatus::Interrupted => match &entry.error {
                    Some(error) => short(&error.message, 80),
                    None => "the process driving it stopped; `weft resume` starts it again".to_string(),
                },
                EntryStatus::Cancelled => "stopped when the run ended".to_string(),
                EntryStatus::Slept | EntryStatus::Received => String::new(),
            };
            Row {
                step,
                attempt: entry.attempt.map_or("-".to_string(), |a| a.to_string()),
                status: entry.status.as_str(),
                start: entry.started_at,
                end: entry.ended_at,
                detail,
                logs: log_lines(&entry.logs),
            }
        })
        .collect()
}

/// A timeline entry's log lines as printed under its row: the level, then
/// the message on one line; then how many more lines were not kept.
fn log_lines(logs: &Logs) -> Vec<String> {
    let mut lines: Vec<String> =
        logs.lines.iter().map(|line| format!("  {:<5}  {}", line.level.as_str(), short(&line.message, 160))).collect();
    if logs.dropped > 0 {
        lines.push(format!(
            "  … {} not kept in the journal (WEFT_LOG=connector.log=debug prints every line as it is logged)",
            crate::terminal::count(logs.dropped as usize, "more line")
        ));
    }
    lines
}

fn print_table_head() {
    println!();
    println!("{:<20}  {:>7}  {:<11}  {:>9}  {:>9}  DETAIL", "STEP", "ATTEMPT", "STATUS", "AT", "DURATION");
}

fn print_row(row: &Row, origin: i64) {
    let took = row.end.map_or("-".to_string(), |end| duration(end - row.start));
    println!(
        "{:<20}  {:>7}  {:<11}  {:>9}  {:>9}  {}",
        short(&row.step, 20),
        row.attempt,
        row.status,
        format!("+{}", duration(row.start - origin)),
        took,
        row.detail
    );
    for line in &row.logs {
        println!("{line}");
    }
}

/// The run's output or error, once it has one.
fn print_end(run: &RunRecord) {
    if let Some(output) = &run.output {
        let output = serde_json::from_str::<Value>(output).map_or_else(|_| output.clone(), |o| summary(&o));
        println!("output    {}", short(&output, 200));
    }
    if let Some(error) = &run.error {
        println!("error     {}", short(error, 200));
    }
}

/// How often `runs show --follow` looks at the journal.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Prints a run's timeline as `show` does, then the rows that appear or
/// change and each change of where the run stands, until the run is over.
/// Each look reads the run's row and only the events it has not seen.
/// Returns the run as it ended.
pub async fn follow(source: &impl Source, run: RunRecord) -> Result<RunRecord, Failure> {
    let mut inspection = source.inspect(&run).await?;
    let retries: Vec<RunRecord> = source.retries(&run).await?;
    let retry_ids: Vec<&str> = retries.iter().map(|r| r.id.as_str()).collect();
    let retry_of = retry_of(&inspection.events);
    let origin = print_head(&run, &inspection, &retry_ids);
    let mut shown = rows(entries(&inspection), retry_of.as_ref());
    print_table_head();
    for row in &shown {
        print_row(row, origin);
    }
    let mut run = run;
    while !run.status.is_terminal() {
        tokio::time::sleep(FOLLOW_POLL).await;
        run = source.reload(&run).await?;
        let seen = inspection.events.last().map_or(0, |e| e.seq);
        let new = source.events_after(&run, seen).await?;
        for event in &new {
            inspection.state.apply(&inspection.definition, &event.event);
        }
        inspection.events.extend(new);
        let standing = Standing::of(&run, &inspection.definition, &inspection.state, weft_runtime::now_ms());
        let changed = standing != inspection.standing;
        inspection.standing = standing;
        let now = rows(entries(&inspection), retry_of.as_ref());
        for (i, row) in now.iter().enumerate() {
            if shown.get(i) != Some(row) {
                print_row(row, origin);
            }
        }
        shown = now;
        if changed && !run.status.is_terminal() {
            print_standing(&run, &inspection.standing);
        }
        let _ = std::io::stdout().flush();
    }
    println!();
    println!("status    {}", run.status);
    println!("took      {}", duration(run.updated_at - origin));
    print_end(&run);
    Ok(run)
}

/// Where `runs show` and `follow` read a run: the local store, or a server
/// (`--server`).
pub(crate) trait Source {
    /// The run's definition, journal and where it stands.
    async fn inspect(&self, run: &RunRecord) -> Result<Inspection, Failure>;
    /// The runs that retry it.
    async fn retries(&self, run: &RunRecord) -> Result<Vec<RunRecord>, Failure>;
    /// The run as it is now.
    async fn reload(&self, run: &RunRecord) -> Result<RunRecord, Failure>;
    /// Its journal after `seq`.
    async fn events_after(&self, run: &RunRecord, seq: i64) -> Result<Vec<weft_store::StoredEvent>, Failure>;
}

impl Source for Store {
    async fn inspect(&self, run: &RunRecord) -> Result<Inspection, Failure> {
        weft_runtime::inspect(self, run).await.map_err(classify)
    }

    async fn retries(&self, run: &RunRecord) -> Result<Vec<RunRecord>, Failure> {
        Store::retries(self, &run.tenant, &run.id).await.map_err(|e| classify(e.into()))
    }

    async fn reload(&self, run: &RunRecord) -> Result<RunRecord, Failure> {
        self.find_run(&run.tenant, &run.id).await.map_err(|e| classify(e.into()))
    }

    async fn events_after(&self, run: &RunRecord, seq: i64) -> Result<Vec<weft_store::StoredEvent>, Failure> {
        self.load_events(&run.tenant, &run.id, seq).await.map_err(|e| classify(e.into()))
    }
}

impl Source for crate::remote::Remote {
    async fn inspect(&self, run: &RunRecord) -> Result<Inspection, Failure> {
        crate::remote::Remote::inspect(self, run).await
    }

    /// The API does not list a run's retries yet.
    async fn retries(&self, _run: &RunRecord) -> Result<Vec<RunRecord>, Failure> {
        Ok(Vec::new())
    }

    async fn reload(&self, run: &RunRecord) -> Result<RunRecord, Failure> {
        self.run(&run.id).await
    }

    async fn events_after(&self, run: &RunRecord, seq: i64) -> Result<Vec<weft_store::StoredEvent>, Failure> {
        crate::remote::Remote::events_after(self, &run.id, seq).await
    }
}
