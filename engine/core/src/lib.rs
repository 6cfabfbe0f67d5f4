//! Weft's run state machine, with no I/O: a run's journal folds into a
//! [`RunState`], and [`next`] says which events follow. The driver commits
//! those events, then performs the attempts they start, and feeds results
//! back through [`on_outcome`].
//!
//! ```
//! use weft_core::{Event, RunState, next};
//! use weft_workflows::{Catalog, load};
//!
//! let def = load("nap.json", r#"{"name":"nap","steps":[{"id":"rest","sleep":"1s"}]}"#, &Catalog::default()).unwrap();
//! let mut state = RunState::new("run-1", &def);
//! let started = Event::RunStarted {
//!     workflow: "nap".into(), workflow_hash: def.hash.clone(), input: serde_json::json!({}),
//!     connectors: Default::default(), timeout_at: None,
//! };
//! state.apply(&def, &started);
//! let events = next(&def, &state, 0);
//! assert!(matches!(&events[0], Event::StepScheduled { step, .. } if step == "rest"));
//! ```

mod decide;
mod event;
mod state;

pub use decide::{
    DEFAULT_CONCURRENCY, child_run_id, idempotency_key, next, next_wake, on_outcome, recover, retry_delay, scope,
};
pub use event::{Event, Millis, StepError};
pub use state::{Iteration, RunState, RunStatus, Signal, StepPhase, StepState};
pub use weft_workflows::ErrorKind;
