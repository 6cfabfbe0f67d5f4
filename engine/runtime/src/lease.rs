//! Who drives a run: a lease in the store, named `host:pid:nonce`.

use weft_store::{Lease, now_ms};

use crate::{Engine, Error, Result};

/// This process's lease owner id.
pub(crate) fn owner_id() -> String {
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    format!("{}:{}:{}", hostname(), std::process::id(), &nonce[nonce.len() - 6..])
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether `owner` names a process on this machine that no longer exists.
fn is_dead_local(owner: &str) -> bool {
    let mut parts = owner.split(':');
    match (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) {
        (Some(host), Some(pid)) => {
            host == hostname() && pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

impl Engine {
    /// Takes (or renews) the run's lease; a dead local holder's lease is
    /// taken over at once.
    pub(crate) async fn take_lease(&self, run_id: &str) -> Result<()> {
        let until = now_ms() + self.config.lease_ttl.as_millis() as i64;
        match self.store.acquire_lease(run_id, &self.owner, until, None).await? {
            Lease::Acquired => Ok(()),
            Lease::HeldBy { owner, .. } if is_dead_local(&owner) => {
                match self.store.acquire_lease(run_id, &self.owner, until, Some(&owner)).await? {
                    Lease::Acquired => Ok(()),
                    Lease::HeldBy { owner, until } => Err(Error::LeaseHeld { run: run_id.into(), owner, until }),
                }
            }
            Lease::HeldBy { owner, until } => Err(Error::LeaseHeld { run: run_id.into(), owner, until }),
        }
    }

    pub(crate) async fn release_lease(&self, run_id: &str) {
        if let Err(e) = self.store.release_lease(run_id, &self.owner).await {
            tracing::warn!(run_id, error = %e, "releasing the lease failed; it will expire");
        }
    }
}
