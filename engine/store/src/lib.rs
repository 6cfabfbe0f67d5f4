//! Weft's durable store: workflow versions, runs and their event journals, on
//! SQLite (the embedded default, one local file) or Postgres (servers).
//!
//! Both backends share one set of SQL through sqlx's `Any` driver. Every
//! statement is named in one module (`sql`) and every row it reads maps into
//! a struct; every choice that differs between SQLite and Postgres (pool
//! settings, migrations, write transactions, which statements batch) is made
//! in another (`db`).
//!
//! ```no_run
//! # async fn demo() -> weft_store::Result<()> {
//! let store = weft_store::Store::connect("sqlite://.weft/weft.db").await?;
//! for run in store.list_runs(weft_store::DEFAULT_TENANT, 20).await? {
//!     println!("{} {} {}", run.id, run.workflow_name, run.status);
//! }
//! # Ok(()) }
//! ```

mod commit;
mod conn;
mod connectors;
mod db;
mod journal;
mod router;
mod runs;
mod sql;
mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
mod usage;
mod workflows;

use db::Db;

pub use connectors::{Installed, InstalledConnector, NewConnector};
pub use db::{APP_ROLE, Backend, SQLITE_SETTINGS};
pub use journal::StoredEvent;
pub use router::{MOVE_ABANDONED_AFTER, Moved, ROUTE_FRESH_FOR};
pub use runs::{Claimed, Lease, NewRun, PARKED_UNTIL_SIGNALLED, RunFilter, RunRecord};
/// The database driver's error, which [`Error::Database`] carries.
pub use sqlx::Error as SqlxError;
pub use tenants::{ApiKey, Tenant};
pub use usage::{Metered, Plan, Usage, period_bounds, period_of};
pub use workflows::WorkflowVersion;

/// How long [`Store::ready`] waits for the database to answer.
pub const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The tenant that local runs belong to.
pub const DEFAULT_TENANT: &str = "default";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one we know.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot open the database at {url}: {source}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// Migrating the schema failed.
    #[error("migrating the database schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value could not be decoded.
    #[error("corrupt stored data in {what}: {message}")]
    Corrupt {
        /// Which record.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// No run has that id (or id prefix).
    #[error("no run matches {0:?}")]
    RunNotFound(String),
    /// The transaction that held this append (with others) failed; none of it was written.
    #[error("the group commit that held this append failed: {0}")]
    GroupCommit(String),
    /// The batch that held this append was dropped before it was answered
    /// (the runtime is shutting down); the journal tells whether it was written.
    #[error("the store is closed")]
    Closed,
    /// A different component is already installed under this name@version.
    #[error(
        "{key} is already installed with digest {existing}; this component is {offered}. \
         A name@version always means one component: give the new one another version"
    )]
    ConnectorConflict {
        /// `name@version`.
        key: String,
        /// The installed digest.
        existing: String,
        /// The refused digest.
        offered: String,
    },
    /// The database's schema is older than this build's.
    #[error("the database schema is at migration {applied}; this build needs {latest}")]
    NotMigrated {
        /// The last migration applied.
        applied: i64,
        /// The last this build has.
        latest: i64,
    },
    /// The tenant already has a run started with this idempotency key.
    #[error("a run was already started with idempotency key {0:?}")]
    IdempotencyKeyUsed(String),
    /// A new run of a deprecated workflow version was refused.
    #[error("workflow version {0} is deprecated; start a newer version")]
    WorkflowDeprecated(String),
    /// The tenant's plan caps its running runs, and that many are running.
    #[error(
        "the tenant's plan allows {max} running runs at once (max_concurrent_runs) and {running} are running; \
         start this run when one of them has finished"
    )]
    TooManyRunning {
        /// How many are running.
        running: u64,
        /// The plan's cap.
        max: u64,
    },
    /// The tenant's data is moving between databases; try again shortly.
    #[error("tenant {0:?} is moving to another database; try again in a few seconds")]
    TenantMoving(String),
    /// No tenant has this id.
    #[error("no tenant has id {0:?}")]
    TenantNotFound(String),
    /// A tenant with runs under way (a process drives them) cannot move.
    #[error(
        "tenant {tenant:?} cannot move now: {driven} of its runs are under way; try again once they finish or \
         park (asleep or waiting for a signal), or cancel them"
    )]
    TenantBusy {
        /// The tenant.
        tenant: String,
        /// Its runs that a process drives.
        driven: u64,
    },
    /// A move that went on after another process had cleared its mark
    /// (it stalled for longer than [`MOVE_ABANDONED_AFTER`]): the tenant
    /// stays where it was.
    #[error(
        "the move of tenant {0:?} was given up: it stalled for longer than {after}s and another process \
         cleared it; the tenant stays where it was, and the move can be tried again",
        after = MOVE_ABANDONED_AFTER.as_secs()
    )]
    MoveAbandoned(String),
    /// A tenant with this id exists.
    #[error("a tenant with id {0:?} exists")]
    TenantExists(String),
    /// More than one run starts with that prefix.
    #[error("{prefix:?} matches several runs ({candidates}); give more characters")]
    AmbiguousRun {
        /// The prefix given.
        prefix: String,
        /// Some of the matches.
        candidates: String,
    },
}

/// `Result` with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection pool to the store, with its schema migrated, and the writer
/// that group-commits journal appends.
#[derive(Clone)]
pub struct Store {
    /// The shared database.
    db: Db,
    committer: commit::Committer,
    /// Where each tenant's data is, and the other databases' pools.
    router: std::sync::Arc<router::Router>,
}

/// The file of a `sqlite:` URL (`sqlite://PATH?options`); `None` for other URLs.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    rest.split('?').next().map(std::path::PathBuf::from)
}

/// The URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`:
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`.
    pub async fn connect(url: &str) -> Result<Store> {
        let db = Db::connect(url).await?;
        Ok(Store { committer: commit::Committer::new(db.clone()), db, router: Default::default() })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Whether the database answers and its schema is current: what a
    /// server's readiness probe asks. A database that does not answer within
    /// [`READY_WITHIN`] is not ready (a probe must not hang while the pool
    /// waits for a server that is down to come back).
    pub async fn ready(&self) -> Result<()> {
        match tokio::time::timeout(READY_WITHIN, self.db.ready()).await {
            Ok(ready) => ready,
            Err(_) => Err(Error::Database(sqlx::Error::PoolTimedOut)),
        }
    }

    /// The database role the store's statements run as: [`APP_ROLE`] on
    /// Postgres (not the URL's user), `None` on SQLite, which has no roles.
    pub async fn working_role(&self) -> Result<Option<String>> {
        self.db.working_role().await
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.close_shards().await;
        self.committer.release().await;
        self.db.close().await;
    }
}

impl Error {
    /// A copy for each of the appends a failed batch held.
    fn duplicate(&self) -> Error {
        match self {
            Error::RunNotFound(run) => Error::RunNotFound(run.clone()),
            other => Error::GroupCommit(other.to_string()),
        }
    }
}
