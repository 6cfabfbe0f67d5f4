//! The tenant registry and the database router.
//!
//! The shared database (the store's URL) keeps every tenant, its plan and
//! API keys, and the registry: each tenant's `database_url`, NULL while its
//! data (workflows, runs, journals, connectors, usage) lives in the shared
//! database too. Everything done for a tenant goes to its database through
//! [`Store::shard`]: a tenant's route is read at most once per
//! [`ROUTE_FRESH_FOR`], and each database has one pool (and one group-commit
//! writer) however many tenants it holds. What serves every tenant (workers'
//! claims) asks every database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::commit::Committer;
use crate::db::{Db, Scope};
use crate::{Error, Result, Store, redact, sql};

/// How long a process trusts a tenant's route (and the list of databases)
/// it read. A move waits this long (and a little more) after it marks the
/// tenant, so that every process has seen the mark before data moves.
pub const ROUTE_FRESH_FOR: Duration = Duration::from_secs(2);

/// How often a move renews its mark on the tenant while it copies.
const MARK_RENEWED_EVERY: Duration = Duration::from_secs(2);

/// A mark not renewed for this long belongs to a move whose process died:
/// the first process to read it clears it, and the tenant works from where
/// it was (its data there was never changed; what the dead move may have
/// copied is not routed to, and the next move to that database replaces
/// it). Its mover, if it only stalled, then finds its mark gone and gives
/// the move up. Times are the processes' clocks: they must agree to within
/// this, less the renewal period.
pub const MOVE_ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// One database: its pool, and the writer that group-commits its appends.
#[derive(Clone)]
pub(crate) struct Shard {
    pub(crate) db: Db,
    pub(crate) committer: Committer,
}

impl Shard {
    pub(crate) fn new(db: Db) -> Shard {
        Shard { committer: Committer::new(db.clone()), db }
    }
}

/// Where a tenant's data is, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// In the shared database.
    Shared,
    /// In the database at this URL.
    Own(String),
    /// Moving: refused until the move ends.
    Moving,
}

/// The routes and pools of one store.
#[derive(Default)]
pub(crate) struct Router {
    routes: std::sync::Mutex<HashMap<String, (Instant, Route)>>,
    /// The other databases by URL, opened on first use.
    shards: tokio::sync::Mutex<HashMap<String, Shard>>,
    /// Every database other than the shared one that some tenant lives
    /// in, with the tenants routed there and not moving, as last read.
    served: std::sync::Mutex<Option<(Instant, Vec<TenantsOf>)>>,
}

/// A database's URL, and the tenants routed to it and not moving.
type TenantsOf = (String, Vec<String>);

/// A database and the tenants whose due runs are claimed from it.
pub(crate) struct Served {
    pub(crate) shard: Shard,
    /// `None`: the shared database, whose statements read its tenants'
    /// routes themselves ([`sql::Routed::Shared`]). Never empty.
    pub(crate) tenants: Option<Vec<String>>,
}

impl Served {
    /// How a statement over every tenant's due runs, with `params`
    /// parameters of its own, picks this database's.
    pub(crate) fn routed(&self, params: usize) -> sql::Routed {
        match &self.tenants {
            None => sql::Routed::Shared,
            Some(tenants) => sql::Routed::Listed { from: params + 1, tenants: tenants.len() },
        }
    }
}

impl Store {
    /// The shared database.
    pub(crate) fn home(&self) -> Shard {
        Shard { db: self.db.clone(), committer: self.committer.clone() }
    }

    /// The database that holds `tenant`'s data. [`Error::TenantMoving`]
    /// while it moves.
    pub(crate) async fn shard(&self, tenant: &str) -> Result<Shard> {
        match self.route(tenant).await? {
            Route::Shared => Ok(self.home()),
            Route::Own(url) => self.open_shard(&url).await,
            Route::Moving => Err(Error::TenantMoving(tenant.to_string())),
        }
    }

    async fn route(&self, tenant: &str) -> Result<Route> {
        if let Some((read_at, route)) = self.router.routes.lock().expect("routes lock").get(tenant)
            && read_at.elapsed() < ROUTE_FRESH_FOR
        {
            return Ok(route.clone());
        }
        let row: Option<(Option<String>, Option<i64>)> = sqlx::query_as(sql::SELECT_ROUTE)
            .bind(tenant)
            .fetch_optional(&mut self.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        // A tenant that does not exist has nothing anywhere: the shared
        // database answers that.
        let route = match row {
            Some((url, Some(mark))) => match self.mark_stands(tenant, mark).await? {
                Some(true) => Route::Moving,
                Some(false) => url.map_or(Route::Shared, Route::Own),
                // Renewed or cleared meanwhile: read it again next time.
                None => return Ok(Route::Moving),
            },
            Some((Some(url), None)) => Route::Own(url),
            _ => Route::Shared,
        };
        self.router.routes.lock().expect("routes lock").insert(tenant.to_string(), (Instant::now(), route.clone()));
        Ok(route)
    }

    /// Whether `tenant`'s move mark `mark` stands: `Some(false)` when it was
    /// older than [`MOVE_ABANDONED_AFTER`] and is cleared now, `None` when it
    /// was that old but was renewed or cleared meanwhile.
    async fn mark_stands(&self, tenant: &str, mark: i64) -> Result<Option<bool>> {
        if now_ms() - mark <= MOVE_ABANDONED_AFTER.as_millis() as i64 {
            return Ok(Some(true));
        }
        let cleared = sqlx::query(sql::CLEAR_MARK)
            .bind(tenant)
            .bind(mark)
            .execute(&mut self.db.conn(Scope::Tenant(tenant)).await?)
            .await?
            .rows_affected();
        if cleared == 0 {
            return Ok(None);
        }
        tracing::warn!(tenant, marked_at = mark, "cleared the mark of a move that stopped renewing it");
        Ok(Some(false))
    }

    /// Forgets the tenant's route (it just changed here).
    fn forget_route(&self, tenant: &str) {
        self.router.routes.lock().expect("routes lock").remove(tenant);
        *self.router.served.lock().expect("served lock") = None;
    }

    /// The database at `url`, opened (and migrated) on first use.
    async fn open_shard(&self, url: &str) -> Result<Shard> {
        let mut shards = self.router.shards.lock().await;
        if let Some(shard) = shards.get(url) {
            return Ok(shard.clone());
        }
        let db = Db::connect(url).await?;
        if db.backend() != self.db.backend() {
            return Err(Error::UnsupportedUrl(format!(
                "{} (a tenant's database is of the shared database's kind)",
                redact(url)
            )));
        }
        let shard = Shard::new(db);
        shards.insert(url.to_string(), shard.clone());
        Ok(shard)
    }

    /// Every database, each with the tenants whose due runs are claimed
    /// from it: the shared one first, then each other one a tenant lives
    /// in. A tenant marked moving is claimed from nowhere until its move
    /// ends (a mark its move stopped renewing is cleared here).
    pub(crate) async fn all_shards(&self) -> Result<Vec<Served>> {
        let cached = self.router.served.lock().expect("served lock").clone();
        let served = match cached {
            Some((read_at, served)) if read_at.elapsed() < ROUTE_FRESH_FOR => served,
            _ => {
                let rows: Vec<(String, Option<String>, Option<i64>)> =
                    sqlx::query_as(sql::SELECT_TENANT_ROUTES).fetch_all(&mut self.db.conn(Scope::All).await?).await?;
                let mut served: Vec<TenantsOf> = Vec::new();
                for (tenant, url, mark) in rows {
                    if let Some(mark) = mark
                        && self.mark_stands(&tenant, mark).await? != Some(false)
                    {
                        continue;
                    }
                    let Some(url) = url else { continue };
                    match served.last_mut() {
                        Some((last, tenants)) if *last == url => tenants.push(tenant),
                        _ => served.push((url, vec![tenant])),
                    }
                }
                *self.router.served.lock().expect("served lock") = Some((Instant::now(), served.clone()));
                served
            }
        };
        let mut shards = vec![Served { shard: self.home(), tenants: None }];
        for (url, tenants) in served {
            match self.open_shard(&url).await {
                Ok(shard) => shards.push(Served { shard, tenants: Some(tenants) }),
                // One database out of reach does not stop the others' work.
                Err(e) => tracing::warn!(database = %redact(&url), error = %e, "a tenant database is out of reach"),
            }
        }
        Ok(shards)
    }

    /// Closes the other databases' pools.
    pub(crate) async fn close_shards(&self) {
        let shards: Vec<Shard> = self.router.shards.lock().await.drain().map(|(_, s)| s).collect();
        for shard in shards {
            shard.committer.release().await;
            shard.db.close().await;
        }
    }
}

/// What a move copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// Workflow versions.
    pub workflows: u64,
    /// Runs.
    pub runs: u64,
    /// Journal events.
    pub events: u64,
    /// Installed connectors.
    pub connectors: u64,
}

/// How a copied column is read and written (text and integers may be null).
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bytes,
}

/// The tables that hold a tenant's data, each with its columns, in an order
/// that inserts what a row refers to before the row.
const TENANT_TABLES: [(&str, &[(&str, Kind)]); 5] = [
    (
        "workflows",
        &[
            ("tenant_id", Kind::Text),
            ("hash", Kind::Text),
            ("name", Kind::Text),
            ("definition", Kind::Text),
            ("created_at", Kind::Int),
            ("deprecated_at", Kind::Int),
        ],
    ),
    (
        "connectors",
        &[
            ("tenant_id", Kind::Text),
            ("name", Kind::Text),
            ("version", Kind::Text),
            ("digest", Kind::Text),
            ("manifest", Kind::Text),
            ("component", Kind::Bytes),
            ("installed_at", Kind::Int),
        ],
    ),
    (
        "runs",
        &[
            ("id", Kind::Text),
            ("tenant_id", Kind::Text),
            ("workflow_name", Kind::Text),
            ("workflow_hash", Kind::Text),
            ("status", Kind::Text),
            ("input", Kind::Text),
            ("output", Kind::Text),
            ("error", Kind::Text),
            ("last_seq", Kind::Int),
            ("lease_owner", Kind::Text),
            ("lease_until", Kind::Int),
            ("created_at", Kind::Int),
            ("updated_at", Kind::Int),
            ("parent_id", Kind::Text),
            ("retry_of", Kind::Text),
            ("idempotency_key", Kind::Text),
            ("wake_at", Kind::Int),
        ],
    ),
    (
        "events",
        &[
            ("run_id", Kind::Text),
            ("seq", Kind::Int),
            ("tenant_id", Kind::Text),
            ("kind", Kind::Text),
            ("step", Kind::Text),
            ("body", Kind::Text),
            ("at", Kind::Int),
        ],
    ),
    (
        "usage",
        &[
            ("tenant_id", Kind::Text),
            ("period", Kind::Text),
            ("shard", Kind::Int),
            ("steps", Kind::Int),
            ("wasm_us", Kind::Int),
        ],
    ),
];

impl Store {
    /// Moves `tenant`'s data to the database at `to` (`None`: back to the
    /// shared database), which is created and migrated if needed, and
    /// routes the tenant there. No process may be driving one of its runs
    /// ([`Error::TenantBusy`]); runs parked (asleep, waiting for a signal),
    /// and runs whose driver's lease expired, move as they are, and are
    /// claimed from the target once due. Its requests are refused while it
    /// moves (for [`ROUTE_FRESH_FOR`] and a little more, then the copy),
    /// workers claim none of its runs anywhere meanwhile, and its keys, plan
    /// and id stay as they are.
    pub async fn move_tenant(&self, tenant: &str, to: Option<&str>, at: i64) -> Result<Moved> {
        if self.get_tenant(tenant).await?.is_none() {
            return Err(Error::TenantNotFound(tenant.to_string()));
        }
        let from = match self.route(tenant).await? {
            Route::Moving => return Err(Error::TenantMoving(tenant.to_string())),
            Route::Shared => None,
            Route::Own(url) => Some(url),
        };
        if from.as_deref() == to {
            return Ok(Moved::default());
        }
        let source = match &from {
            Some(url) => self.open_shard(url).await?,
            None => self.home(),
        };
        // Refused at once when it is plain (checked again once it is marked),
        // before the target is opened (and perhaps created).
        busy(tenant, &mut *source.db.raw_conn(Scope::Tenant(tenant)).await?, now_ms()).await?;
        let target = match to {
            Some(url) => self.open_shard(url).await?,
            None => self.home(),
        };
        let mut mark = at;
        let marked = sqlx::query(sql::MARK_MOVING)
            .bind(tenant)
            .bind(mark)
            .execute(&mut self.db.conn(Scope::Tenant(tenant)).await?)
            .await?
            .rows_affected();
        if marked == 0 {
            return Err(Error::TenantMoving(tenant.to_string()));
        }
        self.forget_route(tenant);
        let copying = async {
            // Every process has read the mark once this has passed: it starts
            // no run of the tenant, and claims none.
            tokio::time::sleep(ROUTE_FRESH_FOR + Duration::from_millis(500)).await;
            self.copy_tenant(tenant, &source, &target).await
        };
        let moved = self.while_marked(tenant, &mut mark, copying).await;
        // Routed to the target only if the mark is still this move's.
        let routed = match &moved {
            Ok(_) => sqlx::query(sql::SET_ROUTE).bind(tenant).bind(to).bind(mark),
            Err(_) => sqlx::query(sql::CLEAR_MARK).bind(tenant).bind(mark),
        }
        .execute(&mut self.db.conn(Scope::Tenant(tenant)).await?)
        .await?
        .rows_affected();
        self.forget_route(tenant);
        let moved = moved?;
        if routed == 0 {
            // Its copy is left as it is: another move may be under way to
            // the same database by now, and the next move there replaces it.
            return Err(Error::MoveAbandoned(tenant.to_string()));
        }
        // What the source kept is out of every route now; a failure here
        // leaves rows that nothing reads (and that a move there replaces).
        if let Err(e) = delete_tenant(tenant, &source, from.is_some()).await {
            tracing::warn!(tenant, error = %e, "the moved tenant's rows were not all deleted from its old database");
        }
        Ok(moved)
    }

    /// Runs `work` while renewing `tenant`'s move mark (`mark`, updated as
    /// it is renewed). [`Error::MoveAbandoned`] as soon as the mark is found
    /// to be another's (another process cleared it as abandoned).
    async fn while_marked<T>(
        &self,
        tenant: &str,
        mark: &mut i64,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut work = std::pin::pin!(work);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + MARK_RENEWED_EVERY, MARK_RENEWED_EVERY);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = renew.tick() => {
                    let now = now_ms().max(*mark + 1);
                    let renewed = async {
                        let conn = &mut self.db.conn(Scope::Tenant(tenant)).await?;
                        sqlx::query(sql::RENEW_MARK).bind(tenant).bind(*mark).bind(now).execute(conn).await
                    };
                    match renewed.await {
                        Ok(done) if done.rows_affected() == 1 => *mark = now,
                        Ok(_) => return Err(Error::MoveAbandoned(tenant.to_string())),
                        // The shared database out of reach: the move goes on,
                        // and routing it at the end tells whether it counts.
                        Err(e) => tracing::warn!(tenant, error = %e, "renewing a move's mark failed"),
                    }
                }
            }
        }
    }

    async fn copy_tenant(&self, tenant: &str, source: &Shard, target: &Shard) -> Result<Moved> {
        let mut from = source.db.raw_conn(Scope::Tenant(tenant)).await?;
        // Nothing leases one of its runs from here on; one leased before the
        // mark was seen must have ended or let its run go.
        busy(tenant, &mut from, now_ms()).await?;
        let mut tx = target.db.begin_write(Scope::Tenant(tenant)).await?;
        // What the target holds of the tenant is left from a move that died
        // (nothing is routed there): the copy replaces it.
        delete_rows(tenant, &mut tx).await?;
        let row: (String, String, i64) = sqlx::query_as(sql::SELECT_TENANT)
            .bind(tenant)
            .fetch_one(&mut self.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        sqlx::query(sql::INSERT_TENANT).bind(&row.0).bind(&row.1).bind(row.2).execute(&mut *tx).await?;
        let mut moved = Moved::default();
        for (table, columns) in TENANT_TABLES {
            let copied = copy_rows(&mut from, &mut tx, tenant, table, columns).await?;
            match table {
                "workflows" => moved.workflows = copied,
                "connectors" => moved.connectors = copied,
                "runs" => moved.runs = copied,
                "events" => moved.events = copied,
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(moved)
    }
}

/// [`Error::TenantBusy`] when a process drives one of the tenant's runs at
/// `now` (holds a lease on it that has not expired).
async fn busy(tenant: &str, conn: &mut sqlx::AnyConnection, now: i64) -> Result<()> {
    let driven: i64 = sqlx::query_scalar(sql::COUNT_DRIVEN).bind(tenant).bind(now).fetch_one(&mut *conn).await?;
    if driven > 0 {
        return Err(Error::TenantBusy { tenant: tenant.to_string(), driven: driven as u64 });
    }
    Ok(())
}

/// Deletes `tenant`'s rows from every table of [`TENANT_TABLES`].
async fn delete_rows(tenant: &str, conn: &mut sqlx::AnyConnection) -> Result<()> {
    for (table, _) in TENANT_TABLES.iter().rev() {
        let delete = format!("DELETE FROM {table} WHERE {}", sql::tenant_rows(table));
        sqlx::query(sqlx::AssertSqlSafe(delete)).bind(tenant).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, by this process's clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Rows written by one statement of a move's copy, at most.
const ROWS_PER_COPY: usize = 256;

/// Bytes of text and blobs written by one statement of a move's copy, about
/// at most (a row alone may be more).
const BYTES_PER_COPY: usize = 4 << 20;

/// One column's value of a copied row.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Vec<u8>),
}

impl Value {
    fn read(row: &sqlx::any::AnyRow, i: usize, kind: Kind) -> std::result::Result<Value, sqlx::Error> {
        use sqlx::Row;
        Ok(match kind {
            Kind::Text => Value::Text(row.try_get(i)?),
            Kind::Int => Value::Int(row.try_get(i)?),
            Kind::Bytes => Value::Bytes(row.try_get(i)?),
        })
    }

    fn bytes(&self) -> usize {
        match self {
            Value::Text(text) => text.as_ref().map_or(0, String::len),
            Value::Bytes(bytes) => bytes.len(),
            Value::Int(_) => 0,
        }
    }
}

/// Copies one table's rows of `tenant` as they are read (a tenant's journal
/// need not fit in memory), many rows to a statement; returns how many.
async fn copy_rows(
    from: &mut sqlx::AnyConnection,
    to: &mut sqlx::AnyConnection,
    tenant: &str,
    table: &str,
    columns: &[(&str, Kind)],
) -> Result<u64> {
    use futures_util::TryStreamExt;
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let select = format!("SELECT {} FROM {table} WHERE {} ORDER BY 1, 2", names.join(", "), sql::tenant_rows(table));
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).bind(tenant).fetch(&mut *from);
    let (mut batch, mut bytes, mut copied) = (Vec::new(), 0, 0);
    while let Some(row) = rows.try_next().await? {
        let values = columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| Value::read(&row, i, *kind))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        bytes += values.iter().map(Value::bytes).sum::<usize>();
        batch.push(values);
        if batch.len() == ROWS_PER_COPY || bytes >= BYTES_PER_COPY {
            copied += insert_rows(to, table, &names, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
    }
    copied += insert_rows(to, table, &names, batch).await?;
    Ok(copied)
}

/// Inserts `rows` (values of `names`) into `table` with one statement;
/// returns how many.
async fn insert_rows(to: &mut sqlx::AnyConnection, table: &str, names: &[&str], rows: Vec<Vec<Value>>) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let insert = sql::insert_rows(table, names, rows.len());
    let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
    for value in rows.into_iter().flatten() {
        query = match value {
            Value::Text(v) => query.bind(v),
            Value::Int(v) => query.bind(v),
            Value::Bytes(v) => query.bind(v),
        };
    }
    Ok(query.execute(&mut *to).await?.rows_affected())
}

/// Deletes what `tenant` had in a database it left (its row too, unless
/// that is the shared database, which keeps every tenant).
async fn delete_tenant(tenant: &str, shard: &Shard, own: bool) -> Result<()> {
    let mut tx = shard.db.begin_write(Scope::Tenant(tenant)).await?;
    delete_rows(tenant, &mut tx).await?;
    if own {
        sqlx::query(sql::DELETE_TENANT).bind(tenant).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}
