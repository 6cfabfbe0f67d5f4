//! What the core decides beyond the journal: the effects a driver performs
//! once the events that call for them are committed.

use std::time::Duration;

use serde_json::Value;
use weft_workflows::ConnectorRef;

use crate::event::{Event, Millis};
use crate::state::RunStatus;

/// One attempt of one step (and `foreach` iteration): what a result is
/// reported against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttemptId {
    /// The step's index in the definition.
    pub step: usize,
    /// The `foreach` iteration, if the step has `foreach`.
    pub iteration: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// A connector call to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The attempt it performs.
    pub attempt: AttemptId,
    /// The step's id.
    pub step_id: String,
    /// The connector action, as the step names it.
    pub uses: ConnectorRef,
    /// The digest of the build the run is pinned to; none when the run pins
    /// no build for this connector (the call then fails).
    pub digest: Option<String>,
    /// The rendered input.
    pub input: Value,
    /// The iteration's idempotency key, as journaled.
    pub idempotency_key: String,
    /// The step's per-attempt timeout.
    pub timeout: Option<Duration>,
}

/// A child run to start (or, after a restart, to find) and drive to its end.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildStart {
    /// The parent's attempt that the child's outcome settles.
    pub attempt: AttemptId,
    /// The parent step's id (its child definition is kept under it).
    pub step_id: String,
    /// The child run's id, as journaled.
    pub run_id: String,
    /// The rendered input.
    pub input: Value,
    /// The parent step's timeout, which bounds the whole child run.
    pub timeout: Option<Duration>,
}

/// Something a driver does for a run, as data.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Call a connector action; report its result with
    /// [`on_outcome`](crate::on_outcome).
    Call(Call),
    /// Start or find a child run and drive it; report its outcome with
    /// [`on_outcome`](crate::on_outcome).
    StartChild(ChildStart),
    /// Cancel a child run that this run started. Done before the run's end
    /// is committed, so a driver that dies in between does it again.
    CancelChild {
        /// The child run's id.
        run_id: String,
        /// Why, for the child's journal.
        reason: String,
    },
    /// Nothing more happens without a new event until this time (a timer,
    /// a retry, a wait's timeout or the run's timeout).
    WakeAt(Millis),
    /// The run is over: the driver stops its calls and lets go.
    Finish(RunStatus),
}

/// The events to journal and the effects to perform once they are durable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Events, in journal order.
    pub events: Vec<Event>,
    /// Effects, in the order they were decided.
    pub effects: Vec<Effect>,
}

impl Decision {
    /// Whether there is nothing to journal and nothing to do.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.effects.is_empty()
    }

    /// Appends another decision's events and effects.
    pub fn extend(&mut self, other: Decision) {
        self.events.extend(other.events);
        self.effects.extend(other.effects);
    }

    /// The status the run finishes with, if this decision finishes it.
    pub fn finish(&self) -> Option<RunStatus> {
        self.effects.iter().find_map(|e| match e {
            Effect::Finish(status) => Some(*status),
            _ => None,
        })
    }

    /// The wake-up time, if this decision sets one.
    pub fn wake_at(&self) -> Option<Millis> {
        self.effects.iter().rev().find_map(|e| match e {
            Effect::WakeAt(at) => Some(*at),
            _ => None,
        })
    }
}
