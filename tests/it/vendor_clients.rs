//! Vendors' own API clients against `sessionsync simulate`: the closest this project gets to a
//! real tenant. SuperOffice's official JavaScript client (`@superoffice/webapi`, pinned in
//! `tests/vendor-clients/package.json`) lists, reads and parses the simulated chats, and the
//! instants it parses must be the ones the warehouse stores from the same simulator.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{DateTime, Utc};
use sessionsync::engine::Outcome;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;

/// `tests/vendor-clients`, its packages installed (`npm ci`, as `.ci/run` does) if they are not.
fn vendor_clients() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vendor-clients");
    // One install for the tests that run at once (two `npm ci` in one folder collide).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !dir
        .join("node_modules/@superoffice/webapi/package.json")
        .exists()
    {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect(
                "npm (Debian packages nodejs and npm) is needed to install tests/vendor-clients",
            );
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

/// A date the client parsed, or `None` for none or one SuperOffice means as "not set".
fn client_date(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    let t: DateTime<Utc> = v.as_str()?.parse().ok()?;
    let set = t >= self::t("1900-01-01T00:00:00Z") && t <= self::t("9000-01-01T00:00:00Z");
    set.then_some(t)
}

/// Equal to the millisecond JavaScript keeps (the warehouse keeps microseconds).
fn same_instant(client: Option<DateTime<Utc>>, stored: Option<DateTime<Utc>>) -> bool {
    match (client, stored) {
        (Some(a), Some(b)) => (a - b).num_microseconds().is_some_and(|d| d.abs() < 1_000),
        (None, None) => true,
        _ => false,
    }
}

#[tokio::test]
async fn superoffices_official_client_parses_the_instants_the_warehouse_stores() {
    let dir = vendor_clients();
    let port = free_port();
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
        .args([
            "simulate",
            "--source",
            "superoffice",
            "--sessions",
            "40",
            "--days",
            "3",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The config entry it prints, up to its `start`.
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut entry = String::new();
    let mut in_config = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        if in_config {
            if line.starts_with("start") {
                break;
            }
            entry.push_str(&line);
            entry.push('\n');
        }
        in_config |= line == "config:";
    }
    let value = |key: &str| {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no {key} in {entry}"))
            .to_string()
    };
    // The simulator is SuperOffice Online: sessionsync's own system user flow gets the ticket and
    // the tenant's host from it, and the official client uses them.
    let su = sessionsync::sources::superoffice::system_user::SystemUser::new(
        sessionsync::sources::superoffice::config::SystemUserConfig {
            environment: value("environment").parse().unwrap(),
            context_identifier: value("context_identifier"),
            app_token: sessionsync::config::Secret::new(value("app_token")),
            system_user_token: sessionsync::config::Secret::new(value("system_user_token")),
            private_key: sessionsync::sources::superoffice::system_user::PrivateKey::parse(
                sessionsync_sim::superoffice_online::APPLICATION_KEY_PEM,
            )
            .unwrap(),
        },
    );
    let http = sessionsync::http::HttpClient::new(
        "superoffice",
        "vendor-client",
        &sessionsync::config::HttpSettings {
            timeout: std::time::Duration::from_secs(10),
            max_retries: 1,
            max_retry_wait: std::time::Duration::from_secs(1),
            requests_per_second: 100.0,
            max_response_mb: 16,
        },
        std::sync::Arc::new(sessionsync::telemetry::Metrics::new()),
    );
    let ticket = su.ticket(&http).await.unwrap().value.expose().to_string();
    let base = su
        .tenant(&http)
        .await
        .unwrap()
        .endpoint
        .unwrap()
        .to_string();
    let app_token = value("app_token");

    // The official client: every chat listed, read by id, its messages, all parsed.
    let out = tokio::process::Command::new("node")
        .args(["superoffice.cjs", &base, &ticket, &app_token])
        .current_dir(&dir)
        .output()
        .await
        .expect("node (Debian package nodejs) runs the vendor client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        read.len(),
        43,
        "the three seed samples and 40 generated chats"
    );

    // Both modes of sessionsync store what the client parsed.
    for mode in ["archive", "for_user"] {
        let db = TestDb::new().await;
        let toml = format!(
            "{entry}start = \"1995-01-01T00:00:00Z\"\nmode = \"{mode}\"\nrequests_per_second = 500\n"
        );
        let h = Harness::new(&settings(&db, &toml)).await;
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{mode}: {:?}", r.error);
        let c = db.client().await;
        let mut dates = 0;
        for s in &read {
            let id = s["id"].as_i64().unwrap() as i32;
            let row = c
                .query_one(
                    "SELECT requested_at, started_at, ended_at FROM superoffice_chat_sessions WHERE chat_session_id = $1",
                    &[&id],
                )
                .await
                .unwrap_or_else(|e| panic!("{mode}: session {id} not stored: {e}"));
            for (i, key) in ["whenRequested", "whenStarted", "whenEnded"]
                .iter()
                .enumerate()
            {
                let (client, stored) = (client_date(&s[*key]), row.get(i));
                assert!(
                    same_instant(client, stored),
                    "{mode}: session {id} {key}: the client parsed {client:?}, the warehouse holds {stored:?}"
                );
                dates += usize::from(client.is_some());
            }
            for m in s["messages"].as_array().unwrap() {
                let mid = m["id"].as_i64().unwrap() as i32;
                let row = c
                    .query_one(
                        "SELECT posted_at, read_by_customer FROM superoffice_chat_messages WHERE chat_message_id = $1",
                        &[&mid],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{mode}: message {mid} not stored: {e}"));
                let (client, stored) = (client_date(&m["whenPosted"]), row.get(0));
                assert!(
                    same_instant(client, stored),
                    "{mode}: message {mid}: {client:?} vs {stored:?}"
                );
                let read_by: Option<i32> = row.get(1);
                assert_eq!(
                    read_by.map(i64::from),
                    m["readByCustomer"].as_i64(),
                    "{mode}: message {mid}"
                );
                dates += usize::from(client.is_some());
            }
        }
        assert!(dates > 150, "{mode}: {dates} instants compared");
    }
    sim.kill().await.unwrap();
}

/// The signed system user token, as SuperOffice's documentation makes it in Node.js
/// (`crypto.createSign('SHA256')`): PKCS#1 v1.5 is deterministic, so sessionsync's signature
/// must be the same bytes, from the PEM key and from the same key in RSA-XML form.
#[tokio::test]
async fn the_system_user_signature_is_byte_identical_to_nodes_crypto() {
    use sessionsync::sources::superoffice::system_user::{PrivateKey, signed_system_token};
    use sessionsync_sim::superoffice_online::{APPLICATION_KEY_PEM, application_key_xml};
    let dir = vendor_clients();
    let tmp = TempConfig::new("");
    let key_file = tmp.file("application.pem");
    std::fs::write(&key_file, APPLICATION_KEY_PEM).unwrap();
    let at = t("2026-12-07T17:10:00Z");
    for token in [
        "SessionSync Sim-aG9sZGVyLXRva2Vu",
        "Application Name-ÆØÅ é 😀",
    ] {
        let data = format!("{token}.202612071710");
        let node = std::process::Command::new("node")
            .arg(dir.join("sign.cjs"))
            .arg(&key_file)
            .arg(&data)
            .output()
            .expect("node (Debian package nodejs) signs as SuperOffice's docs do");
        assert!(
            node.status.success(),
            "{}",
            String::from_utf8_lossy(&node.stderr)
        );
        let node_sig = String::from_utf8(node.stdout).unwrap();
        assert!(node_sig.len() > 300, "{node_sig}");
        for key in [APPLICATION_KEY_PEM.to_string(), application_key_xml()] {
            let key = PrivateKey::parse(&key).unwrap();
            assert_eq!(key.sign(&data), node_sig);
            assert_eq!(
                signed_system_token(&key, token, at),
                format!("{data}.{node_sig}")
            );
        }
    }
}
