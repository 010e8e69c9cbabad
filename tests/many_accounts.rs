//! Many accounts in one warehouse: `sync` runs streams concurrently, the daemon serves due
//! streams in order within `engine.max_concurrent_streams`, two replicas split one schedule
//! without fetching a window twice, and SIGTERM under load stops promptly with nothing lost.
//! Asserted on the simulators' request logs and the warehouse, not on the clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Timelike, Utc};
use common::*;
use sessionsync::engine::{Engine, Slots};
use sessionsync::telemetry::Metrics;
use sessionsync::warehouse::Warehouse;
use sessionsync_sim::Fault;
use sessionsync_sim::takecontrol::{TakeControlSim, generate};
use tokio_util::sync::CancellationToken;

/// A config of `accounts` Take Control accounts (`acct0`, `acct1`, ...), account `i` served by
/// `urls[i % urls.len()]`.
fn accounts_toml(urls: &[String], accounts: usize, schedule: &str, extra: &str) -> String {
    let start = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    let mut s = format!("[warehouse]\nurl = \"${{DATABASE_URL}}\"\n{extra}\n");
    for i in 0..accounts {
        s.push_str(&format!(
            r#"
[[takecontrol]]
account = "acct{i}"
base_url = "{}"
api_key = "k"
schedule = "{schedule}"
start = "{start}"
window = "1d"
requests_per_second = 500
timeout = "10s"
"#,
            urls[i % urls.len()]
        ));
    }
    s
}

async fn slow_sim(sessions: usize, delay_ms: u64) -> TakeControlSim {
    let data = generate(
        5,
        sessions,
        Utc::now() - TimeDelta::days(2),
        Utc::now() - TimeDelta::hours(1),
    );
    let sim = TakeControlSim::start("k", data).await.unwrap();
    sim.faults()
        .push(Fault::Delay(Duration::from_millis(delay_ms)), 100_000);
    sim
}

fn write_config(text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessionsync-many-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sessionsync.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `sessionsync sync` with `file`, on `db`.
async fn sync_cli(file: &std::path::Path, db: &TestDb) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
        .args(["sync", "--config"])
        .arg(file)
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap()
}

/// The most connections the database `db` saw at once (besides this sampler's), sampled from
/// `pg_stat_activity` until `stop`.
fn sample_connections(db: &TestDb, stop: CancellationToken) -> tokio::task::JoinHandle<i64> {
    let url = db.url.clone();
    let name = db.name.clone();
    tokio::spawn(async move {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut most = 0;
        while !stop.is_cancelled() {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            most = most.max(n);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        most
    })
}

#[tokio::test]
async fn twelve_accounts_wait_on_their_vendor_at_once_on_three_connections() {
    let sim = slow_sim(300, 300).await;
    let db = TestDb::new().await;
    let file = write_config(&accounts_toml(
        &[sim.base_url()],
        12,
        "*/5 * * * *",
        "pool_size = 3",
    ));
    let stop = CancellationToken::new();
    let sampler = sample_connections(&db, stop.clone());
    let o = sync_cli(&file, &db).await;
    stop.cancel();
    let most = sampler.await.unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stdout.matches(": succeeded").count(), 12, "{stdout}");
    // The default engine.max_concurrent_streams is independent of pool_size: the vendor saw
    // all twelve accounts' requests in flight at once ...
    assert_eq!(sim.log().max_in_flight(), 12, "{stdout}");
    // ... while the warehouse never saw more than the pool.
    assert!((1..=3).contains(&most), "{most} connections at once");
    let c = db.client().await;
    assert_eq!(
        count(&c, "takecontrol_sessions").await,
        12 * sim.visible_sessions().len() as i64
    );
}

async fn replica(settings: &sessionsync::config::Settings) -> (Arc<Engine>, Slots, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let wh = Warehouse::new(&settings.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let slots = Slots::new(settings.engine.max_concurrent_streams, metrics.clone());
    (Arc::new(Engine::new(wh, metrics.clone())), slots, metrics)
}

fn succeeded_runs(m: &Metrics) -> usize {
    m.encode()
        .lines()
        .filter(|l| l.starts_with("sessionsync_sync_runs_total{") && l.contains("succeeded"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap_or(0.0) as usize)
        .sum()
}

#[tokio::test]
async fn two_replicas_split_one_schedule_without_fetching_a_window_twice() {
    // One simulator per account, so each log shows exactly what was asked of that account.
    const N: usize = 20;
    let mut sims = Vec::new();
    for _ in 0..N {
        sims.push(slow_sim(40, 60).await);
    }
    let urls: Vec<String> = sims.iter().map(|s| s.base_url()).collect();
    // One instant, three seconds from now, shared by every stream.
    let at = Utc::now() + TimeDelta::seconds(3);
    let schedule = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    let db = TestDb::new().await;
    let settings = settings(
        &db,
        &accounts_toml(&urls, N, &schedule, "[engine]\nmax_concurrent_streams = 3"),
    );
    let (a, a_slots, a_metrics) = replica(&settings).await;
    let (b, b_slots, b_metrics) = replica(&settings).await;
    let metrics = Arc::new(Metrics::new());
    let sources = sessionsync::sources::build(&settings, &metrics, None, None);
    let shutdown = CancellationToken::new();
    let ra = tokio::spawn(sessionsync::engine::run_scheduler(
        a,
        sources.clone(),
        a_slots,
        shutdown.clone(),
    ));
    let rb = tokio::spawn(sessionsync::engine::run_scheduler(
        b,
        sources,
        b_slots,
        shutdown.clone(),
    ));
    let c = db.client().await;
    let mut finished = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        finished = c
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if finished >= N as i64 {
            break;
        }
    }
    // Let a late double run show itself before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    ra.await.unwrap();
    rb.await.unwrap();
    assert_eq!(finished, N as i64);
    let runs = c
        .query(
            "SELECT account, count(*), sum(requests)::bigint, bool_and(status = 'succeeded')
               FROM sync_runs GROUP BY account ORDER BY account",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), N);
    for r in &runs {
        let account: String = r.get(0);
        let i: usize = account.trim_start_matches("acct").parse().unwrap();
        assert_eq!(r.get::<_, i64>(1), 1, "{account} ran twice for one instant");
        assert!(r.get::<_, bool>(3), "{account} did not succeed");
        assert_eq!(
            r.get::<_, i64>(2) as usize,
            sims[i].log().len(),
            "{account}: the simulator answered more requests than the one run made"
        );
    }
    let (sa, sb) = (succeeded_runs(&a_metrics), succeeded_runs(&b_metrics));
    assert_eq!(sa + sb, N);
    assert!(
        sa * 10 >= N * 3 && sb * 10 >= N * 3,
        "the replicas split {sa} / {sb}"
    );
}

#[tokio::test]
async fn due_streams_beyond_the_limit_wait_in_order_and_never_run_twice_for_one_instant() {
    // Eight streams due every two seconds, two slots, each run about a second long (a first
    // run reads about ten adaptive windows of 100 ms each).
    let sim = slow_sim(40, 100).await;
    let db = TestDb::new().await;
    let settings = settings(
        &db,
        &accounts_toml(
            &[sim.base_url()],
            8,
            "*/2 * * * * *",
            "[engine]\nmax_concurrent_streams = 2",
        ),
    );
    let (engine, slots, metrics) = replica(&settings).await;
    let sources = sessionsync::sources::build(&settings, &metrics, None, None);
    let shutdown = CancellationToken::new();
    let t0 = Utc::now();
    let daemon = tokio::spawn(sessionsync::engine::run_scheduler(
        engine,
        sources,
        slots,
        shutdown.clone(),
    ));
    let mut most_waiting = 0;
    for _ in 0..45 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        most_waiting = most_waiting.max(metrics.streams_waiting.get());
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), daemon)
        .await
        .expect("stops within 10 s")
        .unwrap();
    let elapsed = (Utc::now() - t0).num_seconds();
    assert!(most_waiting >= 4, "waiting gauge peaked at {most_waiting}");
    assert!(sim.log().max_in_flight() <= 2);
    let c = db.client().await;
    let runs = c
        .query(
            "SELECT account, count(*) FROM sync_runs GROUP BY account ORDER BY account",
            &[],
        )
        .await
        .unwrap();
    // None starved, and none ran more often than its instants came.
    assert_eq!(runs.len(), 8, "some stream never ran");
    for r in &runs {
        let n: i64 = r.get(1);
        assert!(
            n >= 1 && n <= elapsed / 2 + 1,
            "{} ran {n} times in {elapsed} s",
            r.get::<_, String>(0)
        );
    }
}

#[tokio::test]
async fn sigterm_with_many_streams_busy_stops_within_10_s_and_the_next_run_completes() {
    let sim = slow_sim(400, 400).await;
    let db = TestDb::new().await;
    let file = write_config(&accounts_toml(
        &[sim.base_url()],
        12,
        "* * * * * *",
        "[engine]\nmax_concurrent_streams = 4\n[server]\nlisten = \"127.0.0.1:0\"",
    ));
    let log = file.with_file_name("daemon.log");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
        .args(["run", "--config"])
        .arg(&file)
        .env("DATABASE_URL", &db.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Busy: four streams running, the rest queued.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sim.log().len() >= 8 {
            break;
        }
    }
    assert!(sim.log().len() >= 8);
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops within 10 s")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let c = db.client().await;
    let locks: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0, "an advisory lock outlived the daemon");
    // The next run completes the data.
    sim.faults().clear();
    let o = sync_cli(&file, &db).await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        count(&c, "takecontrol_sessions").await,
        12 * sim.visible_sessions().len() as i64
    );
}
