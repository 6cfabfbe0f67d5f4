//! A worker: drives the runs that are due and that nobody drives, across
//! tenants, a bounded number at a time. Runs reach it three ways: handed
//! over by the process that created them ([`Worker::adopt`]), parked runs
//! whose time has come or whose signal arrived, and runs whose driver died
//! (its lease expired). The last two are claimed from the store, which
//! never gives one run to two workers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::{Engine, now_ms};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How many runs it drives at once.
    pub slots: usize,
    /// How often it looks for due runs when none were found.
    pub poll_interval: Duration,
    /// How long a shutdown waits for runs under way before leaving them to
    /// their leases' expiry.
    pub grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig { slots: 256, poll_interval: Duration::from_millis(200), grace: Duration::from_secs(10) }
    }
}

/// A free place in a worker for one run.
pub struct Slot {
    /// Held while the run is driven.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Drives due runs. Cheap to clone; clones share the slots.
#[derive(Clone)]
pub struct Worker {
    engine: Engine,
    config: WorkerConfig,
    slots: Arc<Semaphore>,
    /// Wakes the claim loop early (a slot came free, or a run was handed
    /// over while all were taken).
    nudge: Arc<Notify>,
}

impl Worker {
    /// A worker driving runs with `engine` (which should park waiting runs:
    /// [`crate::EngineConfig::park_after`]).
    pub fn new(engine: Engine, config: WorkerConfig) -> Worker {
        let slots = Arc::new(Semaphore::new(config.slots));
        Worker { engine, config, slots, nudge: Arc::new(Notify::new()) }
    }

    /// How many runs it drives now.
    pub fn driving(&self) -> usize {
        self.config.slots - self.slots.available_permits()
    }

    /// Drives a run this process just created (and leases). With no slot
    /// free, the lease is given back and a claim picks the run up later.
    pub async fn adopt(&self, tenant: &str, run_id: &str) {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => self.spawn(tenant.to_string(), run_id.to_string(), permit),
            Err(_) => {
                self.engine.release_lease(tenant, run_id).await;
                self.nudge.notify_one();
            }
        }
    }

    /// One of its slots, if one is free: what [`Worker::drive_started`]
    /// needs. A caller that gets none starts its run with
    /// [`Engine::start_once`] and hands it over with [`Worker::adopt`].
    pub fn slot(&self) -> Option<Slot> {
        self.slots.clone().try_acquire_owned().ok().map(|permit| Slot { _permit: permit })
    }

    /// Drives, in `slot`, a run this process created with
    /// [`Engine::start_to_drive`]: its first calls go out at once, with no
    /// read of what was just written.
    pub fn drive_started(&self, started: crate::Started, slot: Slot) {
        let (engine, nudge) = (self.engine.clone(), self.nudge.clone());
        tokio::spawn(async move {
            let (tenant, run_id) = (started.tenant().to_string(), started.run_id().to_string());
            match engine.drive_started(started, &mut ()).await {
                Ok(outcome) => tracing::debug!(tenant, run_id, status = %outcome.status, "run.driven"),
                Err(e) => tracing::warn!(tenant, run_id, error = %e, "driving a run failed; it is left to its lease"),
            }
            drop(slot);
            nudge.notify_one();
        });
    }

    fn spawn(&self, tenant: String, run_id: String, permit: tokio::sync::OwnedSemaphorePermit) {
        let (engine, nudge) = (self.engine.clone(), self.nudge.clone());
        tokio::spawn(async move {
            match engine.drive(&tenant, &run_id, &mut ()).await {
                Ok(outcome) => tracing::debug!(tenant, run_id, status = %outcome.status, "run.driven"),
                Err(e) => tracing::warn!(tenant, run_id, error = %e, "driving a run failed; it is left to its lease"),
            }
            drop(permit);
            nudge.notify_one();
        });
    }

    /// Claims and drives due runs until `shutdown` resolves, then waits up
    /// to the grace period for the runs under way. A store error (the
    /// database restarting, say) is logged and retried with backoff.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = self.config.poll_interval;
        loop {
            let wait = match self.claim().await {
                Ok(claimed) if claimed > 0 && self.slots.available_permits() > 0 => Duration::ZERO,
                Ok(_) => {
                    backoff = self.config.poll_interval;
                    self.config.poll_interval
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "claiming due runs failed");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {}
                () = self.nudge.notified() => {}
            }
        }
        let all = u32::try_from(self.config.slots).unwrap_or(u32::MAX);
        if tokio::time::timeout(self.config.grace, self.slots.acquire_many(all)).await.is_err() {
            tracing::warn!(driving = self.driving(), "shutting down with runs under way; their leases will expire");
        }
    }

    /// Claims as many due runs as there are free slots and starts driving
    /// them; returns how many.
    async fn claim(&self) -> crate::Result<usize> {
        let free = self.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = now_ms();
        let until = now + self.engine.config.lease_ttl.as_millis() as i64;
        let claimed = self.engine.store.claim_due_runs(&self.engine.owner, now, until, free as i64).await?;
        let n = claimed.len();
        crate::telemetry::claimed(n, claimed.iter().filter(|c| c.taken_over).count());
        for weft_store::Claimed { tenant, run_id, taken_over } in claimed {
            if taken_over {
                tracing::info!(tenant, run_id, "run.takeover");
            }
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => self.spawn(tenant, run_id, permit),
                Err(_) => self.engine.release_lease(&tenant, &run_id).await,
            }
        }
        Ok(n)
    }
}
