//! Child workflow runs. A child workflow step's attempt creates a child run
//! with an id derived from the parent's run, step, iteration and attempt, and
//! drives it in the parent's process; the child's outcome is the attempt's.
//! A parent that ends early (failed, cancelled, timed out) cancels the
//! children it still has running before its own end is committed.

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;
use weft_core::{Effect, RunStatus, StepError};
use weft_workflows::{Definition, ErrorKind};

use crate::driver::Opened;
use crate::{Engine, Error, Origin, Result};

/// How many child runs one engine finds or creates at once.
pub(crate) const CHILDREN_OPENED_AT_ONCE: usize = 8;

/// A child run ready to drive (held for a moment, so its size is no matter).
#[allow(clippy::large_enum_variant)]
enum Child {
    /// It existed (a restart): found, leased and loaded.
    Found(Opened),
    /// Created now, with its journal and the effects of its creating commit.
    Created(weft_store::RunRecord, Vec<weft_store::StoredEvent>, Vec<Effect>),
}

impl Engine {
    /// Creates the child run `id` of `parent` unless it exists, drives it to
    /// its end, and turns its outcome into the step attempt's result.
    pub(crate) async fn run_child(
        &self,
        tenant: &str,
        definition: &Definition,
        id: &str,
        parent: &str,
        input: Value,
    ) -> Result<Value, StepError> {
        loop {
            // Finding or creating the child takes store connections; a
            // parent with thousands of children opens a few at a time
            // instead of queueing them all on the pool (where the last
            // would time out). Driving them is not limited.
            let opened = {
                let _opening = self.opening.acquire().await.expect("the opening semaphore is never closed");
                match self.store.get_run(tenant, id).await {
                    Ok(Some(_)) => self.open(tenant, id).await.map(Child::Found),
                    Ok(None) => {
                        match self
                            .create(
                                tenant,
                                definition,
                                input.clone(),
                                Origin::Child { id, parent },
                                None,
                                crate::Begin::Started,
                            )
                            .await
                        {
                            Ok((run, events, effects)) => Ok(Child::Created(run, events, effects)),
                            Err(Error::InvalidInput(problems)) => {
                                let message = format!("the child workflow's input: {}", problems.join("; "));
                                return Err(StepError::new(ErrorKind::InvalidInput, message));
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            };
            let outcome = match opened {
                Ok(Child::Found(opened)) => self.drive_opened(opened, &mut ()).await,
                Ok(Child::Created(run, events, effects)) => {
                    self.drive_created(run, definition, events, effects, &mut ()).await
                }
                Err(e) => Err(e),
            };
            return match outcome {
                Ok(outcome) => match outcome.status {
                    RunStatus::Completed => Ok(outcome.output.unwrap_or(Value::Null)),
                    RunStatus::Failed => {
                        let error = outcome.error.unwrap_or_else(|| StepError::new(ErrorKind::Fatal, "no error"));
                        Err(StepError { message: format!("child run {id} failed: {}", error.message), ..error })
                    }
                    RunStatus::Cancelled => {
                        Err(StepError::new(ErrorKind::Fatal, format!("child run {id} was cancelled")))
                    }
                    RunStatus::Running => {
                        Err(StepError::new(ErrorKind::Transient, format!("child run {id} stopped before its end")))
                    }
                },
                // Another process still holds the child (its lease has not
                // expired since that process died): wait for the lease.
                Err(Error::LeaseHeld { .. }) => {
                    tokio::time::sleep(self.config.lease_ttl / 3).await;
                    continue;
                }
                Err(e) => Err(StepError::new(ErrorKind::Transient, format!("driving child run {id}: {e}"))),
            };
        }
    }

    /// Performs the `CancelChild` effects among `effects` (a run's children
    /// are its tenant's). Children that were never created or have already
    /// ended are left as they are.
    pub(crate) fn cancel_children<'a>(
        &'a self,
        tenant: &'a str,
        effects: &'a [Effect],
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            for effect in effects {
                let Effect::CancelChild { run_id, reason } = effect else { continue };
                // The parent's driver drives its children: their leases are
                // this engine's, and their tasks have stopped with the parent's.
                match self.cancel_as(tenant, run_id, reason, true).await {
                    Ok(_) | Err(Error::Finished { .. }) | Err(Error::Store(weft_store::Error::RunNotFound(_))) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }
}
