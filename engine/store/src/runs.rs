//! Runs: creation, look-up, listing and the driver's lease.

use sqlx::AssertSqlSafe;
use weft_core::{Event, RunStatus};

use crate::db::Scope;
use crate::journal::{RunEnd, bind_events, insert_events};
use crate::router::Served;
use crate::sql::{self, ClaimedRow, RunRow};
use crate::{Backend, Error, Result, Store};

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// Its id.
    pub id: &'a str,
    /// The owning tenant.
    pub tenant: &'a str,
    /// The workflow's name.
    pub workflow_name: &'a str,
    /// The pinned workflow version (already stored with `put_workflow`).
    pub workflow_hash: &'a str,
    /// The run input, as JSON.
    pub input: &'a serde_json::Value,
    /// Who drives it first, and until when (ms), if anyone.
    pub lease: Option<(&'a str, i64)>,
    /// For a child workflow run: the run whose step started it.
    pub parent: Option<&'a str>,
    /// For a retry: the run it retries.
    pub retry_of: Option<&'a str>,
    /// The caller's idempotency key: a second run with the same key (in
    /// the tenant) is refused with [`Error::IdempotencyKeyUsed`].
    pub idempotency_key: Option<&'a str>,
    /// When it is due, parked (ms); 0 for a run that is due as soon as
    /// nobody drives it.
    pub wake_at: i64,
    /// When it is created (ms).
    pub at: i64,
    /// Refused ([`Error::WorkflowDeprecated`]) when its version is
    /// deprecated: a new run. Children and retries of runs already under
    /// way keep their version.
    pub refuse_deprecated: bool,
}

/// Which runs [`Store::filter_runs`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs of the workflow with this name.
    pub workflow: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs created at or after this time (ms).
    pub since: Option<i64>,
    /// Only runs created before this time (ms).
    pub until: Option<i64>,
    /// Only runs listed after this one (created at, id): the cursor of
    /// the page before.
    pub after: Option<(i64, String)>,
    /// At most this many.
    pub limit: i64,
}

impl Default for RunFilter {
    /// Every run, up to 20.
    fn default() -> RunFilter {
        RunFilter { workflow: None, status: None, since: None, until: None, after: None, limit: 20 }
    }
}

/// A run's summary row.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run id.
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// The pinned workflow version.
    pub workflow_hash: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The input (JSON text).
    pub input: String,
    /// The output (JSON text), once completed.
    pub output: Option<String>,
    /// The error (JSON text), once failed or cancelled.
    pub error: Option<String>,
    /// How many events its journal holds.
    pub last_seq: i64,
    /// Who drives it now, if anyone.
    pub lease_owner: Option<String>,
    /// Until when (ms).
    pub lease_until: Option<i64>,
    /// Created at (ms).
    pub created_at: i64,
    /// Last written at (ms).
    pub updated_at: i64,
    /// For a child workflow run: the run whose step started it.
    pub parent_id: Option<String>,
    /// For a retry: the run it retries.
    pub retry_of: Option<String>,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// When a worker should next drive it, if it is parked (ms; 0: as soon
    /// as nobody does).
    pub wake_at: i64,
}

/// A run a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claimed {
    /// Its tenant.
    pub tenant: String,
    /// Its id.
    pub run_id: String,
    /// Whether another driver's lease on it had expired (that driver died
    /// or stalled): a takeover, rather than a parked or new run.
    pub taken_over: bool,
}

/// When a run waiting only for a signal is parked until: never, until the
/// signal wakes it.
pub const PARKED_UNTIL_SIGNALLED: i64 = i64::MAX;

/// The result of asking for a run's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// It is ours until the given time.
    Acquired,
    /// Someone else holds it.
    HeldBy {
        /// Who.
        owner: String,
        /// Until when (ms).
        until: i64,
    },
}

impl RunRow {
    fn into_record(self) -> Result<RunRecord> {
        let status =
            self.status.parse().map_err(|message| Error::Corrupt { what: format!("run {}", self.id), message })?;
        Ok(RunRecord {
            id: self.id,
            tenant: self.tenant_id,
            workflow_name: self.workflow_name,
            workflow_hash: self.workflow_hash,
            status,
            input: self.input,
            output: self.output,
            error: self.error,
            last_seq: self.last_seq,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until,
            created_at: self.created_at,
            updated_at: self.updated_at,
            parent_id: self.parent_id,
            retry_of: self.retry_of,
            idempotency_key: self.idempotency_key,
            wake_at: self.wake_at,
        })
    }
}

/// The length of a run id (a UUID in text).
const RUN_ID_LEN: usize = 36;

impl Store {
    /// Creates a run and writes its first events, atomically. On Postgres
    /// this is one statement (one round trip, one fsync).
    pub async fn create_run(&self, run: NewRun<'_>, first: &[Event]) -> Result<()> {
        self.create_run_capped(run, first, None).await
    }

    /// [`Store::create_run`] for a top-level run of a tenant whose plan caps
    /// its running runs at `cap`: counting them and creating the run is one
    /// transaction, serialized per tenant, so concurrent starts never pass
    /// the cap together. [`Error::TooManyRunning`] when it is reached.
    pub async fn create_run_capped(&self, run: NewRun<'_>, first: &[Event], cap: Option<u64>) -> Result<()> {
        let now = run.at;
        let db = self.shard(run.tenant).await?.db;
        // A run whose first events already end it is written ended.
        let end = RunEnd::of(first);
        let lease = if end.is_some() { None } else { run.lease };
        let one_statement = cap.is_none() && db.creates_in_one_statement(first.len());
        let insert = if run.refuse_deprecated { sql::INSERT_CURRENT_RUN } else { sql::INSERT_RUN };
        let sql = if one_statement { sql::insert_run_with_events(insert, first.len()) } else { insert.to_string() };
        let (status, output, error) = match end {
            Some(RunEnd { status, output, error }) => (status, output, error),
            None => (RunStatus::Running, None, None),
        };
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(run.id)
            .bind(run.tenant)
            .bind(run.workflow_name)
            .bind(run.workflow_hash)
            .bind(run.input.to_string())
            .bind(lease.map(|(owner, _)| owner))
            .bind(lease.map(|(_, until)| until))
            .bind(now)
            .bind(first.len() as i64)
            .bind(run.parent)
            .bind(status.as_str())
            .bind(output)
            .bind(error)
            .bind(run.retry_of)
            .bind(run.idempotency_key)
            .bind(run.wake_at);
        let key_used = |e: sqlx::Error| match (&e, run.idempotency_key) {
            (sqlx::Error::Database(db), Some(key)) if db.is_unique_violation() => {
                Error::IdempotencyKeyUsed(key.to_string())
            }
            _ => Error::Database(e),
        };
        let deprecated = || Error::WorkflowDeprecated(run.workflow_hash.to_string());
        if one_statement {
            let written = bind_events(query, run.tenant, run.id, 1, first, now)
                .execute(&mut db.conn(Scope::Tenant(run.tenant)).await?)
                .await
                .map_err(key_used)?;
            // The events are written with the run, and only with it.
            return if written.rows_affected() == 0 { Err(deprecated()) } else { Ok(()) };
        }
        let mut tx = db.begin_write(Scope::Tenant(run.tenant)).await?;
        let written = async {
            if let Some(max) = cap {
                // SQLite's write transaction already holds the database.
                if db.backend() == Backend::Postgres {
                    sqlx::query(sql::LOCK_TENANT).bind(run.tenant).execute(&mut *tx).await?;
                }
                let running: i64 = sqlx::query_scalar(sql::COUNT_RUNNING).bind(run.tenant).fetch_one(&mut *tx).await?;
                if running as u64 >= max {
                    return Err(Error::TooManyRunning { running: running as u64, max });
                }
            }
            if query.execute(&mut *tx).await.map_err(key_used)?.rows_affected() == 0 {
                return Err(deprecated());
            }
            insert_events(&mut tx, run.tenant, run.id, 0, first, now).await
        }
        .await;
        match written {
            Ok(()) => Ok(tx.commit().await?),
            Err(refused) => {
                // The refusal is the answer. A rollback that fails leaves
                // the connection to be closed, which ends the transaction.
                let _ = tx.rollback().await;
                Err(refused)
            }
        }
    }

    /// The tenant's run started with this idempotency key, if any.
    pub async fn run_by_idempotency_key(&self, tenant: &str, key: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query_as::<_, RunRow>(sql::SELECT_RUN_BY_IDEMPOTENCY_KEY)
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        row.map(RunRow::into_record).transpose()
    }

    /// Claims up to `limit` top-level runs that are due at `now` and that
    /// nobody drives (parked runs whose time has come, new runs whose
    /// starter let them go, runs whose driver died): `owner` holds their
    /// leases until `until`. Returns them across tenants (workers serve
    /// every tenant, in every database), each from the database its tenant
    /// is routed to, none of a tenant that is moving. Two workers never
    /// claim one run.
    pub async fn claim_due_runs(&self, owner: &str, now: i64, until: i64, limit: i64) -> Result<Vec<Claimed>> {
        let mut claimed = Vec::new();
        for served in self.all_shards().await? {
            let left = limit - claimed.len() as i64;
            if left <= 0 {
                break;
            }
            claimed.extend(claim_in(&served, owner, now, until, left).await?);
        }
        Ok(claimed)
    }

    /// How many top-level runs are due at `now` with nobody driving them,
    /// in every database (as [`Store::claim_due_runs`] counts them).
    pub async fn due_runs(&self, now: i64) -> Result<i64> {
        let mut due = 0;
        for served in self.all_shards().await? {
            let sql = sql::count_due_runs(served.routed(1));
            let (n,): (i64,) = bind_tenants(sqlx::query_as(AssertSqlSafe(sql)).bind(now), &served)
                .fetch_one(&mut served.shard.db.conn(Scope::All).await?)
                .await?;
            due += n;
        }
        Ok(due)
    }
}

/// `query`, with the tenants bound whose runs a statement over every
/// tenant's due runs sees in `served`'s database (none in the shared one).
fn bind_tenants<'q, O>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    served: &'q Served,
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
    for tenant in served.tenants.iter().flatten() {
        query = query.bind(tenant);
    }
    query
}

/// [`Store::claim_due_runs`] in one database.
async fn claim_in(served: &Served, owner: &str, now: i64, until: i64, limit: i64) -> Result<Vec<Claimed>> {
    let db = &served.shard.db;
    {
        let rows = if db.skips_locked_rows() {
            let sql = sql::claim_due_runs(served.routed(4));
            let claim =
                sqlx::query_as::<_, ClaimedRow>(AssertSqlSafe(sql)).bind(owner).bind(until).bind(now).bind(limit);
            bind_tenants(claim, served).fetch_all(&mut db.conn(Scope::All).await?).await?
        } else {
            let mut tx = db.begin_write(Scope::All).await?;
            let sql = sql::select_due_runs(served.routed(2));
            let select = sqlx::query_as::<_, ClaimedRow>(AssertSqlSafe(sql)).bind(now).bind(limit);
            let rows = bind_tenants(select, served).fetch_all(&mut *tx).await?;
            if !rows.is_empty() {
                let sql = sql::lease_runs(rows.len());
                let mut lease = sqlx::query(AssertSqlSafe(sql)).bind(owner).bind(until);
                for row in &rows {
                    lease = lease.bind(&row.id);
                }
                lease.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            rows
        };
        let claimed = rows.into_iter().map(|row| Claimed {
            tenant: row.tenant_id,
            run_id: row.id,
            taken_over: row.previous.is_some(),
        });
        Ok(claimed.collect())
    }
}

impl Store {
    /// Parks a run that only waits: `owner` gives up its lease and the run
    /// is due again at `wake_at` ([`PARKED_UNTIL_SIGNALLED`] for a signal),
    /// when a worker claims it. Refused (returns false) when `owner` no
    /// longer holds the lease or the journal has grown past `last_seq`
    /// (a signal or a cancel came in after the driver looked): the driver
    /// then reads what came and goes on.
    pub async fn park_run(&self, tenant: &str, run_id: &str, owner: &str, last_seq: i64, wake_at: i64) -> Result<bool> {
        let parked = sqlx::query(sql::PARK_RUN)
            .bind(wake_at)
            .bind(run_id)
            .bind(tenant)
            .bind(owner)
            .bind(last_seq)
            .execute(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?
            .rows_affected();
        Ok(parked == 1)
    }

    /// Makes a parked run due at `at` (a signal came for it). Call it after
    /// the signal is in the journal: a driver that parks in between is
    /// refused, since the journal grew.
    pub async fn wake_run(&self, tenant: &str, run_id: &str, at: i64) -> Result<()> {
        sqlx::query(sql::WAKE_RUN)
            .bind(at)
            .bind(run_id)
            .bind(tenant)
            .execute(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(())
    }

    /// The tenant's runs that retry run `id`, oldest first.
    pub async fn retries(&self, tenant: &str, id: &str) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query_as::<_, RunRow>(sql::SELECT_RETRIES)
            .bind(id)
            .bind(tenant)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    /// The tenant's run with exactly this id, if there is one. Another
    /// tenant's run is not found.
    pub async fn get_run(&self, tenant: &str, id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query_as::<_, RunRow>(sql::SELECT_RUN)
            .bind(id)
            .bind(tenant)
            .fetch_optional(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        row.map(RunRow::into_record).transpose()
    }

    /// The tenant's run with this id, or with this unique id prefix.
    pub async fn find_run(&self, tenant: &str, id_or_prefix: &str) -> Result<RunRecord> {
        // Run ids are UUIDs: an empty prefix names no run, and nothing longer
        // than a UUID's 36 characters is one (nor is it repeated whole in the
        // error).
        if id_or_prefix.is_empty() || id_or_prefix.len() > RUN_ID_LEN {
            let shown = match id_or_prefix.char_indices().nth(RUN_ID_LEN) {
                Some((cut, _)) => format!("{}…", &id_or_prefix[..cut]),
                None => id_or_prefix.to_string(),
            };
            return Err(Error::RunNotFound(shown));
        }
        if let Some(run) = self.get_run(tenant, id_or_prefix).await? {
            return Ok(run);
        }
        let escaped = id_or_prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let mut rows = sqlx::query_as::<_, RunRow>(sql::SELECT_RUNS_BY_PREFIX)
            .bind(format!("{escaped}%"))
            .bind(tenant)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        match rows.len() {
            0 => Err(Error::RunNotFound(id_or_prefix.to_string())),
            1 => rows.remove(0).into_record(),
            _ => Err(Error::AmbiguousRun {
                prefix: id_or_prefix.to_string(),
                candidates: rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The tenant's most recent runs, newest first.
    pub async fn list_runs(&self, tenant: &str, limit: i64) -> Result<Vec<RunRecord>> {
        self.filter_runs(tenant, &RunFilter { limit, ..RunFilter::default() }).await
    }

    /// The tenant's most recent runs that pass `filter`, newest first.
    pub async fn filter_runs(&self, tenant: &str, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query_as::<_, RunRow>(sql::LIST_RUNS)
            .bind(tenant)
            .bind(filter.workflow.as_deref())
            .bind(filter.status.map(RunStatus::as_str))
            .bind(filter.since)
            .bind(filter.limit)
            .bind(filter.until)
            .bind(filter.after.as_ref().map(|(at, _)| *at))
            .bind(filter.after.as_ref().map(|(_, id)| id.as_str()))
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    /// The tenant's top-level runs that have not finished, oldest first.
    /// Child runs are left out: the run that started each one drives it.
    pub async fn unfinished_runs(&self, tenant: &str) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query_as::<_, RunRow>(sql::UNFINISHED_RUNS)
            .bind(tenant)
            .fetch_all(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        rows.into_iter().map(RunRow::into_record).collect()
    }

    /// Takes the run's lease for `owner` until `until` (ms) if it is free,
    /// expired as of `now` (ms), already ours, or held by `steal_from` (a
    /// holder known to be dead). The store reads no clock: times come from
    /// the caller.
    pub async fn acquire_lease(
        &self,
        tenant: &str,
        run_id: &str,
        owner: &str,
        now: i64,
        until: i64,
        steal_from: Option<&str>,
    ) -> Result<Lease> {
        self.lease(sql::ACQUIRE_LEASE, tenant, run_id, owner, (now, until), steal_from).await
    }

    /// [`Store::acquire_lease`], except that a lease `owner` holds already
    /// is held (by another task of the same process, say): for a caller
    /// that must not act on a run beside its own process's driver.
    pub async fn acquire_idle_lease(
        &self,
        tenant: &str,
        run_id: &str,
        owner: &str,
        now: i64,
        until: i64,
        steal_from: Option<&str>,
    ) -> Result<Lease> {
        self.lease(sql::ACQUIRE_IDLE_LEASE, tenant, run_id, owner, (now, until), steal_from).await
    }

    async fn lease(
        &self,
        statement: &'static str,
        tenant: &str,
        run_id: &str,
        owner: &str,
        (now, until): (i64, i64),
        steal_from: Option<&str>,
    ) -> Result<Lease> {
        let updated = sqlx::query(statement)
            .bind(owner)
            .bind(until)
            .bind(run_id)
            .bind(now)
            .bind(steal_from.unwrap_or(""))
            .bind(tenant)
            .execute(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?
            .rows_affected();
        if updated == 1 {
            return Ok(Lease::Acquired);
        }
        let run = self.get_run(tenant, run_id).await?.ok_or_else(|| Error::RunNotFound(run_id.to_string()))?;
        Ok(Lease::HeldBy {
            owner: run.lease_owner.unwrap_or_else(|| format!("nobody (the run is {})", run.status)),
            until: run.lease_until.unwrap_or(0),
        })
    }

    /// Gives the lease back, if `owner` still holds it.
    pub async fn release_lease(&self, tenant: &str, run_id: &str, owner: &str) -> Result<()> {
        sqlx::query(sql::RELEASE_LEASE)
            .bind(run_id)
            .bind(owner)
            .bind(tenant)
            .execute(&mut self.shard(tenant).await?.db.conn(Scope::Tenant(tenant)).await?)
            .await?;
        Ok(())
    }
}
