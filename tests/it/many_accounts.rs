//! Many accounts in one warehouse: `sync` runs streams concurrently, the daemon serves due
//! streams in order within `engine.max_concurrent_streams`, two replicas split one schedule
//! without fetching a window twice, and SIGTERM under load stops promptly with nothing lost.
//! Asserted on the simulators' request logs and the warehouse, not on the clock.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;
use chrono::{TimeDelta, Timelike, Utc};
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

/// `sessionsync sync` with `file`, on `db`.
async fn sync_cli(file: &std::path::Path, db: &TestDb) -> std::process::Output {
    sessionsync_command(&["sync"], file, &[("DATABASE_URL", Some(&db.url))])
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
    let config = TempConfig::new(&accounts_toml(
        &[sim.base_url()],
        12,
        "*/5 * * * *",
        "pool_size = 3",
    ));
    let file = config.path();
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
    // Two slots cannot keep eight one-second streams on a two-second schedule: the metrics
    // say so (instants missed while waiting or running, runs starting late).
    let text = metrics.encode();
    let summed = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        summed("sessionsync_schedule_missed_instants_total") >= 4.0,
        "{text}"
    );
    assert!(
        summed("sessionsync_schedule_start_delay_seconds") > 0.0,
        "{text}"
    );
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
    let config = TempConfig::new(&accounts_toml(
        &[sim.base_url()],
        12,
        "* * * * * *",
        "[engine]\nmax_concurrent_streams = 4\n[server]\nlisten = \"127.0.0.1:0\"",
    ));
    let file = config.path();
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

#[tokio::test]
async fn a_replica_whose_lock_connection_is_terminated_commits_no_further_window() {
    let sim = slow_sim(400, 80).await;
    let db = TestDb::new().await;
    let start = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    let toml = format!(
        r#"[warehouse]
url = "${{DATABASE_URL}}"

[[takecontrol]]
account = "acct0"
base_url = "{}"
api_key = "k"
start = "{start}"
window = "1h"
lookback = "0s"
requests_per_second = 500
timeout = "10s"
"#,
        sim.base_url()
    );
    let settings = settings(&db, &toml);
    let (a, _, a_metrics) = replica(&settings).await;
    let (b, _, b_metrics) = replica(&settings).await;
    let a_source = sessionsync::sources::build(&settings, &a_metrics, None, None).remove(0);
    let b_source = sessionsync::sources::build(&settings, &b_metrics, None, None).remove(0);

    // Replica A runs the stream; its windows are counted as they commit.
    let a_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run_a = {
        let (a, src, done) = (a.clone(), a_source.clone(), a_done.clone());
        tokio::spawn(async move {
            let progress = move |p: &sessionsync::engine::Progress| {
                done.store(p.done, std::sync::atomic::Ordering::SeqCst)
            };
            a.run(
                &src,
                sessionsync::engine::Range::Regular,
                &CancellationToken::new(),
                &progress,
            )
            .await
            .unwrap()
        })
    };
    let done = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..400 {
        if done(&a_done) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(done(&a_done) >= 3, "replica A did not get going");

    // Replica B waits for the stream meanwhile: skipped while A holds it.
    let run_b = {
        let (b, src) = (b.clone(), b_source.clone());
        tokio::spawn(async move {
            let mut skipped = 0;
            loop {
                let r = b.run_once(&src, &CancellationToken::new()).await.unwrap();
                if r.outcome != sessionsync::engine::Outcome::Skipped {
                    return (r, skipped);
                }
                skipped += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The backend that holds A's lock is terminated mid-run.
    let c = db.client().await;
    let holders: Vec<i32> = c
        .query(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                AND objid = hashtext('sessionsync/takecontrol/acct0/sessions')::oid
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(holders.len(), 1, "one backend holds the stream's lock");
    let at_loss = done(&a_done);
    c.execute("SELECT pg_terminate_backend($1)", &[&holders[0]])
        .await
        .unwrap();

    let a_report = run_a.await.unwrap();
    let (b_report, b_skipped) = run_b.await.unwrap();
    // A commit already past its check when the backend went may land (B's claim waits for
    // it); none after.
    let a_final = done(&a_done);
    assert!(
        a_final <= at_loss + 1,
        "A committed {a_final} windows, {at_loss} at the loss"
    );
    assert_eq!(a_report.outcome, sessionsync::engine::Outcome::Partial);
    let error = a_report.error.unwrap_or_default();
    assert!(error.contains("lost its claim"), "{error}");
    assert!(b_skipped >= 1, "B did wait for the stream");
    assert_eq!(b_report.outcome, sessionsync::engine::Outcome::Succeeded);

    // Complete, and no window written twice (no lookback here: a window read again would
    // count its rows as unchanged).
    assert_eq!(
        count(&c, "takecontrol_sessions").await,
        sim.visible_sessions().len() as i64
    );
    let (written, unchanged): (i64, i64) = c
        .query_one(
            "SELECT sum(rows_written)::bigint, sum(rows_unchanged)::bigint FROM sync_runs",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(written, sim.visible_sessions().len() as i64);
    assert_eq!(unchanged, 0, "a window was written twice");
    let claims: i64 = c
        .query_one("SELECT claim FROM sync_state", &[])
        .await
        .unwrap()
        .get(0);
    assert!(claims >= 2, "B claimed the stream after A ({claims})");
}

/// The value of the first sample of `name` in `m`'s exposition.
fn sample(m: &Metrics, name: &str) -> f64 {
    m.encode()
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn a_stream_that_keeps_failing_backs_off_and_a_success_resets_it() {
    let sim = slow_sim(20, 1).await;
    sim.faults().clear();
    // Its first three runs fail (a 500 and no retries), then it recovers.
    sim.faults().push(Fault::Status(500), 3);
    let db = TestDb::new().await;
    let start = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    let toml = format!(
        r#"[warehouse]
url = "${{DATABASE_URL}}"
[server]
listen = "127.0.0.1:0"

[[takecontrol]]
account = "acct0"
base_url = "{}"
api_key = "k"
schedule = "* * * * * *"
start = "{start}"
window = "1d"
requests_per_second = 500
max_retries = 0
timeout = "10s"
"#,
        sim.base_url()
    );
    let config = TempConfig::new(&toml);
    let file = config.path();
    let settings = settings(&db, &toml);
    // The daemon as `run` starts it, in process (on a schema migrated already, so that the
    // test can read sync_runs from the start).
    Warehouse::new(&settings.warehouse)
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let sources = sessionsync::sources::build(&settings, &metrics, None, None);
    let shutdown = CancellationToken::new();
    let daemon =
        sessionsync::daemon::Daemon::build(&settings, metrics.clone(), sources, shutdown.clone())
            .await
            .unwrap();
    let daemon = tokio::spawn(daemon.run_until_stopped());
    let c = db.client().await;
    let runs = async |c: &tokio_postgres::Client| -> Vec<(String, f64, f64)> {
        c.query(
            "SELECT status, extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8
               FROM sync_runs WHERE finished_at IS NOT NULL ORDER BY run_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
    };
    // Three failures: the stream is backing off, in the metrics and in `status`.
    for _ in 0..200 {
        if runs(&c).await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sample(&metrics, "sessionsync_stream_consecutive_failures"),
        3.0
    );
    let until = sample(
        &metrics,
        "sessionsync_stream_backoff_until_timestamp_seconds",
    );
    assert!(
        until > Utc::now().timestamp() as f64,
        "backing off until {until}"
    );
    let status = sync_status(&file, &db).await;
    assert!(
        status.contains("until ") && status.contains("(3 failed)"),
        "{status}"
    );

    // Then a success resets it.
    for _ in 0..300 {
        if runs(&c).await.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    let r = runs(&c).await;
    let statuses: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(&statuses[..4], ["failed", "failed", "failed", "succeeded"]);
    // On a one-second schedule: the second run one instant after the first; the third after a
    // pause of two periods, the fourth after four (not a run at every instant).
    assert!(r[1].1 - r[0].2 < 1.5, "{r:?}");
    assert!(r[2].1 - r[1].2 >= 2.0, "{r:?}");
    assert!(r[3].1 - r[2].2 >= 4.0, "{r:?}");
    assert_eq!(
        sample(&metrics, "sessionsync_stream_consecutive_failures"),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "sessionsync_stream_backoff_until_timestamp_seconds"
        ),
        0.0
    );
    let status = sync_status(&file, &db).await;
    assert!(!status.contains("failed)"), "{status}");
}

/// `sessionsync status` with `file`, on `db`: its output.
async fn sync_status(file: &std::path::Path, db: &TestDb) -> String {
    let o = sessionsync_command(&["status"], file, &[("DATABASE_URL", Some(&db.url))])
        .output()
        .await
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
