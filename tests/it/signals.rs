//! Signals that tell the truth: an alert fires only for what it names (values a vendor sends as
//! "no date" raise nothing; a record set aside does, evaluated by promtool over the metrics a real
//! sync exported), every error names where it went and what to do (the binary, as operators run
//! it), `check` and `sync` agree on an empty selection, and `/readyz` is false while the
//! warehouse takes no writes.

use std::process::Stdio;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use sessionsync::engine::Outcome;
use sessionsync_sim::superoffice::{SimCredentials, SuperOfficeSim, generate};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// The samples of the counters `names` in a `/metrics` text: (series as written, value).
fn samples(text: &str, names: &[&str]) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| names.iter().any(|n| l.starts_with(&format!("{n}{{"))))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `promtool test rules` over `alerts.yml` with the counters of `text`, each 0 until minute 5
/// and its exported value after: the alerts `SessionsyncRecordsRejected` raises at minute 30
/// (`expected`: the YAML of the expected alerts, `[]` for none).
async fn records_rejected_alerts(text: &str, expected: &str) -> Result<(), String> {
    let series = samples(
        text,
        &[
            "sessionsync_records_rejected_total",
            "sessionsync_values_nulled_total",
        ],
    );
    assert!(!series.is_empty(), "no counter to test in\n{text}");
    let input: String = series
        .iter()
        .map(|(s, v)| format!("      - series: '{s}'\n        values: '0x5 {v}x55'\n"))
        .collect();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/prometheus/alerts.yml");
    let test = format!(
        "rule_files:\n  - {rules}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}    alert_rule_test:\n      - eval_time: 30m\n        alertname: SessionsyncRecordsRejected\n        exp_alerts: {expected}\n"
    );
    let file = TempConfig::new("");
    let path = file.file("rejected_test.yml");
    std::fs::write(&path, &test).unwrap();
    let out = tokio::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .await
        .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}{}\n{test}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

#[tokio::test]
async fn a_healthy_tenants_no_dates_raise_no_alert_and_a_record_set_aside_does() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let sim = SuperOfficeSim::start(
        SimCredentials {
            ticket: SO_TICKET.into(),
            app_token: SO_APP_TOKEN.into(),
            bearer: "b".into(),
        },
        generate(5, 60, now - TimeDelta::days(3), now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let h = Harness::new(&settings(
        &db,
        &so_account_toml(&sim.base_url(), "cust1", "requests_per_second = 500"),
    ))
    .await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let nulled = r.totals.nulled.get("null_date").copied().unwrap_or(0);
    assert!(
        nulled > 10,
        "SuperOffice's \"no date\" values: {:?}",
        r.totals.nulled
    );
    let c = db.client().await;
    assert_eq!(count(&c, "rejected_records").await, 0);
    let text = h.metrics.encode();
    // Counted as what they are, and not as records set aside.
    assert!(
        samples(&text, &["sessionsync_values_nulled_total"])
            .iter()
            .any(|(s, v)| s.contains("reason=\"null_date\"") && *v == nulled as f64),
        "{text}"
    );
    assert!(
        samples(&text, &["sessionsync_records_rejected_total"]).is_empty(),
        "{text}"
    );
    records_rejected_alerts(&text, "[]").await.unwrap();

    // A record really set aside raises it.
    let mut bad = generate(6, 1, now - TimeDelta::hours(3), now - TimeDelta::hours(2)).remove(0);
    bad.entity["ChatSessionId"] = json!(4242);
    bad.entity["TopicId"] = json!("seven");
    bad.updated = Utc::now();
    sim.upsert(bad);
    let r = h.sync().await;
    assert_eq!(r.totals.rejected, 1, "{:?}", r.error);
    assert_eq!(count(&c, "rejected_records").await, 1);
    let text = h.metrics.encode();
    let rejected = samples(&text, &["sessionsync_records_rejected_total"]);
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].0.contains("reason=\"invalid_topicid\""),
        "{rejected:?}"
    );
    records_rejected_alerts(
        &text,
        "\n          - exp_labels:\n              severity: info\n              source: superoffice\n              account: cust1\n              stream: chat_sessions\n              reason: invalid_topicid\n            exp_annotations:\n              summary: \"superoffice/cust1: records set aside (invalid_topicid); see rejected_records\"",
    )
    .await
    .unwrap();
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(args: &[&str], config: &std::path::Path, env: &[(&str, Option<&str>)]) -> Out {
    let o = sessionsync_command(args, config, env)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

const KEY: &str = "signals-SECRET-key-77";

fn tc_config(base: &str, extra: &str) -> String {
    format!(
        "[warehouse]\nurl = \"${{DATABASE_URL}}\"\n\n[[takecontrol]]\naccount = \"acme\"\nbase_url = \"{base}\"\napi_key = \"{KEY}\"\nstart = \"{}\"\nmax_retries = 1\nmax_retry_wait = \"1s\"\n{extra}",
        (Utc::now() - TimeDelta::days(1)).to_rfc3339()
    )
}

#[tokio::test]
async fn an_unreachable_vendor_is_named_with_its_account_and_host_and_check_keeps_its_own_words() {
    let db = TestDb::new().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/some/path?x=1");
    let cfg = TempConfig::new(&tc_config(&base, ""));
    let env = [("DATABASE_URL", Some(db.url.as_str()))];
    let sync = run(&["sync"], &cfg.path(), &env).await;
    assert_eq!(sync.code, Some(1), "{}{}", sync.stdout, sync.stderr);
    let line = sync
        .stdout
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("{}", sync.stdout));
    let host = format!("http://127.0.0.1:{port}");
    assert!(
        line.contains("takecontrol account `acme`") && line.contains(&format!("at {host} ")),
        "{line}"
    );
    assert!(line.contains("the next run reads it again"), "{line}");
    assert!(
        !line.contains("some/path") && !line.contains("x=1"),
        "{line}"
    );

    let check = run(&["check"], &cfg.path(), &env).await;
    assert_eq!(check.code, Some(1), "{}{}", check.stdout, check.stderr);
    let fail = check
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains("takecontrol/acme"))
        .unwrap_or_else(|| panic!("{}", check.stdout));
    assert!(fail.contains(&host), "{fail}");
    for words in ["next cycle", "next run"] {
        assert!(!check.stdout.contains(words), "{}", check.stdout);
    }
    // Its list alone: no log line in it, nor beside it on the terminal's other stream.
    assert!(check.stderr.trim().is_empty(), "{}", check.stderr);
    for out in [&sync.stdout, &sync.stderr, &check.stdout, &check.stderr] {
        assert!(!out.contains(KEY));
    }
}

#[tokio::test]
async fn a_refused_login_a_missing_file_and_a_silent_daemon_each_say_what_happened() {
    // The server answered and refused the login: not "cannot reach".
    let mut refused = reqwest::Url::parse(&admin_url()).unwrap();
    refused.set_username("no_such_role_signals").unwrap();
    let cfg = TempConfig::new(&tc_config("http://127.0.0.1:9", ""));
    let o = run(
        &["migrate"],
        &cfg.path(),
        &[("DATABASE_URL", Some(refused.as_str()))],
    )
    .await;
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("refused the login"), "{}", o.stderr);
    assert!(o.stderr.contains("the server was reached"), "{}", o.stderr);
    assert!(!o.stderr.contains("cannot reach"), "{}", o.stderr);

    // A missing file: the path tried, once, and where to start.
    let missing = std::env::temp_dir().join("sessionsync-no-such-dir/nothing.toml");
    let o = run(&["sync"], &missing, &[]).await;
    assert_eq!(o.code, Some(2));
    let shown = missing.display().to_string();
    assert_eq!(o.stderr.matches(&shown).count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("given with --config"), "{}", o.stderr);
    assert!(!o.stderr.contains("pass --config"), "{}", o.stderr);
    assert!(
        o.stderr.contains("config/sessionsync.example.toml")
            && o.stderr.contains("sessionsync simulate"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("os error"), "said once: {}", o.stderr);

    // healthcheck: nothing listening, and a listener that never answers.
    let nobody = free_port();
    let o = run(
        &[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{nobody}/healthz"),
        ],
        &missing,
        &[],
    )
    .await;
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("refused the connection at once"),
        "{}",
        o.stderr
    );
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", silent.local_addr().unwrap());
    let o = run(
        &["healthcheck", "--url", &url, "--timeout", "500ms"],
        &missing,
        &[],
    )
    .await;
    assert_eq!(o.code, Some(1));
    assert!(
        o.stderr.contains("did not answer within 500ms"),
        "{}",
        o.stderr
    );
    assert!(!o.stderr.contains("refused"), "{}", o.stderr);
    drop(silent);
}

#[tokio::test]
async fn check_and_sync_agree_on_an_empty_selection() {
    let db = TestDb::new().await;
    let cfg = TempConfig::new(&tc_config("http://127.0.0.1:9", "enabled = false"));
    let env = [("DATABASE_URL", Some(db.url.as_str()))];
    let mut said = Vec::new();
    for cmd in ["check", "sync"] {
        let o = run(&[cmd], &cfg.path(), &env).await;
        assert_eq!(o.code, Some(2), "{cmd}: {}{}", o.stdout, o.stderr);
        assert!(
            o.stderr.contains("has no enabled stream")
                && o.stderr.contains("[[takecontrol]]")
                && o.stderr.contains("enabled = true"),
            "{cmd}: {}",
            o.stderr
        );
        said.push(o.stderr);
    }
    assert_eq!(said[0], said[1]);
    // A selection that matches nothing names what is enabled.
    let cfg = TempConfig::new(&tc_config("http://127.0.0.1:9", ""));
    let o = run(&["sync", "--account", "nope"], &cfg.path(), &env).await;
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr
            .contains("matches --account nope; enabled: takecontrol/acme"),
        "{}",
        o.stderr
    );
}

#[tokio::test]
async fn readyz_is_false_while_the_warehouse_takes_no_writes() {
    let db = TestDb::new().await;
    let s = settings(&db, "");
    let wh = sessionsync::warehouse::Warehouse::new(&s.warehouse).unwrap();
    wh.migrate().await.unwrap();
    let shutdown = CancellationToken::new();
    let (addr, server) = sessionsync::server::spawn(
        "127.0.0.1:0".parse().unwrap(),
        std::sync::Arc::new(sessionsync::telemetry::Metrics::new()),
        wh.clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let get = |path: &'static str| async move {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(get("/readyz").await.0, 200);
    // Read-only, as a standby after a failover is: the connections the pool had are gone.
    let admin = db.client().await;
    let set_read_only = |on: bool| {
        let name = db.name.clone();
        let admin = &admin;
        async move {
            let value = if on { "on" } else { "off" };
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {name} SET default_transaction_read_only = {value}"
                ))
                .await
                .unwrap();
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&name],
                )
                .await
                .unwrap();
        }
    };
    set_read_only(true).await;
    let mut answer = (0, String::new());
    for _ in 0..20 {
        answer = get("/readyz").await;
        if answer.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answer.0, 503, "{answer:?}");
    assert!(answer.1.contains("read-only"), "{answer:?}");
    assert_eq!(get("/healthz").await.0, 200, "the process runs");
    set_read_only(false).await;
    let admin2 = db.client().await;
    drop(admin);
    let mut ready = 0;
    for _ in 0..20 {
        ready = get("/readyz").await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready, 200);
    drop(admin2);
    shutdown.cancel();
    let _ = server.await;
}
