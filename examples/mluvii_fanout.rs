//! Benchmark: mluvii fan-out under a server-side rate limit (issue 3).
//!
//! The simulator enforces R requests/s (429 + Retry-After beyond it); the connector is set to
//! the same R with `concurrency` requests in flight. Prints the wall time of one sync of N
//! sessions against the minimum possible (requests needed / R), the share of requests answered
//! 429, and peak RSS.
//!
//! `cargo run --release --example mluvii_fanout -- [N] [R] [CONCURRENCY] [CLIENT_RPS]`
//! (defaults 2000 100 8 R; a CLIENT_RPS above R shows how the 429s are ridden out);
//! needs DATABASE_URL or a local PostgreSQL (it uses a database `sessionsync_bench`).

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use sessionsync::config::{
    Account, EngineSettings, HttpSettings, Schedule, Secret, ServerSettings, Settings,
    StreamSettings, WarehouseSettings,
};
use sessionsync::sources::mluvii::MluviiSettings;
use sessionsync::warehouse::Warehouse;
use sessionsync_sim::mluvii::{MluviiSim, generate};
use tokio_util::sync::CancellationToken;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    let (n, rate, concurrency) = (arg(0, 2000.0) as usize, arg(1, 100.0), arg(2, 8.0) as usize);
    let client_rps = arg(3, rate);

    let admin = std::env::var("DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| sessionsync::warehouse::bootstrap::LOCAL_DEFAULT_URL.into());
    let url = sessionsync::warehouse::bootstrap::ensure_named_database(&admin, "sessionsync_bench")
        .await?;
    let now = Utc::now();
    let start = now - TimeDelta::days(1);
    let sim = MluviiSim::start(
        "bench",
        "bench-secret",
        generate(5, n, start, now - TimeDelta::minutes(30)),
    )
    .await?;
    sim.set_rate_limit(Some(rate));
    let settings = Settings {
        file: "(bench)".into(),
        warehouse: WarehouseSettings {
            url: Secret::new(url),
            schema: "sessionsync".into(),
            pool_size: 2,
            synchronous_commit: false,
        },
        server: ServerSettings {
            listen: "127.0.0.1:0".parse()?,
        },
        engine: EngineSettings {
            max_concurrent_streams: 1,
        },
        webhooks: None,
        privacy: Default::default(),
        audit: Default::default(),
        accounts: vec![Account {
            kind: &sessionsync::sources::mluvii::KIND,
            stream: StreamSettings {
                account: "bench".into(),
                enabled: true,
                schedule: Schedule::parse("* * * * *").map_err(anyhow::Error::msg)?,
                start,
                lookback: Duration::from_secs(3600),
                window: Duration::from_secs(7 * 86400),
                privacy: Default::default(),
                expect_data_within: None,
                audit: true,
            },
            http: HttpSettings {
                timeout: Duration::from_secs(30),
                max_retries: 8,
                max_retry_wait: Duration::from_secs(30),
                requests_per_second: client_rps,
                max_response_mb: 256,
            },
            settings: std::sync::Arc::new(MluviiSettings {
                base_url: sim.base_url().parse()?,
                client_id: "bench".into(),
                client_secret: Secret::new("bench-secret"),
                concurrency,
                page_size: 1000,
                webhook: None,
                max_open_age: Duration::from_secs(7 * 86400),
            }),
        }],
    };
    Warehouse::new(&settings.warehouse)?
        .conn()
        .await?
        .batch_execute("DROP SCHEMA IF EXISTS sessionsync CASCADE")
        .await?;
    let sessionsync::startup::Pipeline {
        engine, sources, ..
    } = sessionsync::startup::start_all(&settings).await?;

    let began = Instant::now();
    let report = engine
        .run_once(&sources[0], &CancellationToken::new())
        .await?;
    let wall = began.elapsed().as_secs_f64();
    let log = sim.log().entries();
    let api: Vec<_> = log.iter().filter(|e| e.path.starts_with("/api/")).collect();
    let limited = api.iter().filter(|e| e.status == 429).count();
    let needed = api.len() - limited;
    let minimum = needed as f64 / rate;
    println!("sessions             {n}");
    println!("outcome              {}", report.outcome.as_str());
    println!("rows written         {}", report.totals.written);
    println!(
        "rate limit R         {rate} requests/s (server), client ceiling {client_rps}/s, concurrency {concurrency}"
    );
    println!(
        "API requests         {} ({} answered, {} answered 429)",
        api.len(),
        needed,
        limited
    );
    println!(
        "429 share            {:.2} %",
        100.0 * limited as f64 / api.len().max(1) as f64
    );
    println!("minimum possible     {minimum:.2} s (requests needed / R)");
    println!("wall time            {wall:.2} s");
    println!(
        "wall / minimum       {:.3}x (aim: <= 1.15x)",
        wall / minimum
    );
    println!(
        "peak RSS             {:.1} MB (simulator in the same process)",
        peak_rss_mb()
    );
    Ok(())
}
