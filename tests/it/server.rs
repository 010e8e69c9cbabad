//! The metrics and health server over real HTTP; a real Prometheus tool reads `/metrics`.

use std::process::Stdio;

use crate::helpers::*;
use chrono::{TimeDelta, Utc};
use sessionsync::config::{Secret, WarehouseSettings};
use sessionsync::engine::Outcome;
use sessionsync::warehouse::Warehouse;
use sessionsync_sim::takecontrol::{TakeControlSim, generate};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn metrics_pass_promtool_and_health_answers() {
    let db = TestDb::new().await;
    let start = Utc::now() - TimeDelta::days(1);
    let sim = TakeControlSim::start(
        "k",
        generate(2, 40, start, Utc::now() - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let h = Harness::new(&settings(&db, &tc_toml(&sim.base_url(), "k", start, ""))).await;
    assert_eq!(h.sync().await.outcome, Outcome::Succeeded);
    let shutdown = CancellationToken::new();
    let (addr, server) = sessionsync::server::spawn(
        "127.0.0.1:0".parse().unwrap(),
        h.metrics.clone(),
        h.engine.warehouse().clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert!(addr.ip().is_loopback());
    let get = |path: &str| reqwest::get(format!("http://{addr}{path}"));
    let m = get("/metrics").await.unwrap();
    assert_eq!(m.status(), 200);
    let text = m.text().await.unwrap();
    for family in [
        "sessionsync_rows_written_total",
        "sessionsync_http_requests_total",
        "sessionsync_sync_runs_total",
        "sessionsync_watermark_timestamp_seconds",
        "sessionsync_build_info",
    ] {
        assert!(text.contains(family), "{family} missing");
    }
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let out = promtool.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Prometheus itself asks for OpenMetrics and gets it.
    let om = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    shutdown.cancel();
    server.await.unwrap();

    // With the warehouse unreachable, /readyz says so and /healthz still answers.
    let dead = Warehouse::new(&WarehouseSettings {
        url: Secret::new("postgres://postgres@127.0.0.1:9/none"),
        schema: "sessionsync".into(),
        pool_size: 1,
        synchronous_commit: false,
    })
    .unwrap();
    let shutdown = CancellationToken::new();
    let (addr, _server) = sessionsync::server::spawn(
        "127.0.0.1:0".parse().unwrap(),
        h.metrics.clone(),
        dead,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let get = |path: &str| reqwest::get(format!("http://{addr}{path}"));
    assert_eq!(get("/readyz").await.unwrap().status(), 503);
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    shutdown.cancel();
}
