//! The backends: which database a URL names, how its pool is set up and
//! migrated, and every choice the store makes differently for SQLite and
//! Postgres. The statements themselves are in [`crate::sql`].

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};

use crate::conn::{Conn, Held, Parked, Slot, Slots, Write};
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
///
/// On Postgres every connection works as the role [`APP_ROLE`], which owns
/// no table, and every tenant-owned table enforces row-level security
/// against the connection's `weft.tenant` setting (migration 0006). A
/// statement reaches the pool only through [`Db::conn`], [`Db::raw_conn`] or
/// [`Db::begin_write`], which set that to the statement's [`Scope`] first:
/// a statement whose SQL forgets its tenant filter still sees and changes
/// only its tenant's rows.
#[derive(Clone)]
pub(crate) struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Connections kept set to their scope (Postgres; see [`crate::conn`]).
    pub(crate) parked: Arc<Parked>,
    /// Who may use a connection (Postgres; see [`crate::conn`]).
    slots: Option<Arc<Slots>>,
}

/// Whose rows a statement may read and change.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// One tenant's: everything done for a tenant (its runs, journals,
    /// workflows, connectors and keys).
    Tenant(&'a str),
    /// Every tenant's: what serves all of them (workers' claims, group
    /// commit, the operator's tenants, finding the key of a request).
    All,
}

impl<'a> Scope<'a> {
    /// The value of `weft.tenant` that the policies read; `*` is no tenant
    /// id (ids are lower-case letters, digits and `-`).
    fn setting(self) -> &'a str {
        match self {
            Scope::Tenant(tenant) => tenant,
            Scope::All => "*",
        }
    }
}

impl<'a> From<Option<&'a str>> for Scope<'a> {
    /// A tenant's, or (`None`) every tenant's: the scope of what is done for
    /// a tenant or for the operator.
    fn from(tenant: Option<&'a str>) -> Scope<'a> {
        tenant.map_or(Scope::All, Scope::Tenant)
    }
}

/// The Postgres role the store works as: it owns no table, so row-level
/// security applies to it (and `FORCE ROW LEVEL SECURITY` applies it to the
/// owner as well). Migration 0006 creates it and grants it to the migrating
/// user.
pub const APP_ROLE: &str = "weft_app";

/// How many connections a Postgres pool opens at most.
pub(crate) const POSTGRES_CONNECTIONS: u32 = 16;

/// How long a statement waits for a connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes a new connection work as [`APP_ROLE`].
const SET_ROLE: &str = "SET ROLE weft_app";
/// Sets a connection's scope until the next is set.
const SET_SCOPE: &str = "SELECT set_config('weft.tenant', $1, false)";

/// The migrations of each backend. A database that a newer build migrated
/// further opens too (its migrations are ones this build does not know):
/// migrations only add or drop what older builds do not need, so a process
/// of the older build that restarts during an upgrade keeps working.
static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| tolerant(sqlx::migrate!("../../migrations/sqlite")));
static POSTGRES_MIGRATIONS: LazyLock<Migrator> =
    LazyLock::new(|| tolerant(sqlx::migrate!("../../migrations/postgres")));

fn tolerant(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

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
                    .acquire_timeout(ACQUIRE_TIMEOUT)
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
                // Migrations run as the URL's user, who owns the tables; the
                // pool's connections then work as the role that does not.
                let owner = AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.clone())
                    .await
                    .map_err(connect_error)?;
                let migrated = POSTGRES_MIGRATIONS.run(&owner).await;
                owner.close().await;
                migrated?;
                // A ping before a connection leaves the pool: one that lost
                // its server (a restart) is replaced instead of failing a
                // statement. It is rare: connections mostly stay parked
                // between uses (see `crate::conn`), and those are not pinged.
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .test_before_acquire(true)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(SET_ROLE).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?
            }
        };
        if backend == Backend::Sqlite {
            migrate_sqlite(&pool).await?;
        }
        let slots = (backend == Backend::Postgres)
            .then(|| Arc::new(Slots::new(POSTGRES_CONNECTIONS as usize, ACQUIRE_TIMEOUT)));
        Ok(Db { pool, backend, parked: Arc::default(), slots })
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

    /// A connection set to `scope` (on Postgres; SQLite keeps no tenants
    /// apart below the store's own filters), for statements that go through
    /// it: one parked for the scope if there is one (see [`crate::conn`]),
    /// otherwise one parked for another scope or from the pool, set.
    pub(crate) async fn conn(&self, scope: Scope<'_>) -> Result<Conn, sqlx::Error> {
        let Some(slots) = &self.slots else {
            return Ok(Conn::new(self.pool.acquire().await?, None, self.parked.clone(), self.pool.clone()));
        };
        let setting = scope.setting();
        let slot = slots.take().await?;
        let conn = self.connection(setting, &slot).await?;
        Ok(Conn::new(conn, Some((setting.to_string(), slot)), self.parked.clone(), self.pool.clone()))
    }

    /// For a caller holding `slot`: the connection parked for `setting`
    /// if there is one, else another parked or one from the pool, set to
    /// `setting`.
    async fn connection(&self, setting: &str, _slot: &Slot) -> Result<PoolConnection<Any>, sqlx::Error> {
        let mut conn = match self.parked.take(setting) {
            Some(taken) if taken.set => return Ok(taken.conn),
            Some(taken) => taken.conn,
            None => self.pool.acquire().await?,
        };
        sqlx::query(SET_SCOPE).bind(setting).execute(&mut *conn).await?;
        Ok(conn)
    }

    /// A connection set to `scope`, for a caller that uses it directly
    /// (transactions on it, a long-held writer's): it goes back to the
    /// pool, never parked.
    pub(crate) async fn raw_conn(&self, scope: Scope<'_>) -> Result<Held<PoolConnection<Any>>, sqlx::Error> {
        let Some(slots) = &self.slots else {
            return Ok(Held::new(self.pool.acquire().await?, None));
        };
        let slot = slots.take().await?;
        let conn = self.connection(scope.setting(), &slot).await?;
        Ok(Held::new(conn, Some(slot)))
    }

    /// [`Db::begin_write`] on a connection the caller holds (the
    /// group-commit writer's, which [`Db::conn`] set to every tenant).
    pub(crate) async fn begin_write_on<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<sqlx::Transaction<'c, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => conn.begin().await,
        }
    }

    /// Begins a write transaction in `scope` that serializes with other
    /// writers of the same run: `BEGIN IMMEDIATE` on SQLite; on Postgres the
    /// `UPDATE` that reserves a run's seqs takes its row lock. It runs on a
    /// [`Db::conn`], parked with it again once committed or rolled back.
    pub(crate) async fn begin_write(&self, scope: Scope<'_>) -> Result<Write> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        Ok(Write::begin(self.conn(scope).await?, begin).await?)
    }

    /// See [`crate::Store::working_role`].
    pub(crate) async fn working_role(&self) -> Result<Option<String>> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let role = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut self.conn(Scope::All).await?).await?;
        Ok(Some(role))
    }

    /// Closes the pool, waiting for connections to finish.
    pub(crate) async fn close(&self) {
        if let Some(slots) = &self.slots {
            slots.close();
        }
        self.parked.release();
        self.pool.close().await;
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
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut self.conn(Scope::All).await?)
            .await?;
        match applied {
            Some(v) if v >= latest => Ok(()),
            applied => Err(Error::NotMigrated { applied: applied.unwrap_or(0), latest }),
        }
    }
}

/// Brings a SQLite schema up to date. Postgres migrations hold an advisory
/// lock; SQLite's take none, so two processes opening a new file at once can
/// race: the loser's migration fails because the winner's tables exist.
/// Running the migrator again then finds them applied.
async fn migrate_sqlite(pool: &AnyPool) -> Result<()> {
    let mut attempt = 0;
    loop {
        match SQLITE_MIGRATIONS.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
