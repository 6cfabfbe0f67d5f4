//! `weft runs list` and `weft runs show`: runs and their timelines, drawn
//! from the journal.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use weft_core::EntryStatus;
use weft_core::Event;
use weft_store::{RunRecord, StoredEvent};
use weft_workflows::Definition;

fn timestamp(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

fn duration(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// `text` on one line, safe for a terminal, cut to `max` characters.
fn short(text: &str, max: usize) -> String {
    let one_line = crate::terminal::safe(&text.replace('\n', " ")).into_owned();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Prints runs as a table or as JSON.
pub fn list(runs: &[RunRecord], store: &str, json: bool) {
    if json {
        let rows: Vec<Value> = runs
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "workflow": r.workflow_name, "status": r.status.as_str(), "parent": r.parent_id,
                    "created_at": timestamp(r.created_at), "updated_at": timestamp(r.updated_at),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
        return;
    }
    let store = crate::terminal::safe(store);
    if runs.is_empty() {
        eprintln!("no runs yet in {store}; start one with `weft run FILE`");
        return;
    }
    eprintln!("runs in {store}:");
    println!("{:<36}  {:<20}  {:<9}  {:<24}  DURATION", "RUN", "WORKFLOW", "STATUS", "CREATED");
    for run in runs {
        let took = if !run.status.is_terminal() { "-".to_string() } else { duration(run.updated_at - run.created_at) };
        println!(
            "{:<36}  {:<20}  {:<9}  {:<24}  {}",
            run.id,
            if run.parent_id.is_some() {
                format!("↳ {}", short(&run.workflow_name, 18))
            } else {
                short(&run.workflow_name, 20)
            },
            run.status,
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
struct Row {
    step: String,
    attempt: String,
    status: &'static str,
    start: i64,
    end: Option<i64>,
    detail: String,
}

/// Prints a run's timeline, or the run and its raw journal as JSON.
pub fn show(run: &RunRecord, definition: &Definition, events: &[StoredEvent], json: bool) {
    if json {
        let journal: Vec<Value> =
            events.iter().map(|e| json!({ "seq": e.seq, "at": timestamp(e.at), "event": e.event })).collect();
        let body = json!({
            "id": run.id, "workflow": run.workflow_name, "workflow_hash": run.workflow_hash, "status": run.status.as_str(),
            "parent": run.parent_id,
            "input": serde_json::from_str::<Value>(&run.input).unwrap_or(Value::Null),
            "output": run.output.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
            "error": run.error.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
            "events": journal,
        });
        println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
        return;
    }
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
    if let Some(pins) = pins.filter(|p| !p.is_empty()) {
        let pins: Vec<String> = pins.iter().map(|(k, d)| format!("{k} {}", short(d, 19))).collect();
        println!("pinned    {}", pins.join(", "));
    }
    println!("status    {}", run.status);
    println!("started   {}", timestamp(origin));
    if run.status.is_terminal() {
        println!("took      {}", duration(run.updated_at - origin));
    }
    println!("input     {}", short(&run.input, 100));

    let rows: Vec<Row> = weft_core::timeline(definition, events.iter().map(|e| (e.at, &e.event)))
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
                    let output = entry.output.as_ref().map(|o| o.to_string()).unwrap_or_default();
                    format!("{}→ {}", child.unwrap_or_default(), short(&output, 60))
                }
                EntryStatus::Failed => {
                    let error = entry.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
                    let retry =
                        entry.retry_at.map(|t| format!(" (retry in {})", duration(t - entry.ended_at.unwrap_or(t))));
                    format!("{}{}", short(&error, 80), retry.unwrap_or_default())
                }
                EntryStatus::Skipped => entry.reason.clone().unwrap_or_default(),
                EntryStatus::Slept | EntryStatus::Received => String::new(),
            };
            Row {
                step,
                attempt: entry.attempt.map_or("-".to_string(), |a| a.to_string()),
                status: entry.status.as_str(),
                start: entry.started_at,
                end: entry.ended_at,
                detail,
            }
        })
        .collect();
    println!();
    println!("{:<20}  {:>7}  {:<9}  {:>9}  {:>9}  DETAIL", "STEP", "ATTEMPT", "STATUS", "AT", "DURATION");
    for row in &rows {
        let took = row.end.map_or("-".to_string(), |end| duration(end - row.start));
        println!(
            "{:<20}  {:>7}  {:<9}  {:>9}  {:>9}  {}",
            short(&row.step, 20),
            row.attempt,
            row.status,
            format!("+{}", duration(row.start - origin)),
            took,
            row.detail
        );
    }
    println!();
    if let Some(output) = &run.output {
        println!("output    {}", short(output, 200));
    }
    if let Some(error) = &run.error {
        println!("error     {}", short(error, 200));
    }
}
