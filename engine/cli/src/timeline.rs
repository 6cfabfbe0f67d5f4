//! `weft runs list` and `weft runs show`: runs and their timelines, drawn
//! from the journal.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use weft_core::Event;
use weft_store::{RunRecord, StoredEvent};
use weft_workflows::{Definition, StepKind};

fn timestamp(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

fn duration(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Prints runs as a table or as JSON.
pub fn list(runs: &[RunRecord], json: bool) {
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
    if runs.is_empty() {
        eprintln!("no runs yet; start one with `weft run FILE`");
        return;
    }
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

/// One attempt as the timeline shows it.
struct Row {
    step: String,
    attempt: String,
    status: String,
    start: i64,
    end: Option<i64>,
    detail: String,
    /// For a child workflow step: the child run's id.
    child: Option<String>,
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
    println!("workflow  {} ({})", run.workflow_name, run.workflow_hash);
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

    let mut rows: Vec<Row> = Vec::new();
    for stored in events {
        let at = stored.at;
        match &stored.event {
            Event::StepStarted { step, iteration, attempt, child, .. } => rows.push(Row {
                step: label(step, *iteration),
                attempt: attempt.to_string(),
                status: "running".into(),
                start: at,
                end: None,
                detail: match child {
                    Some(child) => format!("child run {child}"),
                    None => definition
                        .step_index(step)
                        .and_then(|i| match &definition.workflow.steps[i].kind {
                            StepKind::WaitForSignal(w) => Some(format!("waiting for signal `{}`", w.name)),
                            _ => None,
                        })
                        .unwrap_or_default(),
                },
                child: child.clone(),
            }),
            Event::TimerSet { step, fire_at } => {
                if let Some(row) = rows.iter_mut().rev().find(|r| &r.step == step) {
                    row.status = "sleeping".into();
                    row.detail = format!("until {}", timestamp(*fire_at));
                }
            }
            Event::TimerFired { step } => {
                if let Some(row) = rows.iter_mut().rev().find(|r| &r.step == step) {
                    row.status = "slept".into();
                    row.end = Some(at);
                }
            }
            Event::StepCompleted { step, iteration, attempt, output } => {
                if let Some(row) = rows
                    .iter_mut()
                    .rev()
                    .find(|r| r.step == label(step, *iteration) && r.attempt == attempt.to_string())
                {
                    row.status = "completed".into();
                    row.end = Some(at);
                    let child = row.child.as_deref().map(|id| format!("child run {} ", id.get(..8).unwrap_or(id)));
                    row.detail = format!("{}→ {}", child.unwrap_or_default(), short(&output.to_string(), 60));
                }
            }
            Event::StepFailed { step, iteration, attempt, error, retry_at } => {
                let name = label(step, *iteration);
                let retry = retry_at.map(|t| format!(" (retry in {})", duration(t - at))).unwrap_or_default();
                match rows.iter_mut().rev().find(|r| r.step == name && r.attempt == attempt.to_string()) {
                    Some(row) => {
                        row.status = "failed".into();
                        row.end = Some(at);
                        row.detail = format!("{}{retry}", short(&error.to_string(), 80));
                    }
                    None => rows.push(Row {
                        step: name,
                        attempt: "-".into(),
                        status: "failed".into(),
                        start: at,
                        end: Some(at),
                        detail: short(&error.to_string(), 80),
                        child: None,
                    }),
                }
            }
            Event::StepSkipped { step, reason } => rows.push(Row {
                step: step.clone(),
                attempt: "-".into(),
                status: "skipped".into(),
                start: at,
                end: Some(at),
                detail: reason.clone(),
                child: None,
            }),
            Event::SignalReceived { name, .. } => rows.push(Row {
                step: format!("(signal {name})"),
                attempt: "-".into(),
                status: "received".into(),
                start: at,
                end: Some(at),
                detail: String::new(),
                child: None,
            }),
            _ => {}
        }
    }
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
