//! Every statement the store runs, by name, and the rows they read. The
//! statements that take a variable number of rows are built here too; the
//! two that only Postgres runs say so.

use std::fmt::Write;

use sqlx::FromRow;

/// The columns of a run's summary row, in [`RunRow`]'s order.
macro_rules! run_columns {
    () => {
        "id, tenant_id, workflow_name, workflow_hash, status, input, output, error, last_seq, lease_owner, \
         lease_until, created_at, updated_at, parent_id, retry_of, idempotency_key, wake_at"
    };
}

/// The condition of the tenant's index of runs (Postgres; migration 0010),
/// true of every run. A query over a tenant's runs states it so that it may
/// use that index; a lookup by id does not, so that it uses the primary key
/// whatever the planner's statistics say.
macro_rules! by_tenant {
    () => {
        "created_at >= 0"
    };
}

/// The condition that picks tenant $1's rows of `table`, as a tenant move
/// copies and deletes them: for `runs`, stated so that it may use the
/// tenant's index (see `by_tenant!`).
pub(crate) fn tenant_rows(table: &str) -> &'static str {
    match table {
        "runs" => concat!("tenant_id = $1 AND ", by_tenant!()),
        _ => "tenant_id = $1",
    }
}

/// The columns of an event row, in the order the builders bind them.
const EVENT_COLUMNS: &str = "run_id, seq, tenant_id, kind, step, body, at";

// Workflows.

pub(crate) const INSERT_WORKFLOW: &str = "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) \
                                          VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, hash) DO NOTHING";

pub(crate) const SELECT_WORKFLOW: &str = "SELECT definition FROM workflows WHERE tenant_id = $1 AND hash = $2";

/// The columns of a workflow version's summary, in [`WorkflowRow`]'s order.
macro_rules! workflow_columns {
    () => {
        "hash, name, created_at, deprecated_at"
    };
}

/// A version of tenant $1 by hash $2, without its definition.
pub(crate) const SELECT_WORKFLOW_SUMMARY: &str =
    concat!("SELECT ", workflow_columns!(), " FROM workflows WHERE tenant_id = $1 AND hash = $2");

/// The versions of tenant $1, newest first, of name $2 when not null, at
/// most $3.
pub(crate) const LIST_WORKFLOWS: &str = concat!(
    "SELECT ",
    workflow_columns!(),
    " FROM workflows WHERE tenant_id = $1 AND (CAST($2 AS TEXT) IS NULL OR name = $2) \
     ORDER BY created_at DESC, hash LIMIT $3"
);

/// Marks version $2 of tenant $1 deprecated at $3 (keeping an earlier time).
pub(crate) const DEPRECATE_WORKFLOW: &str = "UPDATE workflows SET deprecated_at = COALESCE(deprecated_at, $3) \
                                             WHERE tenant_id = $1 AND hash = $2";

// Runs.

/// A run's summary row: id, tenant, name, hash, input ($5), lease owner and
/// until ($6, $7), created ($8), last seq ($9), parent ($10), status ($11),
/// output and error ($12, $13), the run it retries ($14), its idempotency
/// key ($15), when it is due if parked ($16).
pub(crate) const INSERT_RUN: &str = "INSERT INTO runs (id, tenant_id, workflow_name, workflow_hash, status, input, \
                                     last_seq, lease_owner, lease_until, created_at, updated_at, parent_id, output, \
                                     error, retry_of, idempotency_key, wake_at) VALUES ($1, $2, $3, $4, $11, $5, $9, \
                                     $6, $7, $8, $8, $10, $12, $13, $14, $15, $16)";

/// [`INSERT_RUN`] for a new run, which its version must not be deprecated
/// for: no row is written when it is (checked in the same statement, so a
/// start reads nothing first).
pub(crate) const INSERT_CURRENT_RUN: &str = "INSERT INTO runs (id, tenant_id, workflow_name, workflow_hash, status, \
                                             input, last_seq, lease_owner, lease_until, created_at, updated_at, \
                                             parent_id, output, error, retry_of, idempotency_key, wake_at) SELECT $1, \
                                             $2, $3, $4, $11, $5, $9, $6, $7, $8, $8, $10, $12, $13, $14, $15, $16 \
                                             WHERE NOT EXISTS (SELECT 1 FROM workflows WHERE tenant_id = $2 AND \
                                             hash = $4 AND deprecated_at IS NOT NULL)";

/// The run of tenant $1 started with idempotency key $2.
pub(crate) const SELECT_RUN_BY_IDEMPOTENCY_KEY: &str =
    concat!("SELECT ", run_columns!(), " FROM runs WHERE tenant_id = $1 AND idempotency_key = $2");

/// The runs that retry run $1 of tenant $2, oldest first.
pub(crate) const SELECT_RETRIES: &str =
    concat!("SELECT ", run_columns!(), " FROM runs WHERE retry_of = $1 AND tenant_id = $2 ORDER BY created_at, id");

pub(crate) const SELECT_RUN: &str = concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1 AND tenant_id = $2");

/// Up to five runs whose id is LIKE `$1` (escaped with `\`).
pub(crate) const SELECT_RUNS_BY_PREFIX: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE id LIKE $1 ESCAPE '\\' AND tenant_id = $2 AND ",
    by_tenant!(),
    " ORDER BY id LIMIT 5"
);

/// The newest runs of tenant $1, at most $5, of workflow $2, with status $3,
/// created at or after $4 and before $6, and (a page's cursor) ordered after
/// the run created at $7 with id $8 (each when not null).
pub(crate) const LIST_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE tenant_id = $1 AND ",
    by_tenant!(),
    " AND (CAST($2 AS TEXT) IS NULL OR workflow_name = $2) \
     AND (CAST($3 AS TEXT) IS NULL OR status = $3) AND (CAST($4 AS BIGINT) IS NULL OR created_at >= $4) \
     AND (CAST($6 AS BIGINT) IS NULL OR created_at < $6) \
     AND (CAST($7 AS BIGINT) IS NULL OR created_at < $7 OR (created_at = $7 AND id < $8)) \
     ORDER BY created_at DESC, id DESC LIMIT $5"
);

/// Top-level runs still running, oldest first.
pub(crate) const UNFINISHED_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM runs WHERE tenant_id = $1 AND status = 'running' AND parent_id IS NULL ORDER BY created_at, id"
);

/// Owner $1 takes the lease until $2 of run $3 (tenant $6) if it is free,
/// expired as of $4, its own, or held by $5.
pub(crate) const ACQUIRE_LEASE: &str = "UPDATE runs SET lease_owner = $1, lease_until = $2 WHERE id = $3 AND \
                                        tenant_id = $6 AND status = 'running' AND (lease_owner IS NULL OR \
                                        lease_until < $4 OR lease_owner = $1 OR lease_owner = $5)";

/// [`ACQUIRE_LEASE`] except when $1 holds it already.
pub(crate) const ACQUIRE_IDLE_LEASE: &str = "UPDATE runs SET lease_owner = $1, lease_until = $2 WHERE id = $3 AND \
                                             tenant_id = $6 AND status = 'running' AND (lease_owner IS NULL OR \
                                             lease_until < $4 OR lease_owner = $5)";

/// Whose runs a statement over every tenant's due runs sees in one database:
/// those of the tenants routed there and not moving. A move's copy left in
/// a database it did not route to (the move failed), and the rows a move
/// left behind, are never driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routed {
    /// The shared database: runs of tenants whose registry row routes them
    /// nowhere else and marks no move (or that have no row), read in the
    /// statement itself.
    Shared,
    /// Another database: runs of the tenants bound from this parameter on,
    /// this many, as the caller read them from the registry.
    Listed { from: usize, tenants: usize },
}

/// The condition [`Routed`] puts on `runs`.
fn routed_runs(routed: Routed) -> String {
    match routed {
        Routed::Shared => "NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = runs.tenant_id \
                           AND (t.database_url IS NOT NULL OR t.moving_since IS NOT NULL))"
            .to_string(),
        Routed::Listed { from, tenants } => {
            let mut sql = String::from("tenant_id IN ");
            push_list(&mut sql, from, tenants);
            sql
        }
    }
}

/// The top-level runs due at `$now` whose leases are free or expired.
fn due_runs(now: &str, routed: Routed) -> String {
    format!(
        "status = 'running' AND parent_id IS NULL AND wake_at <= {now} \
         AND (lease_owner IS NULL OR lease_until < {now}) AND {}",
        routed_runs(routed)
    )
}

/// Postgres only: owner $1 takes, until $2, the leases of up to $4
/// top-level runs due at $3 whose leases are free or expired (tenants from
/// $5 on, when [`Routed::Listed`]), most overdue first, passing over rows
/// another worker is claiming (`SKIP LOCKED`); returns each with the holder
/// whose lease expired (null when free).
pub(crate) fn claim_due_runs(routed: Routed) -> String {
    format!(
        "WITH due AS (SELECT id, lease_owner AS previous FROM runs WHERE {} ORDER BY wake_at \
         LIMIT $4 FOR UPDATE SKIP LOCKED) \
         UPDATE runs SET lease_owner = $1, lease_until = $2 FROM due \
         WHERE runs.id = due.id RETURNING runs.tenant_id, runs.id, due.previous",
        due_runs("$3", routed)
    )
}

/// SQLite: the runs [`claim_due_runs`] would claim (due at $1, at most $2,
/// tenants from $3 on), read inside the write transaction that then leases
/// them with [`lease_runs`] (SQLite cannot return a joined row's old
/// values).
pub(crate) fn select_due_runs(routed: Routed) -> String {
    format!(
        "SELECT tenant_id, id, lease_owner AS previous FROM runs WHERE {} ORDER BY wake_at LIMIT $2",
        due_runs("$1", routed)
    )
}

/// Leases `runs` runs (ids from $3 on) to owner $1 until $2.
pub(crate) fn lease_runs(runs: usize) -> String {
    let mut sql = String::from("UPDATE runs SET lease_owner = $1, lease_until = $2 WHERE id IN ");
    push_list(&mut sql, 3, runs);
    sql
}

/// Appends `($from, …)`, `count` parameters in all.
fn push_list(sql: &mut String, from: usize, count: usize) {
    push_rows(sql, from - 1, 1, count);
}

/// Owner $4 parks run $2 (tenant $3) until $1 and gives up its lease, if its
/// journal still ends at seq $5 (nothing came in since its driver looked).
pub(crate) const PARK_RUN: &str = "UPDATE runs SET wake_at = $1, lease_owner = NULL, lease_until = NULL \
                                   WHERE id = $2 AND tenant_id = $3 AND lease_owner = $4 AND last_seq = $5 \
                                   AND status = 'running'";

/// Makes run $2 (tenant $3) due at $1 if it was parked later.
pub(crate) const WAKE_RUN: &str = "UPDATE runs SET wake_at = $1 WHERE id = $2 AND tenant_id = $3 AND wake_at > $1";

/// How many top-level runs are due at $1 and not driven (tenants from $2
/// on): the queue's depth.
pub(crate) fn count_due_runs(routed: Routed) -> String {
    format!("SELECT COUNT(*) FROM runs WHERE {}", due_runs("$1", routed))
}

pub(crate) const RELEASE_LEASE: &str = "UPDATE runs SET lease_owner = NULL, lease_until = NULL \
                                        WHERE id = $1 AND lease_owner = $2 AND tenant_id = $3";

// The journal.

pub(crate) const SELECT_EVENTS: &str =
    "SELECT seq, at, body FROM events WHERE run_id = $1 AND seq > $2 AND tenant_id = $3 ORDER BY seq";

/// Reserves $1 seqs of run $3 (tenant $7) at $2, records its end (status
/// $4, output $5, error $6) if it ends, and returns its new last seq. Also
/// takes the run's row lock.
pub(crate) const RESERVE_SEQS: &str = "UPDATE runs SET last_seq = last_seq + $1, updated_at = $2, \
                                       status = COALESCE($4, status), output = COALESCE($5, output), \
                                       error = COALESCE($6, error), \
                                       lease_owner = CASE WHEN $4 IS NULL THEN lease_owner END, \
                                       lease_until = CASE WHEN $4 IS NULL THEN lease_until END \
                                       WHERE id = $3 AND tenant_id = $7 RETURNING last_seq";

/// Inserts `rows` events, parameters numbered from 1.
pub(crate) fn insert_events(rows: usize) -> String {
    let mut sql = format!("INSERT INTO events ({EVENT_COLUMNS}) VALUES ");
    push_event_rows(&mut sql, 0, rows);
    sql
}

/// Postgres only: `insert_run` ([`INSERT_RUN`] or [`INSERT_CURRENT_RUN`])
/// and its first `events` in one statement; the events are written only
/// with the run.
pub(crate) fn insert_run_with_events(insert_run: &str, events: usize) -> String {
    let mut sql =
        format!("WITH r AS ({insert_run} RETURNING id) INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM (VALUES ");
    push_event_rows(&mut sql, 16, events);
    sql.push_str(") AS e WHERE EXISTS (SELECT 1 FROM r)");
    sql
}

/// Postgres only: one statement that reserves the seqs of the runs whose
/// event counts are `events`, records the end of those that end, and inserts
/// their events. `$1` is the time; then per run (id, tenant, status, output,
/// error); then per event (kind, step, body); then per row of `usage`
/// (tenant, period, shard, steps, wasm time), added to the usage table. A
/// run's place in the batch and an event's place in its run are literals, so
/// an event costs three parameters and the join is on an integer. Returns
/// (place, base) for each run found: its events take seqs `base + 1 …`.
pub(crate) fn append_runs(events: &[usize], usage: usize) -> String {
    let mut sql = String::from("WITH v(i, run_id, tenant_id, n, status, output, error) AS (VALUES ");
    let mut p = 1;
    for (i, n) in events.iter().enumerate() {
        let _ = write!(sql, "{}({i}, ", if i > 0 { ", " } else { "" });
        push_params(&mut sql, &mut p, &["text", "text"]);
        let _ = write!(sql, ", {n}::bigint, ");
        push_params(&mut sql, &mut p, &["text", "text", "text"]);
        sql.push(')');
    }
    // A run that ends takes its status, output or error, and gives up its lease.
    sql.push_str(
        "), r AS (UPDATE runs SET last_seq = runs.last_seq + v.n, updated_at = $1, \
         status = COALESCE(v.status, runs.status), output = COALESCE(v.output, runs.output), \
         error = COALESCE(v.error, runs.error), \
         lease_owner = CASE WHEN v.status IS NULL THEN runs.lease_owner END, \
         lease_until = CASE WHEN v.status IS NULL THEN runs.lease_until END \
         FROM v WHERE runs.id = v.run_id AND runs.tenant_id = v.tenant_id \
         RETURNING v.i, runs.id, runs.tenant_id, runs.last_seq - v.n AS base), \
         e(i, k, kind, step, body) AS (VALUES ",
    );
    let mut first = true;
    for (i, n) in events.iter().enumerate() {
        for k in 1..=*n {
            let _ = write!(sql, "{}({i}, {k}, ", if first { "" } else { ", " });
            push_params(&mut sql, &mut p, &["text", "text", "text"]);
            sql.push(')');
            first = false;
        }
    }
    let _ = write!(
        sql,
        "), w AS (INSERT INTO events ({EVENT_COLUMNS}) \
         SELECT r.id, r.base + e.k, r.tenant_id, e.kind, e.step, e.body, $1 FROM e JOIN r ON r.i = e.i)"
    );
    if usage > 0 {
        sql.push_str(", u AS (INSERT INTO usage (tenant_id, period, shard, steps, wasm_us) VALUES ");
        for row in 0..usage {
            sql.push_str(if row > 0 { ", (" } else { "(" });
            push_params(&mut sql, &mut p, &["text", "text", "bigint", "bigint", "bigint"]);
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (tenant_id, period, shard) DO UPDATE SET steps = usage.steps + EXCLUDED.steps, \
             wasm_us = usage.wasm_us + EXCLUDED.wasm_us)",
        );
    }
    sql.push_str(" SELECT i, base FROM r");
    sql
}

/// Appends typed placeholders (`$n::type`, one per column), comma-separated,
/// numbered after `last`.
fn push_params(sql: &mut String, last: &mut usize, columns: &[&str]) {
    for (c, column) in columns.iter().enumerate() {
        *last += 1;
        let _ = write!(sql, "{}${}::{column}", if c > 0 { ", " } else { "" }, *last);
    }
}

/// Appends `rows` placeholder rows of the events table's seven columns,
/// numbering parameters after `offset`.
fn push_event_rows(sql: &mut String, offset: usize, rows: usize) {
    push_rows(sql, offset, rows, 7);
}

/// Appends `rows` placeholder rows of `columns` parameters each
/// (`($1, $2), ($3, $4)`), numbering parameters after `offset`.
fn push_rows(sql: &mut String, offset: usize, rows: usize, columns: usize) {
    for row in 0..rows {
        sql.push_str(if row > 0 { ", (" } else { "(" });
        for c in 1..=columns {
            let _ = write!(sql, "{}${}", if c > 1 { ", " } else { "" }, offset + row * columns + c);
        }
        sql.push(')');
    }
}

/// Inserts `rows` rows of `columns` into `table` (a tenant's move).
pub(crate) fn insert_rows(table: &str, columns: &[&str], rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    push_rows(&mut sql, 0, rows, columns.len());
    sql
}

// Connectors.

/// Installs a component unless its tenant has one under that name@version.
pub(crate) const INSERT_CONNECTOR: &str = "INSERT INTO connectors (tenant_id, name, version, digest, manifest, \
                                           component, installed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                                           ON CONFLICT (tenant_id, name, version) DO NOTHING";

pub(crate) const SELECT_CONNECTOR_DIGEST: &str =
    "SELECT digest FROM connectors WHERE tenant_id = $1 AND name = $2 AND version = $3";

pub(crate) const SELECT_CONNECTORS: &str = "SELECT name, version, digest, component, installed_at FROM connectors \
                                            WHERE tenant_id = $1 ORDER BY installed_at, name, version";

pub(crate) const SELECT_CONNECTOR_DIGESTS: &str = "SELECT digest FROM connectors WHERE tenant_id = $1";

// Tenants and API keys.

pub(crate) const INSERT_TENANT: &str =
    "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";

pub(crate) const SELECT_TENANT: &str = "SELECT id, name, created_at FROM tenants WHERE id = $1";

pub(crate) const SELECT_TENANTS: &str = "SELECT id, name, created_at FROM tenants ORDER BY created_at, id";

/// The columns of an API key row, in [`ApiKeyRow`]'s order.
macro_rules! api_key_columns {
    () => {
        "id, tenant_id, name, role, secret_hash, created_at, last_used_at, revoked_at"
    };
}

pub(crate) const INSERT_API_KEY: &str = "INSERT INTO api_keys (id, tenant_id, name, role, secret_hash, created_at) \
                                         VALUES ($1, $2, $3, $4, $5, $6)";

pub(crate) const SELECT_API_KEY: &str = concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE id = $1");

/// The keys of tenant $1 (null: the operator's), oldest first.
pub(crate) const SELECT_API_KEYS: &str = concat!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys WHERE (tenant_id = $1 OR (tenant_id IS NULL AND CAST($1 AS TEXT) IS NULL)) \
     ORDER BY created_at, id"
);

pub(crate) const COUNT_LIVE_API_KEYS: &str = "SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL";

/// Revokes key $1 of tenant $2 (null: an operator key) at $3, keeping an
/// earlier revocation's time.
pub(crate) const REVOKE_API_KEY: &str = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 \
                                         AND (tenant_id = $2 OR (tenant_id IS NULL AND CAST($2 AS TEXT) IS NULL))";

pub(crate) const TOUCH_API_KEY: &str = "UPDATE api_keys SET last_used_at = $2 WHERE id = $1";

// The tenant registry.

/// Tenant $1's database URL (null: the shared one) and move mark.
pub(crate) const SELECT_ROUTE: &str = "SELECT database_url, moving_since FROM tenants WHERE id = $1";

/// The tenants that live in a database other than the shared one, or that
/// are marked moving: each with its database (null: the shared one) and
/// its mark.
pub(crate) const SELECT_TENANT_ROUTES: &str = "SELECT id, database_url, moving_since FROM tenants \
                                              WHERE database_url IS NOT NULL OR moving_since IS NOT NULL \
                                              ORDER BY database_url, id";

/// Marks tenant $1 moving since $2, unless it is.
pub(crate) const MARK_MOVING: &str = "UPDATE tenants SET moving_since = $2 WHERE id = $1 AND moving_since IS NULL";

/// Routes tenant $1 to database $2 (null: the shared one), ending the move
/// that marked it at $3 (nothing when the mark is not that move's any more).
pub(crate) const SET_ROUTE: &str =
    "UPDATE tenants SET database_url = $2, moving_since = NULL WHERE id = $1 AND moving_since = $3";

/// Renews the mark of a move of tenant $1 from $2 to $3 (nothing when the
/// mark is not $2 any more: the move was given up).
pub(crate) const RENEW_MARK: &str = "UPDATE tenants SET moving_since = $3 WHERE id = $1 AND moving_since = $2";

/// Clears tenant $1's mark if it is still $2: a move that ended without
/// moving, or that was abandoned.
pub(crate) const CLEAR_MARK: &str = "UPDATE tenants SET moving_since = NULL WHERE id = $1 AND moving_since = $2";

/// How many of tenant $1's runs (child runs too) a process drives at $2:
/// unfinished, with a lease that has not expired.
pub(crate) const COUNT_DRIVEN: &str = concat!(
    "SELECT COUNT(*) FROM runs WHERE tenant_id = $1 AND status = 'running' AND lease_owner IS NOT NULL \
     AND lease_until >= $2 AND ",
    by_tenant!()
);

pub(crate) const DELETE_TENANT: &str = "DELETE FROM tenants WHERE id = $1";

// Plans and usage.

/// Tenant $1's plan (JSON text, null: no limits); no row: no such tenant.
pub(crate) const SELECT_PLAN: &str = "SELECT plan FROM tenants WHERE id = $1";

/// Sets tenant $1's plan to $2.
pub(crate) const UPDATE_PLAN: &str = "UPDATE tenants SET plan = $2 WHERE id = $1";

/// Postgres: holds tenant $1's row until the transaction ends, so that run
/// starts under a concurrency limit count and insert one at a time.
pub(crate) const LOCK_TENANT: &str = "SELECT id FROM tenants WHERE id = $1 FOR UPDATE";

/// How many top-level runs of tenant $1 are running (parked ones too).
pub(crate) const COUNT_RUNNING: &str =
    "SELECT COUNT(*) FROM runs WHERE tenant_id = $1 AND status = 'running' AND parent_id IS NULL";

/// How many runs tenant $1 created in [$2, $3) ms.
pub(crate) const COUNT_RUNS_CREATED: &str = concat!(
    "SELECT COUNT(*) FROM runs WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND ",
    by_tenant!()
);

/// Tenant $1's metered steps and wasm time in period $2, over every shard.
pub(crate) const SELECT_USAGE: &str = "SELECT CAST(COALESCE(SUM(steps), 0) AS BIGINT), \
                                       CAST(COALESCE(SUM(wasm_us), 0) AS BIGINT) FROM usage \
                                       WHERE tenant_id = $1 AND period = $2";

/// Adds steps ($4) and wasm time ($5) to tenant $1's shard $3 of period $2.
pub(crate) const ADD_USAGE: &str = "INSERT INTO usage (tenant_id, period, shard, steps, wasm_us) \
                                    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, period, shard) \
                                    DO UPDATE SET steps = usage.steps + excluded.steps, \
                                    wasm_us = usage.wasm_us + excluded.wasm_us";

// Rows.

/// A row of [`SELECT_RUN`] and the other run queries.
#[derive(FromRow)]
pub(crate) struct RunRow {
    pub id: String,
    pub tenant_id: String,
    pub workflow_name: String,
    pub workflow_hash: String,
    pub status: String,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
    pub last_seq: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub parent_id: Option<String>,
    pub retry_of: Option<String>,
    pub idempotency_key: Option<String>,
    pub wake_at: i64,
}

/// A row of [`SELECT_WORKFLOW_SUMMARY`] and [`LIST_WORKFLOWS`].
#[derive(FromRow)]
pub(crate) struct WorkflowRow {
    pub hash: String,
    pub name: String,
    pub created_at: i64,
    pub deprecated_at: Option<i64>,
}

/// A row of [`SELECT_TENANT`] and [`SELECT_TENANTS`].
#[derive(FromRow)]
pub(crate) struct TenantRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A row of [`SELECT_API_KEY`] and [`SELECT_API_KEYS`].
#[derive(FromRow)]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub tenant_id: Option<String>,
    pub name: String,
    pub role: String,
    pub secret_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A row of [`claim_due_runs`] and [`select_due_runs`].
#[derive(FromRow)]
pub(crate) struct ClaimedRow {
    pub tenant_id: String,
    pub id: String,
    pub previous: Option<String>,
}

/// A row of [`SELECT_EVENTS`].
#[derive(FromRow)]
pub(crate) struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub body: String,
}

/// A row that [`append_runs`] returns: one per run found.
#[derive(FromRow)]
pub(crate) struct AppendedRow {
    /// The run's place in the batch.
    pub i: i32,
    /// Its last seq before the batch.
    pub base: i64,
}

/// A row of [`SELECT_CONNECTORS`].
#[derive(FromRow)]
pub(crate) struct ConnectorRow {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub component: Vec<u8>,
    pub installed_at: i64,
}

#[cfg(test)]
mod tests {
    #[test]
    fn builders_number_their_parameters_in_order() {
        assert_eq!(
            super::insert_events(2),
            "INSERT INTO events (run_id, seq, tenant_id, kind, step, body, at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7), ($8, $9, $10, $11, $12, $13, $14)"
        );
        let batch = super::append_runs(&[1, 2], 0);
        assert!(
            batch.contains("(VALUES (0, $2::text, $3::text, 1::bigint, $4::text, $5::text, $6::text), "),
            "{batch}"
        );
        assert!(batch.contains(", (1, $7::text, $8::text, 2::bigint, $9::text, $10::text, $11::text))"), "{batch}");
        assert!(batch.contains("e(i, k, kind, step, body) AS (VALUES (0, 1, $12::text, $13::text, $14::text), "));
        assert!(batch.contains(", (1, 2, $18::text, $19::text, $20::text)), w AS"), "{batch}");
        let start = super::insert_run_with_events(super::INSERT_CURRENT_RUN, 1);
        assert!(start.ends_with("($17, $18, $19, $20, $21, $22, $23)) AS e WHERE EXISTS (SELECT 1 FROM r)"), "{start}");
        let metered = super::append_runs(&[1], 1);
        assert!(
            metered.contains(
                "u AS (INSERT INTO usage (tenant_id, period, shard, steps, wasm_us) VALUES \
                 ($10::text, $11::text, $12::bigint, $13::bigint, $14::bigint) ON CONFLICT"
            ),
            "{metered}"
        );
        assert!(metered.ends_with(" SELECT i, base FROM r"), "{metered}");
    }

    /// Postgres plans every lookup of one run by its id with the primary key,
    /// even in a generic plan made from the statistics of a one-row table,
    /// which rate the tenant's index the same (migration 0010); a tenant
    /// move's statements over all of a tenant's runs use the tenant's index.
    /// Seq scans are turned off: on a one-row table they are the planner's
    /// right choice.
    #[tokio::test]
    async fn lookups_use_their_index_whatever_the_statistics() {
        use sqlx::Connection;
        let url = crate::testing::fresh_postgres().await;
        drop(crate::db::Db::connect(&url).await.unwrap());
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO runs (id, tenant_id, workflow_name, workflow_hash, status, input, last_seq, created_at, \
             updated_at) VALUES ('r1', 't', 'w', 'h', 'running', '{}', 0, 1, 1); ANALYZE runs; \
             SET ROLE weft_app; SET weft.tenant = 't'; \
             SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let lookups = [
            ("SELECT_RUN", super::SELECT_RUN),
            ("ACQUIRE_LEASE", super::ACQUIRE_LEASE),
            ("ACQUIRE_IDLE_LEASE", super::ACQUIRE_IDLE_LEASE),
            ("PARK_RUN", super::PARK_RUN),
            ("WAKE_RUN", super::WAKE_RUN),
            ("RELEASE_LEASE", super::RELEASE_LEASE),
            ("RESERVE_SEQS", super::RESERVE_SEQS),
        ];
        for (q, (name, statement)) in lookups.into_iter().enumerate() {
            let params = (1..=9).filter(|n| statement.contains(&format!("${n}"))).count();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE q{q} AS {statement}")))
                .execute(&mut conn)
                .await
                .unwrap();
            let nulls = vec!["NULL"; params].join(", ");
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE q{q}({nulls})")))
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("using runs_pkey"), "{name} does not use the primary key:\n{plan}");
        }
        // A tenant move's reads and deletes of the tenant's runs can use its
        // index (seq scans are off: a plan without it would be one).
        for statement in [
            format!("SELECT id FROM runs WHERE {}", super::tenant_rows("runs")),
            format!("DELETE FROM runs WHERE {}", super::tenant_rows("runs")),
        ] {
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {statement}")))
                .bind("t")
                .fetch_all(&mut conn)
                .await
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("runs_by_tenant_created"), "{statement} does not use the tenant's index:\n{plan}");
        }
    }
}
