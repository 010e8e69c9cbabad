//! `sessionsync renormalize` (operations.md): rows rebuilt from the stored `raw` with no vendor
//! request. For each source, stored rows made as an older sessionsync made them (the new
//! columns empty, another fingerprint, child rows missing) are rebuilt to what a sync writes
//! today, while the simulator's request log stays empty; a second run rewrites nothing. Then
//! what it leaves: rows under another privacy policy, a hashed value (not hashed twice), rows
//! before `--from`, a dry run; and how it resumes after the last committed batch, and how the
//! renormalize a migration says is due is shown and cleared.

use chrono::{DateTime, TimeDelta, Utc};
use sessionsync_sim::{mluvii, superoffice, takecontrol};

use crate::helpers::*;

const TC_KEY: &str = "renorm-tc-key";
const HASH_KEY: &str = "0123456789abcdef0123456789abcdef-renorm";

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

/// The binary's `renormalize` (or `args`) against `db` with the config `toml`.
async fn cli(db: &TestDb, toml: &str, args: &[&str]) -> Run {
    let cfg = TempConfig::new(&format!("[warehouse]\nurl = \"${{DATABASE_URL}}\"\n{toml}"));
    let out = sessionsync_command(args, &cfg.path(), &[("DATABASE_URL", Some(&db.url))])
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).to_string(),
        err: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n{}{}", self.code, self.out, self.err)
    }
}

/// Every row of `sql`, each as one text.
async fn rows(db: &TestDb, sql: &str) -> Vec<String> {
    strings(&db.client().await, sql).await
}

struct Tc {
    db: TestDb,
    sim: takecontrol::TakeControlSim,
    toml: String,
}

/// 40 Take Control sessions over the last three days, synced.
async fn takecontrol_synced(privacy: &str) -> Tc {
    let now = Utc::now();
    let db = TestDb::new().await;
    let sim = takecontrol::TakeControlSim::start(
        TC_KEY,
        takecontrol::generate(11, 40, now - TimeDelta::days(3), now - TimeDelta::hours(1)),
    )
    .await
    .unwrap();
    let toml = format!(
        "{privacy}\n{}",
        tc_toml(&sim.base_url(), TC_KEY, now - TimeDelta::days(4), "")
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.totals.written, 40, "{:?}", r.error);
    sim.log().clear();
    Tc { db, sim, toml }
}

const TC_ROWS: &str = "SELECT session_id || '|' || coalesce(duration_seconds::text, '-') || '|' || coalesce(customer_email, '-') || '|' || content_hash || '|' || privacy_policy
                         FROM takecontrol_sessions ORDER BY session_id";
const TC_MESSAGES: &str = "SELECT session_id || '|' || seq || '|' || coalesce(message, '-') FROM takecontrol_chat_messages ORDER BY session_id, seq";

/// The rows an older sessionsync left: no duration, another fingerprint, no chat lines.
const TC_OLDER: &str =
    "UPDATE takecontrol_sessions SET duration_seconds = NULL, content_hash = 'an older read';
                        DELETE FROM takecontrol_chat_messages;";

#[tokio::test]
async fn takecontrol_rows_are_rebuilt_from_raw_with_no_vendor_request() {
    let tc = takecontrol_synced("").await;
    let (before, messages) = (rows(&tc.db, TC_ROWS).await, rows(&tc.db, TC_MESSAGES).await);
    assert!(!messages.is_empty());
    tc.db.client().await.batch_execute(TC_OLDER).await.unwrap();

    let r = cli(
        &tc.db,
        &tc.toml,
        &["renormalize", "--source", "takecontrol"],
    )
    .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains("takecontrol/acme: 40 session(s) read in")
            && r.out
                .contains("takecontrol_sessions: rebuilt 40, unchanged 0")
            && r.out.contains(&format!(
                "takecontrol_chat_messages: {} row(s) with them",
                messages.len()
            )),
        "{r}"
    );
    assert_eq!(rows(&tc.db, TC_ROWS).await, before);
    assert_eq!(rows(&tc.db, TC_MESSAGES).await, messages);
    assert!(
        tc.sim.log().entries().is_empty(),
        "no vendor request: {:?}",
        tc.sim.log().entries()
    );

    // Nothing changed since: nothing is rewritten.
    let r = cli(&tc.db, &tc.toml, &["renormalize"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.out.contains("rebuilt 0, unchanged 40"), "{r}");
    assert!(tc.sim.log().entries().is_empty());
    let c = tc.db.client().await;
    assert_eq!(
        count(&c, "sync_state WHERE stream = 'renormalize'").await,
        0,
        "a finished renormalize leaves no checkpoint"
    );
}

#[tokio::test]
async fn a_dry_run_counts_and_changes_nothing_and_from_limits_the_range() {
    let tc = takecontrol_synced("").await;
    tc.db.client().await.batch_execute(TC_OLDER).await.unwrap();
    let older = rows(&tc.db, TC_ROWS).await;

    let r = cli(&tc.db, &tc.toml, &["renormalize", "--dry-run"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains("dry run: nothing is changed") && r.out.contains("would rebuild 40"),
        "{r}"
    );
    assert_eq!(rows(&tc.db, TC_ROWS).await, older);

    // --from: only the sessions that started at or after it.
    let c = tc.db.client().await;
    let from: DateTime<Utc> = c
        .query_one(
            "SELECT started_at FROM takecontrol_sessions ORDER BY started_at OFFSET 25 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let later = count(
        &c,
        &format!(
            "takecontrol_sessions WHERE started_at >= '{}'",
            from.to_rfc3339()
        ),
    )
    .await;
    let r = cli(
        &tc.db,
        &tc.toml,
        &["renormalize", "--from", &from.to_rfc3339()],
    )
    .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains(&format!("rebuilt {later}, unchanged 0")),
        "{r}"
    );
    assert_eq!(
        count(&c, "takecontrol_sessions WHERE duration_seconds IS NULL").await,
        40 - later
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "takecontrol_sessions WHERE duration_seconds IS NULL AND started_at >= '{}'",
                from.to_rfc3339()
            )
        )
        .await,
        0
    );
    assert!(tc.sim.log().entries().is_empty());
}

#[tokio::test]
async fn it_resumes_after_the_last_committed_batch() {
    let tc = takecontrol_synced("").await;
    let c = tc.db.client().await;
    c.batch_execute(TC_OLDER).await.unwrap();
    let mid: i64 = c
        .query_one(
            "SELECT session_id FROM takecontrol_sessions ORDER BY session_id OFFSET 14 LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // What a run stopped after its batch up to `mid` left.
    c.execute(
        "INSERT INTO sync_state (source, account, stream, state) VALUES ('takecontrol', 'acme', 'renormalize', $1)",
        &[&serde_json::json!({"after": mid, "from": null})],
    )
    .await
    .unwrap();
    let r = cli(&tc.db, &tc.toml, &["renormalize"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains("25 session(s) read") && r.out.contains("rebuilt 25"),
        "{r}"
    );
    assert_eq!(
        count(
            &c,
            &format!("takecontrol_sessions WHERE duration_seconds IS NULL AND session_id <= {mid}")
        )
        .await,
        15,
        "the batches before the checkpoint are not read again"
    );
    assert_eq!(
        count(&c, "sync_state WHERE stream = 'renormalize'").await,
        0
    );
    // A checkpoint of another range is not resumed: everything is read.
    c.execute(
        "INSERT INTO sync_state (source, account, stream, state) VALUES ('takecontrol', 'acme', 'renormalize', $1)",
        &[&serde_json::json!({"after": mid, "from": "2020-01-01T00:00:00Z"})],
    )
    .await
    .unwrap();
    let r = cli(&tc.db, &tc.toml, &["renormalize"]).await;
    assert!(
        r.out.contains("40 session(s) read") && r.out.contains("rebuilt 15"),
        "{r}"
    );
    assert_eq!(
        count(&c, "takecontrol_sessions WHERE duration_seconds IS NULL").await,
        0
    );
    // `status` does not show the checkpoint as a stream.
    let r = cli(&tc.db, &tc.toml, &["status", "--json"]).await;
    assert!(!r.out.contains("\"renormalize\""), "{r}");
}

#[tokio::test]
async fn the_privacy_policy_of_stored_rows_holds() {
    let privacy = format!("[privacy]\nhash_key = \"{HASH_KEY}\"\ncustomer_identity = \"hash\"");
    let tc = takecontrol_synced(&privacy).await;
    let (before, messages) = (rows(&tc.db, TC_ROWS).await, rows(&tc.db, TC_MESSAGES).await);
    let c = tc.db.client().await;
    let hashed = count(
        &c,
        "takecontrol_sessions WHERE customer_email ~ '^[0-9a-f]{64}$'",
    )
    .await;
    assert!(hashed > 30, "the e-mails are stored hashed: {before:?}");
    // The transcript in raw is hashed whole; its lines were stored scrubbed one by one.
    assert_eq!(
        count(&c, "takecontrol_sessions WHERE raw->>'chat_info' LIKE '<%'").await,
        0
    );
    assert!(!messages.is_empty());
    c.batch_execute(
        "UPDATE takecontrol_sessions SET duration_seconds = NULL, content_hash = 'an older read'",
    )
    .await
    .unwrap();
    // Five rows stored under another policy (as before a policy change): left as they are.
    c.batch_execute(
        "UPDATE takecontrol_sessions SET privacy_policy = 'kkkkk' WHERE session_id IN
           (SELECT session_id FROM takecontrol_sessions ORDER BY session_id LIMIT 5)",
    )
    .await
    .unwrap();
    let r = cli(&tc.db, &tc.toml, &["renormalize"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains("rebuilt 35")
            && r.out.contains(
                "5 stored under another privacy policy left as they are (`sessionsync privacy apply` first)"
            ),
        "{r}"
    );
    // The rebuilt rows are what the sync wrote: the hashed e-mail as it was, not hashed again.
    let after = rows(&tc.db, TC_ROWS).await;
    assert_eq!(after[5..], before[5..]);
    assert_eq!(
        rows(&tc.db, TC_MESSAGES).await,
        messages,
        "the stored chat lines are kept, not read from the hash in raw"
    );
    assert_eq!(
        count(
            &c,
            "takecontrol_sessions WHERE privacy_policy = 'kkkkk' AND duration_seconds IS NULL"
        )
        .await,
        5
    );
    assert!(tc.sim.log().entries().is_empty());
}

#[tokio::test]
async fn mluvii_new_fields_reach_stored_rows_and_the_due_renormalize_is_cleared() {
    let now = Utc::now();
    let db = TestDb::new().await;
    let mut sessions = mluvii::generate(5, 24, now - TimeDelta::days(3), now - TimeDelta::hours(2));
    for s in &mut sessions {
        s.status = Some("CLOSED".into());
    }
    let sim = mluvii::MluviiSim::start("renorm-u", "renorm-s", sessions)
        .await
        .unwrap();
    let toml = ml_account_toml(
        &sim.base_url(),
        "acme",
        ("renorm-u", "renorm-s"),
        now - TimeDelta::days(4),
        "requests_per_second = 1000",
    );
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert_eq!(r.totals.written, 24, "{:?}", r.error);
    sim.log().clear();
    let fields = "SELECT session_id || '|' || coalesce(guest_feedback_scale, '-') || '|' || coalesce(termination_reason, '-') || '|' || coalesce(guest_left::text, '-') || '|' || coalesce(chatbot::text, '-')
                    FROM mluvii_sessions ORDER BY session_id";
    let notes = "SELECT session_id || '|' || user_id || '|' || coalesce(note, '-') FROM mluvii_session_operators ORDER BY 1";
    let (before, before_notes) = (rows(&db, fields).await, rows(&db, notes).await);
    let c = db.client().await;
    let scales = strings(
        &c,
        "SELECT DISTINCT guest_feedback_scale FROM mluvii_sessions WHERE guest_feedback_scale IS NOT NULL ORDER BY 1",
    )
    .await;
    assert_eq!(scales, ["likert", "nps"]);
    assert!(count(&c, "mluvii_sessions WHERE termination_reason IS NOT NULL").await > 0);
    assert!(count(&c, "mluvii_sessions WHERE chatbot").await > 0);
    assert!(
        count(
            &c,
            "mluvii_session_operators WHERE note LIKE 'Called back%'"
        )
        .await
            > 0
    );
    // As migration 0023 finds rows stored before it: the columns empty, a renormalize due.
    c.batch_execute(
        "UPDATE mluvii_sessions SET guest_feedback_scale = NULL, termination_reason = NULL, guest_left = NULL,
                chatbot = NULL, content_hash = 'mluvii-2';
         UPDATE mluvii_session_operators SET note = NULL;
         INSERT INTO renormalize_due (source, migration, reason) VALUES ('mluvii', '0023', 'guest_feedback_scale and more');",
    )
    .await
    .unwrap();
    let status = cli(&db, &toml, &["status"]).await;
    assert!(
        status
            .out
            .contains("renormalize due for mluvii: migration 0023")
            && status
                .out
                .contains("`sessionsync renormalize --source mluvii`"),
        "{status}"
    );
    let status = cli(&db, &toml, &["status", "--json"]).await;
    assert!(
        status.out.contains("\"renormalize_due\": \"migration 0023"),
        "{status}"
    );

    // --account: the due stays (other accounts may hold rows).
    let r = cli(&db, &toml, &["renormalize", "--account", "acme"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains("mluvii_sessions: rebuilt 24, unchanged 0")
            && r.out.contains("mluvii_session_operators: ")
            && r.out.contains("mluvii_routing_events: ")
            && r.out.contains("mluvii_session_durations: 24 row(s)"),
        "{r}"
    );
    assert_eq!(rows(&db, fields).await, before);
    assert_eq!(rows(&db, notes).await, before_notes);
    assert_eq!(count(&c, "renormalize_due").await, 1);
    // The whole source: the due is done.
    let r = cli(&db, &toml, &["renormalize", "--source", "mluvii"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains("rebuilt 0, unchanged 24")
            && r.out
                .contains("mluvii: every account rebuilt; the renormalize due is done"),
        "{r}"
    );
    assert_eq!(count(&c, "renormalize_due").await, 0);
    assert!(sim.log().entries().is_empty(), "{:?}", sim.log().entries());
    // support_sessions carries them.
    let view = strings(
        &c,
        "SELECT DISTINCT feedback_scale FROM support_sessions WHERE source = 'mluvii' AND feedback_stars IS NOT NULL ORDER BY 1",
    )
    .await;
    assert_eq!(view, ["likert", "nps"]);
    // A command that starts the pipeline says so at start.
    c.batch_execute(
        "INSERT INTO renormalize_due (source, migration, reason) VALUES ('mluvii', '0023', 'guest_feedback_scale and more')",
    )
    .await
    .unwrap();
    let r = cli(&db, &toml, &["sync"]).await;
    assert!(
        r.err.contains("renormalize due")
            && r.err.contains("sessionsync renormalize --source mluvii"),
        "{r}"
    );
}

#[tokio::test]
async fn superoffice_closed_by_and_topics_and_their_rebuild() {
    let now = Utc::now();
    let db = TestDb::new().await;
    let sim = superoffice::SuperOfficeSim::start(
        superoffice::SimCredentials {
            ticket: SO_TICKET.into(),
            app_token: SO_APP_TOKEN.into(),
            bearer: "b".into(),
        },
        superoffice::generate(3, 30, now - TimeDelta::days(3), now - TimeDelta::hours(2)),
    )
    .await
    .unwrap();
    let toml = so_account_toml(&sim.base_url(), "acme", "requests_per_second = 1000");
    let h = Harness::new(&settings(&db, &toml)).await;
    let r = h.sync().await;
    assert!(r.totals.written >= 20, "{:?}", r.error);
    let c = db.client().await;
    // Who closed a chat, from its messages' SpecialType (by name or by number).
    let closers = strings(
        &c,
        "SELECT DISTINCT closed_by FROM superoffice_chat_sessions WHERE closed_by IS NOT NULL ORDER BY 1",
    )
    .await;
    assert_eq!(closers, ["customer", "idle", "user"]);
    assert_eq!(
        count(
            &c,
            "superoffice_chat_sessions WHERE closed_by IS NOT NULL AND status NOT IN ('Closed', 'Finished')"
        )
        .await,
        0,
        "only closed chats"
    );
    // The topics, read once a day (not per chat), name each chat's topic in support_sessions.
    let topics = strings(
        &c,
        "SELECT topic_id || '=' || name FROM superoffice_chat_topics ORDER BY topic_id",
    )
    .await;
    assert_eq!(topics, ["1=Sales", "2=Support", "3=Billing"]);
    let topic_reads = |sim: &superoffice::SuperOfficeSim| {
        sim.log()
            .entries()
            .iter()
            .filter(|e| e.path.ends_with("ChatTopicsForUser"))
            .count()
    };
    assert_eq!(topic_reads(&sim), 1);
    assert_eq!(
        count(
            &c,
            "support_sessions WHERE source = 'superoffice' AND topic IS NULL"
        )
        .await,
        0
    );
    h.sync().await;
    assert_eq!(topic_reads(&sim), 1, "the topics are refreshed daily");

    let closed = "SELECT chat_session_id || '|' || coalesce(closed_by, '-') FROM superoffice_chat_sessions ORDER BY 1";
    let before = rows(&db, closed).await;
    c.batch_execute("UPDATE superoffice_chat_sessions SET closed_by = NULL")
        .await
        .unwrap();
    sim.log().clear();
    let with_closer = before.iter().filter(|r| !r.ends_with("|-")).count();
    let r = cli(&db, &toml, &["renormalize", "--source", "superoffice"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.out.contains(&format!(
            "superoffice_chat_sessions: rebuilt {with_closer},"
        )),
        "{r}"
    );
    assert_eq!(rows(&db, closed).await, before);
    assert!(sim.log().entries().is_empty(), "{:?}", sim.log().entries());
    let r = cli(&db, &toml, &["renormalize", "--source", "superoffice"]).await;
    assert!(r.out.contains("rebuilt 0,"), "{r}");
}

/// Under policies that hash or drop every class, each source's stored documents still rebuild
/// every row as the sync wrote it (nothing set aside, nothing hashed twice, child rows as
/// stored) and send no request.
#[tokio::test]
async fn every_source_rebuilds_under_hashing_and_dropping_policies() {
    for policy in ["hash", "drop"] {
        let privacy = format!(
            "[privacy]\nhash_key = \"{HASH_KEY}\"\ncustomer_identity = \"{policy}\"\nnetwork = \"{policy}\"\nfree_text = \"{policy}\"\ntranscripts = \"{policy}\"\nagent_identity = \"{policy}\""
        );
        let now = Utc::now();
        let (from, to) = (now - TimeDelta::days(3), now - TimeDelta::hours(2));
        let db = TestDb::new().await;
        let tc = takecontrol::TakeControlSim::start(TC_KEY, takecontrol::generate(2, 20, from, to))
            .await
            .unwrap();
        let mut sessions = mluvii::generate(2, 20, from, to);
        for s in &mut sessions {
            s.status = Some("CLOSED".into());
        }
        let ml = mluvii::MluviiSim::start("u", "s", sessions).await.unwrap();
        let so = superoffice::SuperOfficeSim::start(
            superoffice::SimCredentials {
                ticket: SO_TICKET.into(),
                app_token: SO_APP_TOKEN.into(),
                bearer: "b".into(),
            },
            superoffice::generate(2, 20, from, to),
        )
        .await
        .unwrap();
        let toml = format!(
            "{privacy}\n{}{}{}",
            tc_toml(&tc.base_url(), TC_KEY, now - TimeDelta::days(4), ""),
            ml_account_toml(
                &ml.base_url(),
                "acme",
                ("u", "s"),
                now - TimeDelta::days(4),
                "requests_per_second = 1000"
            ),
            so_account_toml(&so.base_url(), "acme", "requests_per_second = 1000"),
        );
        let h = Harness::new(&settings(&db, &toml)).await;
        for s in &h.sources {
            let r = h
                .engine
                .run_once(s, &tokio_util::sync::CancellationToken::new())
                .await
                .unwrap();
            assert!(
                r.totals.written >= 15,
                "{policy} {}: {:?}",
                s.key(),
                r.error
            );
        }
        let tables = [
            "takecontrol_sessions",
            "takecontrol_chat_messages",
            "takecontrol_video_links",
            "mluvii_sessions",
            "mluvii_session_operators",
            "mluvii_routing_events",
            "mluvii_session_durations",
            "superoffice_chat_sessions",
            "superoffice_chat_messages",
        ];
        let snapshot = || async {
            let mut all = Vec::new();
            for t in tables {
                let cols = match t {
                    // When it was written is not what it holds.
                    "takecontrol_sessions"
                    | "mluvii_sessions"
                    | "superoffice_chat_sessions"
                    | "superoffice_chat_messages" => {
                        "to_jsonb(x) - 'last_synced_at' - 'fetched_at'".to_string()
                    }
                    _ => "to_jsonb(x)".to_string(),
                };
                all.extend(
                    rows(&db, &format!("SELECT ({cols})::text FROM {t} x ORDER BY 1")).await,
                );
            }
            all
        };
        let before = snapshot().await;
        db.client()
            .await
            .batch_execute(
                "UPDATE takecontrol_sessions SET content_hash = 'older';
                 UPDATE mluvii_sessions SET content_hash = 'older';
                 UPDATE superoffice_chat_sessions SET content_hash = 'older', closed_by = NULL;",
            )
            .await
            .unwrap();
        for log in [tc.log(), ml.log(), so.log()] {
            log.clear();
        }
        let r = cli(&db, &toml, &["renormalize"]).await;
        assert_eq!(r.code, Some(0), "{policy}: {r}");
        assert!(!r.out.contains("no longer make a row"), "{policy}: {r}");
        assert!(!r.out.contains("another privacy policy"), "{policy}: {r}");
        assert!(
            r.out.contains("takecontrol_sessions: rebuilt 20,"),
            "{policy}: {r}"
        );
        assert!(
            r.out.contains("mluvii_sessions: rebuilt 20,"),
            "{policy}: {r}"
        );
        let after = snapshot().await;
        let differ: Vec<_> = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| a != b)
            .take(3)
            .collect();
        assert!(
            differ.is_empty() && before.len() == after.len(),
            "{policy}: {differ:#?}"
        );
        for log in [tc.log(), ml.log(), so.log()] {
            assert!(log.entries().is_empty(), "{policy}: {:?}", log.entries());
        }
    }
}
