//! SuperOffice Online unattended (sources.md §2, "server to server"): the system user flow, the
//! tenant's host from the state API, tickets renewed once, hosts that move and maintenance
//! windows, against the Online simulator (the environment's host and two tenant hosts).

use crate::helpers::*;
use sessionsync::engine::Outcome;
use sessionsync_sim::superoffice::{SimChat, generate, seed_samples};
use sessionsync_sim::superoffice_online::{
    APPLICATION_KEY_PEM, OnlineCredentials, OnlineSim, application_key_xml,
};

fn data(n: usize) -> Vec<SimChat> {
    let mut v = seed_samples();
    v.extend(generate(
        9,
        n,
        t("2024-02-01T00:00:00Z"),
        t("2024-02-10T00:00:00Z"),
    ));
    v
}

/// A `[[superoffice]]` entry with only what the system user flow needs, and `extra`.
fn online_toml(sim: &OnlineSim, key: &str, extra: &str) -> String {
    let c = &sim.creds;
    format!(
        "\n[[superoffice]]\naccount = \"online1\"\nenvironment = \"{}\"\ncontext_identifier = \"{}\"\napp_token = \"{}\"\nsystem_user_token = \"{}\"\nprivate_key = '''\n{}\n'''\nstart = \"1995-01-01T00:00:00Z\"\nrequests_per_second = 500\nmax_retries = 2\nmax_retry_wait = \"1s\"\ntimeout = \"5s\"\n{extra}\n",
        sim.environment_url(),
        c.context,
        c.app_token,
        c.system_user_token,
        key.trim()
    )
}

async fn setup(n: usize, key: &str, extra: &str) -> (TestDb, OnlineSim, Harness) {
    let db = TestDb::new().await;
    let sim = OnlineSim::start(OnlineCredentials::default(), data(n))
        .await
        .unwrap();
    let h = Harness::new(&settings(&db, &online_toml(&sim, key, extra))).await;
    (db, sim, h)
}

fn tenant_requests(sim: &OnlineSim, status: u16) -> usize {
    sim.tenant_requests()
        .iter()
        .filter(|(_, s)| *s == status)
        .count()
}

#[tokio::test]
async fn pem_and_rsa_xml_keys_sync_through_the_state_apis_host_never_the_environments() {
    for key in [APPLICATION_KEY_PEM.to_string(), application_key_xml()] {
        let (db, sim, h) = setup(20, &key, "").await;
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        assert_eq!(r.totals.written, 23);
        let c = db.client().await;
        assert_eq!(count(&c, "superoffice_chat_sessions").await, 23);
        // One ticket for the whole run; every API call went to the tenant's host.
        assert_eq!(sim.authentications(), 1);
        assert_eq!(
            sim.online
                .environment_api_calls
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        assert!(
            sim.tenant_requests()
                .iter()
                .all(|(host, s)| *host == 0 && *s == 200)
        );
        // The second run reuses the ticket and the state.
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        assert_eq!(sim.authentications(), 1);
        assert_eq!(
            sim.online
                .state_reads
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
    }
}

#[tokio::test]
async fn a_ticket_that_expires_mid_run_is_renewed_once_for_every_request_in_flight() {
    let (db, sim, h) = setup(40, APPLICATION_KEY_PEM, "concurrency = 4\n").await;
    // The ticket stops working after 10 requests (as after 6 idle hours), while 4 are in flight.
    sim.expire_tickets_after_requests(10);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 43);
    let refused = tenant_requests(&sim, 401);
    assert!(refused >= 1, "the ticket expired");
    // One renewal, however many requests saw the old ticket refused.
    assert_eq!(sim.authentications(), 2, "refused: {refused}");
    // Tickets that expire every 10 requests: a renewal each time, still no request lost.
    sim.set_ticket_budget(10);
    sim.expire_tickets();
    for id in [8, 10, 12] {
        sim.tenant.post_message(id, "a new message");
    }
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
}

#[tokio::test]
async fn the_tenant_moving_mid_run_costs_one_421_per_request_in_flight_and_every_row_lands_once() {
    let (db, sim, h) = setup(30, APPLICATION_KEY_PEM, "concurrency = 2\n").await;
    sim.move_after_requests(5);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 33);
    let misdirected = tenant_requests(&sim, 421);
    assert!((1..=2).contains(&misdirected), "{misdirected}");
    // After the move, every request went to the new host.
    let log = sim.tenant_requests();
    let first_421 = log.iter().position(|(_, s)| *s == 421).unwrap();
    assert!(
        log[first_421..]
            .iter()
            .filter(|(_, s)| *s == 200)
            .all(|(host, _)| *host == 1),
        "{log:?}"
    );
    assert_eq!(
        sim.online
            .state_reads
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // Nothing twice.
    let dup: i64 = c
        .query_one(
            "SELECT count(*) - count(DISTINCT chat_session_id) FROM superoffice_chat_sessions",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0);
}

#[tokio::test]
async fn a_forged_jwt_is_refused_and_no_request_reaches_the_tenant() {
    let (db, sim, h) = setup(5, APPLICATION_KEY_PEM, "").await;
    sim.forge_next_token();
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(e.contains("signature") && e.contains("online1"), "{e}");
    assert!(
        sim.tenant_requests().is_empty(),
        "{:?}",
        sim.tenant_requests()
    );
    let c = db.client().await;
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 0);
    // The forged ticket is never used; the next (genuine) token is.
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(tenant_requests(&sim, 401) == 0);
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_from_the_jwks_when_its_kid_is_new() {
    let (_db, sim, h) = setup(5, APPLICATION_KEY_PEM, "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let reads = || {
        sim.online
            .jwks_reads
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(reads(), 1);
    sim.rotate_signing_key();
    sim.retire_old_keys();
    sim.expire_tickets();
    sim.tenant.update(8, |e| {
        e["LastMessage"] = serde_json::json!("after the rotation")
    });
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(sim.authentications(), 2);
    assert_eq!(reads(), 2, "an unknown kid fetches the JWKS again");
}

#[tokio::test]
async fn a_maintenance_window_ends_the_run_as_unavailable_and_the_next_run_completes() {
    let (db, sim, h) = setup(30, APPLICATION_KEY_PEM, "concurrency = 2\n").await;
    sim.maintenance_after_requests(6, "OfflineMaintenance");
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Unavailable, "{:?}", r.error);
    let e = r.error.clone().unwrap();
    assert!(
        e.contains("tenant offline: OfflineMaintenance, until"),
        "{e}"
    );
    assert!(
        tenant_requests(&sim, 503) <= 3,
        "{:?}",
        sim.tenant_requests()
    );
    assert_eq!(r.watermark, None, "the watermark did not move");
    let text = h.metrics.encode();
    assert!(
        text.contains(
            "sessionsync_source_unavailable{source=\"superoffice\",account=\"online1\",state=\"OfflineMaintenance\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("outcome=\"unavailable\""), "{text}");
    assert!(!text.contains("outcome=\"failed\""), "{text}");
    let c = db.client().await;
    let status: String = c
        .query_one(
            "SELECT status FROM sync_runs ORDER BY run_id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "unavailable");
    // Still down: the next run asks the state API only.
    let before = sim.tenant_requests().len();
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Unavailable);
    assert_eq!(sim.tenant_requests().len(), before);
    // Back up: the next run completes, nothing lost.
    sim.set_maintenance(None);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 33);
    let text = h.metrics.encode();
    assert!(
        text.contains(
            "sessionsync_source_unavailable{source=\"superoffice\",account=\"online1\",state=\"OfflineMaintenance\"} 0"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_refusal_names_the_vendors_reason_and_the_account_never_a_secret() {
    let db = TestDb::new().await;
    let sim = OnlineSim::start(OnlineCredentials::default(), data(2))
        .await
        .unwrap();
    let toml = online_toml(&sim, APPLICATION_KEY_PEM, "").replace(
        &format!("system_user_token = \"{}\"", sim.creds.system_user_token),
        "system_user_token = \"SessionSync Sim-revoked\"",
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("online1") && e.contains("Unknown system user token"),
        "{e}"
    );
    assert!(
        !e.contains("SessionSync Sim-revoked") && !e.contains("BEGIN"),
        "{e}"
    );
    assert!(sim.tenant_requests().is_empty());
}

/// `check`, `sync` and `status` as a user runs them, debug logs on: each step of the flow on its
/// own line, and nothing secret anywhere (the key's text, the tokens, the tickets).
#[tokio::test]
async fn check_shows_each_step_and_no_output_carries_a_secret() {
    let db = TestDb::new().await;
    let sim = OnlineSim::start(OnlineCredentials::default(), data(5))
        .await
        .unwrap();
    let cfg = TempConfig::new(&format!(
        "[warehouse]\nurl = \"{}\"\n{}",
        db.url,
        online_toml(&sim, APPLICATION_KEY_PEM, "mode = \"for_user\"\n")
    ));
    let mut out = String::new();
    for args in [
        &["check"][..],
        &["sync"],
        &["status"],
        &["status", "--json"],
    ] {
        let o = sessionsync_command(args, &cfg.path(), &[("RUST_LOG", Some("debug"))])
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if args == ["check"] {
            assert_eq!(o.status.code(), Some(0), "{text}");
            for words in [
                "signed system user token accepted",
                "JWT verified: signed (RS256) with SuperOffice's JWKS key `so-2026-1`",
                "issued for tenant Cust12345 (its ctx claim)",
                "tenant state Running at http://127.0.0.1:",
                "one authenticated call answered",
                "WARN  superoffice/online1",
                "set mode = \"archive\"",
            ] {
                assert!(text.contains(words), "{words}: {text}");
            }
        }
        out.push_str(&text);
    }
    let key_lines: Vec<&str> = APPLICATION_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut secrets: Vec<String> = vec![
        sim.creds.app_token.clone(),
        sim.creds.system_user_token.clone(),
    ];
    secrets.extend(key_lines.iter().map(|l| l.to_string()));
    secrets.extend(sim.issued_tickets());
    assert!(
        sim.issued_tickets().len() >= 2,
        "check and sync each got one"
    );
    for s in &secrets {
        assert!(!out.contains(s.as_str()), "a secret in the output: {out}");
    }
    let c = db.client().await;
    for s in sim
        .issued_tickets()
        .iter()
        .chain([&sim.creds.system_user_token])
    {
        let hits: i64 = c
            .query_one(
                "SELECT count(*) FROM sync_runs WHERE strpos(coalesce(error, ''), $1) > 0",
                &[s],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(hits, 0);
    }
}

/// Silence is visible: the newest session time stored is kept with the watermark and exported,
/// with the account's expect_data_within for the alert, and the second run (nothing new) keeps
/// it.
#[tokio::test]
async fn the_newest_record_is_kept_and_exported_with_the_expectation() {
    let (db, _sim, h) = setup(10, APPLICATION_KEY_PEM, "expect_data_within = \"24h\"\n").await;
    for _ in 0..2 {
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    }
    let c = db.client().await;
    let (stored, newest): (f64, f64) = {
        let row = c
            .query_one(
                "SELECT extract(epoch FROM st.newest_record_at)::float8,
                        (SELECT extract(epoch FROM max(requested_at))::float8 FROM superoffice_chat_sessions)
                   FROM sync_state st WHERE source = 'superoffice'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(stored, newest);
    let text = h.metrics.encode();
    let labels = "{source=\"superoffice\",account=\"online1\",stream=\"chat_sessions\"}";
    assert!(
        text.contains(&format!(
            "sessionsync_newest_record_timestamp_seconds{labels} {}",
            newest as i64
        )) || text.contains(&format!(
            "sessionsync_newest_record_timestamp_seconds{labels} {}.0",
            newest as i64
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "sessionsync_expect_data_within_seconds{labels} 86400"
        )),
        "{text}"
    );
}

/// A redirect (to a login page) or an HTML page instead of JSON is a refused credential: the
/// ticket is renewed once and the request repeated; never followed, and on-site (no flow to
/// renew with) a clear error.
#[tokio::test]
async fn a_login_page_or_redirect_renews_the_ticket_once_and_is_never_followed() {
    let (_db, sim, h) = setup(5, APPLICATION_KEY_PEM, "concurrency = 1\n").await;
    sim.tenant.faults().push(sessionsync_sim::Fault::Html, 1);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(sim.authentications(), 2, "one renewal for the login page");
    sim.tenant
        .faults()
        .push(sessionsync_sim::Fault::Status(302), 1);
    sim.tenant.update(8, |e| {
        e["LastMessage"] = serde_json::json!("after a redirect")
    });
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(sim.authentications(), 3, "one renewal for the redirect");
    // A login page again right after the renewal: a clear error, no loop.
    sim.tenant.faults().push(sessionsync_sim::Fault::Html, 2);
    sim.tenant
        .update(8, |e| e["LastMessage"] = serde_json::json!("twice"));
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(e.contains("HTML page") && e.contains("fresh ticket"), "{e}");
    assert_eq!(sim.authentications(), 4);
}

/// A listener that counts the requests it receives and answers 200 `{}`: where a hostile answer
/// would send the ticket.
async fn recorder(bind: &str) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            use tokio::io::AsyncWriteExt;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
        }
    });
    (format!("http://{addr}"), hits)
}

/// What the issue asks of a hostile state API, token or network: no ticket, no client secret
/// reaches a host the operator did not choose; a token of another tenant is refused before any
/// tenant request; states other than a passing maintenance fail, naming the state.
#[tokio::test]
async fn a_hostile_state_api_or_token_gets_no_ticket_and_dead_tenants_fail_loudly() {
    let (_db, sim, h) = setup(5, APPLICATION_KEY_PEM, "").await;
    // The state API names a host outside the environment's domain (another address).
    let (elsewhere, hits) = recorder("127.0.0.2:0").await;
    sim.name_endpoint(Some(&format!("{elsewhere}/Cust12345")));
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("state API's `Endpoint`")
            && e.contains("not under 127.0.0.1")
            && e.contains("Nothing was sent there"),
        "{e}"
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request reached it"
    );
    // https to a host of another domain: the same.
    sim.name_endpoint(Some("https://sod2.superoffice.com.evil.example/Cust12345"));
    let r = h.sync().await;
    assert!(r.error.unwrap().contains("not under"), "refused");
    sim.name_endpoint(None);

    // A token for another tenant of the same application: refused before any tenant request.
    let (_db2, sim2, h2) = setup(5, APPLICATION_KEY_PEM, "").await;
    sim2.token_for_context(Some("Cust99999"));
    let r = h2.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("ctx") && e.contains("Cust99999") && e.contains("Cust12345"),
        "{e}"
    );
    assert!(sim2.tenant_requests().is_empty(), "no tenant request");

    // States: only maintenance, provisioning and a pending migration wait.
    let (_db3, sim3, h3) = setup(5, APPLICATION_KEY_PEM, "").await;
    for (state, outcome, words) in [
        ("Deleted", Outcome::Failed, "disable or remove this account"),
        ("Suspended", Outcome::Failed, "its owner must reactivate it"),
        ("Unknown", Outcome::Failed, "check `context_identifier`"),
        ("ProvisioningFailed", Outcome::Failed, "provisioning failed"),
        ("MigrationPending", Outcome::Unavailable, ""),
        ("Provisioning", Outcome::Unavailable, ""),
    ] {
        sim3.set_maintenance(Some(state));
        let r = h3.sync().await;
        assert_eq!(r.outcome, outcome, "{state}: {:?}", r.error);
        if outcome == Outcome::Failed {
            let e = r.error.unwrap();
            assert!(e.contains(state) && e.contains(words), "{state}: {e}");
        }
    }
    sim3.set_maintenance(None);
    assert_eq!(h3.sync().await.outcome, Outcome::Succeeded);
}

#[tokio::test]
async fn an_unknown_context_identifier_is_a_failure_that_says_so() {
    let db = TestDb::new().await;
    let sim = OnlineSim::start(OnlineCredentials::default(), data(2))
        .await
        .unwrap();
    let toml = online_toml(&sim, APPLICATION_KEY_PEM, "").replace(
        "context_identifier = \"Cust12345\"",
        "context_identifier = \"Cust00000\"",
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(e.contains("does not know tenant `Cust00000`"), "{e}");
}

/// The JWKS is cached; a key id it lacks reads it again at most once per 5 minutes; a refusal of
/// Authenticate is remembered for a minute; a redirect quoting the secrets is scrubbed.
#[tokio::test]
async fn the_jwks_and_refusals_are_remembered_and_nothing_quoted_back_leaks() {
    let (_db, sim, h) = setup(5, APPLICATION_KEY_PEM, "").await;
    assert_eq!(h.sync().await.outcome, Outcome::Succeeded);
    assert_eq!(sim.jwks_reads(), 1);
    // Tokens under a key id the JWKS does not list: read again once, then not for 5 minutes.
    sim.sign_with_unknown_kid(true);
    sim.expire_tickets();
    for _ in 0..3 {
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Failed);
        assert!(r.error.unwrap().contains("so-unknown-kid"));
    }
    assert_eq!(sim.jwks_reads(), 2, "one read for the unknown key id");
    sim.sign_with_unknown_kid(false);

    // A refusal answered from memory for a minute: not asked again.
    let (_db2, sim2, h2) = setup(5, APPLICATION_KEY_PEM, "").await;
    let c = &sim2.creds;
    let quoted = format!(
        "Redirecting: token={} secret={} json=\"{}\"",
        c.system_user_token,
        percent(&c.app_token),
        c.app_token.replace('"', "\\\"")
    );
    sim2.answer_authenticate(Some((302, &quoted)));
    let r = h2.sync().await;
    let e = r.error.unwrap();
    assert!(
        !e.contains(&c.system_user_token) && !e.contains(&c.app_token),
        "{e}"
    );
    assert!(!e.contains(&percent(&c.app_token)), "{e}");
    sim2.answer_authenticate(Some((
        400,
        "{\"IsSuccessful\":false,\"ErrorMessage\":\"consent withdrawn\"}",
    )));
    let calls = || {
        sim2.online
            .authenticate_calls
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = calls();
    for _ in 0..3 {
        let r = h2.sync().await;
        assert!(r.error.unwrap().contains("consent withdrawn"));
    }
    assert_eq!(calls() - before, 1, "asked once, then answered from memory");
}

/// `s` URL-encoded as a service would quote it.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
