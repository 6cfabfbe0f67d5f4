//! Connections kept set to their scope between uses (Postgres).
//!
//! Every statement done for a tenant needs the connection's `weft.tenant`
//! setting to be that tenant's (row-level security), and sqlx pings each
//! connection it takes back into its pool. For a tenant that makes many
//! requests, that is two round trips for every statement. A [`Conn`] whose
//! statements all completed is instead parked, still set, and the next
//! [`crate::db::Db::conn`] for the same scope takes it as it is.
//!
//! A parked connection is one whose every statement went through the
//! [`Conn`] (its [`sqlx::Executor`]) and ended without error, so it is
//! neither broken nor in the middle of an answer. One that failed, or
//! whose statement was dropped before it ended, goes back to the pool,
//! which checks it. Parked connections are bounded ([`MAX_PARKED`]), are
//! parked only while the pool has idle connections left (so that nobody
//! waiting for the pool is kept waiting by them), and are taken by other
//! scopes (set again) when the pool has no idle one.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Database, Either, Error, Execute, Executor};

/// How many connections may be parked at once (of a pool of 16).
pub(crate) const MAX_PARKED: usize = 8;

/// Connections parked with their scope's setting, most recent last.
#[derive(Default)]
pub(crate) struct Parked {
    conns: Mutex<Vec<(String, PoolConnection<Any>)>>,
}

impl Parked {
    /// A connection parked for `setting`, or (`steal`) the longest parked
    /// one of any scope (then to be set again).
    pub(crate) fn take(&self, setting: &str, steal: bool) -> Option<PoolConnection<Any>> {
        let mut conns = self.conns.lock().expect("parked lock");
        if let Some(at) = conns.iter().rposition(|(s, _)| s == setting) {
            return Some(conns.remove(at).1);
        }
        (steal && !conns.is_empty()).then(|| conns.remove(0).1)
    }

    /// How many connections are parked.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.conns.lock().expect("parked lock").len()
    }

    /// Gives every parked connection back to the pool.
    pub(crate) fn release(&self) {
        self.conns.lock().expect("parked lock").clear();
    }
}

/// A pooled connection set to a scope; see the module docs. Statements go
/// through `&mut Conn` (an [`Executor`]).
pub(crate) struct Conn {
    conn: Option<PoolConnection<Any>>,
    /// The scope's setting; `None`: never parked (SQLite).
    setting: Option<String>,
    /// Whether every statement so far ended without error.
    clean: bool,
    parked: Arc<Parked>,
    pool: AnyPool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("setting", &self.setting).field("clean", &self.clean).finish()
    }
}

impl Conn {
    pub(crate) fn new(conn: PoolConnection<Any>, setting: Option<String>, parked: Arc<Parked>, pool: AnyPool) -> Conn {
        Conn { conn: Some(conn), setting, clean: true, parked, pool }
    }

    fn inner(&mut self) -> &mut PoolConnection<Any> {
        self.conn.as_mut().expect("a Conn holds its connection until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let (Some(conn), Some(setting)) = (self.conn.take(), self.setting.take()) else { return };
        // Not while someone may be waiting for the pool (it is full, with
        // no idle connection left), nor when it is closing.
        let full = self.pool.size() >= self.pool.options().get_max_connections() && self.pool.num_idle() == 0;
        if !self.clean || full || self.pool.is_closed() {
            return;
        }
        let mut conns = self.parked.conns.lock().expect("parked lock");
        if conns.len() < MAX_PARKED {
            conns.push((setting, conn));
        }
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
        let Conn { conn, clean, .. } = self;
        let inner = conn.as_mut().expect("a Conn holds its connection until dropped").fetch_many(query);
        futures_util::stream::unfold((inner, Some(clean)), |(mut inner, mut clean)| async move {
            match inner.next().await {
                Some(Ok(item)) => Some((Ok(item), (inner, clean))),
                Some(Err(e)) => Some((Err(e), (inner, None))),
                None => {
                    if let Some(clean) = clean.take() {
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
        self.clean = false;
        async move {
            let row = self.inner().fetch_optional(query).await?;
            self.clean = true;
            Ok(row)
        }
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [<Any as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Any as Database>::Statement, Error>>
    where
        'c: 'e,
    {
        self.clean = false;
        async move {
            let statement = self.inner().prepare_with(sql, parameters).await?;
            self.clean = true;
            Ok(statement)
        }
        .boxed()
    }

    fn describe<'e>(self, sql: sqlx::SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, Error>>
    where
        'c: 'e,
    {
        self.clean = false;
        async move {
            let described = self.inner().describe(sql).await?;
            self.clean = true;
            Ok(described)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use crate::db::{Db, Scope};

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
        assert!(db.parked.count() <= super::MAX_PARKED);

        // A statement that fails: its connection goes back to the pool.
        db.parked.release();
        let failed = sqlx::query("SELECT 1 / 0").execute(&mut db.conn(Scope::Tenant("a")).await.unwrap()).await;
        assert!(failed.is_err());
        assert_eq!(db.parked.count(), 0);
        assert_eq!(setting(&db, Scope::Tenant("a")).await.unwrap(), "a");
        assert_eq!(db.parked.count(), 1);
        db.close().await;
    }
}
