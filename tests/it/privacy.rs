//! Personal data end to end (docs/privacy.md): policies applied before anything is written,
//! erasure that survives re-syncs, backfills and webhooks, what the sources forget, storage
//! limits, `privacy apply`; real PostgreSQL, the three simulators over HTTP.

use std::time::Duration;

use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sessionsync::engine::{Outcome, Range};
use sessionsync::privacy::Selector;
use sessionsync::privacy::erase::{self, Target};
use sessionsync::privacy::{apply, retention};
use sessionsync_sim::{mluvii, superoffice, takecontrol};
use tokio_util::sync::CancellationToken;

const KEY: &str = "test-hash-key-0123456789abcdef-0123456789";
const TC_KEY: &str = "tc-key";

/// HMAC-SHA256(KEY, text) as lower-case hex: what a hashed value must be, computed here
/// independently of the code under test.
/// What `erasures.selector_hash` holds for `text` (privacy.md section 3), computed here apart from
/// the code: HMAC under the selector key (HMAC(key, "sessionsync erasure selectors v1")) of the
/// policy's hash.
fn selector_hex(text: &str) -> String {
    let mut d = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    d.update(b"sessionsync erasure selectors v1");
    let selector_key = d.finalize().into_bytes();
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(&selector_key).unwrap();
    m.update(hmac_hex(text).as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac_hex(text: &str) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    m.update(text.as_bytes());
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The person who is a customer of all three systems, spelled differently in each.
const ANN_TC: &str = "Ann.Lee@Example.com";
const ANN_SO: &str = "  ann.lee@example.COM ";
const ANN_ML: &str = "ANN.LEE@example.com";
const ANN: &str = "ann.lee@example.com";

struct World {
    db: TestDb,
    tc: takecontrol::TakeControlSim,
    so: superoffice::SuperOfficeSim,
    ml: mluvii::MluviiSim,
    from: DateTime<Utc>,
}

impl World {
    async fn new() -> World {
        let db = TestDb::new().await;
        let now = Utc::now();
        let from = now - TimeDelta::days(3);
        let mut tcs = takecontrol::generate(7, 30, from, now - TimeDelta::hours(2));
        tcs[3].customer_email = ANN_TC.into();
        tcs[3].customer_name = "Ann Lee".into();
        let tc = takecontrol::TakeControlSim::start(TC_KEY, tcs)
            .await
            .unwrap();
        let mut chats = superoffice::generate(5, 20, from, now - TimeDelta::hours(2));
        chats[2].entity["CustomerEmail"] = json!(ANN_SO);
        chats[2].entity["CustomerName"] = json!("ANN   LEE");
        chats[2].entity["CustomerPhone"] = json!("+420 777 111 222");
        let so = superoffice::SuperOfficeSim::start(
            superoffice::SimCredentials {
                ticket: "t".into(),
                app_token: "a".into(),
                bearer: "b".into(),
            },
            chats,
        )
        .await
        .unwrap();
        let mut sessions = mluvii::generate(3, 21, from, now - TimeDelta::hours(2));
        sessions[1].guest.as_mut().unwrap()["identity"] = json!(ANN_ML);
        sessions[1].phone_callback_number = Some("+420777111222".into());
        // One still running (re-polled by id until it is CLOSED).
        let mut open = mluvii::SimSession::new(600_001, now - TimeDelta::minutes(30));
        open.started = Some(now - TimeDelta::minutes(29));
        open.guest = Some(json!({"ipAddress": "192.0.2.44", "identity": "open@example.org"}));
        sessions.push(open);
        let ml = mluvii::MluviiSim::start("u", "s", sessions).await.unwrap();
        World {
            db,
            tc,
            so,
            ml,
            from,
        }
    }

    fn toml(&self, privacy: &str, extra: &str) -> String {
        format!(
            r#"
[privacy]
hash_key = "{KEY}"
{privacy}
{tc}
[[superoffice]]
account = "so"
base_url = "{so}"
ticket = "t"
app_token = "a"
webhook_secret = "whsec-test"
start = "{start}"
requests_per_second = 500
{extra}
[[mluvii]]
account = "ml"
base_url = "{ml}"
client_id = "u"
client_secret = "s"
start = "{start}"
window = "10d"
requests_per_second = 500
{extra}
"#,
            tc = tc_toml(&self.tc.base_url(), TC_KEY, self.from, ""),
            so = self.so.base_url(),
            ml = self.ml.base_url(),
            start = self.from.to_rfc3339(),
        )
    }

    async fn sync_all(&self, h: &Harness) {
        for s in &h.sources {
            let r = h
                .engine
                .run_once(s, &CancellationToken::new())
                .await
                .unwrap();
            assert_ne!(r.outcome, Outcome::Failed, "{}: {:?}", r.key, r.error);
        }
    }

    /// Every stream read again over the whole range (a backfill).
    async fn backfill_all(&self, h: &Harness) {
        let now = Utc::now();
        for s in &h.sources {
            let r = h
                .engine
                .run(
                    s,
                    Range::Backfill {
                        from: self.from,
                        to: now,
                    },
                    &CancellationToken::new(),
                    &|_| {},
                )
                .await
                .unwrap();
            assert_ne!(r.outcome, Outcome::Failed, "{}: {:?}", r.key, r.error);
        }
    }

    /// The clear personal values the simulators hold now: e-mails, names, phones, hosts and IPs,
    /// message texts.
    fn personal(&self) -> Vec<(String, &'static str)> {
        let mut v: Vec<(String, &'static str)> = Vec::new();
        for s in self.tc.sessions() {
            v.push((s.customer_email.clone(), "customer_identity"));
            v.push((s.customer_name.clone(), "customer_identity"));
            for m in &s.chat {
                if m.text.chars().count() > 8 {
                    v.push((m.text.clone(), "transcripts"));
                }
            }
        }
        for c in self.so.chats() {
            for k in ["CustomerEmail", "CustomerName", "CustomerAlias"] {
                if let Some(x) = c.entity[k].as_str().filter(|x| !x.trim().is_empty()) {
                    v.push((x.trim().to_string(), "customer_identity"));
                }
            }
            v.push(("198.51.100.7".into(), "network"));
            for m in &c.messages {
                if let Some(t) = m["Message"].as_str().filter(|t| t.chars().count() > 8) {
                    v.push((t.replace('\u{0}', ""), "transcripts"));
                }
            }
        }
        for s in self.ml.sessions() {
            if let Some(g) = &s.guest {
                v.push((
                    g["identity"].as_str().unwrap().to_string(),
                    "customer_identity",
                ));
                v.push((g["ipAddress"].as_str().unwrap().to_string(), "network"));
            }
            for p in [&s.phone_callback_number, &s.direct_call_number]
                .into_iter()
                .flatten()
            {
                v.push((p.clone(), "customer_identity"));
            }
            for a in &s.activities {
                v.push((a["text"].as_str().unwrap().to_string(), "transcripts"));
            }
        }
        for x in &mut v {
            x.0 = x.0.replace('\u{0}', "");
        }
        v.sort();
        v.dedup();
        v
    }
}

/// Every text and jsonb column of every table of the schema, as (table, column).
async fn text_columns(c: &tokio_postgres::Client) -> Vec<(String, String)> {
    c.query(
        "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
          WHERE c.table_schema = 'sessionsync' AND t.table_type = 'BASE TABLE'
            AND c.data_type IN ('text', 'jsonb', 'character varying')
          ORDER BY 1, 2",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The `table.column`s of the schema that contain `needle` (case-insensitive), as the secret
/// scan does it.
async fn found_in(
    c: &tokio_postgres::Client,
    cols: &[(String, String)],
    needle: &str,
) -> Vec<String> {
    let mut hits = Vec::new();
    for (t, col) in cols {
        let n: i64 = c
            .query_one(
                &format!(
                    "SELECT count(*) FROM {t} WHERE strpos(lower({col}::text), lower($1)) > 0"
                ),
                &[&needle],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            hits.push(format!("{t}.{col}"));
        }
    }
    hits
}

#[test]
fn privacy_inventory_matches_the_code() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/privacy.md")).unwrap();
    let start = doc
        .find("<!-- inventory:start -->\n")
        .expect("start marker")
        + 25;
    let end = doc.find("<!-- inventory:end -->").expect("end marker");
    let want = sessionsync::privacy::inventory::markdown(&sessionsync::sources::inventories());
    assert!(
        doc[start..end] == want,
        "docs/privacy.md's inventory differs from crates/sources/src/*/personal.rs: regenerate it with `sessionsync privacy inventory`"
    );
}

#[tokio::test]
async fn every_text_and_jsonb_column_of_a_source_table_has_a_class_or_is_listed_as_not_personal() {
    let db = TestDb::new().await;
    let _h = Harness::new(&settings(&db, "")).await;
    let c = db.client().await;
    let cols = text_columns(&c).await;
    for inv in sessionsync::sources::inventories() {
        let tables: Vec<&str> = std::iter::once(inv.sessions)
            .chain(inv.children.iter().map(|(t, _)| *t))
            .collect();
        for (t, col) in cols.iter().filter(|(t, _)| tables.contains(&t.as_str())) {
            let known = inv.columns.iter().any(|x| x.table == t && x.column == col)
                || (t == inv.sessions && inv.documents.iter().any(|(d, _)| d == col))
                || inv.non_personal.contains(&format!("{t}.{col}").as_str());
            assert!(
                known,
                "{t}.{col} has no class: add it to crates/sources/src/{}/personal.rs (columns, or non_personal)",
                inv.source
            );
        }
    }
}

#[tokio::test]
async fn a_hashing_policy_leaves_no_clear_identity_and_hashes_join_across_the_three_sources() {
    let w = World::new().await;
    let toml = w.toml(
        "customer_identity = \"hash\"\nnetwork = \"drop\"\ntranscripts = \"drop\"\nfree_text = \"hash\"",
        "",
    );
    let h = Harness::new(&settings(&w.db, &toml)).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    assert!(count(&c, "takecontrol_sessions").await >= 25);
    assert!(count(&c, "superoffice_chat_sessions").await >= 18);
    assert!(count(&c, "mluvii_sessions").await >= 18);
    let cols = text_columns(&c).await;
    let personal = w.personal();
    assert!(personal.len() > 100, "{}", personal.len());
    for (value, class) in &personal {
        let hits = found_in(&c, &cols, value).await;
        assert!(
            hits.is_empty(),
            "{class} value `{value}` stored in clear in {hits:?}"
        );
    }
    // The same person, hashed the same in every system: HMAC-SHA256(key, normalized).
    let ann = hmac_hex(ANN);
    assert_eq!(
        count(
            &c,
            &format!("takecontrol_sessions WHERE customer_email = '{ann}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(&c, &format!("superoffice_chat_sessions WHERE customer_email = '{ann}' AND raw->>'CustomerEmail' = '{ann}'")).await,
        1
    );
    assert_eq!(
        count(
            &c,
            &format!("mluvii_sessions WHERE raw->'guest'->>'identity' = '{ann}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &c,
            &format!("support_sessions WHERE customer_email = '{ann}'")
        )
        .await,
        2,
        "the view joins on the hash"
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "superoffice_chat_sessions WHERE customer_name = '{}'",
                hmac_hex("ann lee")
            )
        )
        .await,
        1,
        "a name is hashed normalized (white space collapsed, lower case)"
    );
    let phone = hmac_hex("+420777111222");
    assert_eq!(
        count(
            &c,
            &format!("superoffice_chat_sessions WHERE customer_phone = '{phone}'")
        )
        .await
            + count(
                &c,
                &format!("mluvii_sessions WHERE phone_callback_number = '{phone}'")
            )
            .await,
        2,
        "a phone is hashed as + and digits"
    );
    // Dropped: NULL in the column and gone from raw; transcripts have no rows' text.
    assert_eq!(
        count(
            &c,
            "superoffice_chat_sessions WHERE customer_host IS NOT NULL OR raw ? 'CustomerHost'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&c, "takecontrol_chat_messages WHERE message IS NOT NULL").await,
        0
    );
    assert!(
        count(&c, "takecontrol_chat_messages").await > 0,
        "the lines are still counted"
    );
    assert_eq!(count(&c, "mluvii_sessions WHERE raw->'guest' ? 'ipAddress' OR jsonb_path_exists(raw, '$.activities[*].text')").await, 0);
    // Non-personal facts are all there.
    assert_eq!(
        count(&c, "superoffice_chat_sessions WHERE requested_at IS NULL").await,
        0
    );
    assert_eq!(
        strings(
            &c,
            "SELECT DISTINCT privacy_policy FROM superoffice_chat_sessions"
        )
        .await
        .len(),
        1
    );
    // No personal value in a metric.
    let metrics = h.metrics.encode();
    for (value, _) in &personal {
        assert!(!metrics.contains(value.as_str()), "`{value}` in /metrics");
    }
    // `privacy check` agrees: nothing stored under another policy.
    let drift = apply::check(
        &c,
        &sessionsync::sources::expected_privacy(&settings(&w.db, &toml)),
    )
    .await
    .unwrap();
    assert_eq!(drift.total(), 0, "{drift:?}");
}

/// Status, times and durations of every session of the three systems: what erasure keeps.
async fn facts(c: &tokio_postgres::Client) -> Vec<String> {
    strings(
        c,
        "SELECT 'tc' || session_id || started_at || coalesce(ended_at::text, '') || coalesce(duration_seconds::text, '') FROM takecontrol_sessions
         UNION ALL SELECT 'so' || chat_session_id || coalesce(status, '') || coalesce(requested_at::text, '') || coalesce(handle_seconds::text, '') FROM superoffice_chat_sessions
         UNION ALL SELECT 'ml' || session_id || coalesce(status, '') || coalesce(created_at::text, '') || coalesce(length_seconds::text, '') FROM mluvii_sessions
         ORDER BY 1",
    )
    .await
}

#[tokio::test]
async fn an_erased_person_stays_erased_through_syncs_backfills_and_webhooks() {
    let w = World::new().await;
    let toml = w.toml("", "");
    let s = settings(&w.db, &toml);
    let h = Harness::new(&s).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    let cols = text_columns(&c).await;
    assert!(
        !found_in(&c, &cols, ANN).await.is_empty(),
        "kept in clear before"
    );
    let before = facts(&c).await;
    let views = strings(&c, "SELECT count(*)::text FROM support_sessions").await;

    // A dry run finds her in all three systems and changes nothing.
    let mut admin = w.db.client().await;
    let snapshot = strings(
        &c,
        "SELECT raw::text FROM superoffice_chat_sessions ORDER BY 1",
    )
    .await;
    let dry = erase::erase(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, "ANN.Lee@example.com".into())],
        true,
        None,
    )
    .await
    .unwrap();
    assert_eq!(dry.total_sessions(), 3, "{dry:?}");
    assert_eq!(
        strings(
            &c,
            "SELECT raw::text FROM superoffice_chat_sessions ORDER BY 1"
        )
        .await,
        snapshot
    );
    assert_eq!(count(&c, "erasures").await, 0);

    let done = erase::erase(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, "ANN.Lee@example.com".into())],
        false,
        Some("request 42"),
    )
    .await
    .unwrap();
    assert_eq!(done.total_sessions(), 3);
    let check_erased = |when: &'static str| {
        let c = &c;
        let cols = &cols;
        async move {
            let hits = found_in(c, cols, ANN).await;
            assert!(hits.is_empty(), "{when}: still in {hits:?}");
            assert!(
                found_in(c, cols, "Ann Lee").await.is_empty(),
                "{when}: name"
            );
            assert!(
                found_in(c, cols, "777 111 222").await.is_empty()
                    && found_in(c, cols, "+420777111222").await.is_empty(),
                "{when}: phone"
            );
        }
    };
    check_erased("after erase").await;
    assert_eq!(
        facts(&c).await,
        before,
        "times, statuses and durations are kept"
    );
    assert_eq!(
        strings(&c, "SELECT count(*)::text FROM support_sessions").await,
        views
    );
    // Remembered as keyed hashes only.
    assert_eq!(
        count(
            &c,
            &format!(
                "erasures WHERE selector_kind = 'email' AND selector_hash = '{}' AND sessions = 3",
                selector_hex(ANN)
            )
        )
        .await,
        1
    );
    assert!(
        found_in(
            &c,
            &[
                ("erasures".into(), "selector_hash".into()),
                ("erasures".into(), "reason".into())
            ],
            "ann"
        )
        .await
        .is_empty()
    );

    // The vendors change her sessions: the next sync reads them again, and writes them erased.
    let ann_chat =
        w.so.chats()
            .into_iter()
            .find(|x| x.entity["CustomerEmail"] == json!(ANN_SO))
            .unwrap()
            .id();
    w.so.update(ann_chat, |e| e["Rating"] = json!(1));
    let ann_tc =
        w.tc.sessions()
            .into_iter()
            .find(|x| x.customer_email == ANN_TC)
            .unwrap()
            .id;
    w.tc.update(ann_tc, |x| x.notes = "changed".into());
    let ann_ml = w.ml.sessions()[1].id;
    w.ml.update(ann_ml, |x| x.stars = Some(5));
    w.sync_all(&h).await;
    check_erased("after a sync").await;
    assert_eq!(
        count(
            &c,
            &format!("superoffice_chat_sessions WHERE chat_session_id = {ann_chat} AND rating = 1")
        )
        .await,
        1,
        "the change itself landed"
    );

    // A backfill of everything.
    for src in &h.sources {
        let r = h
            .engine
            .run(
                src,
                Range::Backfill {
                    from: w.from - TimeDelta::days(1),
                    to: Utc::now(),
                },
                &CancellationToken::new(),
                &|_| {},
            )
            .await
            .unwrap();
        assert_ne!(r.outcome, Outcome::Failed, "{:?}", r.error);
    }
    check_erased("after a backfill").await;

    // A webhook's re-read of the same session (SuperOffice's path, as the worker runs it).
    let so_source = h
        .sources
        .iter()
        .find(|x| x.key().source == "superoffice")
        .unwrap();
    let hook: &sessionsync::engine::Stream = so_source;
    let mut conn = w.db.client().await;
    let tx = conn.transaction().await.unwrap();
    let p = hook.privacy().unwrap();
    p.privacy.erasures.refresh(&tx).await.unwrap();
    let seen = p.privacy.erasures.version();
    assert!(
        sessionsync::privacy::warehouse::prepare_write(&tx, p.privacy, seen)
            .await
            .unwrap()
    );
    let state = sessionsync::warehouse::load_state(&tx, so_source.key())
        .await
        .unwrap();
    let wh = webhook_of(hook);
    let pushed = wh.fetch_ids(&[ann_chat.into()], &state).await.unwrap();
    sessionsync::engine::webhook::write_pushed(&tx, so_source.key(), pushed, Some(p))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    check_erased("after a webhook re-read").await;
}

fn webhook_of(s: &sessionsync::engine::Stream) -> &dyn sessionsync::engine::Webhook {
    s.webhook().expect("a webhook side")
}

#[tokio::test]
async fn erase_refuses_without_a_key_and_an_erasure_recorded_mid_window_is_honoured() {
    let w = World::new().await;
    // No key: refused, and says why.
    let toml = w.toml("", "").replace(&format!("hash_key = \"{KEY}\""), "");
    let s = settings(&w.db, &toml);
    let mut admin = w.db.client().await;
    let _h = Harness::new(&s).await;
    let e = erase::erase(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, ANN.into())],
        false,
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("hash_key"), "{e}");

    // With a key: an erasure recorded after a window was read makes the window read again.
    let s = settings(&w.db, &w.toml("", ""));
    let h = Harness::new(&s).await;
    let so = h
        .sources
        .iter()
        .find(|x| x.key().source == "superoffice")
        .unwrap()
        .clone();
    // Read the window, then erase, then commit: the commit finds the newer erasure.
    let p = so.privacy().unwrap();
    let c = w.db.client().await;
    p.privacy.erasures.refresh(&c).await.unwrap();
    let seen = p.privacy.erasures.version();
    erase::erase(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, ANN.into())],
        false,
        None,
    )
    .await
    .unwrap();
    let tx_client = w.db.client().await;
    tx_client.batch_execute("BEGIN").await.unwrap();
    assert!(
        !sessionsync::privacy::warehouse::prepare_write(&tx_client, p.privacy, seen)
            .await
            .unwrap(),
        "a write read with the older set must be read again"
    );
    tx_client.batch_execute("ROLLBACK").await.unwrap();
    // The engine does so by itself: the run writes her erased.
    let r = h
        .engine
        .run_once(&so, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let cols = text_columns(&c).await;
    assert!(
        found_in(&c, &cols, ANN)
            .await
            .iter()
            .all(|t| !t.starts_with("superoffice"))
    );
}

#[tokio::test]
async fn a_session_mluvii_anonymises_after_it_left_the_lookback_is_anonymised_after_one_cycle() {
    let w = World::new().await;
    let toml = w.toml("", "lookback = \"1h\"");
    let h = Harness::new(&settings(&w.db, &toml)).await;
    let ml = h
        .sources
        .iter()
        .find(|x| x.key().source == "mluvii")
        .unwrap()
        .clone();
    let r = h
        .engine
        .run_once(&ml, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let c = w.db.client().await;
    let id = w.ml.sessions()[1].id;
    assert_eq!(count(&c, &format!("mluvii_sessions WHERE session_id = {id} AND raw->'guest'->>'identity' = '{ANN_ML}' AND phone_callback_number IS NOT NULL")).await, 1);
    // Days old, long out of the lookback; mluvii anonymises it now.
    w.ml.anonymize(id);
    let r = h
        .engine
        .run_once(&ml, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        count(&c, &format!("mluvii_sessions WHERE session_id = {id} AND raw->'guest' = 'null'::jsonb AND phone_callback_number IS NULL AND raw->'activities' = '[]'::jsonb AND created_at IS NOT NULL")).await,
        1,
        "{:?}",
        strings(&c, &format!("SELECT raw::text FROM mluvii_sessions WHERE session_id = {id}")).await
    );
    assert!(
        h.metrics
            .encode()
            .contains("sessionsync_erased_sessions_total{source=\"mluvii\"}"),
        "anonymisations are counted"
    );
    // The next cycles keep it so (mluvii lists it as anonymised; nothing clear comes back).
    let r = h
        .engine
        .run_once(&ml, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(
        count(
            &c,
            &format!("mluvii_sessions WHERE session_id = {id} AND raw->'guest' = 'null'::jsonb")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn deleted_and_vanished_sessions_get_source_deleted_at_and_are_erased() {
    let w = World::new().await;
    let toml = w.toml("", "");
    let h = Harness::new(&settings(&w.db, &toml)).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    let chats = w.so.chats();
    let (deleted, vanished) = (chats[4].id(), chats[5].id());
    w.so.delete(deleted);
    w.so.vanish(vanished);
    let so = h
        .sources
        .iter()
        .find(|x| x.key().source == "superoffice")
        .unwrap()
        .clone();
    h.engine
        .run_once(&so, &CancellationToken::new())
        .await
        .unwrap();
    for id in [deleted, vanished] {
        assert_eq!(
            count(&c, &format!("superoffice_chat_sessions WHERE chat_session_id = {id} AND source_deleted_at IS NOT NULL AND customer_email IS NULL AND customer_name IS NULL AND NOT raw ? 'CustomerEmail' AND requested_at IS NOT NULL")).await,
            1,
            "session {id}"
        );
        assert_eq!(count(&c, &format!("superoffice_chat_messages WHERE chat_session_id = {id} AND (message IS NOT NULL OR author IS NOT NULL)")).await, 0);
    }
    let text = h.metrics.encode();
    assert!(
        text.contains("sessionsync_erased_sessions_total{source=\"superoffice\"} 2"),
        "{text}"
    );
    // mluvii: an open session that answers 404 when re-polled.
    let ml = h
        .sources
        .iter()
        .find(|x| x.key().source == "mluvii")
        .unwrap()
        .clone();
    let open: Vec<i64> = c
        .query("SELECT (jsonb_object_keys(state->'open'))::bigint FROM sync_state WHERE source = 'mluvii'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(open.contains(&600_001), "{open:?}");
    let gone = 600_001;
    w.ml.remove(gone);
    let r = h
        .engine
        .run_once(&ml, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        count(&c, &format!("mluvii_sessions WHERE session_id = {gone} AND source_deleted_at IS NOT NULL AND coalesce(raw->'guest', '{{}}') = '{{}}' AND url IS NULL")).await,
        1,
        "{r:?} {:?}",
        strings(&c, &format!("SELECT concat_ws(' | ', source_deleted_at, raw::text, url) FROM mluvii_sessions WHERE session_id = {gone}")).await
    );
}

#[tokio::test]
async fn storage_limits_delete_in_bounded_batches_and_nothing_older_comes_back() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let from = now - TimeDelta::days(60);
    let tc = takecontrol::TakeControlSim::start(
        TC_KEY,
        takecontrol::generate_with(9, 60, from, now - TimeDelta::hours(1), Some(3)),
    )
    .await
    .unwrap();
    let toml = format!(
        "[privacy]\nretain_sessions = \"30d\"\nretain_transcripts = \"10d\"\n{}",
        tc_toml(&tc.base_url(), TC_KEY, from, "")
    );
    let s = settings(&db, &toml);
    let h = Harness::new(&s).await;
    let c = db.client().await;
    // A sync from 60 days back writes nothing older than 30 days.
    let r = h.sync().await;
    assert_ne!(r.outcome, Outcome::Failed, "{:?}", r.error);
    let cut = now - TimeDelta::days(30);
    assert_eq!(
        c.query_one(
            "SELECT count(*) FROM takecontrol_sessions WHERE started_at < $1",
            &[&cut]
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        0
    );
    assert!(count(&c, "takecontrol_sessions").await > 10);
    // ... and no transcript older than 10 days: stripped as it was written, in its transaction.
    let cut10 = now - TimeDelta::days(10);
    assert_eq!(transcripts_before(&c, cut10).await, (0, 0), "first sync");
    assert!(
        count(&c, "takecontrol_chat_messages").await > 0,
        "younger ones are kept"
    );
    // Rows an older version kept: 25,000 chat lines of sessions 40 days old.
    c.batch_execute(
        "INSERT INTO takecontrol_sessions (account, session_id, started_at, raw, customer_email)
           SELECT 'acme', 900000 + g, now() - interval '40 days' + g * interval '1 second', '{\"CHAT_INFO\": \"x\"}', 'old' || g || '@example.com'
             FROM generate_series(1, 50) g;
         INSERT INTO takecontrol_chat_messages (account, session_id, seq, message)
           SELECT 'acme', 900000 + (g % 50) + 1, g, 'old line' FROM generate_series(1, 25000) g;"
    )
    .await
    .unwrap();
    let recent_lines_before =
        count(&c, "takecontrol_chat_messages WHERE session_id < 900000").await;
    let mut admin = db.client().await;
    let dry = retention::run(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        Utc::now(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(dry.rows.get("takecontrol_sessions"), Some(&50));
    assert_eq!(
        count(&c, "takecontrol_sessions WHERE session_id > 900000").await,
        50,
        "a dry run deletes nothing"
    );
    let done = retention::run(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        Utc::now(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(done.rows.get("takecontrol_sessions"), Some(&50), "{done:?}");
    assert_eq!(
        dry.rows, done.rows,
        "the dry run counts exactly what the run removes"
    );
    assert!(
        done.batches.iter().all(|n| *n <= 10_000),
        "{:?}",
        done.batches
    );
    assert!(
        done.batches.len() >= 3,
        "25,000 lines take several transactions: {:?}",
        done.batches
    );
    assert_eq!(
        count(&c, "takecontrol_sessions WHERE session_id > 900000").await,
        0
    );
    assert_eq!(
        count(&c, "takecontrol_chat_messages WHERE session_id > 900000").await,
        0
    );
    // Transcripts of sessions older than 10 days are gone; younger ones stay.
    let old_lines: i64 = c
        .query_one(
            "SELECT count(*) FROM takecontrol_chat_messages m JOIN takecontrol_sessions s USING (account, session_id) WHERE s.started_at < $1",
            &[&cut10],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old_lines, 0);
    let raw_chat: i64 = c
        .query_one("SELECT count(*) FROM takecontrol_sessions WHERE started_at < $1 AND (raw ? 'chat_info' OR raw ? 'CHAT_INFO')", &[&cut10])
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw_chat, 0);
    assert!(
        count(&c, "takecontrol_chat_messages").await > 0
            && count(&c, "takecontrol_chat_messages").await <= recent_lines_before
    );
    // A backfill from before the limit does not bring them back.
    let r = h
        .engine
        .run(
            &h.sources[0],
            Range::Backfill { from, to: now },
            &CancellationToken::new(),
            &|_| {},
        )
        .await
        .unwrap();
    assert_ne!(r.outcome, Outcome::Failed, "{:?}", r.error);
    assert_eq!(
        c.query_one(
            "SELECT count(*) FROM takecontrol_sessions WHERE started_at < $1",
            &[&cut]
        )
        .await
        .unwrap()
        .get::<_, i64>(0),
        0
    );
    assert_eq!(
        transcripts_before(&c, cut10).await,
        (0, 0),
        "after a backfill"
    );
    // Nothing left for the next pass to remove.
    let again = retention::run(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        Utc::now(),
        true,
    )
    .await
    .unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
}

/// Chat lines, and sessions whose `raw` holds the chat, of Take Control sessions started
/// before `cut`.
async fn transcripts_before(c: &tokio_postgres::Client, cut: DateTime<Utc>) -> (i64, i64) {
    let lines: i64 = c
        .query_one(
            "SELECT count(*) FROM takecontrol_chat_messages m JOIN takecontrol_sessions s USING (account, session_id) WHERE s.started_at < $1",
            &[&cut],
        )
        .await
        .unwrap()
        .get(0);
    let raw: i64 = c
        .query_one(
            "SELECT count(*) FROM takecontrol_sessions WHERE started_at < $1 AND (raw ? 'chat_info' OR raw ? 'CHAT_INFO')",
            &[&cut],
        )
        .await
        .unwrap()
        .get(0);
    (lines, raw)
}

#[tokio::test]
async fn privacy_apply_converges_survives_being_stopped_and_a_second_run_does_nothing() {
    let w = World::new().await;
    let keep = settings(&w.db, &w.toml("", ""));
    let h = Harness::new(&keep).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    let cols = text_columns(&c).await;
    assert!(!found_in(&c, &cols, ANN).await.is_empty());
    let before = facts(&c).await;

    // The policy changes to hashing customer identity and dropping transcripts.
    let strict = settings(
        &w.db,
        &w.toml("customer_identity = \"hash\"\ntranscripts = \"drop\"", ""),
    );
    let want = sessionsync::sources::expected_privacy(&strict);
    let drift = apply::check(&c, &want).await.unwrap();
    assert!(drift.total() >= 60, "{drift:?}");

    // Stopped after its first batch (the task is dropped mid-way, as a kill would).
    let mut first = w.db.client().await;
    let stopped = sessionsync::sources::expected_privacy(&strict);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let want = stopped;
        apply::apply(vec![&mut first], &want, |_| {
            let _ = tx.send(());
            panic!("stopped after its first batch");
        })
        .await
    });
    if rx.recv().await.is_none() {
        panic!("no first batch: {:?}", task.await);
    }
    assert!(task.await.is_err(), "the apply was stopped");
    let partly = apply::check(&c, &want).await.unwrap();
    assert!(
        partly.total() < drift.total() && partly.total() > 0,
        "{partly:?} vs {drift:?}"
    );

    let mut again = w.db.client().await;
    let mut other = w.db.client().await;
    let done = apply::apply(vec![&mut again, &mut other], &want, |_| {})
        .await
        .unwrap();
    assert!(done.sessions.values().sum::<u64>() > 0);
    assert_eq!(apply::check(&c, &want).await.unwrap().total(), 0);
    for (value, class) in w.personal() {
        if class == "customer_identity" || class == "transcripts" {
            let hits = found_in(&c, &cols, &value).await;
            assert!(hits.is_empty(), "{class} `{value}` still in {hits:?}");
        }
    }
    assert_eq!(
        count(
            &c,
            &format!(
                "takecontrol_sessions WHERE customer_email = '{}'",
                hmac_hex(ANN)
            )
        )
        .await,
        1,
        "hashed exactly as a write would"
    );
    assert_eq!(facts(&c).await, before);
    // Converged: a second run changes nothing.
    let xmin = strings(
        &c,
        "SELECT string_agg(xmin::text, ',' ORDER BY session_id) FROM takecontrol_sessions",
    )
    .await;
    let second = apply::apply(vec![&mut again], &want, |_| {}).await.unwrap();
    assert_eq!(second.sessions.values().sum::<u64>(), 0, "{second:?}");
    assert_eq!(
        strings(
            &c,
            "SELECT string_agg(xmin::text, ',' ORDER BY session_id) FROM takecontrol_sessions"
        )
        .await,
        xmin
    );
    // And a sync under the new policy writes the same hashes (nothing to rewrite).
    let h2 = Harness::new(&strict).await;
    w.sync_all(&h2).await;
    assert_eq!(apply::check(&c, &want).await.unwrap().total(), 0);
}

#[tokio::test]
async fn no_log_line_or_metric_carries_a_personal_value_under_any_policy() {
    let w = World::new().await;
    for policy in ["", "customer_identity = \"hash\"\nnetwork = \"drop\""] {
        let dir = std::env::temp_dir().join(format!(
            "sessionsync-privacy-{}-{}",
            std::process::id(),
            policy.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, w.toml(policy, "")).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
            .args([
                "--config",
                file.to_str().unwrap(),
                "--log-format",
                "json",
                "sync",
            ])
            .env("DATABASE_URL", &w.db.url)
            .env("RUST_LOG", "debug")
            .output()
            .await
            .unwrap();
        let logs = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.code().is_some_and(|c| c == 0 || c == 3),
            "{logs}"
        );
        assert!(logs.contains("\"level\""), "JSON logs: {logs}");
        for (value, class) in w.personal() {
            assert!(
                !logs.contains(&value),
                "{class} `{value}` in the logs under `{policy}`"
            );
        }
        // The erase command prints counts, never the value.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
            .args([
                "--config",
                file.to_str().unwrap(),
                "erase",
                "--email",
                ANN,
                "--dry-run",
            ])
            .env("DATABASE_URL", &w.db.url)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("would erase 3 session(s)"), "{text}");
        assert!(!text.to_lowercase().contains("ann.lee"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn privacy_apply_dry_run_exits_as_check_does() {
    let w = World::new().await;
    let h = Harness::new(&settings(&w.db, &w.toml("", ""))).await;
    w.sync_all(&h).await;
    let file = TempConfig::new(&w.toml("customer_identity = \"hash\"", ""));
    let run = |args: &'static [&'static str]| {
        let path = file.path();
        let url = w.db.url.clone();
        async move {
            let o = sessionsync_command(args, &path, &[("DATABASE_URL", Some(url.as_str()))])
                .output()
                .await
                .unwrap();
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).to_string(),
            )
        }
    };
    // Rows under another policy: the dry run counts them and exits 3, as `privacy check`.
    let (code, text) = run(&["privacy", "apply", "--dry-run"]).await;
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("stored session(s) were written under another policy"),
        "{text}"
    );
    assert_eq!(run(&["privacy", "check"]).await.0, Some(3));
    // Applied: nothing left, both exit 0.
    let (code, text) = run(&["privacy", "apply"]).await;
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(run(&["privacy", "apply", "--dry-run"]).await.0, Some(0));
    assert_eq!(run(&["privacy", "check"]).await.0, Some(0));
}

#[tokio::test]
async fn the_erasure_list_joins_to_no_hashed_extract_and_old_rows_are_converted_at_start() {
    let w = World::new().await;
    // Everything of the customer hashed: the e-mail stored is HMAC(key, e-mail).
    let s = settings(&w.db, &w.toml("customer_identity = \"hash\"", ""));
    let h = Harness::new(&s).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    let hasher = sessionsync::privacy::Hasher::new(KEY.as_bytes());
    let policy_hash = hasher.hex(ANN);
    assert!(
        count(
            &c,
            &format!("superoffice_chat_sessions WHERE customer_email = '{policy_hash}'")
        )
        .await
            > 0,
        "the extract holds the policy's hash"
    );
    let mut admin = w.db.client().await;
    erase::erase(
        &mut admin,
        &s.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, ANN.into())],
        false,
        None,
    )
    .await
    .unwrap();
    // No selector equals a hash any policy stores: the list joins to nothing.
    let joined = "erasures e JOIN (
            SELECT customer_email AS v FROM superoffice_chat_sessions
            UNION ALL SELECT customer_email FROM takecontrol_sessions
            UNION ALL SELECT raw -> 'guest' ->> 'identity' FROM mluvii_sessions) x ON x.v = e.selector_hash";
    assert_eq!(count(&c, joined).await, 0);
    assert_eq!(
        count(
            &c,
            &format!("erasures WHERE selector_hash = '{policy_hash}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "erasures WHERE selector_hash = '{}' AND derivation = 'selector'",
                hasher.selector(ANN)
            )
        )
        .await,
        1
    );

    // A row recorded the old way (before migration 0017: the policy's hash, a join key) is
    // converted at the next start, and stays in force meanwhile and after.
    let bob = "bob.old@example.com";
    c.execute(
        "INSERT INTO erasures (selector_kind, selector_hash, sessions, derivation) VALUES ('email', $1, 1, 'hmac')",
        &[&hasher.hex(bob)],
    )
    .await
    .unwrap();
    let before = sessionsync::privacy::Erasures::new(&s.privacy);
    before.refresh(&c).await.unwrap();
    assert!(
        before.contains_any(&[hasher.selector(bob)]),
        "read as its selector before conversion"
    );
    let _again = Harness::new(&s).await;
    assert_eq!(count(&c, "erasures WHERE derivation = 'hmac'").await, 0);
    assert_eq!(
        count(
            &c,
            &format!("erasures WHERE selector_hash = '{}'", hasher.selector(bob))
        )
        .await,
        1
    );
    assert_eq!(count(&c, joined).await, 0);
}

/// Rows of the three session tables whose e-mail holds `value`, by label.
async fn emails_labelled(c: &tokio_postgres::Client, value: &str) -> Vec<String> {
    strings(
        c,
        &format!(
            "SELECT coalesce(privacy_policy, 'none') FROM (
                SELECT privacy_policy FROM takecontrol_sessions WHERE customer_email = '{value}'
                UNION ALL SELECT privacy_policy FROM superoffice_chat_sessions WHERE customer_email = '{value}') x
             ORDER BY 1"
        ),
    )
    .await
}

#[tokio::test]
async fn policy_labels_tell_the_truth_through_a_policy_round_trip() {
    let w = World::new().await;
    let hash = settings(&w.db, &w.toml("customer_identity = \"hash\"", ""));
    let keep = settings(&w.db, &w.toml("", ""));
    let h = Harness::new(&hash).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    let hashed = hmac_hex(ANN);
    let labels = emails_labelled(&c, &hashed).await;
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels.iter().all(|l| l.starts_with("hkkkk:")), "{labels:?}");

    // The policy section goes: `apply` cannot un-hash, so it relabels nothing it did not convert.
    let want_keep = sessionsync::sources::expected_privacy(&keep);
    let (mut a, mut b) = (w.db.client().await, w.db.client().await);
    let done = apply::apply(vec![&mut a, &mut b], &want_keep, |_| {})
        .await
        .unwrap();
    assert_eq!(done.sessions.values().sum::<u64>(), 0, "{done:?}");
    assert!(done.need_reread_total() > 0, "{done:?}");
    assert_eq!(
        emails_labelled(&c, &hashed).await,
        labels,
        "labels unchanged"
    );
    // `privacy check` reports exactly the rows a re-read must fix.
    assert_eq!(
        apply::check(&c, &want_keep).await.unwrap().total(),
        done.need_reread_total() as i64
    );
    // The command says what re-reads them, and exits 3.
    let file = TempConfig::new(&w.toml("", ""));
    let o = sessionsync_command(
        &["privacy", "apply"],
        &file.path(),
        &[("DATABASE_URL", Some(w.db.url.as_str()))],
    )
    .output()
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("sessionsync backfill --source superoffice --account"),
        "{text}"
    );

    // The hash policy comes back: nothing to do, and nothing hashed twice.
    let want_hash = sessionsync::sources::expected_privacy(&hash);
    assert_eq!(apply::check(&c, &want_hash).await.unwrap().total(), 0);
    let done = apply::apply(vec![&mut a, &mut b], &want_hash, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (
            done.sessions.values().sum::<u64>(),
            done.need_reread_total()
        ),
        (0, 0)
    );
    assert!(
        emails_labelled(&c, &hmac_hex(&hashed)).await.is_empty(),
        "HMAC(HMAC(e-mail))"
    );
    // And `erase` still finds her.
    let dry = erase::erase(
        &mut a,
        &hash.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, ANN.into())],
        true,
        None,
    )
    .await
    .unwrap();
    assert_eq!(dry.total_sessions(), 3, "{dry:?}");

    // Under `keep` again, a backfill rewrites every row though the vendors' records did not
    // change: its label is part of "unchanged".
    let hk = Harness::new(&keep).await;
    w.backfill_all(&hk).await;
    assert_eq!(apply::check(&c, &want_keep).await.unwrap().total(), 0);
    assert!(emails_labelled(&c, &hashed).await.is_empty());
    // Nothing depends on the first key any more: a configuration without it is accepted, and
    // the key is forgotten.
    let other = settings(
        &w.db,
        &w.toml("", "")
            .replace(KEY, "a-wholly-new-hash-key-0123456789abcdef-01"),
    );
    sessionsync::privacy::keys::check_keys(
        &c,
        &other.privacy,
        &sessionsync::sources::inventories(),
    )
    .await
    .unwrap();
    assert_eq!(count(&c, "hash_keys").await, 0);
}

#[tokio::test]
async fn a_key_rotation_keeps_every_erasure_and_a_key_still_in_use_cannot_be_dropped() {
    const KEY2: &str = "rotated-hash-key-0123456789abcdef-9876543210";
    let w = World::new().await;
    let policy = "customer_identity = \"hash\"";
    let k1 = settings(&w.db, &w.toml(policy, ""));
    let h1 = Harness::new(&k1).await;
    w.sync_all(&h1).await;
    let c = w.db.client().await;
    let cols = text_columns(&c).await;
    let mut admin = w.db.client().await;
    // One person erased under the first key.
    let first = w.tc.sessions()[7].customer_email.clone();
    let done = erase::erase(
        &mut admin,
        &k1.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, first.clone())],
        false,
        None,
    )
    .await
    .unwrap();
    assert_eq!(done.total_sessions(), 1);

    // The key is rotated: the old one listed as previous.
    let rotated = w.toml(policy, "").replace(
        &format!("hash_key = \"{KEY}\""),
        &format!("hash_key = \"{KEY2}\"\nprevious_hash_keys = [\"{KEY}\"]"),
    );
    let k2 = settings(&w.db, &rotated);
    let h2 = Harness::new(&k2).await;
    // `erase` under the new key finds her in rows still hashed under the old one.
    let done = erase::erase(
        &mut admin,
        &k2.privacy,
        &sessionsync::sources::inventories(),
        &[Target::Value(Selector::Email, ANN.into())],
        false,
        None,
    )
    .await
    .unwrap();
    assert_eq!(done.total_sessions(), 3, "{done:?}");
    // A backfill under the new key brings neither back, under either key.
    w.backfill_all(&h2).await;
    let k2_hasher = sessionsync::privacy::Hasher::new(KEY2.as_bytes());
    for person in [first.as_str(), ANN] {
        let norm = person.trim().to_lowercase();
        for needle in [norm.clone(), hmac_hex(&norm), k2_hasher.hex(&norm)] {
            let hits = found_in(&c, &cols, &needle).await;
            assert!(hits.is_empty(), "{person} ({needle}) back in {hits:?}");
        }
    }
    // Rows are now hashed under the new key (the backfill re-read them).
    assert!(
        count(
            &c,
            &format!(
                "takecontrol_sessions WHERE privacy_policy LIKE '%:{}'",
                sessionsync::privacy::key_fingerprint(&k2_hasher)
            )
        )
        .await
            > 0
    );

    // Dropping the old key while erasures depend on it is a configuration error (exit 2) that
    // names its fingerprint and how many depend on it.
    let dropped = w.toml(policy, "").replace(
        &format!("hash_key = \"{KEY}\""),
        &format!("hash_key = \"{KEY2}\""),
    );
    let file = TempConfig::new(&dropped);
    let o = sessionsync_command(
        &["sync"],
        &file.path(),
        &[("DATABASE_URL", Some(w.db.url.as_str()))],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let k1_id =
        sessionsync::privacy::key_fingerprint(&sessionsync::privacy::Hasher::new(KEY.as_bytes()));
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&k1_id) && err.contains("previous_hash_keys") && err.contains("erasure(s)"),
        "{err}"
    );
    assert!(
        !err.contains(KEY) && !err.contains(KEY2),
        "a key in the error: {err}"
    );
}

#[tokio::test]
async fn superoffice_company_names_are_customer_identity_and_stored_ones_are_converted_at_start() {
    let w = World::new().await;
    let hash = settings(&w.db, &w.toml("customer_identity = \"hash\"", ""));
    let h = Harness::new(&hash).await;
    w.sync_all(&h).await;
    let c = w.db.client().await;
    let cols = text_columns(&c).await;
    let clear = "Acme s.r.o.";
    let hashed = hmac_hex("acme s.r.o.");
    assert!(
        found_in(&c, &cols, clear).await.is_empty(),
        "written hashed"
    );
    let n = count(
        &c,
        &format!("superoffice_chat_sessions WHERE customer_company_name = '{hashed}'"),
    )
    .await;
    assert!(n > 0);
    // Rows as a version before migration 0018 wrote them: the name in clear under a hash label.
    c.batch_execute(&format!(
        "UPDATE superoffice_chat_sessions
            SET customer_company_name = '{clear}',
                raw = jsonb_set(raw, '{{CustomerCompanyName}}', '\"{clear}\"')
          WHERE customer_company_name = '{hashed}';
         UPDATE conversions SET done_at = NULL"
    ))
    .await
    .unwrap();
    assert!(!found_in(&c, &cols, clear).await.is_empty());
    // The next start converts them with the key their label names.
    let _next = Harness::new(&hash).await;
    assert!(found_in(&c, &cols, clear).await.is_empty());
    assert_eq!(
        count(
            &c,
            &format!("superoffice_chat_sessions WHERE customer_company_name = '{hashed}' AND raw ->> 'CustomerCompanyName' = '{hashed}'"),
        )
        .await,
        n
    );
    assert_eq!(count(&c, "conversions WHERE done_at IS NULL").await, 0);
    // Under `drop`, the name is removed.
    let drop = settings(&w.db, &w.toml("customer_identity = \"drop\"", ""));
    let hd = Harness::new(&drop).await;
    w.backfill_all(&hd).await;
    assert_eq!(
        count(&c, "superoffice_chat_sessions WHERE customer_company_name IS NOT NULL OR raw ? 'CustomerCompanyName'").await,
        0
    );
}

#[tokio::test]
async fn erase_finds_a_phone_or_an_email_inside_mluvii_call_params_in_clear_or_hashed() {
    for policy in ["", "customer_identity = \"hash\""] {
        let w = World::new().await;
        let mut ids = w.ml.sessions().into_iter().filter(|x| {
            x.guest
                .as_ref()
                .is_some_and(|g| g["callParams"]["phone"].is_string())
        });
        let (by_phone, by_email) = (ids.next().unwrap(), ids.next().unwrap());
        let phone = by_phone.guest.as_ref().unwrap()["callParams"]["phone"]
            .as_str()
            .unwrap()
            .to_string();
        w.ml.update(by_email.id, |s| {
            s.guest.as_mut().unwrap()["callParams"]["email"] = json!("Caller.Two@Example.net");
        });
        let s = settings(&w.db, &w.toml(policy, ""));
        let h = Harness::new(&s).await;
        w.sync_all(&h).await;
        let c = w.db.client().await;
        let params = |id: i64| {
            let c = &c;
            async move {
                count(
                    c,
                    &format!(
                        "mluvii_sessions WHERE session_id = {id} AND raw -> 'guest' ? 'callParams'"
                    ),
                )
                .await
            }
        };
        assert_eq!(
            (params(by_phone.id).await, params(by_email.id).await),
            (1, 1)
        );
        let mut admin = w.db.client().await;
        let done = erase::erase(
            &mut admin,
            &s.privacy,
            &sessionsync::sources::inventories(),
            &[
                Target::Value(Selector::Phone, phone.replace(' ', "")),
                Target::Value(Selector::Email, "caller.two@example.NET".into()),
            ],
            false,
            None,
        )
        .await
        .unwrap();
        assert!(
            done.sessions.get("mluvii").is_some_and(|n| *n >= 2),
            "{policy}: {done:?}"
        );
        assert_eq!(
            (params(by_phone.id).await, params(by_email.id).await),
            (0, 0),
            "{policy}: erased"
        );
        // A BI session whose search_path does not name the schema plans queries on the table
        // (PostgreSQL inlines the index's expression there).
        let bi = w.db.client().await;
        bi.batch_execute("SET search_path TO public").await.unwrap();
        let schema: String = c
            .query_one("SELECT current_schema()::text", &[])
            .await
            .unwrap()
            .get(0);
        bi.query_one(
            &format!("SELECT count(*) FROM {schema}.mluvii_sessions WHERE session_id > 0"),
            &[],
        )
        .await
        .unwrap();
        // And a backfill writes them erased again (the selectors match inside callParams).
        w.backfill_all(&h).await;
        assert_eq!(
            (params(by_phone.id).await, params(by_email.id).await),
            (0, 0),
            "{policy}: after a backfill"
        );
    }
}
