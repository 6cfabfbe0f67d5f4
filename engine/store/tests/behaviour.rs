//! One behavioural suite, run against SQLite and against a real Postgres.

use serde_json::json;
use weft_core::{ErrorKind, Event, RunStatus, StepError};
use weft_store::{DEFAULT_TENANT, Installed, Lease, Metered, NewConnector, NewRun, Plan, RunFilter, Store, testing};

/// The store reads no clock; its callers give it the time.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Declares each test twice: once per backend, each with a fresh database.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let store = weft_store::Store::connect(&weft_store::testing::sqlite_url(dir.path())).await.unwrap();
                super::$name(store).await;
            }
        )* }
        mod postgres { $(
            #[tokio::test]
            async fn $name() {
                let store = weft_store::Store::connect(&weft_store::testing::fresh_postgres().await).await.unwrap();
                super::$name(store).await;
            }
        )* }
    };
}

both_stores!(
    journal_round_trips_in_order,
    summary_follows_the_journal,
    concurrent_writers_are_detected,
    runs_are_found_by_prefix,
    leases_exclude_other_drivers,
    connect_errors_are_clear,
    child_runs_are_left_to_their_parents,
    appends_queued_together_each_get_their_own_answer,
    appends_whose_callers_give_up_leave_the_journal_whole,
    runs_are_created_with_their_first_events,
    a_name_and_version_always_mean_one_component,
    a_retry_and_the_run_it_retries_name_each_other,
    another_tenant_finds_nothing,
    an_idempotency_key_names_one_run_per_tenant,
    parked_runs_are_claimed_when_due_and_once,
    a_signal_can_not_be_parked_past,
    tenants_and_api_keys_round_trip,
    run_pages_follow_their_cursor,
    workflow_versions_are_listed_and_deprecated,
    concurrent_starts_never_pass_a_cap_on_running_runs,
    metered_appends_add_up_in_the_month_they_happen
);

/// A tenant's due runs are claimed from the database it is routed to, and
/// from nowhere while it moves; rows of a tenant in a database it is not
/// routed to (a failed move's copy, what a move left behind) never are.
async fn claims_follow_the_registry(shared: &str, own: &str) {
    let store = Store::connect(shared).await.unwrap();
    let now = now_ms();
    for tenant in ["home", "away", "moving", "stalled"] {
        store.create_tenant(tenant, tenant, now).await.unwrap();
    }
    store.move_tenant("away", Some(own), now).await.unwrap();
    for tenant in ["home", "away", "moving", "stalled"] {
        new_keyed_run(&store, tenant, &format!("run-{tenant}"), None).await.unwrap();
    }
    // "moving" is marked by a live move; "stalled" by one that stopped
    // renewing its mark long ago.
    let mark = "UPDATE tenants SET moving_since = $2 WHERE id = $1";
    as_owner(shared, mark, &["moving"], Some(now)).await;
    as_owner(shared, mark, &["stalled"], Some(now - 60_000)).await;
    // A copy of a run where its tenant is not routed, in each database.
    let leave = "INSERT INTO runs (id, tenant_id, workflow_name, workflow_hash, status, input, last_seq, \
                 created_at, updated_at) VALUES ($2, $1, 'demo', 'sha256:abc', 'running', '{}', 1, 0, 0)";
    let version = "INSERT INTO workflows (tenant_id, hash, name, definition, created_at) \
                   VALUES ($1, 'sha256:abc', 'demo', '{}', 0)";
    as_owner(shared, version, &["away"], None).await;
    as_owner(shared, leave, &["away", "left-away"], None).await;
    as_owner(own, "INSERT INTO tenants (id, name, created_at) VALUES ($1, $1, 0)", &["home"], None).await;
    as_owner(own, version, &["home"], None).await;
    as_owner(own, leave, &["home", "left-home"], None).await;

    assert_eq!(store.due_runs(now).await.unwrap(), 3);
    let mut claimed = store.claim_due_runs("w1", now, now + 60_000, 100).await.unwrap();
    claimed.sort();
    let ids: Vec<&str> = claimed.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(ids, ["run-away", "run-home", "run-stalled"], "{claimed:?}");
    assert_eq!(mark_of(shared, "stalled").await, None, "the dead move's mark is cleared");
    assert_eq!(mark_of(shared, "moving").await, Some(now), "the live move's mark stands");
    assert_eq!(store.due_runs(now).await.unwrap(), 0, "the copies and the moving tenant's run are not due anywhere");

    // Once the move ends, its run is claimed where it is.
    as_owner(shared, "UPDATE tenants SET moving_since = NULL WHERE id = $1", &["moving"], None).await;
    let claimed = store.claim_due_runs("w2", now, now + 60_000, 100).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(ids, ["run-moving"]);
    assert!(store.claim_due_runs("w3", now, now + 60_000, 100).await.unwrap().is_empty(), "the copies stay put");
    store.close().await;
}

#[tokio::test]
async fn claims_follow_the_registry_sqlite() {
    let (shared, own) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    claims_follow_the_registry(&testing::sqlite_url(shared.path()), &testing::sqlite_url(own.path())).await;
}

#[tokio::test]
async fn claims_follow_the_registry_postgres() {
    claims_follow_the_registry(&testing::fresh_postgres().await, &testing::fresh_postgres().await).await;
}

/// The move mark of `tenant` in the registry at `url`.
async fn mark_of(url: &str, tenant: &str) -> Option<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mark = sqlx::query_scalar("SELECT moving_since FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    mark
}

/// Runs `sql` on the database at `url` as the URL's user (the tables'
/// owner), with `texts` bound first and then `at`.
async fn as_owner(url: &str, sql: &str, texts: &[&str], at: Option<i64>) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()));
    for text in texts {
        query = query.bind(*text);
    }
    if let Some(at) = at {
        query = query.bind(at);
    }
    query.execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn new_run(store: &Store, id: &str) {
    new_child_run(store, id, None).await
}

async fn new_child_run(store: &Store, id: &str, parent: Option<&str>) {
    create(store, id, parent, None, &[run_started()]).await.unwrap();
}

fn run_started() -> Event {
    Event::RunStarted {
        workflow: "demo".into(),
        workflow_hash: "sha256:abc".into(),
        input: json!({ "n": 1 }),
        connectors: Default::default(),
        timeout_at: None,
        retry_of: None,
    }
}

async fn create(
    store: &Store,
    id: &str,
    parent: Option<&str>,
    lease: Option<(&str, i64)>,
    first: &[Event],
) -> weft_store::Result<()> {
    store.put_workflow(DEFAULT_TENANT, "sha256:abc", "demo", "{}", now_ms()).await.unwrap();
    store
        .put_workflow(DEFAULT_TENANT, "sha256:abc", "demo", "{}", now_ms())
        .await
        .expect("storing a version twice is a no-op");
    let run = NewRun {
        id,
        tenant: DEFAULT_TENANT,
        workflow_name: "demo",
        workflow_hash: "sha256:abc",
        input: &json!({ "n": 1 }),
        lease,
        parent,
        retry_of: None,
        idempotency_key: None,
        wake_at: 0,
        at: now_ms(),
        refuse_deprecated: true,
    };
    store.create_run(run, first).await
}

async fn journal_round_trips_in_order(store: Store) {
    new_run(&store, "run-a").await;
    let first = store
        .append(
            DEFAULT_TENANT,
            "run-a",
            &[Event::StepScheduled { step: "s".into(), items: None }, Event::TimerSet { step: "s".into(), fire_at: 5 }],
            now_ms(),
        )
        .await
        .unwrap();
    assert_eq!(first, 2);
    let events = store.load_events(DEFAULT_TENANT, "run-a", 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(matches!(events[2].event, Event::TimerSet { fire_at: 5, .. }));
    assert_eq!(store.load_events(DEFAULT_TENANT, "run-a", 2).await.unwrap().len(), 1);
    assert_eq!(store.get_workflow(DEFAULT_TENANT, "sha256:abc").await.unwrap().as_deref(), Some("{}"));
}

async fn summary_follows_the_journal(store: Store) {
    new_run(&store, "run-b").await;
    assert_eq!(store.find_run(DEFAULT_TENANT, "run-b").await.unwrap().status, RunStatus::Running);
    assert_eq!(store.unfinished_runs(DEFAULT_TENANT).await.unwrap().len(), 1);
    store
        .append(DEFAULT_TENANT, "run-b", &[Event::RunCompleted { output: json!({ "ok": true }) }], now_ms())
        .await
        .unwrap();
    let run = store.find_run(DEFAULT_TENANT, "run-b").await.unwrap();
    assert_eq!((run.status.as_str(), run.output.as_deref(), run.last_seq), ("completed", Some(r#"{"ok":true}"#), 2));
    assert!(store.unfinished_runs(DEFAULT_TENANT).await.unwrap().is_empty());

    new_run(&store, "run-c").await;
    let error = StepError::new(ErrorKind::Fatal, "boom");
    store.append(DEFAULT_TENANT, "run-c", &[Event::RunFailed { error }], now_ms()).await.unwrap();
    let run = store.find_run(DEFAULT_TENANT, "run-c").await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().contains("boom"));
    let listed = store.list_runs(DEFAULT_TENANT, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.tenant == DEFAULT_TENANT));

    let ids = |runs: Vec<weft_store::RunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let filter = |f: RunFilter| {
        let store = store.clone();
        async move { ids(store.filter_runs(DEFAULT_TENANT, &f).await.unwrap()) }
    };
    assert_eq!(filter(RunFilter { status: Some(RunStatus::Failed), ..RunFilter::default() }).await, ["run-c"]);
    assert_eq!(filter(RunFilter { workflow: Some("demo".into()), ..RunFilter::default() }).await.len(), 2);
    assert!(filter(RunFilter { workflow: Some("other".into()), ..RunFilter::default() }).await.is_empty());
    assert!(filter(RunFilter { since: Some(now_ms() + 3_600_000), ..RunFilter::default() }).await.is_empty());
    assert_eq!(filter(RunFilter { since: Some(0), limit: 1, ..RunFilter::default() }).await, ["run-c"]);
}

async fn concurrent_writers_are_detected(store: Store) {
    new_run(&store, "run-d").await;
    // A signal from another process lands between two of the driver's appends.
    let known = 1;
    store
        .append(DEFAULT_TENANT, "run-d", &[Event::SignalReceived { name: "go".into(), payload: json!(1) }], now_ms())
        .await
        .unwrap();
    let first = store
        .append(DEFAULT_TENANT, "run-d", &[Event::StepScheduled { step: "s".into(), items: None }], now_ms())
        .await
        .unwrap();
    assert_ne!(first, known + 1, "the driver learns that someone else wrote");
    // Many concurrent appenders never collide on a seq.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(
                    DEFAULT_TENANT,
                    "run-d",
                    &[Event::SignalReceived { name: format!("s{n}"), payload: json!(n) }],
                    now_ms(),
                )
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let seqs: Vec<i64> = store.load_events(DEFAULT_TENANT, "run-d", 0).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<i64>>());
    assert_eq!(store.find_run(DEFAULT_TENANT, "run-d").await.unwrap().last_seq, 11);
}

async fn runs_are_found_by_prefix(store: Store) {
    new_run(&store, "0190aaaa-1111").await;
    new_run(&store, "0190aaaa-2222").await;
    assert_eq!(store.find_run(DEFAULT_TENANT, "0190aaaa-1").await.unwrap().id, "0190aaaa-1111");
    let err = store.find_run(DEFAULT_TENANT, "0190aaaa").await.unwrap_err().to_string();
    assert!(err.contains("matches several runs"), "{err}");
    let err = store.find_run(DEFAULT_TENANT, "ffff").await.unwrap_err().to_string();
    assert!(err.contains("no run matches"), "{err}");
    assert!(store.find_run(DEFAULT_TENANT, "0190aaaa_%").await.is_err(), "LIKE wildcards are literal");
    // An empty id names no run; an overlong one is not repeated whole.
    let err = store.find_run(DEFAULT_TENANT, "").await.unwrap_err().to_string();
    assert_eq!(err, "no run matches \"\"");
    let err = store.find_run(DEFAULT_TENANT, &"0".repeat(100_000)).await.unwrap_err().to_string();
    assert!(err.starts_with("no run matches") && err.len() < 100, "{err}");
    assert!(
        store.append(DEFAULT_TENANT, "nope", &[Event::CancelRequested { reason: "x".into() }], now_ms()).await.is_err()
    );
}

async fn leases_exclude_other_drivers(store: Store) {
    new_run(&store, "run-e").await;
    let later = now_ms() + 60_000;
    assert_eq!(
        store.acquire_lease(DEFAULT_TENANT, "run-e", "host:1", now_ms(), later, None).await.unwrap(),
        Lease::Acquired
    );
    assert_eq!(
        store.acquire_lease(DEFAULT_TENANT, "run-e", "host:1", now_ms(), later, None).await.unwrap(),
        Lease::Acquired,
        "renewal"
    );
    assert!(
        matches!(store.acquire_lease(DEFAULT_TENANT, "run-e", "host:2", now_ms(), later, None).await.unwrap(), Lease::HeldBy { owner, .. } if owner == "host:1")
    );
    assert_eq!(
        store.acquire_lease(DEFAULT_TENANT, "run-e", "host:2", now_ms(), later, Some("host:1")).await.unwrap(),
        Lease::Acquired,
        "a dead holder's lease is taken"
    );
    store.release_lease(DEFAULT_TENANT, "run-e", "host:2").await.unwrap();
    assert_eq!(
        store.acquire_lease(DEFAULT_TENANT, "run-e", "host:3", now_ms(), now_ms() - 1, None).await.unwrap(),
        Lease::Acquired
    );
    assert_eq!(
        store.acquire_lease(DEFAULT_TENANT, "run-e", "host:4", now_ms(), later, None).await.unwrap(),
        Lease::Acquired,
        "an expired lease is free"
    );
    store.append(DEFAULT_TENANT, "run-e", &[Event::RunCancelled { reason: "x".into() }], now_ms()).await.unwrap();
    assert!(
        matches!(
            store.acquire_lease(DEFAULT_TENANT, "run-e", "host:4", now_ms(), later, None).await.unwrap(),
            Lease::HeldBy { .. }
        ),
        "finished runs take no lease"
    );
}

/// `weft bench --postgres` takes a URL that names a database, too: the fresh
/// database is made on that URL's server.
#[tokio::test]
async fn a_fresh_database_can_be_made_from_a_url_that_names_one() {
    let named = testing::fresh_postgres().await;
    let fresh = testing::fresh_database(&named).await.unwrap();
    assert_eq!(testing::server_part(&fresh), testing::server_part(&named));
    assert_ne!(fresh, named);
    Store::connect(&fresh).await.unwrap();
    let refused = testing::fresh_database("postgres://nobody@127.0.0.1:1/weft").await.unwrap_err();
    assert!(refused.contains("cannot reach the Postgres server"), "{refused}");
}

/// A process of an older build starts, and reports ready, on a database a
/// newer build has migrated further (a restart during a rolling upgrade).
#[tokio::test]
async fn an_older_build_opens_a_database_a_newer_one_migrated() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    for url in [testing::sqlite_url(dir.path()), testing::fresh_postgres().await] {
        Store::connect(&url).await.unwrap().close().await;
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'a newer build''s', $1, $2, 0)",
        )
        .bind(true)
        .bind(vec![0u8; 48])
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        let store = Store::connect(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        store.ready().await.unwrap();
        store.put_workflow(DEFAULT_TENANT, "sha256:abc", "demo", "{}", now_ms()).await.unwrap();
    }
}

async fn connect_errors_are_clear(_store: Store) {
    let err = Store::connect("mysql://x").await.err().unwrap().to_string();
    assert!(err.contains("unsupported database URL"), "{err}");
    let err = Store::connect("postgres://nobody:secret@127.0.0.1:1/db").await.err().unwrap().to_string();
    assert!(err.contains("cannot open the database") && !err.contains("secret"), "{err}");
    let _ = testing::POSTGRES_INSTALL;
}

/// Several processes opening a new SQLite file at once all get a migrated store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_of_a_sqlite_file_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = testing::sqlite_url(dir.path());
        let opens: Vec<_> = (0..6)
            .map(|_| {
                tokio::spawn({
                    let url = url.clone();
                    async move { Store::connect(&url).await.map(|_| ()) }
                })
            })
            .collect();
        for open in opens {
            open.await.unwrap().expect("every concurrent first open succeeds");
        }
    }
}

async fn child_runs_are_left_to_their_parents(store: Store) {
    new_run(&store, "parent").await;
    new_child_run(&store, "child", Some("parent")).await;
    let child = store.get_run(DEFAULT_TENANT, "child").await.unwrap().expect("the child exists");
    assert_eq!(child.parent_id.as_deref(), Some("parent"));
    assert_eq!(store.get_run(DEFAULT_TENANT, "chi").await.unwrap(), None, "get_run takes exact ids only");
    let unfinished: Vec<String> =
        store.unfinished_runs(DEFAULT_TENANT).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(unfinished, ["parent"], "resume drives parents, which drive their children");
}

async fn appends_queued_together_each_get_their_own_answer(store: Store) {
    for id in ["q1", "q2", "q3"] {
        new_run(&store, id).await;
    }
    let timer = |n: i64| vec![Event::TimerSet { step: "a".into(), fire_at: n }];
    let done = vec![Event::RunCompleted { output: json!("done") }];
    // Queued at once: the first is committed as it comes, the rest queue
    // behind it and are committed together.
    let (t1, t23, t4, t5) = (timer(1), [timer(2), timer(3)].concat(), timer(4), timer(5));
    let (a, b, c, d, e, f) = tokio::join!(
        store.append(DEFAULT_TENANT, "q1", &t1, now_ms()),
        store.append(DEFAULT_TENANT, "q2", &t23, now_ms()),
        store.append(DEFAULT_TENANT, "q2", &t4, now_ms()),
        store.append(DEFAULT_TENANT, "nope", &t5, now_ms()),
        store.append(DEFAULT_TENANT, "q3", &done, now_ms()),
        store.append("intruder", "q2", &t5, now_ms()),
    );
    assert!(matches!(f, Err(weft_store::Error::RunNotFound(_))), "another tenant's append is refused: {f:?}");
    assert_eq!(a.unwrap(), 2);
    let (b, c) = (b.unwrap(), c.unwrap());
    assert!((b, c) == (2, 4) || (b, c) == (3, 2), "two appends to one run get disjoint seqs: {b}, {c}");
    assert!(matches!(d, Err(weft_store::Error::RunNotFound(ref run)) if run == "nope"), "{d:?}");
    assert_eq!(e.unwrap(), 2);
    let q2 = store.load_events(DEFAULT_TENANT, "q2", 0).await.unwrap();
    assert_eq!(q2.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(store.find_run(DEFAULT_TENANT, "q2").await.unwrap().last_seq, 4);
    let q3 = store.find_run(DEFAULT_TENANT, "q3").await.unwrap();
    assert_eq!((q3.status.as_str(), q3.output.as_deref()), ("completed", Some("\"done\"")));
}

/// Callers that stop waiting (a driver cancelled mid-append) lose at most
/// their own append, whole: the journal has no gaps or partial appends, its
/// summary agrees with it, and the store keeps working.
async fn appends_whose_callers_give_up_leave_the_journal_whole(store: Store) {
    new_run(&store, "impatient").await;
    let (mut given_up, mut answered) = (0, 0);
    // On a loaded machine even one poll can see a whole round trip, so go on
    // (up to ten rounds) until both outcomes have occurred.
    for (round, polls) in (1..=60).cycle().take(600).enumerate() {
        if round >= 60 && given_up > 0 && answered > 0 {
            break;
        }
        let events = [Event::TimerSet { step: "a".into(), fire_at: polls }, Event::TimerFired { step: "a".into() }];
        // Poll the append `polls` times, giving the database and the runtime
        // time in between, then drop it: from giving up at once to waiting
        // until it is done (the last few always wait).
        let mut append = std::pin::pin!(store.append(DEFAULT_TENANT, "impatient", &events, now_ms()));
        let mut done = false;
        for _ in 0..if polls > 55 { usize::MAX } else { polls as usize } {
            done = std::future::poll_fn(|cx| std::task::Poll::Ready(append.as_mut().poll(cx).is_ready())).await;
            if done {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
            tokio::task::yield_now().await;
        }
        if done { answered += 1 } else { given_up += 1 }
    }
    assert!(given_up > 0 && answered > 0, "{given_up} callers gave up, {answered} were answered");
    // Appends given up mid-write are settled before later ones: nothing lands
    // after the run's end.
    let last = store
        .append(DEFAULT_TENANT, "impatient", &[Event::RunCompleted { output: json!("ok") }], now_ms())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let journal = store.load_events(DEFAULT_TENANT, "impatient", 0).await.unwrap();
    let seqs: Vec<i64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "no gaps in the journal");
    assert_eq!(journal.len() % 2, 0, "every append is whole: the start event plus pairs plus the end");
    for pair in journal[1..journal.len() - 1].chunks(2) {
        assert!(
            matches!((&pair[0].event, &pair[1].event), (Event::TimerSet { .. }, Event::TimerFired { .. })),
            "an append's events stay together and in order: {pair:?}"
        );
    }
    let run = store.find_run(DEFAULT_TENANT, "impatient").await.unwrap();
    assert_eq!((run.last_seq, run.status.as_str()), (last, "completed"));
}

/// A run is created with its first events in one commit, and a run whose
/// first events end it is written ended; a long first journal is kept whole.
async fn runs_are_created_with_their_first_events(store: Store) {
    let lease = Some(("host:1", now_ms() + 60_000));
    let scheduled = |n: usize| Event::StepScheduled { step: format!("s{n}"), items: None };
    create(&store, "begun", None, lease, &[run_started(), scheduled(0)]).await.unwrap();
    let begun = store.find_run(DEFAULT_TENANT, "begun").await.unwrap();
    assert_eq!((begun.status.as_str(), begun.last_seq, begun.lease_owner.as_deref()), ("running", 2, Some("host:1")));
    assert_eq!(store.load_events(DEFAULT_TENANT, "begun", 0).await.unwrap()[1].event, scheduled(0));

    let ended = [run_started(), Event::RunCompleted { output: json!({ "empty": true }) }];
    create(&store, "ended", None, lease, &ended).await.unwrap();
    let run = store.find_run(DEFAULT_TENANT, "ended").await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output.as_deref(), Some(r#"{"empty":true}"#));
    assert_eq!((run.lease_owner, run.lease_until), (None, None), "an ended run holds no lease");

    let long: Vec<Event> = std::iter::once(run_started()).chain((0..250).map(scheduled)).collect();
    create(&store, "long", None, lease, &long).await.unwrap();
    let journal = store.load_events(DEFAULT_TENANT, "long", 0).await.unwrap();
    assert_eq!(journal.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=251).collect::<Vec<i64>>());
    assert_eq!(journal[250].event, scheduled(249));

    let again = create(&store, "begun", None, lease, &[run_started()]).await;
    assert!(again.is_err(), "a run id is created once");
    assert_eq!(
        store.load_events(DEFAULT_TENANT, "begun", 0).await.unwrap().len(),
        2,
        "a refused create writes nothing"
    );
}

async fn a_name_and_version_always_mean_one_component(store: Store) {
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let first = NewConnector {
        tenant: DEFAULT_TENANT,
        name: "demo",
        version: "1.0.0",
        digest: "sha256:aaaa",
        manifest: r#"{"name":"demo"}"#,
        component: &bytes,
        installed_at: now_ms(),
    };
    assert_eq!(store.install_connector(first).await.unwrap(), Installed::New);
    assert_eq!(store.install_connector(first).await.unwrap(), Installed::Already);
    let other = NewConnector { digest: "sha256:bbbb", component: b"other", ..first };
    let err = store.install_connector(other).await.unwrap_err();
    assert!(matches!(err, weft_store::Error::ConnectorConflict { .. }), "{err}");
    assert!(err.to_string().contains("demo@1.0.0 is already installed with digest sha256:aaaa"), "{err}");
    let newer = NewConnector { version: "1.1.0", digest: "sha256:cccc", component: b"newer", ..first };
    assert_eq!(store.install_connector(newer).await.unwrap(), Installed::New);

    let installed = store.installed_connectors(DEFAULT_TENANT).await.unwrap();
    let keys: Vec<(String, String)> = installed.iter().map(|c| (c.version.clone(), c.digest.clone())).collect();
    assert_eq!(keys, [("1.0.0".to_string(), "sha256:aaaa".to_string()), ("1.1.0".into(), "sha256:cccc".into())]);
    assert_eq!(installed[0].component, bytes, "the component's bytes round-trip");
    assert!(store.installed_connectors("someone-else").await.unwrap().is_empty());
}

/// Every look-up and write under a tenant that does not own the run finds
/// nothing and changes nothing.
async fn another_tenant_finds_nothing(store: Store) {
    new_run(&store, "run-t").await;
    let other = "other";
    assert_eq!(store.get_run(other, "run-t").await.unwrap(), None);
    assert!(matches!(store.find_run(other, "run-t").await, Err(weft_store::Error::RunNotFound(_))));
    assert!(matches!(store.find_run(other, "run-").await, Err(weft_store::Error::RunNotFound(_))), "nor by prefix");
    assert!(store.load_events(other, "run-t", 0).await.unwrap().is_empty());
    let cancel = [Event::CancelRequested { reason: "not yours".into() }];
    assert!(matches!(store.append(other, "run-t", &cancel, now_ms()).await, Err(weft_store::Error::RunNotFound(_))));
    let later = now_ms() + 60_000;
    assert!(matches!(
        store.acquire_lease(other, "run-t", "host:9", now_ms(), later, None).await,
        Err(weft_store::Error::RunNotFound(_))
    ));
    assert!(store.list_runs(other, 10).await.unwrap().is_empty());
    assert!(store.unfinished_runs(other).await.unwrap().is_empty());
    assert_eq!(store.get_workflow(other, "sha256:abc").await.unwrap(), None);
    // The owner still sees its run whole and unleased.
    let run = store.find_run(DEFAULT_TENANT, "run-t").await.unwrap();
    assert_eq!((run.last_seq, run.lease_owner), (1, None));
    assert_eq!(store.load_events(DEFAULT_TENANT, "run-t", 0).await.unwrap().len(), 1);
}

async fn a_retry_and_the_run_it_retries_name_each_other(store: Store) {
    new_run(&store, "run-first").await;
    let retry = NewRun {
        id: "run-again",
        tenant: DEFAULT_TENANT,
        workflow_name: "demo",
        workflow_hash: "sha256:abc",
        input: &json!({ "n": 1 }),
        lease: None,
        parent: None,
        retry_of: Some("run-first"),
        idempotency_key: None,
        wake_at: 0,
        at: now_ms(),
        refuse_deprecated: false,
    };
    store.create_run(retry, &[run_started()]).await.unwrap();
    let again = store.get_run(DEFAULT_TENANT, "run-again").await.unwrap().unwrap();
    assert_eq!(again.retry_of.as_deref(), Some("run-first"));
    let retries = store.retries(DEFAULT_TENANT, "run-first").await.unwrap();
    assert_eq!(retries.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["run-again"]);
    assert!(store.retries("someone-else", "run-first").await.unwrap().is_empty(), "another tenant sees none");
    assert!(store.get_run(DEFAULT_TENANT, "run-first").await.unwrap().unwrap().retry_of.is_none());
}

async fn new_keyed_run(store: &Store, tenant: &str, id: &str, key: Option<&str>) -> weft_store::Result<()> {
    store.put_workflow(tenant, "sha256:abc", "demo", "{}", now_ms()).await.unwrap();
    let run = NewRun {
        id,
        tenant,
        workflow_name: "demo",
        workflow_hash: "sha256:abc",
        input: &json!({}),
        lease: None,
        parent: None,
        retry_of: None,
        idempotency_key: key,
        wake_at: 0,
        at: now_ms(),
        refuse_deprecated: true,
    };
    store.create_run(run, &[run_started()]).await
}

async fn an_idempotency_key_names_one_run_per_tenant(store: Store) {
    new_keyed_run(&store, DEFAULT_TENANT, "run-k1", Some("order-7")).await.unwrap();
    let again = new_keyed_run(&store, DEFAULT_TENANT, "run-k2", Some("order-7")).await;
    assert!(matches!(again, Err(weft_store::Error::IdempotencyKeyUsed(ref k)) if k == "order-7"), "{again:?}");
    assert!(store.get_run(DEFAULT_TENANT, "run-k2").await.unwrap().is_none(), "nothing of the refused run is written");
    let first = store.run_by_idempotency_key(DEFAULT_TENANT, "order-7").await.unwrap().unwrap();
    assert_eq!(first.id, "run-k1");
    assert_eq!(first.idempotency_key.as_deref(), Some("order-7"));
    new_keyed_run(&store, DEFAULT_TENANT, "run-k3", None).await.unwrap();
    new_keyed_run(&store, DEFAULT_TENANT, "run-k4", None).await.expect("runs without a key never clash");
    store.create_tenant("acme", "Acme", now_ms()).await.unwrap();
    new_keyed_run(&store, "acme", "run-k5", Some("order-7")).await.expect("keys are per tenant");
    assert!(store.run_by_idempotency_key("acme", "order-8").await.unwrap().is_none());
}

async fn parked_runs_are_claimed_when_due_and_once(store: Store) {
    let now = now_ms();
    let later = now + 60_000;
    for id in ["run-p1", "run-p2", "run-p3"] {
        new_keyed_run(&store, DEFAULT_TENANT, id, None).await.unwrap();
    }
    new_child_run(&store, "run-child", Some("run-p1")).await;
    // New runs that nobody leases are due at once; a child is its parent's.
    let mut claimed = store.claim_due_runs("w1", now, later, 10).await.unwrap();
    claimed.sort();
    let ids: Vec<&str> = claimed.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(ids, ["run-p1", "run-p2", "run-p3"]);
    assert!(claimed.iter().all(|c| c.tenant == DEFAULT_TENANT && !c.taken_over), "{claimed:?}");
    assert!(store.claim_due_runs("w2", now, later, 10).await.unwrap().is_empty(), "claimed runs are leased");

    // Parked: p1 until a time, p2 until a signal; p3 stays leased.
    let seq = |run: &str| {
        let store = store.clone();
        let run = run.to_string();
        async move { store.get_run(DEFAULT_TENANT, &run).await.unwrap().unwrap().last_seq }
    };
    assert!(store.park_run(DEFAULT_TENANT, "run-p1", "w1", seq("run-p1").await, now + 1_000).await.unwrap());
    assert!(
        !store.park_run(DEFAULT_TENANT, "run-p2", "w2", seq("run-p2").await, now).await.unwrap(),
        "only the holder parks"
    );
    let parked = weft_store::PARKED_UNTIL_SIGNALLED;
    assert!(store.park_run(DEFAULT_TENANT, "run-p2", "w1", seq("run-p2").await, parked).await.unwrap());
    let p1 = store.get_run(DEFAULT_TENANT, "run-p1").await.unwrap().unwrap();
    assert_eq!((p1.wake_at, p1.lease_owner), (now + 1_000, None));
    assert_eq!(store.due_runs(now).await.unwrap(), 0);
    assert!(store.claim_due_runs("w2", now + 999, later, 10).await.unwrap().is_empty(), "not due yet");
    assert_eq!(store.due_runs(now + 1_000).await.unwrap(), 1);
    let due = store.claim_due_runs("w2", now + 1_000, later, 10).await.unwrap();
    assert_eq!(due, [claimed_run("run-p1", false)], "a parked run is no takeover");
    assert!(store.claim_due_runs("w3", now + 5_000, later, 10).await.unwrap().is_empty(), "once");

    // A signal makes p2 due.
    store.wake_run(DEFAULT_TENANT, "run-p2", now + 2_000).await.unwrap();
    let due = store.claim_due_runs("w3", now + 2_000, later, 10).await.unwrap();
    assert_eq!(due, [claimed_run("run-p2", false)]);

    // A driver that dies leaves its runs to the lease's expiry: a takeover.
    let due = store.claim_due_runs("w4", later + 1, later + 60_000, 1).await.unwrap();
    assert_eq!(due.len(), 1, "the limit holds");
    let rest = store.claim_due_runs("w4", later + 1, later + 60_000, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(due.iter().chain(&rest).all(|c| c.taken_over), "{due:?} {rest:?}");
}

fn claimed_run(id: &str, taken_over: bool) -> weft_store::Claimed {
    weft_store::Claimed { tenant: DEFAULT_TENANT.into(), run_id: id.into(), taken_over }
}

async fn a_signal_can_not_be_parked_past(store: Store) {
    let now = now_ms();
    new_keyed_run(&store, DEFAULT_TENANT, "run-s", None).await.unwrap();
    store.claim_due_runs("w1", now, now + 60_000, 10).await.unwrap();
    let looked = store.get_run(DEFAULT_TENANT, "run-s").await.unwrap().unwrap().last_seq;
    // The signal lands after the driver looked and before it parks.
    let signal = Event::SignalReceived { name: "go".into(), payload: json!(null) };
    store.append(DEFAULT_TENANT, "run-s", &[signal], now).await.unwrap();
    let parked = weft_store::PARKED_UNTIL_SIGNALLED;
    assert!(!store.park_run(DEFAULT_TENANT, "run-s", "w1", looked, parked).await.unwrap(), "the journal grew");
    let run = store.get_run(DEFAULT_TENANT, "run-s").await.unwrap().unwrap();
    assert_eq!(run.lease_owner.as_deref(), Some("w1"), "the driver keeps it and reads the signal");
}

async fn tenants_and_api_keys_round_trip(store: Store) {
    let now = now_ms();
    let acme = store.create_tenant("acme", "Acme Inc", now).await.unwrap();
    assert!(matches!(store.create_tenant("acme", "Again", now).await, Err(weft_store::Error::TenantExists(_))));
    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(acme));
    let ids: Vec<String> = store.list_tenants().await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, [DEFAULT_TENANT, "acme"]);
    assert!(!store.has_live_api_keys().await.unwrap());
    let key = |id: &str, tenant: Option<&str>| weft_store::ApiKey {
        id: id.into(),
        tenant: tenant.map(str::to_string),
        name: format!("{id} key"),
        role: "developer".into(),
        secret_hash: "ab".repeat(32),
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    };
    store.create_api_key(&key("k-op", None)).await.unwrap();
    store.create_api_key(&key("k-acme", Some("acme"))).await.unwrap();
    assert!(store.has_live_api_keys().await.unwrap());
    assert_eq!(store.get_api_key("k-acme").await.unwrap(), Some(key("k-acme", Some("acme"))));
    let operator: Vec<String> = store.list_api_keys(None).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(operator, ["k-op"]);
    let tenant: Vec<String> = store.list_api_keys(Some("acme")).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(tenant, ["k-acme"]);
    store.touch_api_key("k-acme", now + 5).await.unwrap();
    assert!(!store.revoke_api_key(None, "k-acme", now + 6).await.unwrap(), "an operator scope does not reach it");
    assert!(!store.revoke_api_key(Some(DEFAULT_TENANT), "k-acme", now + 6).await.unwrap(), "nor another tenant");
    assert!(store.revoke_api_key(Some("acme"), "k-acme", now + 7).await.unwrap());
    assert!(store.revoke_api_key(Some("acme"), "k-acme", now + 9).await.unwrap());
    let revoked = store.get_api_key("k-acme").await.unwrap().unwrap();
    assert_eq!((revoked.last_used_at, revoked.revoked_at), (Some(now + 5), Some(now + 7)));
}

async fn run_pages_follow_their_cursor(store: Store) {
    for n in 0..5 {
        new_keyed_run(&store, DEFAULT_TENANT, &format!("run-{n}"), None).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut filter = RunFilter { limit: 2, ..RunFilter::default() };
    loop {
        let page = store.filter_runs(DEFAULT_TENANT, &filter).await.unwrap();
        let Some(last) = page.last() else { break };
        filter.after = Some((last.created_at, last.id.clone()));
        seen.extend(page.iter().map(|r| r.id.clone()));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "every run once: {seen:?}");
    let all = store.filter_runs(DEFAULT_TENANT, &RunFilter { limit: 10, ..RunFilter::default() }).await.unwrap();
    let ids: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
    assert_eq!(seen, ids, "pages keep the listing's order");
    let until = all.iter().map(|r| r.created_at).min().unwrap();
    let none =
        store.filter_runs(DEFAULT_TENANT, &RunFilter { until: Some(until), ..RunFilter::default() }).await.unwrap();
    assert!(none.is_empty(), "`until` is exclusive");
}

async fn workflow_versions_are_listed_and_deprecated(store: Store) {
    let now = now_ms();
    store.put_workflow(DEFAULT_TENANT, "sha256:one", "alpha", "{}", now).await.unwrap();
    store.put_workflow(DEFAULT_TENANT, "sha256:two", "alpha", "{}", now + 1).await.unwrap();
    store.put_workflow(DEFAULT_TENANT, "sha256:three", "beta", "{}", now + 2).await.unwrap();
    let names = |v: Vec<weft_store::WorkflowVersion>| v.into_iter().map(|v| v.hash).collect::<Vec<_>>();
    assert_eq!(
        names(store.workflow_versions(DEFAULT_TENANT, None, 10).await.unwrap()),
        ["sha256:three", "sha256:two", "sha256:one"]
    );
    assert_eq!(
        names(store.workflow_versions(DEFAULT_TENANT, Some("alpha"), 10).await.unwrap()),
        ["sha256:two", "sha256:one"]
    );
    assert!(store.deprecate_workflow(DEFAULT_TENANT, "sha256:one", now + 5).await.unwrap());
    assert!(!store.deprecate_workflow(DEFAULT_TENANT, "sha256:nope", now).await.unwrap());
    assert!(!store.deprecate_workflow("other", "sha256:one", now).await.unwrap(), "another tenant's is not found");
    let one = store.workflow_version(DEFAULT_TENANT, "sha256:one").await.unwrap().unwrap();
    assert_eq!((one.name.as_str(), one.deprecated_at), ("alpha", Some(now + 5)));

    // A new run of the deprecated version is refused by the statement that
    // would write it (one statement, and a capped start's transaction), and
    // leaves no row; a run that keeps it (a retry, a child) is written.
    let run = |id: &'static str, refuse_deprecated: bool| NewRun {
        id,
        tenant: DEFAULT_TENANT,
        workflow_name: "alpha",
        workflow_hash: "sha256:one",
        input: &serde_json::Value::Null,
        lease: None,
        parent: None,
        retry_of: None,
        idempotency_key: None,
        wake_at: 0,
        at: now,
        refuse_deprecated,
    };
    for cap in [None, Some(100)] {
        match store.create_run_capped(run("of-deprecated", true), &[run_started()], cap).await {
            Err(weft_store::Error::WorkflowDeprecated(hash)) => assert_eq!(hash, "sha256:one"),
            other => panic!("{other:?}"),
        }
        assert!(store.get_run(DEFAULT_TENANT, "of-deprecated").await.unwrap().is_none());
        assert!(store.load_events(DEFAULT_TENANT, "of-deprecated", 0).await.unwrap().is_empty());
    }
    store.create_run(run("keeps-its-version", false), &[run_started()]).await.unwrap();
    assert_eq!(store.load_events(DEFAULT_TENANT, "keeps-its-version", 0).await.unwrap().len(), 1);
    let two = NewRun { workflow_hash: "sha256:two", ..run("of-current", true) };
    store.create_run(two, &[run_started()]).await.unwrap();
}

async fn concurrent_starts_never_pass_a_cap_on_running_runs(store: Store) {
    store.put_workflow(DEFAULT_TENANT, "sha256:abc", "demo", "{}", now_ms()).await.unwrap();
    new_run(&store, "already-running").await;
    let starts = (0..12).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let id = format!("capped-{n}");
            let run = NewRun {
                id: &id,
                tenant: DEFAULT_TENANT,
                workflow_name: "demo",
                workflow_hash: "sha256:abc",
                input: &json!({}),
                lease: None,
                parent: None,
                retry_of: None,
                idempotency_key: None,
                wake_at: 0,
                at: now_ms(),
                refuse_deprecated: true,
            };
            store.create_run_capped(run, &[run_started()], Some(4)).await
        })
    });
    let mut refused = 0;
    for start in futures_util::future::join_all(starts).await {
        match start.unwrap() {
            Ok(()) => {}
            Err(weft_store::Error::TooManyRunning { running: 4, max: 4 }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(refused, 9, "three more than the one running, and no more");
    assert_eq!(store.running_runs(DEFAULT_TENANT).await.unwrap(), 4);
    // A run that ends makes room.
    let end = Event::RunCompleted { output: json!(null) };
    store.append(DEFAULT_TENANT, "already-running", &[end], now_ms()).await.unwrap();
    assert_eq!(store.running_runs(DEFAULT_TENANT).await.unwrap(), 3);
}

async fn metered_appends_add_up_in_the_month_they_happen(store: Store) {
    new_run(&store, "metered").await;
    let (december, january) =
        (weft_store::period_bounds("2026-12").unwrap().0, weft_store::period_bounds("2027-01").unwrap().0);
    let step = || [Event::TimerFired { step: "s".into() }];
    // Appends queued together land in one batch; each adds its own.
    let appends = (0..10).map(|n| {
        let store = store.clone();
        async move {
            let metered = Metered { steps: 1, wasm_us: 100 + n };
            store.append_metered(DEFAULT_TENANT, "metered", &step(), december + n, metered).await.unwrap()
        }
    });
    futures_util::future::join_all(appends).await;
    let metered = Metered { steps: 2, wasm_us: 7 };
    store.append_metered(DEFAULT_TENANT, "metered", &[], january, metered).await.unwrap();
    store.append(DEFAULT_TENANT, "metered", &step(), january).await.unwrap();

    let usage = store.usage(DEFAULT_TENANT, "2026-12").await.unwrap();
    assert_eq!((usage.steps, usage.wasm_us), (10, 1045));
    let usage = store.usage(DEFAULT_TENANT, "2027-01").await.unwrap();
    assert_eq!((usage.steps, usage.wasm_us), (2, 7), "an append with no events still counts its work");
    assert_eq!(store.load_events(DEFAULT_TENANT, "metered", 0).await.unwrap().len(), 12);
    assert_eq!(store.plan(DEFAULT_TENANT).await.unwrap(), Some(Plan::default()));
    let plan = Plan {
        connectors: Some(vec!["http".into()]),
        max_concurrent_runs: Some(2),
        steps_per_month: None,
        requests_per_second: Some(50),
    };
    assert!(store.set_plan(DEFAULT_TENANT, &plan).await.unwrap());
    assert_eq!(store.plan(DEFAULT_TENANT).await.unwrap(), Some(plan.clone()));
    assert!(!store.set_plan("nobody", &plan).await.unwrap());
    assert_eq!(store.plan("nobody").await.unwrap(), None);
}

/// After the server ends every connection (as a restart does), the batch
/// of the group-commit writer, whose connection died, fails; the reads and
/// appends after it do not: the writer's failure also let go the
/// connections parked between statements, dead as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_lost_server_fails_the_writers_batch_and_nothing_after() {
    let url = testing::fresh_postgres().await;
    let store = Store::connect(&url).await.unwrap();
    new_run(&store, "run-r").await;
    let step = |name: &str| [Event::StepScheduled { step: name.into(), items: None }];
    store.append(DEFAULT_TENANT, "run-r", &step("a"), now_ms()).await.unwrap();
    // Several connections parked, set to the tenant.
    let reads = futures_util::future::join_all((0..8).map(|_| store.find_run(DEFAULT_TENANT, "run-r"))).await;
    assert!(reads.iter().all(Result::is_ok));

    assert!(testing::end_connections(&url).await > 0);

    let lost = store.append(DEFAULT_TENANT, "run-r", &step("b"), now_ms()).await;
    assert!(lost.is_err(), "the writer's connection died with its server: {lost:?}");
    let run = store.find_run(DEFAULT_TENANT, "run-r").await.expect("a read after the failed batch");
    assert_eq!(run.last_seq, 2, "the failed batch wrote nothing");
    assert_eq!(store.append(DEFAULT_TENANT, "run-r", &step("b"), now_ms()).await.unwrap(), 3);
    store.close().await;
}
