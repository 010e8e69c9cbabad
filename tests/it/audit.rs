//! The completeness audit (sources.md section 5), the same checks for each of the three sources:
//! a session indexed late (dates four days back, behind every lookback) is found and stored
//! once; a session deleted outright is flagged, and nothing else is, while a fifth of the
//! vendor's answers are 500s or 429s; a day whose listing fails flags nothing; an erased
//! person's late session is stored already erased; a session older than `retain_sessions` is
//! not brought back; a second audit repairs nothing and sends only list requests. Then, for the
//! binary: exit codes and lines, `--dry-run`, the stream's claim, and two daemons that audit
//! each account once.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sessionsync::engine::{AuditOptions, AuditReport, Days, Outcome};
use sessionsync_sim::{Fault, Faults, RequestLog, RetryAfter};
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

pub(crate) const TC_KEY: &str = "audit-tc-key";
const ML_ID: &str = "audit-ml-user";
const ML_SECRET: &str = "audit-ml-secret";
pub(crate) const HASH_KEY: &str = "0123456789abcdef0123456789abcdef-audit";

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Tc,
    Ml,
    So,
}

/// One vendor's simulator, as the audit tests drive it.
pub(crate) enum Vendor {
    Tc(sessionsync_sim::takecontrol::TakeControlSim),
    Ml(sessionsync_sim::mluvii::MluviiSim),
    So(sessionsync_sim::superoffice::SuperOfficeSim),
}

/// The late session's customer (an e-mail for Take Control and SuperOffice, the callback phone
/// number for mluvii).
pub(crate) const PERSON_EMAIL: &str = "late.lena@example.com";
pub(crate) const PERSON_PHONE: &str = "+420 777 123 456";

impl Vendor {
    /// 40 ended sessions over the nine days before `now` (two hours back at the latest).
    pub(crate) async fn start(kind: Kind, now: DateTime<Utc>) -> Vendor {
        let (from, to) = (now - TimeDelta::days(9), now - TimeDelta::hours(2));
        match kind {
            Kind::Tc => Vendor::Tc(
                sessionsync_sim::takecontrol::TakeControlSim::start(
                    TC_KEY,
                    sessionsync_sim::takecontrol::generate(7, 40, from, to),
                )
                .await
                .unwrap(),
            ),
            Kind::Ml => {
                let mut sessions = sessionsync_sim::mluvii::generate(7, 40, from, to);
                for s in &mut sessions {
                    s.status = Some("CLOSED".into());
                }
                Vendor::Ml(
                    sessionsync_sim::mluvii::MluviiSim::start(ML_ID, ML_SECRET, sessions)
                        .await
                        .unwrap(),
                )
            }
            Kind::So => Vendor::So(
                sessionsync_sim::superoffice::SuperOfficeSim::start(
                    sessionsync_sim::superoffice::SimCredentials {
                        ticket: SO_TICKET.into(),
                        app_token: SO_APP_TOKEN.into(),
                        bearer: "b".into(),
                    },
                    sessionsync_sim::superoffice::generate(7, 40, from, to),
                )
                .await
                .unwrap(),
            ),
        }
    }

    pub(crate) fn base(&self) -> String {
        match self {
            Vendor::Tc(s) => s.base_url(),
            Vendor::Ml(s) => s.base_url(),
            Vendor::So(s) => s.base_url(),
        }
    }

    /// The account's entry, read from ten days back.
    pub(crate) fn toml(&self, now: DateTime<Utc>, extra: &str) -> String {
        let start = now - TimeDelta::days(10);
        let keys = format!(
            "requests_per_second = 1000\nmax_retries = 8\nmax_retry_wait = \"1s\"\ntimeout = \"5s\"\n{extra}"
        );
        match self {
            // Its entry has the HTTP keys already.
            Vendor::Tc(_) => tc_toml(&self.base(), TC_KEY, start, extra),
            Vendor::Ml(_) => ml_account_toml(
                &self.base(),
                "acme",
                (ML_ID, ML_SECRET),
                start,
                &format!("page_size = 7\n{keys}"),
            ),
            Vendor::So(_) => {
                so_account_toml(&self.base(), "acme", &format!("page_size = 7\n{keys}"))
                    .replace("1995-01-01T00:00:00Z", &start.to_rfc3339())
            }
        }
    }

    /// The session table, its id column and the column of the person's value.
    pub(crate) fn table(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Vendor::Tc(_) => ("takecontrol_sessions", "session_id", "customer_email"),
            Vendor::Ml(_) => ("mluvii_sessions", "session_id", "phone_callback_number"),
            Vendor::So(_) => (
                "superoffice_chat_sessions",
                "chat_session_id",
                "customer_email",
            ),
        }
    }

    /// `erase` of the late session's person.
    pub(crate) fn person(&self) -> sessionsync::privacy::erase::Target {
        use sessionsync::privacy::{Selector, erase::Target};
        match self {
            Vendor::Ml(_) => Target::Value(Selector::Phone, PERSON_PHONE.into()),
            _ => Target::Value(Selector::Email, PERSON_EMAIL.into()),
        }
    }

    /// A session `id` that started at `start`, of the person, indexed late: not listed until
    /// revealed.
    pub(crate) fn index_late(&self, id: i64, start: DateTime<Utc>) {
        match self {
            Vendor::Tc(sim) => {
                let mut s = sessionsync_sim::takecontrol::SimSession::new(
                    id,
                    start.naive_utc(),
                    Some((start + TimeDelta::minutes(20)).naive_utc()),
                );
                s.customer_email = PERSON_EMAIL.into();
                sim.index_late(s);
            }
            Vendor::Ml(sim) => {
                let mut s = ml_session_in_acw(id, start, TimeDelta::seconds(40), "PT4M20S");
                s.status = Some("CLOSED".into());
                s.phone_callback_number = Some(PERSON_PHONE.into());
                sim.index_late(s);
            }
            Vendor::So(sim) => {
                let mut c = sessionsync_sim::superoffice::generate(
                    99,
                    1,
                    start,
                    start + TimeDelta::seconds(2),
                )
                .remove(0);
                c.entity["ChatSessionId"] = serde_json::json!(id);
                c.entity["Status"] = serde_json::json!("Closed");
                c.entity["CustomerEmail"] = serde_json::json!(PERSON_EMAIL);
                c.updated = start + TimeDelta::hours(1);
                for (k, m) in c.messages.iter_mut().enumerate() {
                    m["ChatSessionId"] = serde_json::json!(id);
                    m["ChatMessageId"] = serde_json::json!(id * 10 + k as i64);
                }
                sim.index_late(c);
            }
        }
    }

    pub(crate) fn reveal(&self, id: i64) {
        match self {
            Vendor::Tc(s) => s.reveal(id),
            Vendor::Ml(s) => s.reveal(id),
            Vendor::So(s) => s.reveal(id),
        }
    }

    /// Deletes session `id` outright (no event, no trace in any list).
    pub(crate) fn hard_delete(&self, id: i64) {
        match self {
            Vendor::Tc(s) => s.delete(id),
            Vendor::Ml(s) => s.remove(id),
            Vendor::So(s) => s.purge(id),
        }
    }

    pub(crate) fn break_listing(&self, day: NaiveDate) {
        match self {
            Vendor::Tc(s) => s.break_listing(day),
            Vendor::Ml(s) => s.break_listing(day),
            Vendor::So(s) => s.break_listing(day),
        }
    }

    pub(crate) fn faults(&self) -> &Faults {
        match self {
            Vendor::Tc(s) => s.faults(),
            Vendor::Ml(s) => s.faults(),
            Vendor::So(s) => s.faults(),
        }
    }

    pub(crate) fn log(&self) -> &RequestLog {
        match self {
            Vendor::Tc(s) => s.log(),
            Vendor::Ml(s) => s.log(),
            Vendor::So(s) => s.log(),
        }
    }

    /// The paths of the list endpoint the stream uses (and mluvii's token, which a list needs).
    pub(crate) fn list_paths(&self) -> &'static [&'static str] {
        match self {
            Vendor::Tc(_) => &["/rest/session/history"],
            Vendor::Ml(_) => &["/api/v1/Sessions", "/login/connect/token"],
            Vendor::So(_) => &["/api/v1/ChatSession"],
        }
    }
}

/// A fifth of the answers are a 500 or a 429 (with and without Retry-After), after a 500 and a
/// 429 for the first two requests.
fn flaky(v: &Vendor, seed: u64) {
    v.faults().push(Fault::Status(500), 1);
    v.faults().push(Fault::RateLimited(None), 1);
    v.faults().set_random(
        20,
        vec![
            Fault::Status(500),
            Fault::RateLimited(Some(RetryAfter::Seconds(0))),
            Fault::RateLimited(None),
        ],
        seed,
    );
}

pub(crate) struct Setup {
    pub(crate) db: TestDb,
    pub(crate) vendor: Vendor,
    pub(crate) h: Harness,
    pub(crate) now: DateTime<Utc>,
}

pub(crate) async fn setup(kind: Kind, extra: &str, privacy: &str) -> Setup {
    let now = Utc::now();
    let db = TestDb::new().await;
    let vendor = Vendor::start(kind, now).await;
    let toml = format!("{privacy}\n{}", vendor.toml(now, extra));
    let h = Harness::new(&settings(&db, &toml)).await;
    Setup { db, vendor, h, now }
}

impl Setup {
    pub(crate) async fn audit(&self, days: u32, dry_run: bool) -> AuditReport {
        self.h
            .engine
            .audit(
                &self.h.sources[0],
                AuditOptions {
                    days: Days::last(days, Utc::now()),
                    dry_run,
                },
                &CancellationToken::new(),
                &|_| {},
            )
            .await
            .expect("the audit is recorded")
    }

    pub(crate) async fn count(&self, sql_where: &str) -> i64 {
        let (table, _, _) = self.vendor.table();
        let c = self.db.client().await;
        c.query_one(
            &format!("SELECT count(*) FROM {table} WHERE {sql_where}"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
    }

    /// A stored session that started two to five days back, and its day.
    pub(crate) async fn stored_days_back(&self) -> (i64, NaiveDate) {
        let (table, id, _) = self.vendor.table();
        let start = match self.vendor {
            Vendor::Tc(_) => "started_at",
            Vendor::Ml(_) => "created_at",
            Vendor::So(_) => "requested_at",
        };
        let (from, to) = (
            (self.now - TimeDelta::days(5)).date_naive(),
            (self.now - TimeDelta::days(2)).date_naive(),
        );
        let c = self.db.client().await;
        let r = c
            .query_one(
                &format!(
                    "SELECT {id}::bigint, ({start} AT TIME ZONE 'UTC')::date FROM {table}
                      WHERE ({start} AT TIME ZONE 'UTC')::date BETWEEN $1 AND $2 ORDER BY 1 LIMIT 1"
                ),
                &[&from, &to],
            )
            .await
            .expect("a stored session two to five days back");
        (r.get(0), r.get(1))
    }
}

const LATE: i64 = 77_777;

async fn late_and_deleted_under_faults(kind: Kind) {
    let s = setup(kind, "", "").await;
    let (_, id_col, _) = s.vendor.table();
    s.vendor.index_late(LATE, s.now - TimeDelta::days(4));
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let stored = s.count("true").await;
    assert!(stored >= 30, "{stored}");
    // Revealed with its old dates: the incremental path never sees it.
    s.vendor.reveal(LATE);
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    assert_eq!(s.count(&format!("{id_col} = {LATE}")).await, 0);
    let (deleted, _) = s.stored_days_back().await;
    s.vendor.hard_delete(deleted);

    flaky(&s.vendor, 41);
    let a = s.audit(7, false).await;
    assert_eq!(a.outcome, Outcome::Succeeded, "{:?}", a.error);
    assert!(a.per_day.iter().all(|d| d.complete), "{:?}", a.per_day);
    assert_eq!((a.missing(), a.gone()), (1, 1), "{:?}", a.per_day);
    assert!(a.totals.retries > 0, "the faults were met and ridden out");
    assert_eq!(s.count(&format!("{id_col} = {LATE}")).await, 1);
    assert_eq!(s.count("source_deleted_at IS NOT NULL").await, 1);
    assert_eq!(
        s.count(&format!(
            "{id_col} = {deleted} AND source_deleted_at IS NOT NULL"
        ))
        .await,
        1
    );
    let (table, _, person) = s.vendor.table();
    assert_eq!(
        s.count(&format!("{id_col} = {deleted} AND {person} IS NULL"))
            .await,
        1,
        "the deleted session's personal data is erased ({table})"
    );
    let c = s.db.client().await;
    // The audit's run, and a row per day whose numbers agree.
    let runs = strings(
        &c,
        "SELECT status FROM sync_runs WHERE stream = 'audit' ORDER BY run_id",
    )
    .await;
    assert_eq!(runs, ["succeeded"]);
    let uneven = strings(&c, "SELECT day::text FROM audits WHERE listed <> stored").await;
    assert!(uneven.is_empty(), "{uneven:?}");
    let text = s.h.metrics.encode();
    assert!(
        text.lines()
            .any(|l| l.starts_with("sessionsync_audit_missing_total{") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sessionsync_audit_gone_total{") && l.ends_with(" 1"))
    );
    assert!(text.contains("sessionsync_audit_last_complete_timestamp_seconds{"));

    // Nothing left to repair: only list requests, nothing written.
    s.vendor.faults().clear();
    s.vendor.log().clear();
    let b = s.audit(7, false).await;
    assert_eq!(b.outcome, Outcome::Succeeded, "{:?}", b.error);
    assert_eq!((b.missing(), b.gone(), b.totals.written), (0, 0, 0));
    assert_eq!(b.listed(), b.stored());
    let paths: Vec<String> = s
        .vendor
        .log()
        .entries()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(!paths.is_empty());
    assert!(
        paths
            .iter()
            .all(|p| s.vendor.list_paths().contains(&p.as_str())),
        "{paths:?}"
    );
    let last_run: Vec<String> = strings(
        &c,
        "SELECT listed || '=' || stored FROM audits WHERE run_id = (SELECT max(run_id) FROM audits) ORDER BY day",
    )
    .await;
    assert_eq!(last_run.len(), 7);
    assert!(
        last_run.iter().all(|p| p
            .split('=')
            .collect::<Vec<_>>()
            .windows(2)
            .all(|w| w[0] == w[1])),
        "{last_run:?}"
    );
}

#[tokio::test]
async fn takecontrol_late_and_deleted_sessions_are_found_under_faults() {
    late_and_deleted_under_faults(Kind::Tc).await;
}

#[tokio::test]
async fn mluvii_late_and_deleted_sessions_are_found_under_faults() {
    late_and_deleted_under_faults(Kind::Ml).await;
}

#[tokio::test]
async fn superoffice_late_and_deleted_sessions_are_found_under_faults() {
    late_and_deleted_under_faults(Kind::So).await;
}

/// A day whose listing fails is incomplete: a session deleted on it is not flagged, the others
/// are compared.
async fn a_failed_day_flags_nothing(kind: Kind) {
    let s = setup(kind, "", "").await;
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let (deleted, broken) = s.stored_days_back().await;
    s.vendor.hard_delete(deleted);
    s.vendor.break_listing(broken);
    let a = s.audit(7, false).await;
    assert_eq!(a.outcome, Outcome::Partial, "{:?}", a.error);
    let incomplete: Vec<NaiveDate> = a
        .per_day
        .iter()
        .filter(|d| !d.complete)
        .map(|d| d.day)
        .collect();
    assert_eq!(incomplete, [broken], "{:?}", a.per_day);
    assert!(
        a.per_day
            .iter()
            .find(|d| d.day == broken)
            .and_then(|d| d.error.as_deref())
            .is_some_and(|e| e.contains("500")),
        "{:?}",
        a.per_day
    );
    assert_eq!(a.gone(), 0);
    assert_eq!(s.count("source_deleted_at IS NOT NULL").await, 0);
    let c = s.db.client().await;
    let rows = strings(
        &c,
        "SELECT day::text || ':' || complete FROM audits WHERE NOT complete",
    )
    .await;
    assert_eq!(rows, [format!("{broken}:false")]);
}

#[tokio::test]
async fn takecontrol_a_day_whose_listing_fails_flags_nothing() {
    a_failed_day_flags_nothing(Kind::Tc).await;
}

#[tokio::test]
async fn mluvii_a_day_whose_listing_fails_flags_nothing() {
    a_failed_day_flags_nothing(Kind::Ml).await;
}

#[tokio::test]
async fn superoffice_a_day_whose_listing_fails_flags_nothing() {
    a_failed_day_flags_nothing(Kind::So).await;
}

/// An erased person's late session is stored erased; one older than `retain_sessions` is not
/// brought back.
async fn erasures_and_storage_limits_hold(kind: Kind) {
    let privacy = format!("[privacy]\nhash_key = \"{HASH_KEY}\"\nretain_sessions = \"6d\"");
    let s = setup(kind, "", &privacy).await;
    let (_, id_col, person) = s.vendor.table();
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    // She asked to be erased before her late session arrived.
    let settings = settings(&s.db, &format!("{privacy}\n{}", s.vendor.toml(s.now, "")));
    let mut admin = s.db.client().await;
    sessionsync::privacy::erase::erase(
        &mut admin,
        &settings.privacy,
        &sessionsync::sources::inventories(),
        &[s.vendor.person()],
        false,
        Some("test"),
    )
    .await
    .unwrap();
    s.vendor.index_late(LATE, s.now - TimeDelta::days(4));
    s.vendor.reveal(LATE);
    // Older than the storage limit: never brought back.
    s.vendor.index_late(LATE + 1, s.now - TimeDelta::days(8));
    s.vendor.reveal(LATE + 1);
    let a = s.audit(9, false).await;
    assert_eq!(a.outcome, Outcome::Succeeded, "{:?}", a.error);
    let first = a.days.expect("days left").from;
    assert!(
        first > (s.now - TimeDelta::days(6)).date_naive(),
        "no day before the storage limit is audited: {first}"
    );
    assert_eq!(a.missing(), 1, "{:?}", a.per_day);
    assert_eq!(
        s.count(&format!("{id_col} = {LATE} AND {person} IS NULL"))
            .await,
        1,
        "stored, already erased"
    );
    assert_eq!(s.count(&format!("{id_col} = {}", LATE + 1)).await, 0);
    let c = s.db.client().await;
    let clear = strings(
        &c,
        &format!(
            "SELECT {id_col}::text FROM {} WHERE raw::text ILIKE '%late.lena%' OR raw::text LIKE '%777 123 456%'",
            s.vendor.table().0
        ),
    )
    .await;
    assert!(clear.is_empty(), "{clear:?}");
}

#[tokio::test]
async fn takecontrol_erasures_and_storage_limits_hold_in_an_audit() {
    erasures_and_storage_limits_hold(Kind::Tc).await;
}

#[tokio::test]
async fn mluvii_erasures_and_storage_limits_hold_in_an_audit() {
    erasures_and_storage_limits_hold(Kind::Ml).await;
}

#[tokio::test]
async fn superoffice_erasures_and_storage_limits_hold_in_an_audit() {
    erasures_and_storage_limits_hold(Kind::So).await;
}

/// Without a read by id, a listing that holds nothing at all for days the warehouse holds
/// sessions of is not taken for a mass deletion (a key that lost access answers so).
#[tokio::test]
async fn an_empty_take_control_history_flags_nothing() {
    let s = setup(Kind::Tc, "", "").await;
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    let Vendor::Tc(sim) = &s.vendor else {
        unreachable!()
    };
    for session in sim.sessions() {
        sim.delete(session.id);
    }
    let a = s.audit(7, false).await;
    assert_eq!(a.outcome, Outcome::Partial, "{:?}", a.per_day);
    assert_eq!(a.gone(), 0);
    assert!(
        a.per_day
            .iter()
            .filter_map(|d| d.error.as_deref())
            .any(|e| e.contains("lost access")),
        "{:?}",
        a.per_day
    );
    assert_eq!(s.count("source_deleted_at IS NOT NULL").await, 0);
}

/// The audit writes under the stream's own claim: while another holds it (a sync), it waits.
#[tokio::test]
async fn an_audit_waits_for_the_streams_claim() {
    let s = setup(Kind::Tc, "", "").await;
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    s.vendor.index_late(LATE, s.now - TimeDelta::days(2));
    s.vendor.reveal(LATE);
    // The stream's lock, taken as another process's sync would hold it.
    let holder = s.db.client().await;
    holder
        .execute(
            "SELECT pg_advisory_lock(1936028531, hashtext('sessionsync/takecontrol/acme/sessions'))",
            &[],
        )
        .await
        .unwrap();
    let audit = s.audit(7, false);
    let release = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            s.count(&format!("session_id = {LATE}")).await,
            0,
            "nothing written while the stream is held"
        );
        holder
            .execute(
                "SELECT pg_advisory_unlock(1936028531, hashtext('sessionsync/takecontrol/acme/sessions'))",
                &[],
            )
            .await
            .unwrap();
    };
    let t = std::time::Instant::now();
    let (a, ()) = tokio::join!(audit, release);
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert_eq!(a.outcome, Outcome::Succeeded, "{:?}", a.error);
    assert_eq!(a.missing(), 1);
    assert_eq!(s.count(&format!("session_id = {LATE}")).await, 1);
}

/// The binary: a line per account, exit 0 / 3, and `--dry-run` changes nothing.
#[tokio::test]
async fn the_audit_command_reports_and_exits_by_completeness() {
    let s = setup(Kind::Tc, "", "").await;
    let r = s.h.sync().await;
    assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
    s.vendor.index_late(LATE, s.now - TimeDelta::days(4));
    s.vendor.reveal(LATE);
    let (deleted, _) = s.stored_days_back().await;
    s.vendor.hard_delete(deleted);
    let cfg = TempConfig::new(&format!(
        "[warehouse]\nurl = \"${{DATABASE_URL}}\"\n{}",
        s.vendor.toml(s.now, "")
    ));
    let env = [("DATABASE_URL", Some(s.db.url.as_str()))];
    let run = |args: &'static [&'static str]| {
        let cfg = cfg.path();
        async move {
            let out = sessionsync_command(args, &cfg, &env)
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let (code, out, err) = run(&["audit", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("would store"), "{out}");
    assert!(out.contains("missing 1") && out.contains("gone 1"), "{out}");
    assert_eq!(s.count(&format!("session_id = {LATE}")).await, 0);
    assert_eq!(s.count("source_deleted_at IS NOT NULL").await, 0);
    let c = s.db.client().await;
    assert_eq!(count(&c, "audits").await, 0, "a dry run records nothing");

    let (code, out, err) = run(&["audit"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("takecontrol/acme: 7 days (")
            && out.contains("missing 1 (stored)")
            && out.contains("gone 1 (flagged deleted at the source)")
            && out.contains("the warehouse matches the vendor's list"),
        "{out}"
    );
    s.vendor
        .break_listing((s.now - TimeDelta::days(2)).date_naive());
    let (code, out, err) = run(&["audit"]).await;
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("1 day could not be listed completely (nothing flagged for it)"),
        "{out}"
    );
    let (code, _, err) = run(&["audit", "--to", "2999-01-01"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("closed days"), "{err}");
    // status shows the account's audits.
    let (code, out, err) = run(&["status"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("AUDITED") && out.contains("last partial"),
        "{out}"
    );
}

/// Two daemons on one warehouse audit each account once per instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_audit_each_account_once() {
    let now = Utc::now();
    let db = TestDb::new().await;
    let vendors = [
        Vendor::start(Kind::Tc, now).await,
        Vendor::start(Kind::Ml, now).await,
        Vendor::start(Kind::So, now).await,
    ];
    let accounts: String = vendors
        .iter()
        .map(|v| v.toml(now, "schedule = \"0 0 1 1 *\""))
        .collect();
    let config = |port: u16| {
        TempConfig::new(&format!(
            "[warehouse]\nurl = \"${{DATABASE_URL}}\"\npool_size = 4\n[server]\nlisten = \"127.0.0.1:{port}\"\n[audit]\nschedule = \"*/20 * * * * *\"\ndays = 2\nspread = \"5s\"\n{accounts}"
        ))
    };
    let (fa, fb) = (config(free_port()), config(free_port()));
    let env = [("DATABASE_URL", Some(db.url.as_str()))];
    let mut a = spawn_daemon(&["run"], &fa.path(), &env, &fa.file("daemon.log"));
    let mut b = spawn_daemon(&["run"], &fb.path(), &env, &fb.file("daemon.log"));
    let c = loop {
        if let Ok(c) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await {
            tokio::spawn(c.1);
            break c.0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Until every account has been audited at two instants.
    let started = std::time::Instant::now();
    loop {
        let n: i64 = c
            .query_one(
                "SELECT coalesce(min(n), 0) FROM (SELECT count(*) AS n FROM sessionsync.sync_runs WHERE stream = 'audit' AND status <> 'running' GROUP BY source, account) x",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        let accounts: i64 = c
            .query_one(
                "SELECT count(DISTINCT (source, account)) FROM sessionsync.sync_runs WHERE stream = 'audit'",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n >= 2 && accounts == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "every account audited twice within 90 s ({n}, {accounts} accounts)\n{}",
            std::fs::read_to_string(fa.file("daemon.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    a.start_kill().unwrap();
    b.start_kill().unwrap();
    let _ = (a.wait().await, b.wait().await);
    // Within one account, consecutive audits are an instant apart (20 s), never two at one.
    let gaps: Vec<f64> = c
        .query(
            "SELECT extract(epoch FROM started_at - lag(started_at) OVER w)::float8 AS gap
               FROM sessionsync.sync_runs WHERE stream = 'audit'
             WINDOW w AS (PARTITION BY source, account ORDER BY run_id)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.get::<_, Option<f64>>(0))
        .collect();
    assert!(!gaps.is_empty());
    assert!(
        gaps.iter().all(|g| *g > 10.0),
        "two audits of one account at one instant: {gaps:?}"
    );
}
