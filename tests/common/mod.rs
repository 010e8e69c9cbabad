//! Test harness: a fresh PostgreSQL database per test (dropped afterwards) on the server named
//! by `TEST_DATABASE_URL` (else `DATABASE_URL`, else the local default), and helpers to run the
//! engine against the in-process simulators.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use sessionsync::config::Settings;
use sessionsync::engine::{Engine, RunReport, Source};
use sessionsync::telemetry::Metrics;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| sessionsync::demo::LOCAL_DEFAULT_URL.to_string())
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
        let name = self.name.clone();
        let admin = admin_url();
        // Drop runs outside any runtime guarantee: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
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
    pub sources: Vec<Arc<dyn Source>>,
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
            .run_once(&*self.sources[0], &CancellationToken::new())
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
