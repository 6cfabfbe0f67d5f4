//! Weft's run state machine, with no I/O: a run's journal folds into a
//! [`RunState`], and [`decide`] says which events follow and which
//! [`Effect`]s they call for (a connector call, a child run, a wake-up, the
//! run's end). [`advance`] applies decisions until nothing is left. The
//! driver commits the events, then performs the effects, and feeds results
//! back through [`on_outcome`].
//!
//! ```
//! use weft_core::{Effect, Event, RunState, advance};
//! use weft_workflows::{Catalog, load};
//!
//! let def = load("nap.json", r#"{"name":"nap","steps":[{"id":"rest","sleep":"1s"}]}"#, &Catalog::default()).unwrap();
//! let mut state = RunState::new("run-1", &def);
//! let started = Event::RunStarted {
//!     workflow: "nap".into(), workflow_hash: def.hash.clone(), input: serde_json::json!({}),
//!     connectors: Default::default(), timeout_at: None, retry_of: None,
//! };
//! state.apply(&def, &started);
//! let decision = advance(&def, &mut state, 0);
//! assert!(matches!(&decision.events[0], Event::StepScheduled { step, .. } if step == "rest"));
//! // The sleep is journaled as a timer; the driver is told when to wake.
//! assert_eq!(decision.effects, [Effect::WakeAt(1_000)]);
//! ```

mod decide;
mod effect;
mod event;
mod retry;
mod state;
mod timeline;

pub use decide::{
    DEFAULT_CONCURRENCY, MAX_INTERRUPTIONS, advance, child_run_id, decide, idempotency_key, later, next_wake,
    on_outcome, recover, retry_delay, scope,
};
pub use effect::{AttemptId, Call, ChildStart, Decision, Effect};
pub use event::{Event, LogLevel, LogLine, Logs, Millis, RetryOf, StepError};
pub use retry::{RetryError, reused};
pub use state::{Awaiting, Iteration, Pin, RunState, RunStatus, Signal, StepPhase, StepState};
pub use timeline::{Entry, EntryStatus, interrupt, timeline};
pub use weft_workflows::ErrorKind;
