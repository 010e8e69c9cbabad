//! Test harness: a fresh PostgreSQL database per test (dropped afterwards) on the server named
//! by `TEST_DATABASE_URL` (else `DATABASE_URL`, else the local default), and helpers to run the
//! engine against the in-process simulators.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use sessionsync::config::Settings;
use sessionsync::engine::{Engine, RunReport, Stream};
use sessionsync::telemetry::Metrics;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| sessionsync::warehouse::bootstrap::LOCAL_DEFAULT_URL.to_string())
}

pub struct TestDb {
    pub url: String,
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDb {
    pub async fn new() -> TestDb {
        let name = format!(
            "sessionsync_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = admin_url();
        let (client, conn) = tokio_postgres::connect(&admin, NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("tests need PostgreSQL at {admin} (set TEST_DATABASE_URL): {e}")
            });
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let mut url = reqwest::Url::parse(&admin).expect("admin URL");
        url.set_path(&format!("/{name}"));
        TestDb {
            url: url.to_string(),
            name,
        }
    }

    /// A plain client on the test database (search_path = sessionsync).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect test db");
        tokio::spawn(conn);
        client
            .batch_execute("SET search_path = sessionsync")
            .await
            .unwrap();
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let failed = drop_all(&[format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )]);
        // scripts/test.sh fails the run on a database left behind; say why here.
        if !failed.is_empty() {
            eprintln!("test database not dropped: {failed:?}");
        }
    }
}

/// Runs each of `statements` on its own on the admin connection (Drop runs outside any runtime
/// guarantee: a thread with its own); returns those that failed, with why.
pub fn drop_all(statements: &[String]) -> Vec<String> {
    let statements = statements.to_vec();
    let admin = admin_url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, conn) = match tokio_postgres::connect(&admin, NoTls).await {
                Ok(c) => c,
                Err(e) => return vec![format!("connecting to {admin}: {e}")],
            };
            tokio::spawn(conn);
            let mut failed = Vec::new();
            for stmt in statements {
                if let Err(e) = client.batch_execute(&stmt).await {
                    failed.push(format!("{stmt}: {e}"));
                }
            }
            failed
        })
    })
    .join()
    .unwrap_or_else(|_| vec!["the dropping thread panicked".into()])
}

/// Settings from a TOML text, with `DATABASE_URL` pointing at `db`.
pub fn settings(db: &TestDb, toml: &str) -> Settings {
    let url = db.url.clone();
    Settings::from_toml(
        Path::new("test.toml"),
        toml,
        &move |name| (name == "DATABASE_URL").then(|| url.clone()),
        &sessionsync::sources::configs(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A Take Control account section for a simulator.
pub fn tc_toml(base_url: &str, key: &str, start: DateTime<Utc>, extra: &str) -> String {
    format!(
        r#"
[[takecontrol]]
account = "acme"
base_url = "{base_url}"
api_key = "{key}"
start = "{}"
window = "1d"
lookback = "24h"
requests_per_second = 200
max_retries = 4
max_retry_wait = "5s"
timeout = "5s"
{extra}
"#,
        start.to_rfc3339()
    )
}

/// An engine and the configured streams, over a migrated warehouse.
pub struct Harness {
    pub engine: Arc<Engine>,
    pub sources: Vec<Arc<Stream>>,
    pub metrics: Arc<Metrics>,
}

impl Harness {
    pub async fn new(settings: &Settings) -> Harness {
        let p = sessionsync::startup::start_all(settings)
            .await
            .expect("warehouse migrated");
        Harness {
            engine: p.engine,
            sources: p.sources,
            metrics: p.metrics,
        }
    }

    pub async fn sync(&self) -> RunReport {
        self.engine
            .run_once(&self.sources[0], &CancellationToken::new())
            .await
            .expect("run")
    }
}

pub async fn count(c: &tokio_postgres::Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The first column of every row of `sql`, as strings.
pub async fn strings(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    c.query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Two bigint counters the server keeps (`sql`'s one row), once they stop moving: the
/// statistics of other backends reach `pg_stat_*` a little after their transactions end.
pub async fn settled_counters(
    db: &TestDb,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> (i64, i64) {
    let c = db.client().await;
    let mut last = (-1, -1);
    for _ in 0..50 {
        c.batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        let r = c.query_one(sql, params).await.unwrap();
        let now = (r.get(0), r.get(1));
        if now == last {
            return now;
        }
        last = now;
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    last
}

/// An instant written as RFC 3339.
pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A free TCP port on 127.0.0.1 (for a child process that must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config file in a directory of its own (removed when dropped), for the binary.
pub struct TempConfig(std::path::PathBuf);

impl TempConfig {
    pub fn new(toml: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sessionsync-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("sessionsync.toml"), toml).unwrap();
        TempConfig(dir)
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.0.join("sessionsync.toml")
    }

    /// A file beside the config (logs).
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary with `args`, `--config config` and the environment `env` (`None` removes a
/// variable; `DATABASE_URL` is removed unless given).
pub fn sessionsync_command(
    args: &[&str],
    config: &Path,
    env: &[(&str, Option<&str>)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"));
    cmd.args(args).arg("--config").arg(config);
    cmd.env_remove("DATABASE_URL");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// `sessionsync run` (or `args`) as a child process with JSON logs appended to `log` (a file:
/// an unread pipe would fill up and stall it); killed when dropped.
pub fn spawn_daemon(
    args: &[&str],
    config: &Path,
    env: &[(&str, Option<&str>)],
    log: &Path,
) -> tokio::process::Child {
    sessionsync_command(args, config, env)
        .args(["--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A mluvii session created at `created`: routed (request, assigned, accepted by operator 5
/// at `accepted`), the guest joined at 14 s, ended at 300 s with the `length` mluvii reports,
/// operator 5 with it from acceptance to the end and still in after-call work (not concluded).
pub fn ml_session_in_acw(
    id: i64,
    created: DateTime<Utc>,
    accepted: chrono::TimeDelta,
    length: &str,
) -> sessionsync_sim::mluvii::SimSession {
    use chrono::TimeDelta;
    use sessionsync_sim::mluvii::{SimOperator, SimRouting, SimSession};
    let mut s = SimSession::new(id, created);
    s.routing = vec![
        SimRouting::new(
            created + TimeDelta::seconds(2),
            "RoutingRequestCreated",
            None,
        ),
        SimRouting::new(
            created + TimeDelta::seconds(9),
            "AssignedToOperator",
            Some(5),
        ),
        SimRouting::new(created + accepted, "AcceptedByOperator", Some(5)),
    ];
    s.started = Some(created + accepted);
    s.guest_joined = Some(created + TimeDelta::seconds(14));
    s.ended = Some(created + TimeDelta::seconds(300));
    s.length = Some(length.into());
    let mut op = SimOperator::new(5);
    op.joined = s.started;
    op.left = s.ended;
    s.operators = vec![op];
    s
}

/// The SuperOffice simulator's ticket and application token, as the tests configure them.
pub const SO_TICKET: &str = "7T:sim-ticket-QW9x";
pub const SO_APP_TOKEN: &str = "app-secret-55ab";

/// A `[[superoffice]]` entry for `account` on `base`, read from 1995 on, with `keys` (the
/// area's retries, page size, schedule, webhook secret ...).
pub fn so_account_toml(base: &str, account: &str, keys: &str) -> String {
    format!(
        "\n[[superoffice]]\naccount = \"{account}\"\nbase_url = \"{base}\"\nticket = \"{SO_TICKET}\"\napp_token = \"{SO_APP_TOKEN}\"\nstart = \"1995-01-01T00:00:00Z\"\n{keys}\n"
    )
}

/// A `[[mluvii]]` entry for `account` on `base` with the API user `client`, from `start`, with
/// `keys` (the area's retries, page size, webhook credentials ...).
pub fn ml_account_toml(
    base: &str,
    account: &str,
    (client_id, client_secret): (&str, &str),
    start: DateTime<Utc>,
    keys: &str,
) -> String {
    format!(
        "\n[[mluvii]]\naccount = \"{account}\"\nbase_url = \"{base}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\nstart = \"{}\"\nwindow = \"2000d\"\n{keys}\n",
        start.to_rfc3339()
    )
}
