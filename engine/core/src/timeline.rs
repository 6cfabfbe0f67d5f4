//! A run's timeline: its journal projected into one entry per attempt (plus
//! skipped steps and received signals), for `weft runs show` and the API.

use serde::Serialize;
use serde_json::Value;
use weft_workflows::{Definition, ErrorKind, StepKind};

use crate::event::{Event, Logs, Millis, StepError};

/// Where a timeline entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// An attempt under way (a call or a child run).
    Running,
    /// A wait for a signal.
    Waiting,
    /// A durable sleep.
    Sleeping,
    /// A sleep that ended.
    Slept,
    /// An attempt that succeeded.
    Completed,
    /// An attempt (or a step, before any attempt) that failed.
    Failed,
    /// A step that will not run.
    Skipped,
    /// A step whose output was taken from the run this one retries.
    Reused,
    /// A signal delivered to the run.
    Received,
    /// An attempt, wait or sleep that was under way when the run was
    /// cancelled or failed: it will not finish.
    Cancelled,
    /// An attempt cut short because the process driving it stopped; resuming
    /// the run starts it again.
    Interrupted,
}

impl EntryStatus {
    /// The status as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Running => "running",
            EntryStatus::Waiting => "waiting",
            EntryStatus::Sleeping => "sleeping",
            EntryStatus::Slept => "slept",
            EntryStatus::Completed => "completed",
            EntryStatus::Failed => "failed",
            EntryStatus::Skipped => "skipped",
            EntryStatus::Reused => "reused",
            EntryStatus::Received => "received",
            EntryStatus::Cancelled => "cancelled",
            EntryStatus::Interrupted => "interrupted",
        }
    }
}

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The step id; for a received signal, none.
    pub step: Option<String>,
    /// The `foreach` iteration.
    pub iteration: Option<u32>,
    /// The attempt; none for a skipped step or one that failed before it
    /// could start.
    pub attempt: Option<u32>,
    /// Where it stands.
    pub status: EntryStatus,
    /// When it began (ms).
    pub started_at: Millis,
    /// When it ended (ms), if it has.
    pub ended_at: Option<Millis>,
    /// A completed attempt's output.
    pub output: Option<Value>,
    /// A failed attempt's error.
    pub error: Option<StepError>,
    /// After a failure: when the next attempt starts.
    pub retry_at: Option<Millis>,
    /// For a sleep: when it ends.
    pub sleeping_until: Option<Millis>,
    /// For a wait, the signal it waits for; for a received signal, its name.
    pub signal: Option<String>,
    /// For a child workflow attempt: the child run's id.
    pub child: Option<String>,
    /// For a skipped step: why.
    pub reason: Option<String>,
    /// What the attempt's connector logged.
    pub logs: Logs,
}

impl Entry {
    fn new(
        step: Option<String>,
        iteration: Option<u32>,
        attempt: Option<u32>,
        status: EntryStatus,
        at: Millis,
    ) -> Self {
        Entry {
            step,
            iteration,
            attempt,
            status,
            started_at: at,
            ended_at: None,
            output: None,
            error: None,
            retry_at: None,
            sleeping_until: None,
            signal: None,
            child: None,
            reason: None,
            logs: Logs::default(),
        }
    }

    /// Whether it is still under way.
    pub fn is_open(&self) -> bool {
        matches!(self.status, EntryStatus::Running | EntryStatus::Waiting | EntryStatus::Sleeping)
    }

    fn is(&self, step: &str, iteration: Option<u32>, attempt: Option<u32>) -> bool {
        self.step.as_deref() == Some(step)
            && self.iteration == iteration
            && (attempt.is_none() || self.attempt == attempt)
    }
}

/// Projects a journal, given as (commit time, event) in order, into its
/// timeline.
pub fn timeline<'e>(definition: &Definition, events: impl IntoIterator<Item = (Millis, &'e Event)>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let find = |entries: &mut Vec<Entry>, step: &str, iteration: Option<u32>, attempt: Option<u32>| {
        entries
            .iter_mut()
            .rev()
            .position(|e| e.is(step, iteration, attempt))
            .map(|from_end| entries.len() - 1 - from_end)
    };
    for (at, event) in events {
        match event {
            Event::StepStarted { step, iteration, attempt, child, .. } => {
                let wait = definition.step_index(step).and_then(|i| match &definition.workflow.steps[i].kind {
                    StepKind::WaitForSignal(wait) => Some(wait.name.clone()),
                    _ => None,
                });
                let status = if wait.is_some() { EntryStatus::Waiting } else { EntryStatus::Running };
                let mut entry = Entry::new(Some(step.clone()), *iteration, Some(*attempt), status, at);
                entry.signal = wait;
                entry.child = child.clone();
                entries.push(entry);
            }
            Event::TimerSet { step, fire_at } => {
                if let Some(i) = find(&mut entries, step, None, None) {
                    entries[i].status = EntryStatus::Sleeping;
                    entries[i].sleeping_until = Some(*fire_at);
                }
            }
            Event::TimerFired { step } => {
                if let Some(i) = find(&mut entries, step, None, None) {
                    entries[i].status = EntryStatus::Slept;
                    entries[i].ended_at = Some(at);
                }
            }
            Event::StepCompleted { step, iteration, attempt, output, logs } => {
                if let Some(i) = find(&mut entries, step, *iteration, Some(*attempt)) {
                    entries[i].status = EntryStatus::Completed;
                    entries[i].ended_at = Some(at);
                    entries[i].output = Some(output.clone());
                    entries[i].logs = logs.clone();
                }
            }
            Event::StepFailed { step, iteration, attempt, error, retry_at, logs } => {
                let i = match find(&mut entries, step, *iteration, Some(*attempt)) {
                    Some(i) => i,
                    None => {
                        entries.push(Entry::new(Some(step.clone()), *iteration, None, EntryStatus::Failed, at));
                        entries.len() - 1
                    }
                };
                let entry = &mut entries[i];
                entry.status =
                    if error.kind == ErrorKind::Interrupted { EntryStatus::Interrupted } else { EntryStatus::Failed };
                entry.ended_at = Some(at);
                entry.error = Some(error.clone());
                entry.retry_at = *retry_at;
                entry.logs = logs.clone();
            }
            Event::StepSkipped { step, reason } => {
                let mut entry = Entry::new(Some(step.clone()), None, None, EntryStatus::Skipped, at);
                entry.ended_at = Some(at);
                entry.reason = Some(reason.clone());
                entries.push(entry);
            }
            Event::StepReused { step, output } => {
                let mut entry = Entry::new(Some(step.clone()), None, None, EntryStatus::Reused, at);
                entry.ended_at = Some(at);
                entry.output = Some(output.clone());
                entries.push(entry);
            }
            Event::SignalReceived { name, .. } => {
                let mut entry = Entry::new(None, None, None, EntryStatus::Received, at);
                entry.ended_at = Some(at);
                entry.signal = Some(name.clone());
                entries.push(entry);
            }
            Event::RunFailed { .. } | Event::RunCancelled { .. } => {
                for entry in entries.iter_mut().filter(|e| e.is_open()) {
                    entry.status = EntryStatus::Cancelled;
                    entry.ended_at = Some(at);
                }
            }
            Event::RunStarted { .. }
            | Event::StepScheduled { .. }
            | Event::CancelRequested { .. }
            | Event::RunCompleted { .. } => {}
        }
    }
    entries
}

/// Marks the attempts under way (calls and child runs) as interrupted: for
/// a run that no live process drives, they are not running, and resuming the
/// run starts them again. Waits and sleeps stay as they are: they are kept
/// in the journal, not in a process.
pub fn interrupt(entries: &mut [Entry]) {
    for entry in entries.iter_mut().filter(|e| e.status == EntryStatus::Running) {
        entry.status = EntryStatus::Interrupted;
    }
}
