//! mluvii end to end: real PostgreSQL, real HTTP to the simulator. Expected durations are
//! computed here from the simulator's raw timestamps, independently of the connector's code.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use sessionsync::engine::Outcome;
use sessionsync_sim::mluvii::{MluviiSim, PATHS, SimOperator, SimSession, generate};
use sessionsync_sim::{Fault, RetryAfter};

const CLIENT_ID: &str = "api-user-7";
const SECRET: &str = "ml-secret-Zq81";

fn ml_toml(base: &str, start: DateTime<Utc>, extra: &str) -> String {
    ml_account_toml(
        base,
        "main",
        (CLIENT_ID, SECRET),
        start,
        &format!(
            "requests_per_second = 500\nconcurrency = 4\npage_size = 7\nmax_retries = 6\nmax_retry_wait = \"3s\"\ntimeout = \"5s\"\n{extra}"
        ),
    )
}

async fn setup(sessions: Vec<SimSession>, extra: &str) -> (TestDb, MluviiSim, Harness) {
    let db = TestDb::new().await;
    let sim = MluviiSim::start(CLIENT_ID, SECRET, sessions).await.unwrap();
    let s = settings(
        &db,
        &ml_toml(&sim.base_url(), t("2024-03-01T00:00:00Z"), extra),
    );
    let h = Harness::new(&s).await;
    (db, sim, h)
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

/// Seed 002's formulas, written again from the contract's table.
#[derive(Debug, PartialEq)]
struct Expected {
    created: Option<f64>,
    in_queue: Option<f64>,
    waiting: Option<f64>,
    bcw: Option<f64>,
    active: Option<f64>,
    acw: Option<f64>,
    ring: Option<f64>,
    pbx_wait: Option<f64>,
    /// user → (queue, acw)
    operators: BTreeMap<i64, (Option<f64>, Option<f64>)>,
}

fn nonneg(v: Option<f64>) -> Option<f64> {
    v.filter(|x| *x >= 0.0)
}

fn iso_secs(s: &Option<String>) -> Option<f64> {
    // The simulator writes PT[nH][nM][n[.fff]S]; summed in whole milliseconds.
    let s = s.as_deref()?;
    let mut rest = s.strip_prefix("PT").unwrap();
    let mut ms: i64 = 0;
    for (unit, mult) in [('H', 3_600_000), ('M', 60_000), ('S', 1_000)] {
        if let Some(i) = rest.find(unit) {
            ms += (rest[..i].parse::<f64>().unwrap() * 1000.0).round() as i64 * mult / 1000;
            rest = &rest[i + 1..];
        }
    }
    Some(ms as f64 / 1000.0)
}

fn expected(s: &SimSession) -> Expected {
    let first = |kind: &str| {
        s.routing
            .iter()
            .find(|r| r.activity_type == kind)
            .map(|r| r.at)
    };
    let rrc = first("RoutingRequestCreated");
    let assigned = first("AssignedToOperator");
    let accepted = first("AcceptedByOperator");
    let d = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => nonneg(Some(secs(a, b))),
        _ => None,
    };
    let max_concluded = s.operators.iter().filter_map(|o| o.concluded).max();
    let max_left = s.operators.iter().filter_map(|o| o.left).max();
    Expected {
        created: d(Some(s.created), rrc),
        in_queue: d(rrc, assigned),
        waiting: d(assigned, accepted),
        bcw: match (s.started, s.guest_joined) {
            (Some(a), Some(b)) if secs(a, b) > 0.0 => Some(secs(a, b)),
            _ => None,
        },
        active: nonneg(iso_secs(&s.length)),
        acw: d(max_left, max_concluded),
        ring: if s.source == "Campaign" {
            None
        } else {
            d(Some(s.created), s.guest_joined)
        },
        pbx_wait: nonneg(iso_secs(&s.waited)),
        operators: s
            .operators
            .iter()
            .map(|o| {
                let assigned_x = s
                    .routing
                    .iter()
                    .find(|r| {
                        r.activity_type == "AssignedToOperator" && r.operator == Some(o.user_id)
                    })
                    .map(|r| r.at);
                (o.user_id, (d(assigned_x, accepted), d(o.left, o.concluded)))
            })
            .collect(),
    }
}

async fn stored(c: &tokio_postgres::Client, id: i64) -> Expected {
    let r = c
        .query_one(
            "SELECT created_seconds, in_queue_seconds, waiting_seconds, bcw_seconds, active_seconds,
                    acw_seconds, ring_seconds, pbx_wait_seconds
             FROM mluvii_session_durations WHERE account = 'main' AND session_id = $1",
            &[&id],
        )
        .await
        .unwrap_or_else(|e| panic!("durations of {id}: {e}"));
    let ops = c
        .query(
            "SELECT user_id, queue_seconds, acw_seconds FROM mluvii_session_operators
             WHERE account = 'main' AND session_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    Expected {
        created: r.get(0),
        in_queue: r.get(1),
        waiting: r.get(2),
        bcw: r.get(3),
        active: r.get(4),
        acw: r.get(5),
        ring: r.get(6),
        pbx_wait: r.get(7),
        operators: ops
            .iter()
            .map(|o| (o.get::<_, i64>(0), (o.get(1), o.get(2))))
            .collect(),
    }
}

fn dataset() -> Vec<SimSession> {
    generate(3, 48, t("2024-03-01T08:00:00Z"), t("2024-03-01T18:00:00Z"))
}

#[tokio::test]
async fn every_state_path_lands_with_the_seed_formulas() {
    let sessions = dataset();
    let (db, sim, h) = setup(sessions.clone(), "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 48);
    let c = db.client().await;
    assert_eq!(count(&c, "mluvii_sessions").await, 48);
    assert_eq!(count(&c, "mluvii_session_durations").await, 48);
    let routing: usize = sessions.iter().map(|s| s.routing.len()).sum();
    assert_eq!(count(&c, "mluvii_routing_events").await as usize, routing);
    let mut negatives = 0;
    for s in &sessions {
        let want = expected(s);
        let got = stored(&c, s.id).await;
        assert_eq!(
            got,
            want,
            "session {} ({})",
            s.id,
            PATHS[(s.id as usize - 500_000) % PATHS.len()]
        );
        // What the formulas nulled for being negative.
        if s.guest_joined.is_some_and(|g| g < s.created) && s.source != "Campaign" {
            negatives += 1;
        }
        negatives += s
            .operators
            .iter()
            .filter(|o| {
                let a = s.routing.iter().find(|r| {
                    r.activity_type == "AssignedToOperator" && r.operator == Some(o.user_id)
                });
                let acc = s
                    .routing
                    .iter()
                    .find(|r| r.activity_type == "AcceptedByOperator");
                matches!((a, acc), (Some(a), Some(acc)) if acc.at < a.at)
            })
            .count();
    }
    assert!(negatives > 0, "the dataset must exercise negative results");
    let text = h.metrics.encode();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("sessionsync_values_nulled_total") && l.contains("negative_duration")
        })
        .unwrap_or_else(|| panic!("no negative_duration count in\n{text}"));
    assert!(
        line.ends_with(&format!(" {negatives}")),
        "{line} vs {negatives}"
    );
    // Every path is there, and a campaign has no ring time.
    let campaign_ring: Option<f64> = c
        .query_one(
            "SELECT max(d.ring_seconds) FROM mluvii_session_durations d JOIN mluvii_sessions s USING (account, session_id) WHERE s.source = 'Campaign'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(campaign_ring, None);
    // Unknown activity types land as text.
    let unknown = strings(&c, "SELECT DISTINCT activity_type FROM mluvii_routing_events WHERE activity_type = 'BrandNewActivity'").await;
    assert_eq!(unknown, vec!["BrandNewActivity".to_string()]);
    // A second sync re-lists the lookback but reads and writes nothing again.
    sim.log().clear();
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.totals.written, 0);
    assert!(
        sim.log()
            .entries()
            .iter()
            .all(|e| e.path == "/api/v1/Sessions"),
        "only list requests"
    );
}

#[tokio::test]
async fn a_session_in_acw_gets_its_final_values_at_a_later_sync() {
    let created = t("2024-05-02T10:00:00Z");
    let mut s = ml_session_in_acw(77, created, TimeDelta::milliseconds(12_250), "PT4M47.75S");
    let mut a = s.operators.remove(0);
    a.concluded = Some(created + TimeDelta::seconds(420));
    let mut b = SimOperator::new(6);
    b.joined = Some(created + TimeDelta::seconds(60));
    b.left = Some(created + TimeDelta::seconds(250));
    b.concluded = Some(created + TimeDelta::seconds(280));
    s.operators = vec![a, b];
    let (db, sim, h) = setup(vec![s.clone()], "").await;
    sim.set_clock(Some(created + TimeDelta::seconds(360)));
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    let row = c
        .query_one("SELECT s.status, d.acw_seconds, s.last_synced_at FROM mluvii_sessions s JOIN mluvii_session_durations d USING (account, session_id)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "ACW");
    assert_eq!(row.get::<_, Option<f64>>(1), None);
    let ops = strings(&c, "SELECT user_id || ':' || coalesce(acw_seconds::text, 'null') FROM mluvii_session_operators ORDER BY user_id").await;
    assert_eq!(ops, vec!["5:null", "6:30"]);

    sim.set_clock(Some(created + TimeDelta::seconds(3600)));
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 1);
    let row = c
        .query_one("SELECT s.status, d.acw_seconds, d.waiting_seconds FROM mluvii_sessions s JOIN mluvii_session_durations d USING (account, session_id)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "CLOSED");
    assert_eq!(row.get::<_, Option<f64>>(1), Some(120.0));
    assert_eq!(row.get::<_, Option<f64>>(2), Some(3.25));
    assert_eq!(stored(&c, 77).await, expected(&s));

    // Final: the next syncs neither read nor write it.
    sim.log().clear();
    let r = h.sync().await;
    assert_eq!(r.totals.written, 0);
    assert!(
        sim.log()
            .entries()
            .iter()
            .all(|e| e.path == "/api/v1/Sessions")
    );
}

#[tokio::test]
async fn token_expiry_mid_run_costs_one_renewal_and_no_failure() {
    let (db, sim, h) = setup(dataset(), "").await;
    sim.expire_tokens_after(9);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        sim.tokens_issued(),
        2,
        "one token, then exactly one renewal"
    );
    assert!(sim.log().entries().iter().any(|e| e.status == 401));
    let c = db.client().await;
    assert_eq!(count(&c, "mluvii_sessions").await, 48);
    for table in [
        "mluvii_sessions",
        "sync_runs",
        "sync_state",
        "rejected_records",
    ] {
        let leaked = c
            .query_one(
                &format!("SELECT count(*) FROM {table} t WHERE row_to_json(t)::text LIKE '%sim-token-%' OR row_to_json(t)::text LIKE '%{SECRET}%'"),
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(leaked, 0, "{table} holds a token or the secret");
    }
}

#[tokio::test]
async fn wrong_credentials_fail_clearly_without_the_secret() {
    let db = TestDb::new().await;
    let sim = MluviiSim::start(CLIENT_ID, "another-secret", dataset())
        .await
        .unwrap();
    let s = settings(
        &db,
        &ml_toml(&sim.base_url(), t("2024-03-01T00:00:00Z"), ""),
    );
    let h = Harness::new(&s).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("client_id `api-user-7`") && e.contains("invalid_client"),
        "{e}"
    );
    assert_eq!(e.matches("mluvii account").count(), 1, "said once: {e}");
    assert!(!e.contains(SECRET), "{e}");
    assert_eq!(
        sim.log().len(),
        1,
        "a refused credential is not retried: {:?}",
        sim.log().entries()
    );
}

#[tokio::test]
async fn rate_limit_storm_during_fan_out_loses_nothing_and_slows_the_account() {
    let sessions = dataset();
    let (db, sim, h) = setup(sessions.clone(), "").await;
    // The list answers; then the fan-out meets a storm.
    // (seven pages of seven)
    sim.faults().push(Fault::Delay(Duration::ZERO), 7);
    sim.faults()
        .push(Fault::RateLimited(Some(RetryAfter::Seconds(1))), 3);
    sim.faults().push(Fault::RateLimited(None), 3);
    sim.faults().push(Fault::Status(503), 2);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert!(r.totals.retries >= 8, "{:?}", r.totals);
    let c = db.client().await;
    assert_eq!(count(&c, "mluvii_sessions").await, 48);
    let ops: usize = sessions.iter().map(|s| s.operators.len()).sum();
    assert_eq!(count(&c, "mluvii_session_operators").await as usize, ops);
    // After the first 429 with Retry-After: 1, the whole account pauses: apart from requests
    // already in flight, nothing reaches the server for most of that second.
    let log = sim.log().entries();
    let first = log.iter().find(|e| e.status == 429).unwrap().at;
    let during = log
        .iter()
        .filter(|e| {
            e.at > first + Duration::from_millis(100) && e.at < first + Duration::from_millis(900)
        })
        .count();
    assert_eq!(during, 0, "requests during the pause: {log:?}");
    // Re-running changes nothing.
    let r = h.sync().await;
    assert_eq!(r.totals.written, 0);
}

#[tokio::test]
async fn paging_window_edges_and_odd_values() {
    // Sessions exactly on window edges, an unknown status and channel, a negative length.
    let edge = t("2024-03-02T00:00:00Z");
    let mut list = Vec::new();
    for (i, at) in [
        edge - TimeDelta::milliseconds(1),
        edge,
        edge + TimeDelta::milliseconds(1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = SimSession::new(900 + i as i64, at);
        s.status = Some("ESCALATED_TO_MARS".into());
        s.channel = "Hologram".into();
        s.length = Some("-PT3S".into());
        list.push(s);
    }
    list.extend(generate(9, 20, t("2024-03-01T00:00:00Z"), edge));
    let db = TestDb::new().await;
    let sim = MluviiSim::start(CLIENT_ID, SECRET, list).await.unwrap();
    let toml = ml_toml(&sim.base_url(), t("2024-03-01T00:00:00Z"), "")
        .replace("window = \"2000d\"", "window = \"1d\"");
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    assert_eq!(count(&c, "mluvii_sessions").await, 23);
    let odd = strings(&c, "SELECT status || '/' || channel || '/' || coalesce(length_seconds::text, 'null') FROM mluvii_sessions WHERE session_id >= 900 AND session_id < 1000 ORDER BY session_id").await;
    assert_eq!(odd, vec!["ESCALATED_TO_MARS/Hologram/null"; 3]);
    // Unknown statuses are not final: they are re-polled, not lost.
    let state: serde_json::Value = c
        .query_one("SELECT state FROM sync_state", &[])
        .await
        .unwrap()
        .get(0);
    assert!(state["open"].get("901").is_some(), "{state}");
    let _ = Instant::now();
}

#[tokio::test]
async fn a_saved_state_that_cannot_be_read_stops_the_stream_instead_of_forgetting_open_sessions() {
    let (db, sim, h) = setup(dataset(), "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    let state: serde_json::Value = c
        .query_one("SELECT state FROM sync_state", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state["v"], 1, "{state}");
    let requests = sim.log().len();
    for bad in [r#"{"open": "garbled"}"#, r#"{"v": 99, "open": {}}"#] {
        c.execute("UPDATE sync_state SET state = $1::text::jsonb", &[&bad])
            .await
            .unwrap();
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Failed, "{bad}");
        let e = r.error.unwrap();
        assert!(e.contains("mluvii/") && e.contains("sync_state"), "{e}");
        let kept: String = c
            .query_one("SELECT state::text FROM sync_state", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            kept.contains(if bad.contains("99") { "99" } else { "garbled" }),
            "the state was overwritten: {kept}"
        );
    }
    assert_eq!(
        sim.log().len(),
        requests,
        "a refused run asks the API nothing"
    );
}

#[test]
fn the_simulator_writes_durations_the_way_the_parser_reads_them() {
    use sessionsync::sources::mluvii::durations::parse_iso_duration;
    use sessionsync_sim::mluvii::iso;
    for ms in [0, 1, 500, 83_500, 3_600_000, 93_784_123, -5_000] {
        assert_eq!(
            parse_iso_duration(&iso(ms)).unwrap(),
            ms as f64 / 1000.0,
            "{}",
            iso(ms)
        );
    }
    assert_eq!(iso(83_500), "PT1M23.5S");
    assert_eq!(iso(0), "PT0S");
}

/// Requests by path in the simulator's log.
fn requests_by_path(sim: &MluviiSim) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for e in sim.log().entries() {
        *by.entry(e.path).or_default() += 1;
    }
    by
}

/// An account synced from `start` with the default page size (the setting users run with).
async fn setup_from(
    sessions: Vec<SimSession>,
    start: DateTime<Utc>,
) -> (TestDb, MluviiSim, Harness) {
    let db = TestDb::new().await;
    let sim = MluviiSim::start(CLIENT_ID, SECRET, sessions).await.unwrap();
    let toml = format!(
        r#"
[[mluvii]]
account = "main"
base_url = "{}"
client_id = "{CLIENT_ID}"
client_secret = "{SECRET}"
start = "{}"
requests_per_second = 500
"#,
        sim.base_url(),
        start.to_rfc3339()
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    (db, sim, h)
}

#[tokio::test]
async fn a_first_sync_uses_the_list_rows_and_costs_at_most_1_15_requests_per_session() {
    let now = Utc::now();
    // Sparse: 81 sessions in the last few days of a three-month range. Dense: 300 in a day.
    let cases = [
        (
            "sparse",
            generate(9, 81, now - TimeDelta::days(4), now - TimeDelta::hours(3)),
            now - TimeDelta::days(92),
        ),
        (
            "dense",
            generate(
                10,
                300,
                now - TimeDelta::hours(26),
                now - TimeDelta::hours(3),
            ),
            now - TimeDelta::days(2),
        ),
    ];
    for (name, sessions, start) in cases {
        let n = sessions.len();
        let (db, sim, h) = setup_from(sessions.clone(), start).await;
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{name}: {:?}", r.error);
        assert_eq!(r.totals.written as usize, n);
        let by = requests_by_path(&sim);
        let total: usize = by.values().sum();
        let per_session = total as f64 / n as f64;
        println!("{name}: {total} requests for {n} sessions ({per_session:.3} a session): {by:?}");
        assert!(
            per_session <= 1.15,
            "{name}: {per_session:.2} requests per session: {by:?}"
        );
        assert_eq!(
            by.get("/api/v1/Sessions/{id}"),
            None,
            "{name}: no detail read: {by:?}"
        );
        assert_eq!(
            r.totals.requests as usize, total,
            "{name}: the run counts them all"
        );
        assert_eq!(r.totals.fallbacks, 0);
        // Every duration as the seed's formulas give it, from the list rows.
        let c = db.client().await;
        for s in &sessions {
            assert_eq!(
                stored(&c, s.id).await,
                expected(s),
                "{name}: session {}",
                s.id
            );
        }
        // The next run: the final sessions it holds cost nothing; open ones their re-read.
        sim.log().clear();
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        let open = sessions
            .iter()
            .filter(|s| !["CLOSED", "BLACKLISTED"].contains(&s.status_at(Utc::now()).as_str()))
            .count();
        let by = requests_by_path(&sim);
        assert_eq!(
            by.get("/api/v1/Sessions/{id}/routingHistory")
                .copied()
                .unwrap_or(0),
            open,
            "{name}: {by:?}"
        );
    }
}

#[tokio::test]
async fn abridged_list_rows_fall_back_to_the_detail_and_every_duration_is_still_right() {
    let sessions = dataset();
    let (db, sim, h) = setup(sessions.clone(), "").await;
    sim.set_abridged_list(true);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.fallbacks, 48);
    assert!(
        sessionsync::report::describe(&r).contains("; 48 read by id (listed rows incomplete)"),
        "{}",
        sessionsync::report::describe(&r)
    );
    let by = requests_by_path(&sim);
    assert_eq!(by.get("/api/v1/Sessions/{id}"), Some(&48), "{by:?}");
    let c = db.client().await;
    for s in &sessions {
        assert_eq!(stored(&c, s.id).await, expected(s), "session {}", s.id);
    }
    let text = h.metrics.encode();
    assert!(
        text.lines()
            .any(|l| l.starts_with("sessionsync_fallback_reads_total")
                && l.contains("account=\"main\"")
                && l.ends_with(" 48")),
        "{text}"
    );
}

#[tokio::test]
async fn a_window_that_holds_too_many_sessions_is_split_and_nothing_is_lost() {
    let now = Utc::now();
    let n = sessionsync::engine::TARGET_RECORDS + 300;
    let sessions = generate(12, n, now - TimeDelta::days(3), now - TimeDelta::hours(2));
    let (db, sim, h) = setup_from(sessions, now - TimeDelta::days(5)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written as usize, n);
    let c = db.client().await;
    assert_eq!(count(&c, "mluvii_sessions").await as usize, n);
    // One list of the whole range (stopped past the target), then smaller windows.
    let lists = requests_by_path(&sim)["/api/v1/Sessions"];
    println!("{n} sessions: {:?}", requests_by_path(&sim));
    assert!((3..=12).contains(&lists), "{lists}");
}

#[tokio::test]
async fn a_blacklisted_session_is_final_and_not_polled_again() {
    let mut s = SimSession::new(777, t("2024-03-01T09:00:00Z"));
    s.status = Some("BLACKLISTED".into());
    let (_db, sim, h) = setup(vec![s], "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 1);
    sim.log().clear();
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let by = requests_by_path(&sim);
    assert_eq!(
        by.keys().collect::<Vec<_>>(),
        vec!["/api/v1/Sessions"],
        "{by:?}"
    );
}
