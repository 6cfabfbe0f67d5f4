//! The second layer of tenant isolation, on a real Postgres: raw SQL run as
//! the store's role under one tenant's setting reads and changes none of
//! another tenant's rows, even when it names them; with no setting it sees
//! nothing at all.

use serde_json::json;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, Row};
use weft_core::Event;
use weft_store::{APP_ROLE, ApiKey, Metered, NewConnector, NewRun, Store, testing};

/// Every tenant-owned table and the column that names the tenant.
const TABLES: [(&str, &str); 7] = [
    ("tenants", "id"),
    ("workflows", "tenant_id"),
    ("runs", "tenant_id"),
    ("events", "tenant_id"),
    ("connectors", "tenant_id"),
    ("api_keys", "tenant_id"),
    ("usage", "tenant_id"),
];

/// A tenant with a workflow version, a run with two events, a connector, a
/// key and a month's usage.
async fn tenant_with_rows(store: &Store, tenant: &str) {
    store.create_tenant(tenant, tenant, 1).await.unwrap();
    store.put_workflow(tenant, "sha256:abc", "demo", "{}", 1).await.unwrap();
    let run = NewRun {
        id: &format!("run-{tenant}"),
        tenant,
        workflow_name: "demo",
        workflow_hash: "sha256:abc",
        input: &json!({}),
        lease: None,
        parent: None,
        retry_of: None,
        idempotency_key: None,
        wake_at: 0,
        at: 1,
        refuse_deprecated: true,
    };
    let started = Event::RunStarted {
        workflow: "demo".into(),
        workflow_hash: "sha256:abc".into(),
        input: json!({}),
        connectors: Default::default(),
        timeout_at: None,
        retry_of: None,
    };
    store.create_run(run, &[started, Event::StepScheduled { step: "s".into(), items: None }]).await.unwrap();
    let connector = NewConnector {
        tenant,
        name: "demo",
        version: "1.0.0",
        digest: "sha256:aaaa",
        manifest: "{}",
        component: b"component",
        installed_at: 1,
    };
    store.install_connector(connector).await.unwrap();
    let key = ApiKey {
        id: format!("key{tenant}"),
        tenant: Some(tenant.into()),
        name: "k".into(),
        role: "developer".into(),
        secret_hash: "00".into(),
        created_at: 1,
        last_used_at: None,
        revoked_at: None,
    };
    store.create_api_key(&key).await.unwrap();
    let metered = Metered { steps: 3, wasm_us: 30 };
    store.append_metered(tenant, &format!("run-{tenant}"), &[], 1, metered).await.unwrap();
}

/// A connection like the store's: the URL's user, working as the app role.
async fn app_connection(url: &str) -> AnyConnection {
    let mut conn = AnyConnection::connect(url).await.unwrap();
    conn.execute(AssertSqlSafe(format!("SET ROLE {APP_ROLE}"))).await.unwrap();
    conn
}

/// The tenants whose rows `table` shows this connection.
async fn visible(conn: &mut AnyConnection, table: &str, column: &str) -> Vec<String> {
    let sql = format!("SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY 1");
    let rows = conn.fetch_all(AssertSqlSafe(sql)).await.unwrap();
    rows.iter().map(|row| row.get::<String, _>(0)).collect()
}

async fn set_tenant(conn: &mut AnyConnection, tenant: &str) {
    sqlx::query("SELECT set_config('weft.tenant', $1, true)").bind(tenant).execute(&mut *conn).await.unwrap();
}

#[tokio::test]
async fn raw_sql_under_one_tenant_reads_and_changes_none_of_anothers_rows() {
    let url = testing::fresh_postgres().await;
    let store = Store::connect(&url).await.unwrap();
    tenant_with_rows(&store, "a").await;
    tenant_with_rows(&store, "b").await;
    let mut conn = app_connection(&url).await;

    // The tables are not the role's, and the policies bind their owner too.
    for (table, _) in TABLES {
        let row = sqlx::query(
            "SELECT pg_get_userbyid(relowner)::text, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_ne!(row.get::<String, _>(0), APP_ROLE, "{table} is owned by the role the store works as");
        assert!(row.get::<bool, _>(1) && row.get::<bool, _>(2), "{table} does not force row-level security");
    }

    // No setting: nothing is seen.
    for (table, column) in TABLES {
        assert!(visible(&mut conn, table, column).await.is_empty(), "{table} shows rows with no tenant set");
    }

    // A's setting: reads that forget the filter, or name B, see only A.
    let mut tx = conn.begin().await.unwrap();
    set_tenant(&mut tx, "a").await;
    for (table, column) in TABLES {
        assert_eq!(visible(&mut tx, table, column).await, ["a"], "{table} under a's setting");
        let named_b = format!("SELECT count(*) FROM {table} WHERE {column} = 'b'");
        let n: i64 = tx.fetch_one(AssertSqlSafe(named_b)).await.unwrap().get(0);
        assert_eq!(n, 0, "{table}: a's setting counts b's rows");
    }
    // Writes that name B, or forget any filter, reach only A's rows.
    for (sql, expected) in [
        ("UPDATE runs SET status = 'failed' WHERE tenant_id = 'b'", 0),
        ("UPDATE runs SET status = 'failed'", 1),
        ("DELETE FROM events WHERE run_id = 'run-b'", 0),
        ("DELETE FROM events", 2),
        ("UPDATE workflows SET name = 'taken'", 1),
        ("DELETE FROM connectors WHERE tenant_id = 'b'", 0),
        ("UPDATE api_keys SET revoked_at = 5", 1),
        ("UPDATE tenants SET name = 'taken'", 1),
        ("UPDATE usage SET steps = 0", 1),
        ("DELETE FROM usage WHERE tenant_id = 'b'", 0),
    ] {
        let done = tx.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(done.rows_affected(), expected, "{sql}");
    }
    tx.rollback().await.unwrap();

    // Rows written for B, or moved to B, under A's setting are refused.
    for sql in [
        "INSERT INTO events (run_id, seq, tenant_id, kind, step, body, at) VALUES ('run-b', 9, 'b', 'x', NULL, '{}', 1)",
        "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) VALUES ('b', 'sha256:new', 'n', '{}', 1)",
        "UPDATE runs SET tenant_id = 'b'",
        "UPDATE api_keys SET tenant_id = 'b'",
        "INSERT INTO usage (tenant_id, period, shard, steps, wasm_us) VALUES ('b', '1970-01', 99, 1, 1)",
    ] {
        let mut tx = conn.begin().await.unwrap();
        set_tenant(&mut tx, "a").await;
        let err = tx.execute(sql).await.expect_err(sql).to_string();
        assert!(err.contains("row-level security"), "{sql}: {err}");
        tx.rollback().await.unwrap();
    }

    // B's rows are whole, as B sees them through the store.
    let run = store.get_run("b", "run-b").await.unwrap().expect("b's run");
    assert_eq!(run.status.as_str(), "running");
    assert_eq!(store.load_events("b", "run-b", 0).await.unwrap().len(), 2);
    assert_eq!(store.workflow_versions("b", None, 10).await.unwrap()[0].name, "demo");
    assert_eq!(store.installed_connectors("b").await.unwrap().len(), 1);
    assert_eq!(store.list_api_keys(Some("b")).await.unwrap()[0].revoked_at, None);
    assert_eq!(store.usage("b", "1970-01").await.unwrap().steps, 3);
    // And so are A's: every change above was rolled back or refused.
    assert_eq!(store.load_events("a", "run-a", 0).await.unwrap().len(), 2);
}

/// The store's own statements run as the app role, which is neither a
/// superuser nor exempt from policies, rather than as the URL's user (a
/// superuser here, whom no policy would bind).
#[tokio::test]
async fn the_store_works_as_a_role_that_policies_bind() {
    let url = testing::fresh_postgres().await;
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.working_role().await.unwrap().as_deref(), Some(APP_ROLE));
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    let exempt: bool = sqlx::query("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1")
        .bind(APP_ROLE)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert!(!exempt, "{APP_ROLE} passes over row-level security");
}
