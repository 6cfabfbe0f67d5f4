//! Databases for tests: a fresh Postgres database per call, on a throwaway
//! cluster that this process starts (unless `WEFT_TEST_DATABASE_URL` names a
//! server), and SQLite files in a directory the caller owns.
//!
//! A missing Postgres installation is a test failure with the install
//! command, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sqlx::Connection;

/// The install command printed when Postgres binaries are missing.
pub const POSTGRES_INSTALL: &str = "apt-get install -y postgresql postgresql-contrib";

/// A SQLite URL for a database file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("weft.db").display())
}

/// A URL to a new, empty Postgres database.
pub async fn fresh_postgres() -> String {
    let server = server_url();
    fresh_database(&server).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a throwaway Postgres cluster with full durability (fsync and
/// synchronous commit on), for benchmarks; it stops when this process exits.
/// Returns `postgres://user@host:port` (no database part).
pub fn durable_server() -> String {
    start_cluster(true)
}

/// `postgres://user@host:port` of a URL that may also name a database (and
/// carry options after `?`).
pub fn server_part(url: &str) -> &str {
    let url = url.split('?').next().unwrap_or(url);
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(slash) => &url[..after_scheme + slash],
        None => url.trim_end_matches('/'),
    }
}

/// Has the server end every other connection to the database at `url`, as
/// a restart would, and waits until they are gone; returns how many.
pub async fn end_connections(url: &str) -> i64 {
    let mut owner = sqlx::PgConnection::connect(url).await.expect("connecting to end the others");
    let ended = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS ended",
    )
    .fetch_one(&mut owner)
    .await
    .expect("ending the connections");
    owner.close().await.ok();
    ended
}

/// A new, empty database on the server of `url` (`postgres://user@host:port`,
/// with or without a database name); its URL, or why it could not be made.
pub async fn fresh_database(url: &str) -> Result<String, String> {
    let server = server_part(url);
    let name = format!("weft_test_{}", uuid::Uuid::now_v7().simple());
    let admin = format!("{server}/postgres");
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .map_err(|e| format!("cannot reach the Postgres server at {}: {e}", crate::redact(&admin)))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("creating database {name}: {e}"))?;
    conn.close().await.ok();
    Ok(format!("{server}/{name}"))
}

/// `postgres://user@host:port` of the server tests use (no database part).
fn server_url() -> String {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("WEFT_TEST_DATABASE_URL") {
            // Accept a URL with or without a database name.
            Ok(url) => server_part(&url).to_string(),
            Err(_) => start_cluster(false),
        })
        .clone()
}

/// Finds a Postgres binary on PATH or in Debian's versioned directories.
fn postgres_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin").join(name)).collect())
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    on_path.into_iter().chain(debian).find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a shell command, as the `postgres` user when we are root (initdb and
/// pg_ctl refuse to run as root).
fn run_as_postgres(script: &str, as_postgres: bool) -> std::process::Output {
    shell(script, as_postgres).output().unwrap_or_else(|e| panic!("running `{script}`: {e}"))
}

/// `sh -c script`, through `su postgres` when `as_postgres`.
fn shell(script: &str, as_postgres: bool) -> Command {
    let mut cmd = if as_postgres { Command::new("su") } else { Command::new("sh") };
    if as_postgres {
        cmd.args(["postgres", "-s", "/bin/sh"]);
    }
    cmd.args(["-c", script]);
    cmd
}

/// A Postgres cluster of a test's own, which it may stop and start (the
/// shared cluster must not be: other tests use it).
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT`.
    pub url: String,
    /// How it is started again.
    start: String,
    /// How it is stopped at once, as a crash would.
    stop: String,
    root: bool,
}

impl Cluster {
    /// Starts a new cluster, removed when this process exits. It is
    /// durable (fsync and synchronous commit on, as in production): with
    /// synchronous commit off, a crash loses commits that were already
    /// answered, which no engine can survive.
    pub fn start() -> Cluster {
        let (url, start, stop, root) = new_cluster(true);
        Cluster { url, start, stop, root }
    }

    /// Stops the server in immediate mode (as a crash does: connections
    /// drop, nothing is flushed), waits `down`, and starts it again.
    pub fn restart(&self, down: std::time::Duration) {
        let stop = run_as_postgres(&self.stop, self.root);
        assert!(stop.status.success(), "stopping the cluster: {}", String::from_utf8_lossy(&stop.stderr));
        std::thread::sleep(down);
        let start = run_as_postgres(&self.start, self.root);
        assert!(start.status.success(), "starting the cluster again: {}", String::from_utf8_lossy(&start.stderr));
    }
}

fn start_cluster(durable: bool) -> String {
    new_cluster(durable).0
}

/// Starts a cluster; returns its URL, its start and immediate-stop
/// commands, and whether they run as the `postgres` user.
fn new_cluster(durable: bool) -> (String, String, String, bool) {
    let (Some(initdb), Some(pg_ctl)) = (postgres_binary("initdb"), postgres_binary("pg_ctl")) else {
        panic!(
            "Postgres binaries (initdb, pg_ctl) were not found on PATH or under /usr/lib/postgresql. \
             Install them with `{POSTGRES_INSTALL}`, or set WEFT_TEST_DATABASE_URL to a server."
        );
    };
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("weft-pg-{}-{}", std::process::id(), uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("creating the test cluster directory");
    if root {
        let ok = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().is_ok_and(|s| s.success());
        assert!(
            ok,
            "chown postgres {}: is there a `postgres` user? Install Postgres with `{POSTGRES_INSTALL}`",
            dir.display()
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let d = dir.display();
    let data = dir.join("data");
    let data = data.display();
    let init = run_as_postgres(
        &format!(
            "'{}' -D '{data}' -U postgres --auth=trust -E UTF8 --no-sync >'{d}/initdb.log' 2>&1",
            initdb.display()
        ),
        root,
    );
    assert!(init.status.success(), "initdb failed; see {d}/initdb.log");
    // Tests trade durability for speed; benchmarks keep Postgres' defaults.
    let speed = if durable { "" } else { "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" };
    let start_command = format!(
        "'{}' -D '{data}' -w -t 60 -l '{d}/log' -o \"-p {port} -k '{d}' -c listen_addresses=127.0.0.1 \
         {speed} -c max_connections=300\" start",
        pg_ctl.display()
    );
    let stop_command = format!("'{}' -D '{data}' -w stop -m immediate", pg_ctl.display());
    let start = run_as_postgres(&start_command, root);
    assert!(
        start.status.success(),
        "starting the test Postgres failed: {}; see {d}/log",
        String::from_utf8_lossy(&start.stderr)
    );
    // Stop the cluster and remove it when this test process exits, however it exits.
    let watchdog = format!(
        "while [ -d /proc/{pid} ]; do sleep 1; done; '{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{d}'",
        pid = std::process::id(),
        pg_ctl = pg_ctl.display()
    );
    let mut cmd = shell(&watchdog, root);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // Deliberately not waited on: the watchdog must outlive this process.
    #[allow(clippy::zombie_processes)]
    cmd.spawn().expect("starting the test cluster's watchdog");
    (format!("postgres://postgres@127.0.0.1:{port}"), start_command, stop_command, root)
}

#[cfg(test)]
mod tests {
    use super::server_part;

    #[test]
    fn the_server_part_drops_the_database_and_options() {
        assert_eq!(server_part("postgres://u@h:5432"), "postgres://u@h:5432");
        assert_eq!(server_part("postgres://u@h:5432/"), "postgres://u@h:5432");
        assert_eq!(server_part("postgres://u:p@h:5432/weft?sslmode=disable"), "postgres://u:p@h:5432");
    }
}
