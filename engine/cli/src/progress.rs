//! Live per-step progress on stderr: spinners on a terminal, one plain line
//! per step event otherwise (logs, CI, pipes).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use weft_core::Event;
use weft_runtime::Observer;
use weft_workflows::{Definition, StepKind};

/// Draws a run's progress.
pub struct Progress {
    multi: Option<MultiProgress>,
    plain: bool,
    bars: HashMap<String, ProgressBar>,
    items: HashMap<String, usize>,
    done: HashMap<String, usize>,
    started_at: HashMap<String, i64>,
    waits: HashMap<String, String>,
    last_at: i64,
    run_id: Arc<OnceLock<String>>,
    announce_start: bool,
    prefix: String,
}

impl Progress {
    /// Progress for runs of `definition`; `enabled: false` draws nothing.
    pub fn new(definition: &Definition, enabled: bool) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let waits = definition
            .workflow
            .steps
            .iter()
            .filter_map(|s| match &s.kind {
                StepKind::WaitForSignal(w) => Some((s.id.clone(), w.name.clone())),
                _ => None,
            })
            .collect();
        Progress {
            multi: (enabled && tty).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            plain: enabled && !tty,
            bars: HashMap::new(),
            items: HashMap::new(),
            done: HashMap::new(),
            started_at: HashMap::new(),
            waits,
            last_at: weft_runtime::now_ms(),
            run_id: Arc::default(),
            announce_start: false,
            prefix: String::new(),
        }
    }

    /// Plain lines, each starting with `[tag]`: for several runs at once.
    pub fn prefix_lines(&mut self, tag: &str) {
        self.plain = self.plain || self.multi.is_some();
        self.multi = None;
        self.prefix = format!("[{tag}] ");
    }

    /// Print "run ID started" when the run's first event arrives. Returns
    /// where that id appears then: for code that no longer holds the
    /// progress (the Ctrl-C handler, while a task drives the run).
    pub fn announce_start(&mut self) -> Arc<OnceLock<String>> {
        self.announce_start = true;
        self.run_id.clone()
    }

    /// Prints a line above the bars.
    pub fn note(&self, line: &str) {
        let line = crate::terminal::safe(line);
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None if self.plain => eprintln!("{}{line}", self.prefix),
            None => {}
        }
    }

    /// Stops drawing.
    pub fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }

    fn bar(&mut self, step: &str) -> Option<&ProgressBar> {
        let multi = self.multi.as_ref()?;
        if !self.bars.contains_key(step) {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg}").expect("a valid template"),
            );
            bar.set_prefix(step.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            self.bars.insert(step.to_string(), bar);
        }
        self.bars.get(step)
    }

    /// Shows a step's state: on its bar, or as a plain line.
    fn update(&mut self, step: &str, message: String, finished: bool) {
        let message = crate::terminal::safe(&message).into_owned();
        if self.plain {
            eprintln!("{}{step}: {message}", self.prefix);
            return;
        }
        if let Some(bar) = self.bar(step) {
            if finished {
                bar.set_style(ProgressStyle::with_template("  {prefix:.bold} {wide_msg}").expect("a valid template"));
                bar.finish_with_message(message);
            } else {
                bar.set_message(message);
            }
        }
    }

    fn elapsed(&self, step: &str) -> String {
        let ms = self.started_at.get(step).map_or(0, |start| (self.last_at - start).max(0));
        humantime::format_duration(Duration::from_millis(ms as u64)).to_string()
    }
}

impl Observer for Progress {
    fn event(&mut self, run_id: &str, _seq: i64, event: &Event) {
        self.last_at = weft_runtime::now_ms();
        if self.run_id.get().is_none() {
            let _ = self.run_id.set(run_id.to_string());
        }
        match event {
            Event::RunStarted { workflow, retry_of, .. } if self.announce_start => match retry_of {
                Some(of) => self.note(&format!("run {run_id} started ({workflow}), retrying run {}", of.run)),
                None => self.note(&format!("run {run_id} started ({workflow})")),
            },
            Event::StepReused { step, .. } => self.update(step, "✓ reused from the retried run".to_string(), true),
            Event::StepScheduled { step, items: Some(items) } => {
                self.items.insert(step.clone(), items.len());
                self.started_at.insert(step.clone(), self.last_at);
                self.update(step, format!("0/{}", crate::terminal::count(items.len(), "item")), false);
            }
            Event::StepStarted { step, attempt, iteration, .. } => {
                self.started_at.entry(step.clone()).or_insert(self.last_at);
                let message = match (self.waits.get(step), iteration) {
                    (Some(signal), _) => format!("waiting for signal `{signal}`"),
                    (None, Some(_)) => return,
                    (None, None) if *attempt > 1 => format!("running (attempt {attempt})"),
                    (None, None) => "running".to_string(),
                };
                if !self.plain || *attempt > 1 || self.waits.contains_key(step) {
                    self.update(step, message, false);
                }
            }
            Event::TimerSet { step, fire_at } => {
                let wait = Duration::from_millis((fire_at - self.last_at).max(0) as u64);
                self.update(step, format!("sleeping for {}", humantime::format_duration(wait)), false);
            }
            Event::TimerFired { step } => {
                let message = format!("✓ slept {}", self.elapsed(step));
                self.update(step, message, true);
            }
            Event::StepCompleted { step, iteration: Some(_), .. } => {
                let done = self.done.entry(step.clone()).or_default();
                *done += 1;
                let (done, total) = (*done, self.items.get(step).copied().unwrap_or(0));
                if done == total {
                    let message = format!("✓ {} in {}", crate::terminal::count(total, "item"), self.elapsed(step));
                    self.update(step, message, true);
                } else if !self.plain {
                    self.update(step, format!("{done}/{}", crate::terminal::count(total, "item")), false);
                }
            }
            Event::StepCompleted { step, iteration: None, .. } => {
                let message = format!("✓ done in {}", self.elapsed(step));
                self.update(step, message, true);
            }
            Event::StepFailed { step, attempt, error, retry_at: Some(at), .. } => {
                let wait = Duration::from_millis((at - self.last_at).max(0) as u64);
                let message =
                    format!("attempt {attempt} failed ({error}); retrying in {}", humantime::format_duration(wait));
                self.update(step, message, false);
            }
            Event::StepFailed { step, error, retry_at: None, .. } => self.update(step, format!("✗ {error}"), true),
            Event::StepSkipped { step, reason } => self.update(step, format!("↷ skipped: {reason}"), true),
            Event::SignalReceived { name, .. } => self.note(&format!("signal `{name}` received")),
            Event::CancelRequested { reason } => self.note(&format!("cancellation requested: {reason}")),
            _ => {}
        }
    }
}
