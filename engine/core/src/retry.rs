//! Retrying a run: which steps of the retried run keep their outputs.

use weft_workflows::Definition;

use crate::event::Event;
use crate::state::{RunState, StepPhase};

/// Why a run cannot be retried as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    /// `--from` names no step of the workflow.
    #[error("the workflow has no step `{step}`; its steps are {}", steps.join(", "))]
    UnknownStep {
        /// The name given.
        step: String,
        /// The workflow's steps.
        steps: Vec<String>,
    },
    /// Every step completed and no step to run again was named.
    #[error("every step of the run completed, so there is nothing to run again; name a step to run again from")]
    NothingToRetry,
}

/// The [`Event::StepReused`] events that start a retry of the run whose
/// state is `retried`: every step that completed keeps its output, except
/// `from` (when given), the steps that did not complete, and every step
/// that depends on one of those, directly or not. Those run again.
pub fn reused(definition: &Definition, retried: &RunState, from: Option<&str>) -> Result<Vec<Event>, RetryError> {
    let steps = &definition.workflow.steps;
    let mut again: Vec<bool> =
        retried.steps.iter().map(|state| !matches!(state.phase, StepPhase::Completed(_))).collect();
    if let Some(step) = from {
        let i = definition.step_index(step).ok_or_else(|| RetryError::UnknownStep {
            step: step.to_string(),
            steps: steps.iter().map(|s| s.id.clone()).collect(),
        })?;
        again[i] = true;
    } else if !again.contains(&true) {
        return Err(RetryError::NothingToRetry);
    }
    // Dependents of a step that runs again run again too.
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..steps.len() {
            if !again[i] && definition.deps[i].iter().any(|&d| again[d]) {
                again[i] = true;
                changed = true;
            }
        }
    }
    Ok(retried
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| !again[*i])
        .filter_map(|(i, state)| match &state.phase {
            StepPhase::Completed(output) => {
                Some(Event::StepReused { step: steps[i].id.clone(), output: output.clone() })
            }
            _ => None,
        })
        .collect())
}
