//! Weft's durable store: workflow versions, runs and their event journals, on
//! SQLite (the embedded default, one local file) or Postgres (servers).
//!
//! Both backends share one set of SQL through sqlx's `Any` driver; the
//! differences (row locking, SQLite pragmas) are confined to this crate.
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
mod connectors;
mod journal;
mod runs;
#[cfg(feature = "testing")]
pub mod testing;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor};

pub use connectors::{Installed, InstalledConnector, NewConnector};
pub use journal::StoredEvent;
pub use runs::{Lease, NewRun, RunRecord};

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

/// Which database is underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local SQLite file.
    Sqlite,
    /// A Postgres server.
    Postgres,
}

/// A connection pool to the store, with its schema migrated, and the writer
/// that group-commits journal appends.
#[derive(Clone)]
pub struct Store {
    db: Db,
    committer: commit::Committer,
}

/// The pool and which backend it speaks to: all that the SQL needs, and all
/// that the group-commit writer holds.
#[derive(Clone)]
pub(crate) struct Db {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The settings of each SQLite connection: durable (WAL with a full sync
/// at each commit), waiting for other processes' locks, and enforcing
/// foreign keys. Public so that a benchmark's commit floor runs on exactly
/// the same settings.
pub const SQLITE_SETTINGS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

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
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::UnsupportedUrl(url.to_string()));
        };
        let connect_error = |source| Error::Connect { url: redact(url), source };
        let pool = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
                if let Some(parent) =
                    sqlite_file(&url).as_deref().and_then(std::path::Path::parent).filter(|p| !p.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(parent).map_err(|e| connect_error(sqlx::Error::Io(e)))?;
                }
                let options = AnyConnectOptions::from_str(&url).map_err(connect_error)?;
                AnyPoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(SQLITE_SETTINGS).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url).map_err(connect_error)?;
                // One direct attempt first: a refused or unknown server fails at
                // once instead of after the pool's retries.
                let probe = tokio::time::timeout(Duration::from_secs(10), sqlx::AnyConnection::connect_with(&options))
                    .await
                    .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
                    .map_err(connect_error)?;
                probe.close().await.ok();
                // No ping before each use: it is a round trip per statement,
                // and a broken connection fails its statement clearly anyway.
                AnyPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?
            }
        };
        migrate(&pool, backend).await?;
        let db = Db { pool, backend };
        Ok(Store { committer: commit::Committer::new(db.clone()), db })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.committer.release().await;
        self.db.pool.close().await;
    }
}

impl Db {
    /// Begins a write transaction that serializes with other writers of the
    /// same run: `BEGIN IMMEDIATE` on SQLite; on Postgres the `UPDATE` that
    /// reserves a run's seqs takes its row lock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

/// Brings the schema up to date. Postgres migrations hold an advisory lock;
/// SQLite's take none, so two processes opening a new file at once can race:
/// the loser's migration fails because the winner's tables exist. Running the
/// migrator again then finds them applied.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    let migrator = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    let mut attempt = 0;
    loop {
        match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if backend == Backend::Sqlite && attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
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
