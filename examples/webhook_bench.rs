//! Benchmark: webhooks end to end (issue 14), driven by `scripts/bench-webhooks.sh`.
//!
//! The SuperOffice and mluvii simulators hold `SESSIONS` sessions each, already synced once; the
//! listener and worker run in process on loopback, registered with the simulators the way
//! `sessionsync webhooks register` does it. Then:
//!
//! 1. **Steady load**: `RATE` changes per second for `SECONDS` s, half in each simulator, each
//!    to a different session (SuperOffice: a new customer name; mluvii: new feedback stars).
//!    Each simulator pushes its event, signed or with Basic credentials, and retries as the
//!    vendor does. A watcher reads the warehouse every 10 ms: a change's latency is from the
//!    moment it was made (before the vendor even sends) until its value is committed, an upper
//!    bound of arrival → commit. Lost: changes never committed; delivered 0 times.
//! 2. **Forged flood**: 1,000 forged requests per second for 10 s (wrong signatures, a tenth of
//!    them 1 MiB), while 10 real changes per second go on. Memory must stay bounded and the real
//!    events land as before.
//!
//! Prints p50/p99/max latency, lost changes, rows written per change, the listener's outcomes, and peak
//! RSS of this process (simulators and load generator included).
//!
//! `cargo run --release --example webhook_bench -- [RATE] [SECONDS] [SESSIONS]` (defaults 50 60
//! 2000); needs DATABASE_URL or a local PostgreSQL (database `sessionsync_bench_webhooks`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use sessionsync::config::Settings;
use sessionsync::warehouse::Warehouse;
use sessionsync::webhooks;
use sessionsync_sim::mluvii::MluviiSim;
use sessionsync_sim::superoffice::{SimCredentials, SuperOfficeSim};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A change waiting to be seen in the warehouse: (source, session, expected value, made at).
type Pending = Vec<(&'static str, i64, i64, Instant)>;

struct Load {
    so: SuperOfficeSim,
    ml: MluviiSim,
    so_ids: Vec<i64>,
    ml_ids: Vec<i64>,
    next: usize,
    pending: Arc<Mutex<Pending>>,
}

impl Load {
    /// One change in one simulator, to a session not changed before.
    async fn change(&mut self) {
        let n = self.next;
        self.next += 1;
        let marker = 1_000_000 + n as i64;
        let made = Instant::now();
        let (source, id) = if n.is_multiple_of(2) {
            let id = self.so_ids[(n / 2) % self.so_ids.len()];
            self.so.update(id, |e| {
                e["CustomerName"] = serde_json::json!(format!("bench-{marker}"))
            });
            ("superoffice", id)
        } else {
            let id = self.ml_ids[(n / 2) % self.ml_ids.len()];
            self.ml.update(id, |s| s.stars = Some(marker));
            ("mluvii", id)
        };
        self.pending.lock().await.push((source, id, marker, made));
    }
}

/// Reads the warehouse every 10 ms and moves seen changes to `seen` with their latency.
async fn watch(
    c: tokio_postgres::Client,
    pending: Arc<Mutex<Pending>>,
    seen: Arc<Mutex<Vec<Duration>>>,
    stop: CancellationToken,
) {
    loop {
        let batch: Pending = pending.lock().await.clone();
        if !batch.is_empty() {
            let so: Vec<i32> = batch
                .iter()
                .filter(|p| p.0 == "superoffice")
                .map(|p| p.1 as i32)
                .collect();
            let ml: Vec<i64> = batch
                .iter()
                .filter(|p| p.0 == "mluvii")
                .map(|p| p.1)
                .collect();
            let mut now: HashMap<(&str, i64), i64> = HashMap::new();
            if let Ok(rows) = c
                .query(
                    "SELECT chat_session_id, customer_name FROM superoffice_chat_sessions
                      WHERE account = 'bench' AND chat_session_id = ANY($1)",
                    &[&so],
                )
                .await
            {
                for r in rows {
                    let name: Option<String> = r.get(1);
                    if let Some(v) = name.and_then(|n| n.strip_prefix("bench-")?.parse().ok()) {
                        now.insert(("superoffice", i64::from(r.get::<_, i32>(0))), v);
                    }
                }
            }
            if let Ok(rows) = c
                .query(
                    "SELECT session_id, guest_feedback_stars::bigint FROM mluvii_sessions
                      WHERE account = 'bench' AND session_id = ANY($1)",
                    &[&ml],
                )
                .await
            {
                for r in rows {
                    if let Some(v) = r.get::<_, Option<i64>>(1) {
                        now.insert(("mluvii", r.get(0)), v);
                    }
                }
            }
            let at = Instant::now();
            let mut p = pending.lock().await;
            let mut s = seen.lock().await;
            p.retain(|(source, id, marker, made)| {
                if now.get(&(*source, *id)) == Some(marker) {
                    s.push(at - *made);
                    false
                } else {
                    true
                }
            });
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

/// The sum of `sessionsync_rows_written_total` over every stream.
fn written_total(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("sessionsync_rows_written_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64()
}

/// Runs changes at `rate` per second for `seconds`, then waits up to 10 s for the last ones.
async fn steady(load: &mut Load, seen: &Arc<Mutex<Vec<Duration>>>, rate: f64, seconds: f64) {
    let total = (rate * seconds) as usize;
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        load.change().await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !load.pending.lock().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = seen;
}

async fn report(label: &str, seen: &Arc<Mutex<Vec<Duration>>>, load: &Load) {
    let mut s = std::mem::take(&mut *seen.lock().await);
    s.sort();
    let lost = load.pending.lock().await.len();
    println!(
        "{label}: {} changes committed, p50 {:.3} s, p99 {:.3} s, max {:.3} s; lost {lost}",
        s.len(),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().map_or(f64::NAN, |d| d.as_secs_f64()),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (rate, seconds, sessions) = (arg(0, 50.0), arg(1, 60.0), arg(2, 2000.0) as usize);

    let admin = std::env::var("DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| sessionsync::warehouse::bootstrap::LOCAL_DEFAULT_URL.into());
    let url = sessionsync::warehouse::bootstrap::ensure_named_database(
        &admin,
        "sessionsync_bench_webhooks",
    )
    .await?;
    let now = Utc::now();
    let creds = SimCredentials {
        ticket: "bench-ticket".into(),
        app_token: "bench-app".into(),
        bearer: "bench-bearer".into(),
    };
    let so = SuperOfficeSim::start(
        creds,
        sessionsync_sim::superoffice::generate(
            21,
            sessions,
            now - TimeDelta::days(3),
            now - TimeDelta::minutes(5),
        ),
    )
    .await?;
    let ml = MluviiSim::start(
        "bench",
        "bench-secret",
        sessionsync_sim::mluvii::generate(
            23,
            sessions,
            now - TimeDelta::days(3),
            now - TimeDelta::minutes(5),
        ),
    )
    .await?;
    let toml = format!(
        r#"
[warehouse]
url = "{url}"
[webhooks]
listen = "127.0.0.1:0"
[[superoffice]]
account = "bench"
base_url = "{so}"
ticket = "bench-ticket"
app_token = "bench-app"
start = "{start}"
requests_per_second = 1000
concurrency = 8
webhook_secret = "bench-webhook-secret"
[[mluvii]]
account = "bench"
base_url = "{ml}"
client_id = "bench"
client_secret = "bench-secret"
start = "{start}"
requests_per_second = 1000
concurrency = 8
webhook_user = "bench"
webhook_password = "bench-hook-password"
"#,
        so = so.base_url(),
        ml = ml.base_url(),
        start = (now - TimeDelta::days(4)).to_rfc3339()
    );
    let settings = Settings::from_toml(
        std::path::Path::new("(bench)"),
        &toml,
        &|_| None,
        &sessionsync::sources::configs(),
    )?;
    Warehouse::new(&settings.warehouse)?
        .conn()
        .await?
        .batch_execute("DROP SCHEMA IF EXISTS sessionsync CASCADE")
        .await?;
    let sessionsync::startup::Pipeline {
        metrics,
        engine,
        sources,
        ..
    } = sessionsync::startup::start_all(&settings).await?;
    let t0 = Instant::now();
    for s in &sources {
        let r = engine.run_once(s, &CancellationToken::new()).await?;
        println!("{}", sessionsync::report::describe(&r));
    }
    println!(
        "initial sync: {:.1} s ({} + {} sessions)",
        t0.elapsed().as_secs_f64(),
        sessions,
        sessions
    );

    let shutdown = CancellationToken::new();
    let hooks = webhooks::listen(
        "127.0.0.1:0".parse()?,
        &sources,
        &settings.warehouse,
        &metrics,
        &shutdown,
    )
    .await?;
    hooks.work();
    let addr = hooks.addr;
    for done in hooks
        .register_all(&format!("http://{addr}").parse()?)
        .await
        .map_err(anyhow::Error::msg)?
    {
        println!("{done}");
    }

    let so_ids: Vec<i64> = so.chats().iter().map(|c| c.id()).collect();
    let ml_ids: Vec<i64> = ml.sessions().iter().map(|s| s.id).collect();
    let pending = Arc::new(Mutex::new(Pending::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute("SET search_path = sessionsync")
        .await?;
    tokio::spawn(watch(
        client,
        pending.clone(),
        seen.clone(),
        shutdown.clone(),
    ));
    let mut load = Load {
        so,
        ml,
        so_ids,
        ml_ids,
        next: 0,
        pending: pending.clone(),
    };

    let written_before = written_total(&metrics.encode());
    println!("\n1. steady load: {rate} changes/s for {seconds} s (half SuperOffice, half mluvii)");
    let rss_before = rss_mb("VmRSS:");
    let t = Instant::now();
    steady(&mut load, &seen, rate, seconds).await;
    println!("   wall {:.1} s", t.elapsed().as_secs_f64());
    report("   change → committed", &seen, &load).await;
    let undelivered = load
        .so
        .deliveries()
        .iter()
        .chain(load.ml.deliveries().iter())
        .filter(|d| !d.delivered)
        .count();
    println!("   vendor deliveries that never got a 200: {undelivered}");
    let rss_steady = rss_mb("VmRSS:");

    println!("\n2. forged flood: 1000 requests/s for 10 s (a tenth 1 MiB), 10 real changes/s");
    let forger = {
        let url = format!("http://{addr}/webhooks/superoffice/bench");
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let small = r#"{"Event":"chatsession.changed","PrimaryKey":1}"#.to_string();
            let big = "x".repeat(1 << 20);
            let limit = Arc::new(tokio::sync::Semaphore::new(256));
            let mut statuses: HashMap<u16, u64> = HashMap::new();
            let results = Arc::new(std::sync::Mutex::new(Vec::<u16>::new()));
            let started = Instant::now();
            for i in 0..10_000u64 {
                if stop.is_cancelled() {
                    break;
                }
                let due = started + Duration::from_micros(i * 1000);
                tokio::time::sleep_until(due.into()).await;
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let body = if i.is_multiple_of(10) {
                    big.clone()
                } else {
                    small.clone()
                };
                let (client, url, results) = (client.clone(), url.clone(), results.clone());
                tokio::spawn(async move {
                    let status = client
                        .post(url)
                        .header("x-superoffice-signature", "Zm9yZ2VkIHNpZ25hdHVyZQ==")
                        .body(body)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    results.lock().expect("results").push(status);
                    drop(permit);
                });
            }
            let _ = limit.acquire_many(256).await;
            for s in results.lock().expect("results").iter() {
                *statuses.entry(*s).or_default() += 1;
            }
            (statuses, started.elapsed())
        })
    };
    steady(&mut load, &seen, 10.0, 10.0).await;
    let (statuses, took) = forger.await?;
    let mut statuses: Vec<_> = statuses.into_iter().collect();
    statuses.sort();
    println!(
        "   forged: {} sent in {:.1} s, answers {statuses:?} (0 = no answer)",
        statuses.iter().map(|s| s.1).sum::<u64>(),
        took.as_secs_f64()
    );
    report("   real changes during the flood", &seen, &load).await;
    let rss_flood = rss_mb("VmRSS:");

    // Each change must have been written exactly once: more writes than changes would mean a
    // session written twice with different content (an older read after a newer one).
    let text = metrics.encode();
    let written = written_total(&text) - written_before;
    let outcomes: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("sessionsync_webhook_events_total"))
        .map(|l| l.replace("sessionsync_webhook_events_total", ""))
        .collect();
    println!("\nlistener outcomes: {}", outcomes.join("  "));
    println!(
        "sessions written by webhooks: {written} for {} changes ({})",
        load.next,
        if written as usize == load.next {
            "each written once: none twice with different content"
        } else {
            "MISMATCH"
        }
    );
    println!(
        "RSS: {rss_before:.0} MB before, {rss_steady:.0} MB after the steady load, {rss_flood:.0} MB after the flood; peak {:.0} MB (whole process: simulators and load generator included)",
        rss_mb("VmHWM:")
    );
    shutdown.cancel();
    Ok(())
}
