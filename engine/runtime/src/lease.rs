//! Who drives a run: a lease in the store, named `host:pid:nonce`.
//!
//! A lease ends when its holder gives it back or lets it expire. On the same
//! machine a driver need not wait for the expiry: a holder whose process no
//! longer exists is taken over at once (so `weft resume` after a crash goes
//! on immediately). Elsewhere the expiry decides.

use weft_store::Lease;

use crate::{Engine, Error, Result, now_ms};

/// This process's lease owner id.
pub(crate) fn owner_id() -> String {
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    format!("{}:{}:{}", hostname(), std::process::id(), &nonce[nonce.len() - 6..])
}

#[cfg(unix)]
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty() && !name.contains(':'))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(not(unix))]
fn hostname() -> String {
    "localhost".into()
}

/// Whether process `pid` of this machine no longer exists.
#[cfg(unix)]
fn is_gone(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // Signal 0 checks for the process without touching it: ESRCH means there
    // is none (EPERM means there is one, owned by someone else).
    matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

/// Without a way to ask, a holder is never presumed dead: its lease expires.
#[cfg(not(unix))]
fn is_gone(_pid: u32) -> bool {
    false
}

/// Whether `owner` names a process on this machine that no longer exists.
fn is_dead_local(owner: &str) -> bool {
    let mut parts = owner.split(':');
    match (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) {
        (Some(host), Some(pid)) => host == hostname() && pid != std::process::id() && is_gone(pid),
        _ => false,
    }
}

/// The process that drives `run` at `now`, if one does: the lease's holder,
/// while the lease lasts and (on this machine) its process exists.
pub(crate) fn live_holder(run: &weft_store::RunRecord, now: i64) -> Option<&str> {
    let owner = run.lease_owner.as_deref()?;
    (run.lease_until.is_some_and(|until| until > now) && !is_dead_local(owner)).then_some(owner)
}

impl Engine {
    /// Takes (or renews) the run's lease; a dead local holder's lease is
    /// taken over at once.
    pub(crate) async fn take_lease(&self, tenant: &str, run_id: &str) -> Result<()> {
        self.take_lease_if(tenant, run_id, true).await
    }

    /// [`Engine::take_lease`] unless this engine holds the lease already: a
    /// run that one of its tasks has claimed and is about to drive.
    pub(crate) async fn take_idle_lease(&self, tenant: &str, run_id: &str) -> Result<()> {
        self.take_lease_if(tenant, run_id, false).await
    }

    async fn take_lease_if(&self, tenant: &str, run_id: &str, own_too: bool) -> Result<()> {
        let now = now_ms();
        let until = now + self.config.lease_ttl.as_millis() as i64;
        let acquire = |steal_from: Option<String>| async move {
            match own_too {
                true => self.store.acquire_lease(tenant, run_id, &self.owner, now, until, steal_from.as_deref()).await,
                false => {
                    self.store.acquire_idle_lease(tenant, run_id, &self.owner, now, until, steal_from.as_deref()).await
                }
            }
        };
        match acquire(None).await? {
            Lease::Acquired => Ok(()),
            Lease::HeldBy { owner, .. } if is_dead_local(&owner) => match acquire(Some(owner)).await? {
                Lease::Acquired => Ok(()),
                Lease::HeldBy { owner, until } => Err(Error::LeaseHeld { run: run_id.into(), owner, until }),
            },
            Lease::HeldBy { owner, until } => Err(Error::LeaseHeld { run: run_id.into(), owner, until }),
        }
    }

    /// Gives a run's lease back if this engine holds it, so that a worker
    /// can claim the run (a failure is logged: the lease then expires).
    pub async fn release_lease(&self, tenant: &str, run_id: &str) {
        if let Err(e) = self.store.release_lease(tenant, run_id, &self.owner).await {
            tracing::warn!(run_id, error = %e, "releasing the lease failed; it will expire");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_dead_local, owner_id};

    #[test]
    fn a_holder_is_dead_only_when_its_process_is_gone_on_this_machine() {
        let mine = owner_id();
        assert!(!is_dead_local(&mine), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let host = mine.split(':').next().unwrap();
        assert!(is_dead_local(&format!("{host}:{pid}:abcdef")), "a process that exited is gone");
        assert!(!is_dead_local(&format!("another-host:{pid}:abcdef")), "another machine's holder waits for expiry");
        assert!(!is_dead_local("garbage"));
        assert!(!is_dead_local(&format!("{host}:1:abcdef")), "pid 1 exists");
    }
}
