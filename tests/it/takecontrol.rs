//! Take Control end to end: real PostgreSQL, real HTTP to the simulator.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::*;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use sessionsync::engine::Outcome;
use sessionsync_sim::takecontrol::{SimMessage, SimSession, TakeControlSim, generate};
use sessionsync_sim::{Fault, RetryAfter};

const KEY: &str = "k-test-INTEGRATION-3f9a";

fn ago(minutes: i64) -> NaiveDateTime {
    sessionsync_sim::takecontrol::whole_second(
        (Utc::now() - TimeDelta::minutes(minutes)).naive_utc(),
    )
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

async fn setup(
    sessions: Vec<SimSession>,
    start: DateTime<Utc>,
    extra: &str,
) -> (TestDb, TakeControlSim, Harness) {
    let db = TestDb::new().await;
    let sim = TakeControlSim::start(KEY, sessions).await.unwrap();
    let s = settings(&db, &tc_toml(&sim.base_url(), KEY, start, extra));
    let h = Harness::new(&s).await;
    (db, sim, h)
}

/// Inserts + updates the server has counted on a table, once the numbers stop moving.
async fn tuple_stats(db: &TestDb, table: &str) -> (i64, i64) {
    settled_counters(
        db,
        "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = $1",
        &[&table],
    )
    .await
}

/// Checks every visible simulator session against its row, messages and links.
async fn assert_warehouse_matches(db: &TestDb, sim: &TakeControlSim) {
    let c = db.client().await;
    let expected = sim.visible_sessions();
    assert_eq!(
        count(&c, "takecontrol_sessions").await,
        expected.len() as i64,
        "session count"
    );
    let rows = c
        .query("SELECT session_id, customer_name, started_at, ended_at, duration_seconds, has_videos, notes, custom_fields FROM takecontrol_sessions", &[])
        .await
        .unwrap();
    let by_id: HashMap<i64, &tokio_postgres::Row> = rows.iter().map(|r| (r.get(0), r)).collect();
    let msgs = c
        .query("SELECT session_id, seq, message, author, author_type, sent_at FROM takecontrol_chat_messages ORDER BY session_id, seq", &[])
        .await
        .unwrap();
    let mut msgs_by: HashMap<i64, Vec<&tokio_postgres::Row>> = HashMap::new();
    for m in &msgs {
        msgs_by.entry(m.get(0)).or_default().push(m);
    }
    let links = c
        .query(
            "SELECT session_id, url FROM takecontrol_video_links ORDER BY session_id, seq",
            &[],
        )
        .await
        .unwrap();
    let mut links_by: HashMap<i64, Vec<String>> = HashMap::new();
    for l in &links {
        links_by.entry(l.get(0)).or_default().push(l.get(1));
    }
    let mut n_msgs = 0;
    for s in &expected {
        let r = by_id
            .get(&s.id)
            .unwrap_or_else(|| panic!("session {} missing", s.id));
        assert_eq!(
            r.get::<_, Option<String>>(1).as_deref(),
            Some(s.customer_name.as_str())
        );
        assert_eq!(r.get::<_, Option<DateTime<Utc>>>(2), Some(utc(s.start)));
        assert_eq!(r.get::<_, Option<DateTime<Utc>>>(3), s.end.map(utc));
        let dur = s.end.map(|e| (e - s.start).num_seconds() as f64);
        assert_eq!(r.get::<_, Option<f64>>(4), dur);
        assert_eq!(r.get::<_, Option<bool>>(5), Some(!s.videos.is_empty()));
        assert_eq!(
            r.get::<_, Option<String>>(6),
            Some(s.notes.clone()).filter(|n| !n.is_empty())
        );
        let custom = s.custom.as_ref().map(|(k, v)| serde_json::json!({ k: v }));
        assert_eq!(r.get::<_, Option<serde_json::Value>>(7), custom);
        let got = msgs_by.get(&s.id).cloned().unwrap_or_default();
        assert_eq!(got.len(), s.chat.len(), "messages of {}", s.id);
        for (i, (g, e)) in got.iter().zip(&s.chat).enumerate() {
            assert_eq!(g.get::<_, i32>(1), i as i32);
            assert_eq!(
                g.get::<_, Option<String>>(2),
                Some(e.text.replace('\0', "")),
                "message {i} of {}",
                s.id
            );
            assert_eq!(
                g.get::<_, Option<String>>(3).as_deref(),
                Some(e.from.as_str())
            );
            assert_eq!(
                g.get::<_, Option<String>>(4).as_deref(),
                Some(e.kind.as_str())
            );
            assert_eq!(g.get::<_, Option<DateTime<Utc>>>(5), Some(utc(e.date)));
        }
        n_msgs += s.chat.len();
        assert_eq!(
            links_by.get(&s.id).cloned().unwrap_or_default(),
            s.videos,
            "links of {}",
            s.id
        );
    }
    assert_eq!(msgs.len(), n_msgs, "no stray messages");
}

#[tokio::test]
async fn first_sync_lands_everything_and_a_second_writes_nothing() {
    let start = Utc::now() - TimeDelta::days(10);
    let data = generate(1, 3000, start, Utc::now() - TimeDelta::hours(1));
    let (db, sim, h) = setup(data, start, "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 3000);
    assert_warehouse_matches(&db, &sim).await;
    drop(h);
    let before = tuple_stats(&db, "takecontrol_sessions").await;
    let c = db.client().await;
    let synced_before: Option<DateTime<Utc>> = c
        .query_one("SELECT max(last_synced_at) FROM takecontrol_sessions", &[])
        .await
        .unwrap()
        .get(0);

    let h = Harness::new(&settings(&db, &tc_toml(&sim.base_url(), KEY, start, ""))).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.totals.written, 0);
    assert!(
        r.totals.unchanged > 0,
        "the lookback re-read counts as unchanged"
    );
    drop(h);
    let after = tuple_stats(&db, "takecontrol_sessions").await;
    assert_eq!(
        before, after,
        "n_tup_ins / n_tup_upd moved on an unchanged re-sync"
    );
    let synced_after: Option<DateTime<Utc>> = c
        .query_one("SELECT max(last_synced_at) FROM takecontrol_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(synced_before, synced_after);
    let runs = strings(&c, "SELECT status FROM sync_runs ORDER BY run_id").await;
    assert_eq!(runs, ["succeeded", "succeeded"]);
}

#[tokio::test]
async fn tables_a_backfill_changed_are_analyzed_so_lookups_plan_on_the_key() {
    let start = Utc::now() - TimeDelta::days(10);
    let data = generate(1, 3000, start, Utc::now() - TimeDelta::hours(1));
    let (db, _sim, h) = setup(data, start, "").await;
    assert_eq!(h.sync().await.outcome, Outcome::Succeeded);
    drop(h);
    // Once the server has counted the changes (the engine may already have analyzed them at
    // the end of its run, if the counts were in by then), nothing is left stale.
    tuple_stats(&db, "takecontrol_chat_messages").await;
    let c = db.client().await;
    sessionsync::warehouse::analyze_stale(&c, "sessionsync")
        .await
        .unwrap();
    let never = strings(
        &c,
        "SELECT relname::text FROM pg_stat_user_tables
         WHERE relname LIKE 'takecontrol%' AND last_analyze IS NULL AND last_autoanalyze IS NULL",
    )
    .await;
    assert!(never.is_empty(), "never analyzed: {never:?}");
    assert!(
        sessionsync::warehouse::analyze_stale(&c, "sessionsync")
            .await
            .unwrap()
            .is_empty(),
        "a second pass finds nothing stale"
    );
    // With statistics, deleting one window's children probes the key, not the whole account.
    let plan = strings(
        &c,
        "EXPLAIN DELETE FROM takecontrol_chat_messages c
         USING unnest(ARRAY(SELECT session_id FROM takecontrol_sessions LIMIT 1500)) AS u(id)
         WHERE c.account = 'acme' AND c.session_id = u.id",
    )
    .await
    .join("\n");
    assert!(
        plan.contains("Index Cond: ((account = 'acme'::text) AND (session_id = u.id))"),
        "{plan}"
    );
}

#[tokio::test]
async fn legacy_xml_json_and_escaped_flavours_land_the_same_data() {
    let start = Utc::now() - TimeDelta::days(3);
    for (extra, escaped) in [
        ("api = \"legacy\"", false),
        ("api = \"legacy\"", true),
        ("api = \"legacy\"\noutput_format = \"json\"", false),
    ] {
        let data = generate(2, 400, start, Utc::now() - TimeDelta::hours(1));
        let (db, sim, h) = setup(data, start, extra).await;
        sim.set_escaped_nested_xml(escaped);
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{extra}: {:?}", r.error);
        assert_warehouse_matches(&db, &sim).await;
    }
}

#[tokio::test]
async fn a_session_that_started_before_the_watermark_and_ended_later_is_picked_up() {
    let start = Utc::now() - TimeDelta::days(1);
    let mut late = SimSession::new(1, ago(120), None);
    late.chat.push(SimMessage {
        date: ago(119),
        from: "t".into(),
        kind: "tech".into(),
        text: "hi".into(),
        cdata: false,
    });
    let done = SimSession::new(2, ago(100), Some(ago(90)));
    let (db, sim, h) = setup(vec![late, done], start, "").await;
    let r = h.sync().await;
    assert_eq!(r.totals.written, 1);
    let wm = r.watermark.unwrap();
    assert!(
        wm > utc(ago(120)),
        "the watermark passed the late session's start"
    );
    sim.update(1, |s| s.end = Some(ago(0)));
    let r = h.sync().await;
    assert_eq!((r.totals.written, r.outcome), (1, Outcome::Succeeded));
    assert_warehouse_matches(&db, &sim).await;
}

#[tokio::test]
async fn sessions_sharing_the_watermark_second_land_once_across_two_syncs() {
    let second = ago(30).and_utc().timestamp();
    let at = DateTime::from_timestamp(second, 0).unwrap().naive_utc();
    // The stream starts exactly at the burst's second: the strict `>` filter must not lose it.
    let start = utc(at);
    let mut sessions: Vec<SimSession> = (1..=3)
        .map(|i| SimSession::new(i, at, Some(ago(20))))
        .collect();
    sessions.push(SimSession::new(4, at, None)); // same second, still running
    let (db, sim, h) = setup(sessions, start, "").await;
    let r = h.sync().await;
    assert_eq!(r.totals.written, 3);
    let wm = r.watermark.unwrap();
    // More sessions in the watermark's own second, and the running one ends.
    let wm_second = wm.naive_utc();
    sim.upsert(SimSession::new(5, wm_second, Some(wm_second)));
    sim.upsert(SimSession::new(
        6,
        wm_second - TimeDelta::seconds(1),
        Some(wm_second),
    ));
    sim.update(4, |s| s.end = Some(ago(0)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_eq!(r.totals.written, 3, "4 ended, 5 and 6 are new");
    assert_warehouse_matches(&db, &sim).await;
    let c = db.client().await;
    assert_eq!(count(&c, "takecontrol_sessions").await, 6);
}

#[tokio::test]
async fn date_end_filled_later_updates_the_row_and_a_shrinking_transcript_loses_rows() {
    let start = Utc::now() - TimeDelta::days(1);
    let mut s = SimSession::new(7, ago(60), None);
    s.listed_open = true;
    for i in 0..3 {
        s.chat.push(SimMessage {
            date: ago(59),
            from: "x".into(),
            kind: "tech".into(),
            text: format!("m{i}"),
            cdata: false,
        });
    }
    s.videos = vec!["https://v/1".into(), "https://v/2".into()];
    let (db, sim, h) = setup(vec![s], start, "").await;
    h.sync().await;
    let c = db.client().await;
    let ended: Option<DateTime<Utc>> = c
        .query_one("SELECT ended_at FROM takecontrol_sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, None);
    assert_eq!(count(&c, "takecontrol_chat_messages").await, 3);
    sim.update(7, |s| {
        s.end = Some(ago(1));
        s.chat.truncate(1);
        s.videos.truncate(1);
    });
    let r = h.sync().await;
    assert_eq!(r.totals.written, 1);
    assert_warehouse_matches(&db, &sim).await;
    assert_eq!(count(&c, "takecontrol_chat_messages").await, 1);
    assert_eq!(count(&c, "takecontrol_video_links").await, 1);
}

#[tokio::test]
async fn entities_cdata_emoji_rtl_and_nul_survive_in_every_flavour() {
    let texts = [
        "Fish &amp; chips <b>",
        "עברית من اليمين",
        "🧯🔥 ok",
        "x\u{0}y",
        "]] > [[",
        "&#x263A; literal",
    ];
    let start = Utc::now() - TimeDelta::days(1);
    for extra in ["", "api = \"legacy\""] {
        let mut s = SimSession::new(9, ago(50), Some(ago(40)));
        s.customer_name = "Zoë \u{0}O'Brien & Søn".into();
        for (i, t) in texts.iter().enumerate() {
            s.chat.push(SimMessage {
                date: ago(49),
                from: "<tech>".into(),
                kind: "tech".into(),
                text: t.to_string(),
                cdata: i == 1,
            });
        }
        s.chat.push(SimMessage {
            date: ago(48),
            from: "c".into(),
            kind: "customer".into(),
            text: "My <drive> & stuff".into(),
            cdata: true,
        });
        let (db, _sim, h) = setup(vec![s], start, extra).await;
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        let c = db.client().await;
        let got = strings(
            &c,
            "SELECT message FROM takecontrol_chat_messages ORDER BY seq",
        )
        .await;
        let mut want: Vec<String> = texts.iter().map(|t| t.replace('\0', "")).collect();
        want.push("My <drive> & stuff".into());
        assert_eq!(got, want, "flavour {extra:?}");
        let name: String = c
            .query_one("SELECT customer_name FROM takecontrol_sessions", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(name, "Zoë O'Brien & Søn");
        let author: String = c
            .query_one(
                "SELECT author FROM takecontrol_chat_messages WHERE seq = 0",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(author, "<tech>");
    }
}

async fn watermark(db: &TestDb) -> Option<DateTime<Utc>> {
    db.client()
        .await
        .query_opt("SELECT watermark FROM sync_state", &[])
        .await
        .unwrap()
        .and_then(|r| r.get(0))
}

#[tokio::test]
async fn error_bodies_fail_the_run_without_moving_the_watermark_and_the_next_run_catches_up() {
    let start = Utc::now() - TimeDelta::days(3);
    let cases: Vec<(&str, Fault, &str)> = vec![
        (
            "api = \"legacy\"",
            Fault::VendorError("Invalid FILTER_DATE_START_INI value.".into()),
            "Invalid FILTER_DATE_START_INI value.",
        ),
        (
            "",
            Fault::VendorError("Internal failure 17".into()),
            "Internal failure 17",
        ),
        ("", Fault::Truncated, "could not be read"),
        ("api = \"legacy\"", Fault::Truncated, "could not be read"),
        ("", Fault::Html, "HTML page"),
        ("", Fault::Status(400), "HTTP 400"),
    ];
    for (extra, fault, words) in cases {
        let data = generate(3, 300, start, Utc::now() - TimeDelta::hours(1));
        let (db, sim, h) = setup(data, start, extra).await;
        sim.faults().push(fault.clone(), 1);
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Failed, "{fault:?}");
        let err = r.error.clone().unwrap();
        assert!(err.contains(words), "{fault:?}: {err}");
        assert!(err.contains("acme"), "the error names the account: {err}");
        assert_eq!(watermark(&db).await, None, "{fault:?} moved the watermark");
        assert_eq!(count(&db.client().await, "takecontrol_sessions").await, 0);
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{fault:?}: {:?}", r.error);
        assert_warehouse_matches(&db, &sim).await;
    }
}

#[tokio::test]
async fn a_wrong_key_fails_clearly_with_403_and_never_retries() {
    let start = Utc::now() - TimeDelta::days(1);
    let db = TestDb::new().await;
    let sim = TakeControlSim::start(
        KEY,
        generate(4, 50, start, Utc::now() - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let h = Harness::new(&settings(
        &db,
        &tc_toml(&sim.base_url(), "wrong-key-SECRET", start, ""),
    ))
    .await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let err = r.error.unwrap();
    assert!(err.contains("403") && err.contains("Invalid key"), "{err}");
    assert!(!err.contains("wrong-key-SECRET"), "{err}");
    assert_eq!(sim.log().len(), 1, "a 403 is not retried");
}

#[tokio::test]
async fn a_failing_later_window_leaves_a_partial_run_that_resumes() {
    let start = Utc::now() - TimeDelta::days(3);
    let data = generate(5, 600, start, Utc::now() - TimeDelta::hours(1));
    let (db, sim, h) = setup(data, start, "").await;
    // Window 1 answers; window 2 gets server errors past the retry budget (1 + 4 retries).
    sim.faults().push(Fault::Delay(Duration::ZERO), 1);
    sim.faults().push(Fault::Status(503), 5);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert_eq!(r.totals.retries, 4);
    assert!(r.error.unwrap().contains("5 attempts"));
    let wm = watermark(&db).await.unwrap();
    // The first window is five minutes (the engine sizes windows as it goes).
    assert_eq!(
        wm,
        start.with_nanosecond_trunc() + sessionsync::engine::FIRST_WINDOW,
        "watermark = end of the committed window"
    );
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded);
    assert_warehouse_matches(&db, &sim).await;
}

trait TruncNanos {
    fn with_nanosecond_trunc(self) -> Self;
}
impl TruncNanos for DateTime<Utc> {
    fn with_nanosecond_trunc(self) -> Self {
        DateTime::from_timestamp(self.timestamp(), 0).unwrap()
    }
}

#[tokio::test]
async fn retry_after_is_honoured_and_data_is_complete() {
    let start = Utc::now() - TimeDelta::hours(20);
    for ra in [
        Some(RetryAfter::Seconds(2)),
        Some(RetryAfter::HttpDate(Duration::from_secs(3))),
        None,
    ] {
        let data = generate(6, 200, start, Utc::now() - TimeDelta::hours(1));
        let (db, sim, h) = setup(data, start, "").await;
        sim.faults().push(Fault::RateLimited(ra), 1);
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        assert_eq!(r.totals.retries, 1);
        let log = sim.log().entries();
        assert_eq!(log[0].status, 429);
        let gap = log[1].at - log[0].at;
        match ra {
            // HTTP-dates have whole-second precision: allow for the truncation.
            Some(RetryAfter::Seconds(s)) => {
                assert!(gap >= Duration::from_secs(s), "waited {gap:?}")
            }
            Some(RetryAfter::HttpDate(d)) => {
                assert!(gap >= d - Duration::from_secs(1), "waited {gap:?}")
            }
            None => assert!(
                gap < Duration::from_secs(2),
                "backoff without Retry-After is short: {gap:?}"
            ),
        }
        assert_warehouse_matches(&db, &sim).await;
        let metrics = h.metrics.encode();
        assert!(metrics.contains("sessionsync_http_retries_total{source=\"takecontrol\",account=\"acme\",reason=\"rate_limited\"} 1"), "{metrics}");
    }
}

#[cfg(feature = "fault-points")]
#[tokio::test]
async fn a_failure_between_writing_and_committing_leaves_the_warehouse_as_it_was() {
    let start = Utc::now() - TimeDelta::days(2);
    let data = generate(8, 300, start, Utc::now() - TimeDelta::hours(1));
    let (db, sim, h) = setup(data, start, "").await;
    h.engine
        .faults()
        .fail_before_commit
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let c = db.client().await;
    for t in [
        "takecontrol_sessions",
        "takecontrol_chat_messages",
        "takecontrol_video_links",
        "rejected_records",
        // The run's claim (sync_state.claim) is committed before any window; nothing else.
        "sync_state WHERE watermark IS NOT NULL OR state <> '{}' OR window_seconds IS NOT NULL",
    ] {
        assert_eq!(count(&c, t).await, 0, "{t} after a failed commit");
    }
    h.engine
        .faults()
        .fail_before_commit
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(h.sync().await.outcome, Outcome::Succeeded);
    assert_warehouse_matches(&db, &sim).await;
}

#[tokio::test]
async fn a_bad_record_is_set_aside_and_the_rest_land() {
    let start = Utc::now() - TimeDelta::days(1);
    let good = SimSession::new(1, ago(100), Some(ago(90)));
    let mut bad = SimSession::new(2, ago(80), Some(ago(70)));
    bad.chat.push(SimMessage {
        date: ago(79),
        from: "x".into(),
        kind: "tech".into(),
        text: "]]><broken".into(),
        cdata: true,
    });
    let backwards = SimSession::new(3, ago(60), Some(ago(65)));
    let (db, sim, h) = setup(vec![good, bad, backwards], start, "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Partial);
    assert_eq!((r.totals.written, r.totals.rejected), (2, 1));
    let c = db.client().await;
    let row = c
        .query_one(
            "SELECT record_key, reason, payload->>'id' FROM rejected_records",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "2");
    assert!(row.get::<_, String>(1).starts_with("malformed_chat_info"));
    let dur: Option<f64> = c
        .query_one(
            "SELECT duration_seconds FROM takecontrol_sessions WHERE session_id = 3",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dur, None, "a negative duration is stored as NULL");
    let m = h.metrics.encode();
    assert!(m.contains("reason=\"negative_duration\"} 1"), "{m}");
    assert!(m.contains("reason=\"malformed_chat_info\"} 1"), "{m}");
    // Seen again: not new, so the run is not partial again; fixed: the rejection is cleared.
    assert_eq!(h.sync().await.outcome, Outcome::Succeeded);
    sim.update(2, |s| s.chat.clear());
    h.sync().await;
    assert_eq!(count(&c, "rejected_records").await, 0);
    assert_eq!(count(&c, "takecontrol_sessions").await, 3);
}

#[tokio::test]
async fn a_stream_never_runs_twice_at_once() {
    let start = Utc::now() - TimeDelta::days(5);
    let data = generate(9, 500, start, Utc::now() - TimeDelta::hours(1));
    let (db, sim, h1) = setup(data, start, "").await;
    let h2 = Harness::new(&settings(&db, &tc_toml(&sim.base_url(), KEY, start, ""))).await;
    sim.faults()
        .push(Fault::Delay(Duration::from_millis(500)), 1);
    let (a, b) = tokio::join!(h1.sync(), h2.sync());
    let outcomes = [a.outcome, b.outcome];
    assert!(
        outcomes.contains(&Outcome::Skipped) && outcomes.contains(&Outcome::Succeeded),
        "{outcomes:?}"
    );
    assert_warehouse_matches(&db, &sim).await;
}

#[tokio::test]
async fn tls_to_the_warehouse_works_when_the_server_offers_it() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let ssl: String = c.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        eprintln!("skipped: this PostgreSQL server has ssl = off");
        return;
    }
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", db.url);
    let wh = sessionsync::warehouse::Warehouse::new(&sessionsync::config::WarehouseSettings {
        url: sessionsync::config::Secret::new(url),
        schema: "sessionsync".into(),
        pool_size: 1,
        synchronous_commit: false,
    })
    .unwrap();
    let conn = wh.conn().await.expect("TLS connection");
    let on: bool = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(on, "connection is not encrypted");
}

fn retries_by_reason(metrics: &str, reason: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("sessionsync_http_retries_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn every_source_fault_is_retried_or_failed_as_documented_and_counted_by_reason() {
    let start = Utc::now() - TimeDelta::hours(20);
    let data = generate(31, 300, start, Utc::now() - TimeDelta::hours(1));
    let db = TestDb::new().await;
    let sim = TakeControlSim::start(KEY, data).await.unwrap();
    let toml = tc_toml(&sim.base_url(), KEY, start, "")
        .replace("window = \"1d\"", "window = \"6h\"")
        .replace("timeout = \"5s\"", "timeout = \"1s\"")
        .replace("max_retries = 4", "max_retries = 6");
    let h = Harness::new(&settings(&db, &toml)).await;

    // 5xx bursts, a hanging response (timeout) and a 429: all retried, nothing lost.
    sim.faults().push(Fault::Status(503), 2);
    sim.faults()
        .push(Fault::Delay(Duration::from_millis(1500)), 1);
    sim.faults().push(Fault::Status(502), 1);
    sim.faults().push(Fault::RateLimited(None), 1);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let m = h.metrics.encode();
    assert_eq!(retries_by_reason(&m, "server_error"), 3, "{m}");
    assert_eq!(retries_by_reason(&m, "timeout"), 1, "{m}");
    assert_eq!(retries_by_reason(&m, "rate_limited"), 1, "{m}");
    assert_warehouse_matches(&db, &sim).await;

    // A retry budget that runs out in a later window: partial, and the next cycle resumes.
    let c = db.client().await;
    c.batch_execute("TRUNCATE takecontrol_sessions CASCADE; DELETE FROM sync_state")
        .await
        .unwrap();
    sim.faults().push(Fault::Delay(Duration::ZERO), 1);
    sim.faults().push(Fault::Status(500), 7);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Partial, "{:?}", r.error);
    assert!(
        r.error.as_deref().unwrap_or("").contains("7 attempts"),
        "{:?}",
        r.error
    );
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_warehouse_matches(&db, &sim).await;

    // A cut-off body is not data: the window fails whole, the next cycle catches up.
    c.batch_execute("TRUNCATE takecontrol_sessions CASCADE; DELETE FROM sync_state")
        .await
        .unwrap();
    sim.faults().push(Fault::Truncated, 1);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed, "{:?}", r.error);
    assert_eq!(count(&c, "takecontrol_sessions").await, 0);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_warehouse_matches(&db, &sim).await;
}

#[tokio::test]
async fn connection_refused_is_retried_then_fails_the_run_and_is_counted() {
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again when the listener drops
    let start = Utc::now() - TimeDelta::hours(3);
    let s = settings(
        &db,
        &tc_toml(&format!("http://127.0.0.1:{port}"), KEY, start, ""),
    );
    let h = Harness::new(&s).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.error.as_deref().unwrap().contains("attempts"),
        "{:?}",
        r.error
    );
    assert_eq!(retries_by_reason(&h.metrics.encode(), "connect"), 4);
    assert_eq!(watermark(&db).await, None, "nothing moved");
}

#[tokio::test]
async fn a_window_whose_response_is_too_large_is_split_not_failed() {
    let start = Utc::now() - TimeDelta::hours(10);
    // 1,200 × 6 KB over 9 hours: a window grows past the 1 MiB allowed (about 170 sessions)
    // long before it holds the 1,000 records that would stop its growth.
    let mut data = generate(8, 1200, start, Utc::now() - TimeDelta::hours(1));
    for s in &mut data {
        s.notes = "n".repeat(6_000);
    }
    let db = TestDb::new().await;
    let sim = TakeControlSim::start(KEY, data).await.unwrap();
    let toml = tc_toml(&sim.base_url(), KEY, start, "max_response_mb = 1");
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_warehouse_matches(&db, &sim).await;
    // The first request was refused for its size, and the window was split, not failed.
    assert!(r.totals.requests > 4, "{:?}", r.totals);
}
