//! The backends: which database a URL names, how its pool is set up and
//! migrated, and every choice the store makes differently for SQLite and
//! Postgres. The statements themselves are in [`crate::sql`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use crate::journal::ROWS_PER_INSERT;
use crate::{Error, Result, redact, sqlite_file};

/// Which database is underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local SQLite file.
    Sqlite,
    /// A Postgres server.
    Postgres,
}

/// The pool and which backend it speaks to: all that the SQL needs, and all
/// that the group-commit writer holds.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: AnyPool,
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

impl Db {
    /// Opens the pool for `url`, set up for its backend, and migrates it.
    pub(crate) async fn connect(url: &str) -> Result<Db> {
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
        Ok(Db { pool, backend })
    }

    /// Which database this is.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether a run and its first `events` are written with one statement
    /// (on Postgres, for up to [`ROWS_PER_INSERT`] events: one round trip,
    /// one fsync) rather than in a transaction of several.
    pub(crate) fn creates_in_one_statement(&self, events: usize) -> bool {
        self.backend == Backend::Postgres && (1..=ROWS_PER_INSERT).contains(&events)
    }

    /// Whether group commit writes a batch of appends with statements that
    /// each cover many runs (Postgres), rather than run by run in one
    /// `BEGIN IMMEDIATE` transaction (SQLite, whose writers serialize anyway).
    pub(crate) fn appends_across_runs(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Whether a claim is one statement that passes over rows another
    /// transaction has locked (`FOR UPDATE SKIP LOCKED`, Postgres) rather
    /// than a read and a write in a transaction that writers take turns at
    /// (SQLite's `BEGIN IMMEDIATE`).
    pub(crate) fn skips_locked_rows(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// [`Db::begin_write`] on a connection the caller holds (the
    /// group-commit writer's).
    pub(crate) async fn begin_write_on<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => conn.begin().await,
        }
    }

    /// Begins a write transaction that serializes with other writers of the
    /// same run: `BEGIN IMMEDIATE` on SQLite; on Postgres the `UPDATE` that
    /// reserves a run's seqs takes its row lock.
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }
}

impl Db {
    /// Whether the database answers and has every migration this build
    /// knows applied.
    pub(crate) async fn ready(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await?;
        match applied {
            Some(v) if v >= latest => Ok(()),
            applied => Err(Error::NotMigrated { applied: applied.unwrap_or(0), latest }),
        }
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
