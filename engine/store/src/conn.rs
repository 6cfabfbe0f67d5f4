//! Connections kept set to their scope between uses (Postgres).
//!
//! Every statement done for a tenant needs the connection's `weft.tenant`
//! setting to be that tenant's (row-level security), and sqlx pings each
//! connection it takes back into its pool. For a tenant that makes many
//! requests, that is two round trips for every statement. A [`Conn`] whose
//! statements all completed is instead parked, still set, and the next
//! [`crate::db::Db::conn`] for the same scope takes it as it is; one for
//! another scope takes the longest parked and sets it again.
//!
//! A parked connection is one whose every statement went through the
//! [`Conn`] (its [`sqlx::Executor`]) and ended without error, so it is
//! neither broken nor in the middle of an answer. One that failed, or
//! whose statement was dropped before it ended, goes back to the pool,
//! which checks it; one that lost its server also gives every parked
//! connection back, since they lost it too (as does a failed batch of the
//! group-commit writer, which holds its connection directly). The pool
//! pings a connection before handing it out, so after a restart only the
//! statement that finds the server gone fails.
//!
//! A [`Write`] transaction runs on a [`Conn`] and is parked with it after a
//! clean commit or rollback. One dropped before either (an error, a
//! cancelled request) may be in the middle of its transaction, so its
//! connection is closed, which ends the transaction on the server.
//!
//! A connection parked for longer than [`PARKED_FOR`] is not used as it
//! is: it goes back to the pool, which pings it (and applies its idle
//! timeout and lifetime) before handing it out. A server or a proxy that
//! ends idle connections then fails no statement; a busy process reuses
//! its connections long before that.
//!
//! Parked connections stay out of the pool, so the pool alone cannot tell
//! who may have one. [`Slots`] does: every user of a connection (a
//! [`Conn`], or a [`Held`] one that goes back to the pool) holds one of as
//! many slots as the pool has connections, and waits in one queue for it.
//! Whoever holds a slot finds a connection parked or gets one from the
//! pool at once, because parked and used connections together never
//! outnumber the slots.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Database, Either, Error, Execute, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a connection stays parked before it is checked again; see the
/// module docs.
const PARKED_FOR: Duration = Duration::from_secs(10);

/// Connections parked with their scope's setting and when, most recent last.
pub(crate) struct Parked {
    conns: Mutex<Vec<(String, Instant, PoolConnection<Any>)>>,
    /// [`PARKED_FOR`], but for tests.
    fresh_for: Duration,
}

impl Default for Parked {
    fn default() -> Parked {
        Parked { conns: Mutex::default(), fresh_for: PARKED_FOR }
    }
}

/// A parked connection, and whether it is set to the scope asked for.
pub(crate) struct Taken {
    pub(crate) conn: PoolConnection<Any>,
    pub(crate) set: bool,
}

impl Parked {
    /// The connection parked most recently for `setting`, or else the one
    /// parked longest for any other (to be set again). Those parked longer
    /// than [`PARKED_FOR`] go back to the pool first.
    pub(crate) fn take(&self, setting: &str) -> Option<Taken> {
        let (stale, taken) = {
            let mut conns = self.conns.lock().expect("parked lock");
            // Parked in order, so the ones parked too long come first.
            let fresh = conns.iter().position(|(_, at, _)| at.elapsed() < self.fresh_for).unwrap_or(conns.len());
            let stale: Vec<_> = conns.drain(..fresh).collect();
            let taken = match conns.iter().rposition(|(s, _, _)| s == setting) {
                Some(at) => Some(Taken { conn: conns.remove(at).2, set: true }),
                None => (!conns.is_empty()).then(|| Taken { conn: conns.remove(0).2, set: false }),
            };
            (stale, taken)
        };
        // Back to the pool, once the lock is let go.
        drop(stale);
        taken
    }

    /// Parks `conn`, set to `setting`.
    fn park(&self, setting: String, conn: PoolConnection<Any>) {
        self.conns.lock().expect("parked lock").push((setting, Instant::now(), conn));
    }

    /// How many connections are parked.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.conns.lock().expect("parked lock").len()
    }

    /// Gives every parked connection back to the pool.
    pub(crate) fn release(&self) {
        // Dropped (back to the pool) once the lock is let go.
        let released = std::mem::take(&mut *self.conns.lock().expect("parked lock"));
        drop(released);
    }
}

/// The right to use one of the pool's connections; see the module docs.
pub(crate) struct Slots {
    slots: Arc<Semaphore>,
    /// How long a wait for a slot may last (the pool's acquire timeout).
    wait: Duration,
}

/// A held slot: dropped once its connection is parked or back in the pool.
pub(crate) type Slot = OwnedSemaphorePermit;

impl Slots {
    pub(crate) fn new(count: usize, wait: Duration) -> Slots {
        Slots { slots: Arc::new(Semaphore::new(count)), wait }
    }

    /// Waits for a slot, as the pool waits for a connection: in turn, for
    /// at most the pool's acquire timeout.
    pub(crate) async fn take(&self) -> Result<Slot, Error> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(Error::PoolClosed),
            Err(_elapsed) => Err(Error::PoolTimedOut),
        }
    }

    /// Refuses every later [`Slots::take`].
    pub(crate) fn close(&self) {
        self.slots.close();
    }
}

/// A connection (or a transaction on one) used directly rather than through
/// a [`Conn`], holding its slot until it goes back to the pool.
pub(crate) struct Held<T> {
    inner: T,
    _slot: Option<Slot>,
}

impl<T> Held<T> {
    pub(crate) fn new(inner: T, slot: Option<Slot>) -> Held<T> {
        Held { inner, _slot: slot }
    }
}

impl<T: DerefMut<Target = AnyConnection>> Deref for Held<T> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl<T: DerefMut<Target = AnyConnection>> DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

impl Held<PoolConnection<Any>> {
    /// See [`PoolConnection::close_on_drop`].
    pub(crate) fn close_on_drop(&mut self) {
        self.inner.close_on_drop();
    }
}

/// Whether `error` says that the connection lost its server (a restart, a
/// dropped network), as every connection to that server then has.
fn lost_server(error: &Error) -> bool {
    match error {
        Error::Io(_) | Error::Protocol(_) | Error::Tls(_) => true,
        // Class 08 (connection exception) and 57P (operator intervention:
        // the server shutting down or ending connections).
        Error::Database(e) => e.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// A pooled connection set to a scope; see the module docs. Statements go
/// through `&mut Conn` (an [`Executor`]).
pub(crate) struct Conn {
    conn: Option<PoolConnection<Any>>,
    /// The scope's setting and the slot held (Postgres); `None`: never
    /// parked (SQLite).
    kept: Option<(String, Slot)>,
    /// Whether every statement so far ended without error.
    clean: bool,
    /// Whether a statement found the server gone.
    lost: bool,
    parked: Arc<Parked>,
    pool: AnyPool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("setting", &self.kept.as_ref().map(|(setting, _)| setting))
            .field("clean", &self.clean)
            .finish()
    }
}

impl Conn {
    pub(crate) fn new(
        conn: PoolConnection<Any>,
        kept: Option<(String, Slot)>,
        parked: Arc<Parked>,
        pool: AnyPool,
    ) -> Conn {
        Conn { conn: Some(conn), kept, clean: true, lost: false, parked, pool }
    }

    /// Runs one statement (`statement`, on the connection), noting how it
    /// ended: clean again once it succeeded, and whether it found the
    /// server gone.
    fn tracked<'e, T: Send + 'e>(
        &'e mut self,
        statement: impl FnOnce(&'e mut PoolConnection<Any>) -> BoxFuture<'e, Result<T, Error>>,
    ) -> BoxFuture<'e, Result<T, Error>> {
        self.clean = false;
        let Conn { conn, clean, lost, .. } = self;
        let running = statement(conn.as_mut().expect("a Conn holds its connection until dropped"));
        async move {
            let result = running.await;
            match &result {
                Ok(_) => *clean = true,
                Err(e) => *lost |= lost_server(e),
            }
            result
        }
        .boxed()
    }
}

impl Conn {
    /// The connection, for statements that do not go through the Conn.
    fn raw(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("a Conn holds its connection until dropped")
    }

    /// Closes the connection once dropped, rather than parking it or giving
    /// it back to the pool.
    fn abandon(&mut self) {
        self.clean = false;
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
        }
    }
}

/// A transaction on a [`Conn`]; see the module docs. Its statements take
/// `&mut *write` (the connection itself).
pub(crate) struct Write {
    conn: Conn,
    /// Begun and neither committed nor rolled back.
    open: bool,
}

impl Write {
    /// Begins a transaction on `conn` with `begin` (`BEGIN`, or SQLite's
    /// `BEGIN IMMEDIATE`). The Write counts as open from before `begin` is
    /// sent: a caller cancelled while it is under way (SQLite's waits for
    /// the database), or a `begin` that fails, closes the connection, as
    /// the server may go on to run it. Given back to the pool, it would
    /// hold the transaction open for the next user, whose statements would
    /// never commit (and, on SQLite, every other writer would wait on it).
    pub(crate) async fn begin(conn: Conn, begin: &'static str) -> Result<Write, Error> {
        let mut write = Write { conn, open: true };
        (&mut write.conn).execute(begin).await?;
        Ok(write)
    }

    /// Commits the transaction.
    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        (&mut self.conn).execute("COMMIT").await?;
        self.open = false;
        Ok(())
    }

    /// Rolls the transaction back.
    pub(crate) async fn rollback(mut self) -> Result<(), Error> {
        (&mut self.conn).execute("ROLLBACK").await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for Write {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn.conn.as_ref().expect("a Conn holds its connection until dropped")
    }
}

impl DerefMut for Write {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.raw()
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        if self.open {
            self.conn.abandon();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let (Some(conn), Some((setting, slot))) = (self.conn.take(), self.kept.take()) else { return };
        if self.clean && !self.pool.is_closed() {
            self.parked.park(setting, conn);
        } else {
            drop(conn);
            if self.lost {
                self.parked.release();
            }
        }
        // The slot goes last: whoever takes it next finds this connection
        // parked (or back in the pool).
        drop(slot);
    }
}

type Outcome = Either<<Any as Database>::QueryResult, <Any as Database>::Row>;

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Outcome, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        // Clean again only once the answer has been read to its end.
        self.clean = false;
        let Conn { conn, clean, lost, .. } = self;
        let inner = conn.as_mut().expect("a Conn holds its connection until dropped").fetch_many(query);
        futures_util::stream::unfold((inner, Some((clean, lost))), |(mut inner, mut flags)| async move {
            match inner.next().await {
                Some(Ok(item)) => Some((Ok(item), (inner, flags))),
                Some(Err(e)) => {
                    if let Some((_, lost)) = flags.take() {
                        *lost |= lost_server(&e);
                    }
                    Some((Err(e), (inner, None)))
                }
                None => {
                    if let Some((clean, _)) = flags.take() {
                        *clean = true;
                    }
                    None
                }
            }
        })
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<<Any as Database>::Row>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        self.tracked(|conn| conn.fetch_optional(query))
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [<Any as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Any as Database>::Statement, Error>>
    where
        'c: 'e,
    {
        self.tracked(|conn| conn.prepare_with(sql, parameters))
    }

    fn describe<'e>(self, sql: sqlx::SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, Error>>
    where
        'c: 'e,
    {
        self.tracked(|conn| conn.describe(sql))
    }
}

#[cfg(test)]
mod tests {
    use crate::db::{Db, Scope};

    /// Whether Postgres backend `pid` ends within 10 s (asked through `owner`).
    async fn backend_ends(owner: &mut sqlx::PgConnection, pid: i32) -> bool {
        let gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sqlx::query_scalar::<_, bool>(gone).bind(pid).fetch_one(&mut *owner).await.unwrap() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    async fn setting(db: &Db, scope: Scope<'_>) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT current_setting('weft.tenant')").fetch_one(&mut db.conn(scope).await?).await
    }

    /// A kept connection runs each statement under the statement's own scope,
    /// taken one after another and many at once; one whose statement failed
    /// is not kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_connections_keep_each_statement_in_its_scope() {
        let db = Db::connect(&crate::testing::fresh_postgres().await).await.unwrap();
        for tenant in ["a", "b", "a", "a", "c", "b"] {
            assert_eq!(setting(&db, Scope::Tenant(tenant)).await.unwrap(), tenant);
            assert_eq!(setting(&db, Scope::All).await.unwrap(), "*");
        }
        assert!(db.parked.count() > 0, "completed statements' connections are kept");

        let tasks = (0..64).map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let tenant = ["a", "b", "c", "d", "e"][n % 5];
                for _ in 0..20 {
                    assert_eq!(setting(&db, Scope::Tenant(tenant)).await.unwrap(), tenant);
                }
            })
        });
        for task in futures_util::future::join_all(tasks).await {
            task.unwrap();
        }
        assert!(db.parked.count() <= crate::db::POSTGRES_CONNECTIONS as usize);

        // A statement that fails: its connection goes back to the pool.
        db.parked.release();
        let failed = sqlx::query("SELECT 1 / 0").execute(&mut db.conn(Scope::Tenant("a")).await.unwrap()).await;
        assert!(failed.is_err());
        assert_eq!(db.parked.count(), 0);
        assert_eq!(setting(&db, Scope::Tenant("a")).await.unwrap(), "a");
        assert_eq!(db.parked.count(), 1);
        db.close().await;
    }

    /// A write transaction's connection is parked, set to its scope, once
    /// the transaction commits or rolls back. One dropped before either is
    /// closed, which ends its transaction: nothing it wrote stays, and no
    /// connection is left in the middle of one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_transactions_are_parked_once_ended_and_closed_if_dropped() {
        use sqlx::Connection;
        let url = crate::testing::fresh_postgres().await;
        let db = Db::connect(&url).await.unwrap();
        db.parked.release();
        let insert =
            |id: &'static str| sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, 0)").bind(id);
        let pid = "SELECT pg_backend_pid()";
        let count = "SELECT count(*) FROM tenants WHERE id = $1";

        let mut write = db.begin_write(Scope::Tenant("kept")).await.unwrap();
        insert("kept").execute(&mut *write).await.unwrap();
        let wrote_on: i32 = sqlx::query_scalar(pid).fetch_one(&mut *write).await.unwrap();
        write.commit().await.unwrap();
        assert_eq!(db.parked.count(), 1, "the committed transaction's connection is parked");
        let mut next = db.conn(Scope::Tenant("kept")).await.unwrap();
        assert_eq!(sqlx::query_scalar::<_, i32>(pid).fetch_one(&mut next).await.unwrap(), wrote_on);
        let set: String =
            sqlx::query_scalar("SELECT current_setting('weft.tenant')").fetch_one(&mut next).await.unwrap();
        assert_eq!(set, "kept", "it is parked set to its scope");
        assert_eq!(sqlx::query_scalar::<_, i64>(count).bind("kept").fetch_one(&mut next).await.unwrap(), 1);
        drop(next);

        db.parked.release();
        let mut write = db.begin_write(Scope::Tenant("undone")).await.unwrap();
        insert("undone").execute(&mut *write).await.unwrap();
        write.rollback().await.unwrap();
        assert_eq!(db.parked.count(), 1, "the rolled-back transaction's connection is parked");
        let undone: i64 =
            sqlx::query_scalar(count).bind("undone").fetch_one(&mut db.conn(Scope::All).await.unwrap()).await.unwrap();
        assert_eq!(undone, 0);

        db.parked.release();
        let mut write = db.begin_write(Scope::Tenant("dropped")).await.unwrap();
        insert("dropped").execute(&mut *write).await.unwrap();
        let dropped_on: i32 = sqlx::query_scalar(pid).fetch_one(&mut *write).await.unwrap();
        drop(write);
        assert_eq!(db.parked.count(), 0, "a transaction dropped open is not parked");
        let mut owner = sqlx::PgConnection::connect(&url).await.unwrap();
        assert!(backend_ends(&mut owner, dropped_on).await, "the dropped transaction's connection was not closed");
        let in_transaction: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .fetch_one(&mut owner)
        .await
        .unwrap();
        assert_eq!(in_transaction, 0);
        let dropped: i64 =
            sqlx::query_scalar(count).bind("dropped").fetch_one(&mut db.conn(Scope::All).await.unwrap()).await.unwrap();
        assert_eq!(dropped, 0, "what the dropped transaction wrote is gone");
        owner.close().await.unwrap();
        db.close().await;
    }

    /// A write cancelled while its `BEGIN` is under way (as a request
    /// whose client went away is) closes its connection: the transaction
    /// the server goes on to begin is not handed to the connection's next
    /// user, where nothing would commit. Postgres: a `BEGIN` that takes a
    /// while; SQLite: one that waits for another writer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_cancelled_while_it_begins_leaves_no_transaction_behind() {
        use sqlx::Connection;
        use std::time::Duration;
        let url = crate::testing::fresh_postgres().await;
        let db = Db::connect(&url).await.unwrap();
        db.parked.release();
        let mut conn = db.conn(Scope::Tenant("a")).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await.unwrap();
        let begun = super::Write::begin(conn, "BEGIN; SELECT pg_sleep(0.5)");
        assert!(tokio::time::timeout(Duration::from_millis(100), begun).await.is_err());
        let mut owner = sqlx::PgConnection::connect(&url).await.unwrap();
        assert!(backend_ends(&mut owner, pid).await, "the connection of a cancelled BEGIN went back to the pool");
        owner.close().await.unwrap();
        db.close().await;

        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&crate::testing::sqlite_url(dir.path())).await.unwrap();
        // Two connections open and idle first, so that the second writer
        // waits in its BEGIN rather than in opening a connection.
        drop((db.conn(Scope::All).await.unwrap(), db.conn(Scope::All).await.unwrap()));
        let holder = db.begin_write(Scope::All).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), db.begin_write(Scope::All)).await;
        assert!(waiting.is_err(), "a second writer waits for the first");
        holder.commit().await.unwrap();
        // Time for the cancelled BEGIN, which SQLite retries after pauses,
        // to take the database the first writer let go.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for n in 0..4 {
            let wrote = tokio::time::timeout(Duration::from_secs(5), async {
                let mut write = db.begin_write(Scope::All).await?;
                sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, 0)")
                    .bind(format!("t{n}"))
                    .execute(&mut *write)
                    .await?;
                write.commit().await?;
                Ok::<(), crate::Error>(())
            })
            .await;
            assert!(matches!(wrote, Ok(Ok(()))), "write {n} after the cancelled one: {wrote:?}");
        }
        let mut fresh = sqlx::AnyConnection::connect(&crate::testing::sqlite_url(dir.path())).await.unwrap();
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tenants WHERE id LIKE 't%'").fetch_one(&mut fresh).await.unwrap();
        assert_eq!(count, 4, "every write after the cancelled one committed");
        db.close().await;
    }

    /// A connection parked longer than its time goes back to the pool,
    /// which checks it before handing it out: one that its server ended
    /// while it was parked (an idle timeout, a proxy) fails no statement.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_parked_too_long_is_checked_before_use() {
        use sqlx::Connection;
        use std::time::Duration;
        let url = crate::testing::fresh_postgres().await;
        let mut db = Db::connect(&url).await.unwrap();
        db.parked = std::sync::Arc::new(super::Parked {
            conns: std::sync::Mutex::default(),
            fresh_for: Duration::from_millis(300),
        });
        let mut conn = db.conn(Scope::Tenant("a")).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await.unwrap();
        drop(conn);
        assert_eq!(db.parked.count(), 1);
        let mut owner = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&mut owner).await.unwrap();
        owner.close().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(setting(&db, Scope::Tenant("a")).await.expect("a statement after the connection was ended"), "a");
        db.close().await;
    }

    /// Connections parked do not keep waiting whoever uses one directly
    /// (they are as many as the pool holds here), and once a statement finds
    /// the server gone, the others parked (gone too) are let go and the
    /// pool's idle ones (gone too) are replaced: every later statement
    /// succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parked_connections_neither_block_direct_use_nor_outlive_their_server() {
        use futures_util::future::join_all;
        let url = crate::testing::fresh_postgres().await;
        let db = Db::connect(&url).await.unwrap();
        let tenants: Vec<String> = (0..crate::db::POSTGRES_CONNECTIONS).map(|n| format!("t{n}")).collect();
        let held = join_all(tenants.iter().map(|t| db.conn(Scope::Tenant(t)))).await;
        drop(held.into_iter().map(Result::unwrap).collect::<Vec<_>>());
        assert_eq!(db.parked.count(), tenants.len(), "every connection is parked");

        let direct = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            join_all(tenants.iter().map(|_| db.raw_conn(Scope::All))),
        )
        .await
        .expect("a caller using connections directly got them while all were parked");
        drop(direct.into_iter().map(Result::unwrap).collect::<Vec<_>>());

        let held = join_all(tenants[..4].iter().map(|t| db.conn(Scope::Tenant(t)))).await;
        drop(held.into_iter().map(Result::unwrap).collect::<Vec<_>>());
        assert_eq!(db.parked.count(), 4);
        // Their server ends them (as a restart would), and the pool's idle
        // ones with them.
        let ended = crate::testing::end_connections(&url).await;
        assert!(ended >= i64::from(crate::db::POSTGRES_CONNECTIONS), "ended {ended} connections");
        assert!(setting(&db, Scope::Tenant("t0")).await.is_err(), "a parked connection's server went away");
        assert_eq!(db.parked.count(), 0, "the other parked connections are let go");
        // Every later statement gets a live connection: the pool's idle
        // ones, dead too, are replaced before use.
        let after = join_all(tenants.iter().map(|t| setting(&db, Scope::Tenant(t)))).await;
        for (tenant, got) in tenants.iter().zip(after) {
            assert_eq!(&got.expect("a statement after the restart"), tenant);
        }
        db.close().await;
    }
}
