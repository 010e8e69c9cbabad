//! Reliability with real processes: `kill -9` at random instants, a PostgreSQL outage mid-run,
//! SIGTERM during a sync, two daemons on one warehouse. The binary runs as a child process;
//! the simulator and the checks run here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use rand::{RngExt, SeedableRng};
use sessionsync_sim::Fault;
use sessionsync_sim::takecontrol::{SimSession, TakeControlSim, generate};

const KEY: &str = "reliability-key-7f3";

/// The daemon (or `args`) on `config`, logging beside it.
fn daemon(config: &TempConfig, args: &[&str], db_url: &str) -> tokio::process::Child {
    spawn_daemon(
        args,
        &config.path(),
        &[("DATABASE_URL", Some(db_url)), ("TC_KEY", Some(KEY))],
        &config.file("daemon.log"),
    )
}

fn toml(base: &str, start: DateTime<Utc>, listen: u16, extra: &str) -> String {
    format!(
        r#"[warehouse]
url = "${{DATABASE_URL}}"
pool_size = 4
[server]
listen = "127.0.0.1:{listen}"
[[takecontrol]]
account = "acme"
base_url = "{base}"
api_key = "${{TC_KEY}}"
start = "{}"
window = "1h"
lookback = "1h"
requests_per_second = 10000
max_retries = 3
max_retry_wait = "1s"
timeout = "20s"
{extra}
"#,
        start.to_rfc3339()
    )
}

/// Sessions per id with (message count, link count) as the warehouse holds them.
async fn stored(c: &tokio_postgres::Client) -> HashMap<i64, (i64, i64)> {
    c.query(
        "SELECT s.session_id,
                (SELECT count(*) FROM takecontrol_chat_messages m WHERE m.account = s.account AND m.session_id = s.session_id),
                (SELECT count(*) FROM takecontrol_video_links v WHERE v.account = s.account AND v.session_id = s.session_id)
           FROM takecontrol_sessions s",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect()
}

async fn watermark(c: &tokio_postgres::Client) -> Option<DateTime<Utc>> {
    c.query_opt("SELECT watermark FROM sync_state", &[])
        .await
        .unwrap()
        .and_then(|r| r.get(0))
}

/// The invariant after any crash: every session that started before the watermark is stored
/// with all its children, and nothing is stored beyond it.
async fn assert_consistent(c: &tokio_postgres::Client, sim: &[SimSession], label: &str) -> usize {
    let w = watermark(c).await;
    let got = stored(c).await;
    let mut covered = 0;
    for s in sim {
        let start = s.start.and_utc();
        match (w, got.get(&s.id)) {
            (Some(w), Some(&(m, v))) if start < w => {
                assert_eq!(
                    (m as usize, v as usize),
                    (s.chat.len(), s.videos.len()),
                    "{label}: children of {}",
                    s.id
                );
                covered += 1;
            }
            (Some(w), None) if start < w => panic!(
                "{label}: session {} before the watermark {w} is missing",
                s.id
            ),
            (_, Some(_)) => panic!(
                "{label}: session {} stored beyond the watermark {w:?}",
                s.id
            ),
            _ => {}
        }
    }
    assert_eq!(got.len(), covered, "{label}: stray rows");
    covered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_instants_never_leaves_the_watermark_ahead_of_its_rows() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let start = now - TimeDelta::days(30);
    let sessions = generate(77, 4000, start, now - TimeDelta::hours(2));
    let sim = TakeControlSim::start(KEY, sessions.clone()).await.unwrap();
    let files = TempConfig::new(&toml(&sim.base_url(), start, free_port(), ""));
    let c = db.client().await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4242);
    let mut killed_mid_run = 0;
    let mut progress = Vec::new();
    for trial in 0..12 {
        let mut child = daemon(&files, &["sync"], &db.url);
        let delay = rng.random_range(40..700);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.start_kill().unwrap(); // SIGKILL
        let _ = child.wait().await;
        // The schema may not exist yet if the kill came first.
        let exists: bool = c
            .query_one(
                "SELECT to_regclass('sessionsync.sync_state') IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if exists {
            progress.push(
                assert_consistent(&c, &sessions, &format!("trial {trial} ({delay} ms)")).await,
            );
        }
    }
    assert!(
        killed_mid_run >= 10,
        "only {killed_mid_run} kills landed mid-run"
    );
    // A last, uninterrupted run: the warehouse equals the simulator.
    let status = daemon(&files, &["sync"], &db.url).wait().await.unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(files.file("daemon.log")).unwrap_or_default()
    );
    let n = assert_consistent(&c, &sessions, "final").await;
    assert_eq!(
        n,
        sessions.len(),
        "every session landed; progress per trial: {progress:?}"
    );
    let running: i64 = c
        .query_one(
            "SELECT count(*) FROM sync_runs WHERE status = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0, "killed runs are marked failed by the next run");
}

async fn readyz(port: u16) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, limit: Duration, mut f: F) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn try_count(url: &str, sql: &str) -> Option<i64> {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    c.query_one(sql, &[]).await.ok().map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_outage_mid_run_is_ridden_out() {
    let dir = std::env::temp_dir().join(format!("sessionsync-outage-{}", std::process::id()));
    let pg = tokio::task::spawn_blocking(move || sessionsync::pgctl::PrivatePostgres::start(&dir))
        .await
        .unwrap()
        .expect("a private PostgreSQL");
    let url = pg.url();
    let now = Utc::now();
    let start = now - TimeDelta::days(2);
    let sim = TakeControlSim::start(KEY, generate(8, 300, start, now - TimeDelta::hours(3)))
        .await
        .unwrap();
    let port = free_port();
    let files = TempConfig::new(&toml(
        &sim.base_url(),
        start,
        port,
        "schedule = \"*/2 * * * * *\"",
    ));
    let mut child = daemon(&files, &["run"], &url);
    let succeeded = "SELECT count(*) FROM sessionsync.sync_runs WHERE status = 'succeeded'";
    wait_for(
        "the first successful run",
        Duration::from_secs(30),
        async || try_count(&url, succeeded).await.unwrap_or(0) > 0,
    )
    .await;
    assert_eq!(readyz(port).await, Some(200));
    // New data, and a slow vendor so that a run is in flight when the database goes.
    for s in generate(
        9,
        50,
        now - TimeDelta::minutes(50),
        now - TimeDelta::minutes(10),
    ) {
        let mut s = s;
        s.id += 1_000_000;
        sim.upsert(s);
    }
    sim.faults().push(Fault::Delay(Duration::from_secs(3)), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.stop().unwrap();
        pg
    })
    .await
    .unwrap();
    wait_for("/readyz 503", Duration::from_secs(15), async || {
        readyz(port).await == Some(503)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );
    let pg = tokio::task::spawn_blocking(move || {
        pg.resume().unwrap();
        pg
    })
    .await
    .unwrap();
    wait_for("/readyz 200", Duration::from_secs(20), async || {
        readyz(port).await == Some(200)
    })
    .await;
    let all = sim.visible_sessions().len() as i64;
    wait_for("catching up", Duration::from_secs(30), async || {
        try_count(
            &url,
            "SELECT count(*) FROM sessionsync.takecontrol_sessions",
        )
        .await
            == Some(all)
    })
    .await;
    let failed = try_count(
        &url,
        "SELECT count(*) FROM sessionsync.sync_runs WHERE status = 'failed'",
    )
    .await
    .unwrap();
    assert!(failed >= 1, "the interrupted run is recorded as failed");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_sync_stops_cleanly_within_ten_seconds() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let start = now - TimeDelta::days(1);
    let sim = TakeControlSim::start(KEY, generate(3, 100, start, now - TimeDelta::hours(2)))
        .await
        .unwrap();
    // The vendor hangs: the run is mid-request when SIGTERM arrives.
    sim.faults().push(Fault::Delay(Duration::from_secs(60)), 1);
    let files = TempConfig::new(&toml(
        &sim.base_url(),
        start,
        free_port(),
        "schedule = \"* * * * * *\"",
    ));
    let mut child = daemon(&files, &["run"], &db.url);
    let running = "SELECT count(*) FROM sessionsync.sync_runs WHERE status = 'running'";
    wait_for("a run in flight", Duration::from_secs(30), async || {
        try_count(&db.url, running).await.unwrap_or(0) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap();
    let t = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited within 10 s")
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean exit after {:?}", t.elapsed());
    let c = db.client().await;
    assert_eq!(count(&c, "sync_runs WHERE status = 'running'").await, 0);
    let locks: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
              WHERE l.locktype = 'advisory' AND d.datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "no advisory lock left behind");
    let err: String = c
        .query_one(
            "SELECT error FROM sync_runs ORDER BY run_id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(err.contains("shutdown"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_streams_one_at_a_time_and_the_survivor_carries_on() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let start = now - TimeDelta::days(3);
    let sim = TakeControlSim::start(KEY, generate(4, 600, start, now - TimeDelta::hours(2)))
        .await
        .unwrap();
    let extra = "schedule = \"* * * * * *\"";
    let fa = TempConfig::new(&toml(&sim.base_url(), start, free_port(), extra));
    let fb = TempConfig::new(&toml(&sim.base_url(), start, free_port(), extra));
    let mut a = daemon(&fa, &["run"], &db.url);
    let mut b = daemon(&fb, &["run"], &db.url);
    let all = sim.visible_sessions().len() as i64;
    let q = "SELECT count(*) FROM sessionsync.takecontrol_sessions";
    wait_for("the first sync", Duration::from_secs(30), async || {
        try_count(&db.url, q).await == Some(all)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        sim.log().max_in_flight(),
        1,
        "the two daemons never fetched at the same time"
    );
    assert!(
        a.try_wait().unwrap().is_none() && b.try_wait().unwrap().is_none(),
        "no deadlock, no crash"
    );
    a.start_kill().unwrap();
    let _ = a.wait().await;
    let mut late = SimSession::new(
        9_999_999,
        (Utc::now() - TimeDelta::minutes(20)).naive_utc(),
        Some((Utc::now() - TimeDelta::minutes(5)).naive_utc()),
    );
    late.customer_name = "after the kill".into();
    sim.upsert(late);
    wait_for("the survivor to pick up new data", Duration::from_secs(20), async || {
        try_count(&db.url, "SELECT count(*) FROM sessionsync.takecontrol_sessions WHERE customer_name = 'after the kill'").await == Some(1)
    })
    .await;
    let c = db.client().await;
    assert_eq!(count(&c, "takecontrol_sessions").await, all + 1);
    b.start_kill().unwrap();
    let _ = b.wait().await;
}
