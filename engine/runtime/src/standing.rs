//! Where a run stands, as a person asks it: driven by a live process and
//! under way, waiting (and for what), interrupted, or over. The store's
//! status only says whether a run is over; the rest comes from its lease and
//! its journal.

use weft_core::{Awaiting, Millis, RunState, RunStatus};
use weft_store::{RunRecord, Store};
use weft_workflows::Definition;

use crate::{Result, definition, lease, now_ms};

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// A live process drives it, and a call or a child run is under way (or
    /// about to start).
    Running {
        /// The lease holder, `host:pid:nonce`.
        driver: String,
    },
    /// Nothing is under way: every open step waits for a signal, a timer or
    /// a retry, and nothing of it is due yet.
    Waiting {
        /// What it waits for.
        waits: Vec<Awaiting>,
        /// The live process that goes on when one comes, if any; without
        /// one, `weft resume` (or a server) must.
        driver: Option<String>,
    },
    /// No live process drives it, and it has work to do: the process that
    /// drove it died or stopped. Resuming it goes on from its journal.
    Interrupted,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl Standing {
    /// Where `run` stands at `now`, given its definition and its journal
    /// folded into `state`.
    pub fn of(run: &RunRecord, definition: &Definition, state: &RunState, now: Millis) -> Standing {
        match state.status {
            RunStatus::Completed => return Standing::Completed,
            RunStatus::Failed => return Standing::Failed,
            RunStatus::Cancelled => return Standing::Cancelled,
            RunStatus::Running => {}
        }
        let driver = lease::live_holder(run, now).map(str::to_string);
        match (state.awaiting(definition, now), driver) {
            (Some(waits), driver) => Standing::Waiting { waits, driver },
            (None, Some(driver)) => Standing::Running { driver },
            (None, None) => Standing::Interrupted,
        }
    }

    /// The run's status as shown and filtered on: `running`, `waiting`,
    /// `interrupted`, `completed`, `failed` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Standing::Running { .. } => "running",
            Standing::Waiting { .. } => "waiting",
            Standing::Interrupted => "interrupted",
            Standing::Completed => "completed",
            Standing::Failed => "failed",
            Standing::Cancelled => "cancelled",
        }
    }

    /// Every status [`Standing::as_str`] gives.
    pub const NAMES: [&'static str; 6] = ["running", "waiting", "interrupted", "completed", "failed", "cancelled"];
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A run with what its journal says: for `weft runs show` and the API.
pub struct Inspection {
    /// The definition it is pinned to.
    pub definition: Definition,
    /// Its journal folded.
    pub state: RunState,
    /// Its journal.
    pub events: Vec<weft_store::StoredEvent>,
    /// Where it stands now.
    pub standing: Standing,
}

/// Reads a run's definition and journal and says where it stands (no wasm
/// host needed).
pub async fn inspect(store: &Store, run: &RunRecord) -> Result<Inspection> {
    let definition = definition(store, run).await?;
    let events = store.load_events(&run.tenant, &run.id, 0).await?;
    let state = RunState::replay(&run.id, &definition, events.iter().map(|e| &e.event));
    let standing = Standing::of(run, &definition, &state, now_ms());
    Ok(Inspection { definition, state, events, standing })
}

/// Where a run stands; a run that is over is answered from its record alone.
pub async fn standing(store: &Store, run: &RunRecord) -> Result<Standing> {
    Ok(match run.status {
        RunStatus::Completed => Standing::Completed,
        RunStatus::Failed => Standing::Failed,
        RunStatus::Cancelled => Standing::Cancelled,
        RunStatus::Running => inspect(store, run).await?.standing,
    })
}
