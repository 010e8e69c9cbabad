//! SuperOffice end to end: real PostgreSQL, real HTTP to the simulator.

use crate::helpers::*;
use sessionsync::engine::Outcome;
use sessionsync_sim::superoffice::{
    SimChat, SimCredentials, SuperOfficeSim, generate, seed_samples,
};

const TICKET: &str = SO_TICKET;
const APP_TOKEN: &str = SO_APP_TOKEN;

fn creds() -> SimCredentials {
    SimCredentials {
        ticket: TICKET.into(),
        app_token: APP_TOKEN.into(),
        bearer: "bearer-tok-77".into(),
    }
}

fn so_toml(base: &str, extra: &str) -> String {
    so_account_toml(
        base,
        "cust1",
        &format!(
            "requests_per_second = 500\npage_size = 7\nmax_retries = 4\nmax_retry_wait = \"2s\"\ntimeout = \"5s\"\n{extra}"
        ),
    )
}

async fn setup(chats: Vec<SimChat>, extra: &str) -> (TestDb, SuperOfficeSim, Harness) {
    let db = TestDb::new().await;
    let sim = SuperOfficeSim::start(creds(), chats).await.unwrap();
    let h = Harness::new(&settings(&db, &so_toml(&sim.base_url(), extra))).await;
    (db, sim, h)
}

fn data() -> Vec<SimChat> {
    let mut v = seed_samples();
    v.extend(generate(
        4,
        25,
        t("2024-02-01T00:00:00Z"),
        t("2024-02-10T00:00:00Z"),
    ));
    v
}

/// Every text and jsonb column of every table in the schema that contains `needle`.
async fn columns_containing(c: &tokio_postgres::Client, needle: &str) -> Vec<String> {
    let cols = c
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = 'sessionsync' AND data_type IN ('text', 'jsonb', 'character varying')",
            &[],
        )
        .await
        .unwrap();
    let mut hits = Vec::new();
    for r in cols {
        let (table, col): (String, String) = (r.get(0), r.get(1));
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {table} WHERE strpos(lower({col}::text), lower($1)) > 0"
                ),
                &[&needle],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            hits.push(format!("{table}.{col}"));
        }
    }
    hits
}

#[tokio::test]
async fn seed_samples_land_with_exact_dates_and_their_negative_spans_are_counted() {
    let (db, _sim, h) = setup(seed_samples(), "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 3);
    // Counted per run, by reason, and said once in the run's line.
    assert_eq!(
        r.totals.nulled_summary().as_deref(),
        Some("2 values nulled: negative_duration (2)")
    );
    assert!(
        sessionsync::report::describe(&r).ends_with("; 2 values nulled: negative_duration (2)")
    );
    let c = db.client().await;
    let exact: bool = c
        .query_one(
            "SELECT requested_at = '2013-12-04T17:54:07.9918437+01:00'::timestamptz
                AND started_at = '2021-08-15T17:54:07.9918437+02:00'::timestamptz
             FROM superoffice_chat_sessions WHERE chat_session_id = 195",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(exact);
    let spans = strings(
        &c,
        "SELECT chat_session_id || ':' || coalesce(queue_seconds::text, 'null') || ':' || coalesce(handle_seconds::text, 'null') || ':' || coalesce(total_seconds::text, 'null')
         FROM superoffice_chat_sessions ORDER BY chat_session_id",
    )
    .await;
    // 452 was started before it was requested; 659 ended before it started.
    assert!(
        spans[1].starts_with("452:null:") && !spans[1].ends_with("null"),
        "{spans:?}"
    );
    assert!(
        spans[2].starts_with("659:") && spans[2].contains(":null:"),
        "{spans:?}"
    );
    assert!(!spans[0].contains("null"), "{spans:?}");
    let text = h.metrics.encode();
    assert!(
        text.lines()
            .any(|l| l.starts_with("sessionsync_values_nulled_total")
                && l.contains("reason=\"negative_duration\"")
                && l.ends_with(" 2")),
        "{text}"
    );
    for key in ["voluptas", "sapiente", "ducimus"] {
        // "voluptas" is also a LastMessage in seed 004: check the column, not the word.
        let hits: Vec<String> = columns_containing(&c, &format!("\"SessionKey\": \"{key}\""))
            .await
            .into_iter()
            .chain(columns_containing(&c, "sessionkey").await)
            .collect();
        assert!(hits.is_empty(), "SessionKey {key} found in {hits:?}");
    }
}

#[tokio::test]
async fn archive_mode_pages_with_keysets_and_rewrites_only_what_changed() {
    let chats = data();
    let keys: Vec<String> = chats
        .iter()
        .map(|c| c.entity["SessionKey"].as_str().unwrap().to_string())
        .filter(|k| k.starts_with("sk-"))
        .collect();
    assert_eq!(keys.len(), 25);
    let (db, sim, h) = setup(chats, "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 28);
    let c = db.client().await;
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 28);
    let list_requests = sim
        .log()
        .entries()
        .iter()
        .filter(|e| e.path == "/api/v1/ChatSession")
        .count();
    assert_eq!(
        list_requests, 10,
        "two lists (new chats by whenRequested, changed ones by updatedDate), each 28 rows in pages of 7: four full pages and an empty one"
    );
    assert!(
        sim.log().entries().iter().all(|e| e.status == 200),
        "no request refused: {:?}",
        sim.log().entries()
    );
    let messages: usize = sim.chats().iter().map(|ch| ch.messages.len()).sum();
    assert_eq!(
        count(&c, "superoffice_chat_messages").await as usize,
        messages
    );
    // NUL bytes are gone, entities kept.
    assert_eq!(
        count(&c, "superoffice_chat_messages WHERE message LIKE '%byte'").await,
        count(&c, "superoffice_chat_messages WHERE message = 'nulbyte'").await
    );
    for k in &keys {
        assert!(
            columns_containing(&c, k).await.is_empty(),
            "SessionKey {k} stored"
        );
    }
    // Nested ids flattened; numeric and unknown statuses as text.
    let statuses = strings(
        &c,
        "SELECT DISTINCT status FROM superoffice_chat_sessions ORDER BY 1",
    )
    .await;
    assert_eq!(
        statuses,
        vec![
            "Closed",
            "CustomerLast",
            "Finished",
            "InQueue",
            "TeleportedAway"
        ]
    );
    assert!(count(&c, "superoffice_chat_sessions WHERE user_associate_id IS NOT NULL AND person_id IS NOT NULL").await > 0);

    let before = strings(
        &c,
        "SELECT chat_session_id || '@' || last_synced_at FROM superoffice_chat_sessions ORDER BY 1",
    )
    .await;
    sim.update(1003, |e| e["Rating"] = serde_json::json!(5));
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 1);
    let after = strings(
        &c,
        "SELECT chat_session_id || '@' || last_synced_at FROM superoffice_chat_sessions ORDER BY 1",
    )
    .await;
    let differ: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
    assert_eq!(differ.len(), 1, "{differ:?}");
    assert!(differ[0].0.starts_with("1003@"));
    assert_eq!(
        count(
            &c,
            "superoffice_chat_sessions WHERE chat_session_id = 1003 AND rating = 5"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn archive_mode_follows_next_links() {
    let (db, sim, h) = setup(data(), "").await;
    sim.set_next_links(true);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 28);
    assert_eq!(r.totals.written, 28);
}

#[tokio::test]
async fn for_user_mode_writes_nothing_for_an_unchanged_list() {
    let (db, sim, h) = setup(data(), "mode = \"for_user\"").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 28);
    sim.log().clear();
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        (r.totals.written, r.totals.unchanged, r.totals.requests),
        (0, 28, 1)
    );
    assert_eq!(sim.log().len(), 1);
    // One session changes: only it is written and has its messages read.
    sim.post_message(1001, "one more thing");
    sim.log().clear();
    let r = h.sync().await;
    assert_eq!((r.totals.written, r.totals.unchanged), (1, 27));
    assert_eq!(sim.log().len(), 2, "{:?}", sim.log().entries());
    let c = db.client().await;
    assert_eq!(
        count(
            &c,
            "superoffice_chat_messages WHERE message = 'one more thing'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn messages_after_the_last_stored_id_only() {
    let (db, sim, h) = setup(data(), "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    let last: i32 = c
        .query_one("SELECT coalesce(max(chat_message_id), 0) FROM superoffice_chat_messages WHERE chat_session_id = 1003", &[])
        .await
        .unwrap()
        .get(0);
    let n0 = count(&c, "superoffice_chat_messages").await;
    let m1 = sim.post_message(1003, "new one");
    let m2 = sim.post_message(1003, "and another");
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(count(&c, "superoffice_chat_messages").await, n0 + 2);
    let asked = sim.message_requests();
    assert_eq!(asked.last(), Some(&(1003, i64::from(last))), "{asked:?}");
    let ids = strings(&c, "SELECT chat_message_id::text FROM superoffice_chat_messages WHERE chat_session_id = 1003 ORDER BY 1 DESC LIMIT 2").await;
    assert_eq!(ids, vec![m2.to_string(), m1.to_string()]);
    // And again: nothing new is asked for.
    let r = h.sync().await;
    assert_eq!(r.totals.written, 0);
}

#[tokio::test]
async fn a_revoked_ticket_is_a_clear_error_not_a_retry_loop() {
    let db = TestDb::new().await;
    let sim = SuperOfficeSim::start(
        SimCredentials {
            ticket: "another".into(),
            ..creds()
        },
        data(),
    )
    .await
    .unwrap();
    let h = Harness::new(&settings(&db, &so_toml(&sim.base_url(), ""))).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.unwrap();
    assert!(
        e.contains("cust1") && e.contains("ticket expired or was revoked"),
        "{e}"
    );
    assert!(!e.contains(TICKET) && !e.contains(APP_TOKEN), "{e}");
    assert_eq!(sim.log().len(), 1);
}

#[tokio::test]
async fn bearer_auth_works() {
    let db = TestDb::new().await;
    let sim = SuperOfficeSim::start(creds(), seed_samples())
        .await
        .unwrap();
    let toml = so_toml(&sim.base_url(), "").replace(
        &format!("ticket = \"{TICKET}\"\napp_token = \"{APP_TOKEN}\""),
        "bearer = \"bearer-tok-77\"",
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 3);
}

/// A chat as SuperOffice sends it while still in the queue: every date but WhenRequested is one
/// of its "not set" values (`unset`), and the customer's first message has no WhenPosted.
fn queued_chat(id: i64, unset: &str) -> SimChat {
    SimChat {
        entity: serde_json::json!({
            "ChatSessionId": id, "TopicId": 1, "Status": "InQueue", "SessionKey": format!("sk-q{id}"),
            "CustomerName": "Queued Customer",
            "WhenRequested": "2024-02-03T10:00:00.0000000+01:00",
            "WhenStarted": unset, "WhenEnded": unset, "WhenIdle": unset, "WhenFetched": unset,
        }),
        updated: t("2024-02-03T09:00:00Z"),
        messages: vec![serde_json::json!({
            "ChatMessageId": id * 10, "ChatSessionId": id, "Type": "ToUser", "Author": "Customer",
            "Message": "anyone there?", "WhenPosted": unset,
        })],
    }
}

/// Every form SuperOffice uses for "no date": the three minimums and "forever", with and without
/// fractions and offsets.
const UNSET_FORMS: [&str; 6] = [
    "0001-01-01T00:00:00",
    "1760-01-01T00:00:00",
    "1753-01-01T00:00:00",
    "0001-01-01T00:00:00.0000000+01:00",
    "9999-12-31T23:59:59.9999999",
    "1753-01-01T00:00:00Z",
];

#[tokio::test]
async fn dates_that_mean_not_set_are_stored_null_with_no_duration_and_counted_then_filled_in() {
    let chats: Vec<SimChat> = UNSET_FORMS
        .iter()
        .enumerate()
        .map(|(i, u)| queued_chat(2000 + i as i64, u))
        .collect();
    let (db, sim, h) = setup(chats, "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 6, "nothing set aside");
    // Four dates per entity and one per message: counted as nulled, by reason.
    assert_eq!(
        r.totals.nulled.get("null_date"),
        Some(&30),
        "{:?}",
        r.totals.nulled
    );
    assert!(sessionsync::report::describe(&r).contains("30 values nulled: null_date (30)"));
    assert_eq!(count(&db.client().await, "rejected_records").await, 0);
    let c = db.client().await;
    assert_eq!(
        count(
            &c,
            "superoffice_chat_sessions WHERE requested_at IS NOT NULL AND started_at IS NULL
               AND ended_at IS NULL AND idle_at IS NULL AND fetched_at IS NULL
               AND queue_seconds IS NULL AND handle_seconds IS NULL AND total_seconds IS NULL"
        )
        .await,
        6
    );
    assert_eq!(
        count(&c, "superoffice_chat_messages WHERE posted_at IS NULL").await,
        6
    );
    assert_eq!(
        count(
            &c,
            "support_sessions WHERE source = 'superoffice' AND (ended_at IS NOT NULL OR handle_seconds IS NOT NULL)"
        )
        .await,
        0,
        "BI sees no ended chat and no handle time"
    );
    let metrics = h.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sessionsync_values_nulled_total")
                && l.contains("reason=\"null_date\"")
                && l.ends_with(" 30")),
        "{metrics}"
    );

    // The first is answered, then closed: the next sync stores the real values and durations.
    sim.update(2000, |e| {
        e["Status"] = serde_json::json!("Closed");
        e["WhenStarted"] = serde_json::json!("2024-02-03T10:02:00.0000000+01:00");
        e["WhenEnded"] = serde_json::json!("2024-02-03T10:12:30.0000000+01:00");
        e["WhenIdle"] = serde_json::json!("2024-02-03T10:12:30.0000000+01:00");
        e["WhenFetched"] = serde_json::json!("2024-02-03T10:12:29.0000000+01:00");
    });
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let got = strings(
        &c,
        "SELECT concat_ws('|', status, started_at IS NOT NULL, ended_at IS NOT NULL, queue_seconds, handle_seconds, total_seconds)
         FROM superoffice_chat_sessions WHERE chat_session_id = 2000",
    )
    .await;
    assert_eq!(got, ["Closed|t|t|120|630|750"]);
    // A date of 1900 and one of 9000 are real dates (the bounds).
    sim.update(2001, |e| {
        e["WhenStarted"] = serde_json::json!("1900-01-01T00:00:00Z");
    });
    h.sync().await;
    assert_eq!(
        count(
            &c,
            "superoffice_chat_sessions WHERE chat_session_id = 2001 AND started_at = '1900-01-01Z'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_repair_migration_nulls_stored_sentinel_dates_and_recomputes_durations_once() {
    let db = TestDb::new().await;
    let h = Harness::new(&settings(&db, "")).await;
    drop(h);
    let c = db.client().await;
    c.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    // Rows as an older sessionsync stored them: a queued chat "ended in year 1" with a handle
    // time of 0 s, a running one with a 9999 end, a sound one, and a message of year 1760.
    c.batch_execute(
        "INSERT INTO superoffice_chat_sessions (account, chat_session_id, status, requested_at, started_at, ended_at,
             idle_at, fetched_at, queue_seconds, handle_seconds, total_seconds, raw) VALUES
         ('a', 1, 'InQueue', '2024-02-03 09:00Z', '0001-01-01 00:00Z', '0001-01-01 00:00Z', '1753-01-01 00:00Z',
             '2024-02-03 09:01Z', NULL, 0, NULL, '{}'),
         ('a', 2, 'CustomerLast', '2024-02-03 09:00Z', '2024-02-03 09:02Z', '9999-12-31 23:59:59Z', NULL, NULL,
             120, 250000000000, 250000000120, '{}'),
         ('a', 3, 'Closed', '2024-02-03 09:00Z', '2024-02-03 09:02Z', '2024-02-03 09:12Z', NULL, NULL,
             120, 600, 720, '{}');
         INSERT INTO superoffice_chat_messages (account, chat_message_id, chat_session_id, message, posted_at) VALUES
         ('a', 10, 1, 'hi', '1760-01-01 00:00Z'), ('a', 11, 3, 'ok', '2024-02-03 09:03Z');",
    )
    .await
    .unwrap();
    let repair = sessionsync::warehouse::MIGRATIONS
        .iter()
        .find(|(v, _)| *v == "0013_superoffice_unset_dates")
        .expect("the repair migration")
        .1;
    let state = "SELECT concat_ws('|', chat_session_id, coalesce(started_at::text, '-'), coalesce(ended_at::text, '-'),
                        coalesce(idle_at::text, '-'), coalesce(queue_seconds::text, '-'),
                        coalesce(handle_seconds::text, '-'), coalesce(total_seconds::text, '-'))
                 FROM superoffice_chat_sessions ORDER BY chat_session_id";
    c.batch_execute(repair).await.unwrap();
    let after = strings(&c, state).await;
    assert_eq!(
        after,
        [
            "1|-|-|-|-|-|-",
            "2|2024-02-03 09:02:00+00|-|-|120|-|-",
            "3|2024-02-03 09:02:00+00|2024-02-03 09:12:00+00|-|120|600|720",
        ]
    );
    assert_eq!(
        strings(&c, "SELECT chat_message_id || ':' || coalesce(posted_at::text, '-') FROM superoffice_chat_messages ORDER BY 1").await,
        ["10:-", "11:2024-02-03 09:03:00+00"]
    );
    // Idempotent: a second run changes no row (not even last_synced_at).
    let synced = "SELECT string_agg(last_synced_at::text, ',' ORDER BY chat_session_id) FROM superoffice_chat_sessions";
    let before = strings(&c, synced).await;
    c.batch_execute(repair).await.unwrap();
    assert_eq!(strings(&c, state).await, after);
    assert_eq!(strings(&c, synced).await, before);
}

/// The instant a simulated date stands for (the simulator holds dates with their offset); None
/// for a "not set" value.
fn instant(v: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Every stored session date and message date against the vendor's true instant (to the
/// microsecond PostgreSQL keeps); the number of dates compared.
async fn assert_true_instants(c: &tokio_postgres::Client, sim: &SuperOfficeSim) -> usize {
    let close = |a: Option<chrono::DateTime<chrono::Utc>>,
                 b: Option<chrono::DateTime<chrono::Utc>>| match (a, b) {
        (Some(a), Some(b)) => (a - b).num_microseconds().is_some_and(|d| d.abs() <= 1),
        (None, None) => true,
        _ => false,
    };
    let mut compared = 0;
    for chat in sim.chats() {
        let row = c
            .query_one(
                "SELECT requested_at, started_at, ended_at FROM superoffice_chat_sessions WHERE chat_session_id = $1",
                &[&(chat.id() as i32)],
            )
            .await
            .unwrap_or_else(|e| panic!("session {} not stored: {e}", chat.id()));
        for (i, key) in ["WhenRequested", "WhenStarted", "WhenEnded"]
            .iter()
            .enumerate()
        {
            let stored: Option<chrono::DateTime<chrono::Utc>> = row.get(i);
            let want = instant(&chat.entity[*key]);
            assert!(
                close(stored, want),
                "session {} {key}: stored {stored:?}, the vendor's instant is {want:?}",
                chat.id()
            );
            compared += usize::from(want.is_some());
        }
        for m in &chat.messages {
            let stored: Option<chrono::DateTime<chrono::Utc>> = c
                .query_one(
                    "SELECT posted_at FROM superoffice_chat_messages WHERE chat_message_id = $1",
                    &[&(m["ChatMessageId"].as_i64().unwrap() as i32)],
                )
                .await
                .unwrap()
                .get(0);
            let want = instant(&m["WhenPosted"]);
            assert!(
                close(stored, want),
                "message {}: {stored:?} vs {want:?}",
                m["ChatMessageId"]
            );
            compared += usize::from(want.is_some());
        }
    }
    compared
}

/// Chats of the last days, and two across a change of daylight saving time in Norway.
fn zone_data() -> Vec<SimChat> {
    let now = chrono::Utc::now();
    let mut v = generate(
        21,
        30,
        now - chrono::TimeDelta::days(3),
        now - chrono::TimeDelta::minutes(5),
    );
    let mut summer = v[0].clone();
    summer.entity["ChatSessionId"] = serde_json::json!(90_001);
    summer.entity["Status"] = serde_json::json!("Closed");
    // Requested before the clocks went forward (2024-03-31 01:00 UTC), ended after.
    summer.entity["WhenRequested"] = serde_json::json!("2024-03-31T00:30:00.1234567+00:00");
    summer.entity["WhenStarted"] = serde_json::json!("2024-03-31T00:59:00.0000000+00:00");
    summer.entity["WhenEnded"] = serde_json::json!("2024-03-31T01:30:00.0000000+00:00");
    summer.messages.clear();
    summer.updated = now - chrono::TimeDelta::hours(1);
    v.push(summer);
    v
}

#[tokio::test]
async fn both_modes_store_the_vendors_true_instants_with_the_header_honoured_or_ignored() {
    // (mode, the tenant honours SO-TimeZone, the account's timezone)
    let cases = [
        ("archive", true, None),
        ("for_user", true, None),
        ("archive", false, Some("Europe/Oslo")),
        ("for_user", false, Some("Europe/Oslo")),
    ];
    for (mode, support, tz) in cases {
        let extra = format!(
            "mode = \"{mode}\"\n{}",
            tz.map(|z| format!("timezone = \"{z}\""))
                .unwrap_or_default()
        );
        let (db, sim, h) = setup(zone_data(), &extra).await;
        sim.set_timezone_support(support);
        let r = h.sync().await;
        assert_eq!(
            r.outcome,
            Outcome::Succeeded,
            "{mode}/{support}: {:?}",
            r.error
        );
        let c = db.client().await;
        let compared = assert_true_instants(&c, &sim).await;
        assert!(compared > 100, "{compared}");
        // The DST chat: 60 minutes from request to end, though the wall clock says 120.
        let total: f64 = c
            .query_one(
                "SELECT total_seconds FROM superoffice_chat_sessions WHERE chat_session_id = 90001",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(total.round(), 3600.0, "{mode}/{support}");
        // Every request asked for UTC with offsets; none was refused.
        let asked = sim.timezone_headers();
        assert!(
            !asked.is_empty() && asked.iter().all(|h| h == "UTC, includeTZOffset"),
            "{asked:?}"
        );
        assert!(
            sim.log().entries().iter().all(|e| e.status == 200),
            "{mode}/{support}: {:?}",
            sim.log().entries()
        );
        // `check` says which case the tenant is.
        let said = h.sources[0].check().await.unwrap();
        if support {
            assert!(said.contains("carry an offset"), "{said}");
        } else {
            assert!(
                said.contains("WITHOUT an offset") && said.contains("Europe/Oslo"),
                "{said}"
            );
        }
    }
    // A tenant that ignores the header, read without `timezone`: every time is off by Norway's
    // offset, which is what `check` warns of.
    let (db, sim, h) = setup(zone_data(), "").await;
    sim.set_timezone_support(false);
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    let stored: chrono::DateTime<chrono::Utc> = c
        .query_one(
            "SELECT requested_at FROM superoffice_chat_sessions WHERE chat_session_id = 90001",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        t("2024-03-31T01:30:00.123457Z"),
        "read as UTC: an hour late"
    );
    let said = h.sources[0].check().await.unwrap();
    assert!(
        said.contains("WITHOUT an offset") && said.contains("read in UTC"),
        "{said}"
    );
}

#[tokio::test]
async fn a_steady_state_archive_run_reads_only_new_changed_and_open_chats() {
    let now = chrono::Utc::now();
    let chats = generate(
        5,
        40,
        now - chrono::TimeDelta::days(1),
        now - chrono::TimeDelta::minutes(5),
    );
    let final_statuses = [
        "Closed",
        "Finished",
        "ClosedFromQueue",
        "Deleted",
        "9",
        "7",
        "8",
        "11",
    ];
    let is_open = |c: &SimChat| {
        let s = match &c.entity["Status"] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        !final_statuses.contains(&s.as_str())
    };
    let open: Vec<i64> = chats
        .iter()
        .filter(|c| is_open(c))
        .map(SimChat::id)
        .collect();
    assert!(!open.is_empty() && open.len() < 40, "{}", open.len());
    // A lookback of two days: every run lists all 40 chats again (whatever the time of day,
    // since `updatedDate` is compared by whole UTC days).
    let (db, sim, h) = setup(chats, "lookback = \"48h\"").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 40);
    let c = db.client().await;
    // ReadByCustomer is an integer: values beyond 0 and 1 land, no message is set aside.
    let read = strings(
        &c,
        "SELECT DISTINCT read_by_customer::text FROM superoffice_chat_messages ORDER BY 1",
    )
    .await;
    assert_eq!(read, vec!["0", "1", "2", "3"]);
    assert_eq!(count(&c, "rejected_records").await, 0);
    let reads = |path: &str| {
        sim.log()
            .entries()
            .iter()
            .filter(|e| e.path == path)
            .count()
    };

    // A day of unchanged chats: the two lists, and by id only the chats not final yet.
    sim.log().clear();
    let messages_before = sim.message_requests().len();
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(r.totals.written, 0);
    // The run line tells what it found unchanged (it said "0 unchanged" before).
    assert_eq!(r.totals.unchanged, 40);
    assert!(
        sessionsync::report::describe(&r).contains("0 written, 40 unchanged"),
        "{}",
        sessionsync::report::describe(&r)
    );
    // Two lists, each of all 40 chats in pages of 7 (five full pages and a short one).
    let lists = reads("/api/v1/ChatSession");
    assert_eq!(lists, 12);
    assert_eq!(
        reads("/api/v1/ChatSession/{id}"),
        open.len(),
        "only the open chats are read again"
    );
    assert_eq!(
        sim.message_requests().len(),
        messages_before,
        "no message read for an unchanged chat"
    );
    assert_eq!(r.totals.requests as usize, lists + open.len());
    println!(
        "steady state: {} requests ({lists} list pages, {} chats not final re-read) for 40 chats of the last day, none of them changed",
        r.totals.requests,
        open.len()
    );

    // One final chat changes: it alone costs a read more.
    let closed = sim.chats().into_iter().find(|c| !is_open(c)).unwrap().id();
    sim.update(closed, |e| e["Rating"] = serde_json::json!(5));
    sim.log().clear();
    let r = h.sync().await;
    assert_eq!(r.totals.written, 1);
    assert_eq!(reads("/api/v1/ChatSession/{id}"), open.len() + 1);
    // A message in an open chat is found by re-reading it (its LastMessage changed).
    let mid = sim.post_message(open[0], "still there?");
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        count(
            &c,
            &format!("superoffice_chat_messages WHERE chat_message_id = {mid}")
        )
        .await,
        1
    );
}

/// The demo's first query takes the median: the seed samples' chats that waited for years would
/// put an average far from the typical wait (the figure a newcomer sees first).
#[tokio::test]
async fn the_demos_first_query_gives_a_typical_wait_not_the_traps_average() {
    let (db, _sim, h) = setup(data(), "").await;
    let r = h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = db.client().await;
    let rows = c.query(sessionsync::demo::FIRST_QUERY, &[]).await.unwrap();
    let so = rows
        .iter()
        .find(|r| r.get::<_, String>(0) == "superoffice")
        .expect("a superoffice row");
    let median: f64 = so.get(3);
    let avg: f64 = c
        .query_one(
            "SELECT avg(wait_seconds)::float8 FROM support_sessions WHERE source = 'superoffice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(median < 3600.0, "median wait {median} s");
    assert!(
        avg > 10.0 * median,
        "the average ({avg} s) is what the median avoids"
    );
}

/// On-site (a pasted ticket, nothing to renew with): a login page instead of JSON, or a
/// redirect, is said to be the ticket's end, never followed.
#[tokio::test]
async fn on_site_a_login_page_or_redirect_says_the_ticket_expired() {
    for fault in [
        sessionsync_sim::Fault::Html,
        sessionsync_sim::Fault::Status(302),
    ] {
        let (_db, sim, h) = setup(data(), "").await;
        sim.faults().push(fault.clone(), 1);
        let r = h.sync().await;
        assert_eq!(r.outcome, Outcome::Failed, "{fault:?}");
        let e = r.error.unwrap();
        assert!(
            e.contains("the ticket expired or was revoked") && !e.contains(TICKET),
            "{fault:?}: {e}"
        );
        // The one request that met it: not retried, nothing followed.
        assert_eq!(r.totals.requests, 1, "{fault:?}");
    }
}
