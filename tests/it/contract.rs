//! One contract for every source, the fake fourth one included (as Vector runs one compliance
//! check on every source): the same checks, in the same order, over each.
//!
//! 1. **Rate limit**: the vendor's first two answers are 429 (with and without Retry-After); the
//!    run rides them out, counts the retries and stores everything.
//!    **Rejection**: in the same run, one record the vendor sends unreadable is set aside in
//!    `rejected_records` (one row, its key named) while the others land; once the vendor sends
//!    it readable again, a re-read stores it.
//! 2. **Privacy seam**: under `customer_identity = "hash"`, the person's value appears in clear
//!    in no table of the source (every table its inventory names, each row read whole).
//! 3. **Unchanged second run**: the next run writes nothing, and reading every session again
//!    (a backfill of the whole range) writes nothing either: each is reported unchanged.
//! 4. **Erasure**: `erase` of the person matches one session; after every session is read again
//!    nothing of the person matches any more.
//! 5. **Deletion**: a session the vendor deletes is flagged (`source_deleted_at`) by the source's
//!    own path (the completeness audit for the three; the fake's list marks it deleted), and
//!    nothing else is.
//!
//! Each subject only says how to reach its vendor; the checks know no source.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sessionsync::config::{self, KeyProblem, Settings, SourceKind, SourceSettings};
use sessionsync::engine::{
    Batch, Outcome, Range, RunInfo, RunReport, Source, SourceContext, SourceError, StreamState,
    Window,
};
use sessionsync::privacy::erase::{self, Target};
use sessionsync::privacy::{Inventory, Selector};
use sessionsync_sim::{Fault, RetryAfter};
use tokio_util::sync::CancellationToken;

use crate::audit::{HASH_KEY, Kind, PERSON_EMAIL, PERSON_PHONE, Setup, Vendor, setup};
use crate::fourth_source::{EMAIL, FakeRow, FakeRows, INVENTORY, MIGRATION};
use crate::helpers::*;

/// The person's session (stored, then erased).
const PERSON: i64 = 88_888;

/// What the contract needs of a source under test: its vendor, its warehouse, its paths.
#[async_trait]
trait Subject: Send + Sync {
    fn inventory(&self) -> &'static Inventory;
    fn db(&self) -> &TestDb;
    /// The person's value as the vendor sends it, and how `erase` names it.
    fn person(&self) -> (&'static str, Target);
    /// The vendor's next two answers are 429: one with `Retry-After: 0`, one without.
    fn throttle(&self);
    /// The vendor sends one session unreadable (or, `false`, readable again); its key.
    fn malform(&self, on: bool) -> i64;
    async fn sync(&self) -> RunReport;
    /// Reads every session again (a backfill of the whole range).
    async fn reread(&self) -> RunReport;
    /// A stored session the deletion check may delete (one the source's deletion path looks at).
    async fn victim(&self) -> i64;
    /// The vendor deletes the stored session `id`.
    fn delete(&self, id: i64);
    /// Runs the source's own path to deletions; how many sessions it flagged.
    async fn find_deletions(&self) -> u64;
}

async fn contract(s: &dyn Subject) {
    let inv = s.inventory();
    let (needle, person) = s.person();
    let c = s.db().client().await;
    let count = |sql: String| {
        let c = &c;
        async move { c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };

    // 1. Rate limit, and a record set aside.
    s.throttle();
    let bad = s.malform(true);
    let first = s.sync().await;
    let r = &first;
    // Partial: a run that set a record aside says so.
    assert_eq!(r.outcome, Outcome::Partial, "{}: {:?}", inv.source, r.error);
    assert!(r.totals.retries >= 2, "{}: {:?}", inv.source, r.totals);
    assert_eq!(r.totals.rejected, 1, "{}: {:?}", inv.source, r.totals);
    // Its key is the id where one could be read (else where it sat in the answer).
    let set_aside = format!(
        "SELECT count(*) FROM rejected_records WHERE source = '{}'",
        inv.source
    );
    assert_eq!(count(set_aside).await, 1, "{}", inv.source);
    let bad_row = format!(
        "SELECT count(*) FROM {} WHERE {} = {bad}",
        inv.sessions, inv.id_column
    );
    assert_eq!(count(bad_row.clone()).await, 0, "{}", inv.source);
    s.malform(false);
    let r = s.reread().await;
    assert_eq!(
        r.outcome,
        Outcome::Succeeded,
        "{}: {:?}",
        inv.source,
        r.error
    );
    assert_eq!(
        count(bad_row).await,
        1,
        "{}: stored once readable",
        inv.source
    );
    let stored = count(format!("SELECT count(*) FROM {}", inv.sessions)).await;
    assert!(
        first.totals.written >= 2 && stored >= 2,
        "{}: {first:?}",
        inv.source
    );
    let id = inv.id_column;
    let of_person = format!(
        "SELECT count(*) FROM {} WHERE {id} = {PERSON}",
        inv.sessions
    );
    assert_eq!(count(of_person.clone()).await, 1, "{}", inv.source);

    // 2. The privacy seam: the value in clear nowhere.
    for table in inv.tables() {
        let clear = count(format!(
            "SELECT count(*) FROM {table} x WHERE x::text ILIKE '%{needle}%'"
        ))
        .await;
        assert_eq!(clear, 0, "{}: {needle} in clear in {table}", inv.source);
    }

    // 3. An unchanged second run writes nothing; nor does reading everything again.
    let r = s.sync().await;
    assert_eq!(
        r.outcome,
        Outcome::Succeeded,
        "{}: {:?}",
        inv.source,
        r.error
    );
    assert_eq!(r.totals.written, 0, "{}: {:?}", inv.source, r.totals);
    let r = s.reread().await;
    assert_eq!(
        r.outcome,
        Outcome::Succeeded,
        "{}: {:?}",
        inv.source,
        r.error
    );
    assert_eq!(r.totals.written, 0, "{}: {:?}", inv.source, r.totals);
    assert!(
        r.totals.unchanged as i64 >= stored,
        "{}: {:?} of {stored}",
        inv.source,
        r.totals
    );

    // 4. Erasure, kept when the vendor sends the person again.
    let erase = |dry_run: bool| {
        let target = [person.clone()];
        let db = s.db();
        async move {
            let mut c = db.client().await;
            let settings = privacy_settings(db);
            erase::erase(&mut c, &settings, &[s.inventory()], &target, dry_run, None)
                .await
                .unwrap()
                .total_sessions()
        }
    };
    assert_eq!(erase(false).await, 1, "{}", inv.source);
    let r = s.reread().await;
    assert_eq!(
        r.outcome,
        Outcome::Succeeded,
        "{}: {:?}",
        inv.source,
        r.error
    );
    assert_eq!(erase(true).await, 0, "{}: the person is back", inv.source);
    assert_eq!(
        count(of_person).await,
        1,
        "{}: the session stays",
        inv.source
    );

    // 5. Deletion: flagged by the source's own path, and nothing else.
    let victim = s.victim().await;
    assert_ne!(victim, PERSON);
    s.delete(victim);
    assert_eq!(s.find_deletions().await, 1, "{}", inv.source);
    let flagged = format!(
        "SELECT count(*) FROM {} WHERE source_deleted_at IS NOT NULL",
        inv.sessions
    );
    assert_eq!(count(flagged.clone()).await, 1, "{}", inv.source);
    assert_eq!(
        count(format!("{flagged} AND {id} = {victim}")).await,
        1,
        "{}",
        inv.source
    );
}

/// The `[privacy]` every subject runs under.
fn privacy_toml() -> String {
    format!("[privacy]\ncustomer_identity = \"hash\"\nhash_key = \"{HASH_KEY}\"")
}

fn privacy_settings(db: &TestDb) -> sessionsync::privacy::PrivacySettings {
    settings(db, &format!("{}\n", privacy_toml())).privacy
}

// --- the three sources, through their simulators ------------------------------------------------

struct Real(Setup);

impl Real {
    async fn new(kind: Kind) -> Real {
        let s = setup(kind, "", &privacy_toml()).await;
        // The person's session, three days back, listed like any other.
        s.vendor.index_late(PERSON, s.now - TimeDelta::days(3));
        s.vendor.reveal(PERSON);
        Real(s)
    }
}

#[async_trait]
impl Subject for Real {
    fn inventory(&self) -> &'static Inventory {
        let source = self.0.h.sources[0].key().source;
        sessionsync::sources::SOURCES
            .iter()
            .find(|k| k.name == source)
            .and_then(|k| k.inventory)
            .expect("an inventory")
    }
    fn db(&self) -> &TestDb {
        &self.0.db
    }
    fn person(&self) -> (&'static str, Target) {
        let needle = match self.0.vendor {
            Vendor::Ml(_) => PERSON_PHONE,
            _ => PERSON_EMAIL,
        };
        (needle, self.0.vendor.person())
    }
    fn throttle(&self) {
        let f = self.0.vendor.faults();
        f.push(Fault::RateLimited(Some(RetryAfter::Seconds(0))), 1);
        f.push(Fault::RateLimited(None), 1);
    }
    async fn sync(&self) -> RunReport {
        self.0.h.sync().await
    }
    async fn reread(&self) -> RunReport {
        let (from, to) = (self.0.now - TimeDelta::days(11), Utc::now());
        let range = Range::Backfill { from, to };
        let cancel = CancellationToken::new();
        let h = &self.0.h;
        h.engine
            .run(&h.sources[0], range, &cancel, &|_| {})
            .await
            .unwrap()
    }
    fn malform(&self, on: bool) -> i64 {
        match &self.0.vendor {
            Vendor::Tc(sim) => {
                let id = sim.sessions()[0].id;
                sim.update(id, |s| s.malformed = on);
                id
            }
            Vendor::Ml(sim) => {
                let id = sim.sessions()[0].id;
                sim.update(id, |s| {
                    s.waited = Some(if on { "soon" } else { "PT40S" }.into())
                });
                id
            }
            Vendor::So(sim) => {
                let id = sim.chats()[0].id();
                sim.update(id, |e| {
                    e["Person"] = if on {
                        serde_json::json!("not-an-id")
                    } else {
                        serde_json::Value::Null
                    }
                });
                id
            }
        }
    }
    async fn victim(&self) -> i64 {
        // Within the days an audit covers (closed days), not the person's.
        let inv = self.inventory();
        let (id, start) = (inv.id_column, inv.start_column);
        let sql = format!(
            "SELECT {id}::bigint FROM {} WHERE {id} <> {PERSON}
                AND {start} BETWEEN now() - interval '5 days' AND now() - interval '2 days'
              ORDER BY {id} LIMIT 1",
            inv.sessions
        );
        self.0
            .db
            .client()
            .await
            .query_one(&sql, &[])
            .await
            .unwrap()
            .get(0)
    }
    fn delete(&self, id: i64) {
        self.0.vendor.hard_delete(id);
    }
    async fn find_deletions(&self) -> u64 {
        let a = self.0.audit(7, false).await;
        assert_eq!(a.outcome, Outcome::Succeeded, "{:?}", a.error);
        a.gone()
    }
}

#[tokio::test]
async fn take_control_keeps_the_contract() {
    contract(&Real::new(Kind::Tc).await).await;
}

#[tokio::test]
async fn mluvii_keeps_the_contract() {
    contract(&Real::new(Kind::Ml).await).await;
}

#[tokio::test]
async fn superoffice_keeps_the_contract() {
    contract(&Real::new(Kind::So).await).await;
}

// --- the fake fourth source, over HTTP ------------------------------------------------------------

/// The fake's vendor: `GET /people` lists everyone, each with the hour they signed up and
/// whether they were deleted; it answers 429 while `throttled` is above zero.
#[derive(Default)]
struct FakeVendor {
    people: Vec<(i64, String, DateTime<Utc>, bool)>,
    throttled: Vec<Option<u64>>,
    /// The person whose id is sent as text that is not a number.
    malformed: Option<i64>,
}

type Shared = Arc<Mutex<FakeVendor>>;

async fn serve_people(
    axum::extract::State(v): axum::extract::State<Shared>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut v = v.lock().unwrap();
    if !v.throttled.is_empty() {
        let retry_after = v.throttled.remove(0);
        let mut r = axum::http::StatusCode::TOO_MANY_REQUESTS.into_response();
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return r;
    }
    let people: Vec<serde_json::Value> = v
        .people
        .iter()
        .map(|(id, email, at, deleted)| {
            let id = if v.malformed == Some(*id) {
                serde_json::json!(format!("{id}?"))
            } else {
                serde_json::json!(id)
            };
            serde_json::json!({ "id": id, "email": email, "at": at, "deleted": deleted })
        })
        .collect();
    axum::Json(people).into_response()
}

static FAKE_HTTP: SourceKind = SourceKind::new::<FakeHttpSettings>("fake")
    .stream("people")
    .inventory(&INVENTORY);

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeHttpSettings {
    base_url: String,
}

impl SourceSettings for FakeHttpSettings {
    fn read(entry: toml::Value, prefix: &str) -> Result<Self, KeyProblem> {
        config::entry(entry, prefix)
    }

    fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source> {
        Box::new(FakeHttp {
            cx,
            url: format!("{}/people", self.base_url),
        })
    }
}

struct FakeHttp {
    cx: Arc<SourceContext>,
    url: String,
}

#[async_trait]
impl Source for FakeHttp {
    async fn fetch(&self, w: &Window, _: &StreamState, _: RunInfo) -> Result<Batch, SourceError> {
        let r = self
            .cx
            .http
            .send("/people", |c| c.get(&self.url))
            .await
            .map_err(SourceError::Http)?;
        let people: Vec<serde_json::Value> =
            serde_json::from_slice(&r.body).map_err(|e| SourceError::Vendor {
                message: format!("/people: {e}"),
            })?;
        let (mut rows, mut gone, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        for mut p in people {
            let at: DateTime<Utc> = p["at"].as_str().unwrap_or_default().parse().unwrap();
            if !(w.start..w.end).contains(&at) {
                continue;
            }
            let Some(id) = p["id"].as_i64() else {
                let key = p["id"].as_str().unwrap_or_default();
                rejected.push(sessionsync::engine::Rejected {
                    record_key: key.trim_end_matches('?').to_string(),
                    reason: format!("invalid_id: {key}"),
                    payload: serde_json::Value::Null,
                });
                continue;
            };
            if p["deleted"] == true {
                gone.push(id.into());
                continue;
            }
            let vetted = self
                .cx
                .personal(&id.to_string(), false, &mut [(&mut p, EMAIL)])
                .vetted;
            rows.push(FakeRow {
                id,
                email: p["email"].as_str().map(str::to_string),
                _vetted: vetted,
            });
        }
        Ok(Batch::new(FakeRows(rows))
            .with_gone(gone)
            .with_rejected(rejected))
    }
}

struct Fake {
    db: TestDb,
    vendor: Shared,
    engine: Arc<sessionsync::engine::Engine>,
    stream: Arc<sessionsync::engine::Stream>,
}

impl Fake {
    async fn new() -> Fake {
        let db = TestDb::new().await;
        let start = Utc::now() - TimeDelta::hours(12);
        let vendor: Shared = Arc::default();
        {
            let mut v = vendor.lock().unwrap();
            for (i, email) in ["ann@example.com", "bob@example.com", PERSON_EMAIL]
                .into_iter()
                .enumerate()
            {
                let id = if email == PERSON_EMAIL {
                    PERSON
                } else {
                    i as i64 + 1
                };
                let at = start + TimeDelta::hours(i as i64 + 1);
                v.people.push((id, email.to_string(), at, false));
            }
        }
        let app = axum::Router::new()
            .route("/people", axum::routing::get(serve_people))
            .with_state(vendor.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut kinds = sessionsync::sources::configs();
        kinds.push(&FAKE_HTTP);
        let text = format!(
            "{}\n[[fake]]\naccount = \"f1\"\nstart = \"{}\"\nlookback = \"24h\"\nmax_retry_wait = \"1s\"\nbase_url = \"{base}\"\n",
            privacy_toml(),
            start.to_rfc3339()
        );
        let url = db.url.clone();
        let env = move |name: &str| (name == "DATABASE_URL").then(|| url.clone());
        let settings = Settings::from_toml("fake.toml".as_ref(), &text, &env, &kinds).unwrap();
        let metrics = Arc::new(sessionsync::telemetry::Metrics::new());
        let streams = sessionsync::sources::build(&settings, &metrics, Some("fake"), None);
        let p = sessionsync::startup::start(&settings, metrics, streams)
            .await
            .unwrap();
        db.client().await.batch_execute(MIGRATION).await.unwrap();
        Fake {
            db,
            vendor,
            engine: p.engine,
            stream: p.sources[0].clone(),
        }
    }
}

#[async_trait]
impl Subject for Fake {
    fn inventory(&self) -> &'static Inventory {
        &INVENTORY
    }
    fn db(&self) -> &TestDb {
        &self.db
    }
    fn person(&self) -> (&'static str, Target) {
        (
            PERSON_EMAIL,
            Target::Value(Selector::Email, PERSON_EMAIL.into()),
        )
    }
    fn throttle(&self) {
        self.vendor.lock().unwrap().throttled = vec![Some(0), None];
    }
    async fn sync(&self) -> RunReport {
        self.engine
            .run_once(&self.stream, &CancellationToken::new())
            .await
            .unwrap()
    }
    async fn reread(&self) -> RunReport {
        let (from, to) = (Utc::now() - TimeDelta::days(1), Utc::now());
        let range = Range::Backfill { from, to };
        let cancel = CancellationToken::new();
        self.engine
            .run(&self.stream, range, &cancel, &|_| {})
            .await
            .unwrap()
    }
    fn malform(&self, on: bool) -> i64 {
        self.vendor.lock().unwrap().malformed = on.then_some(2);
        2
    }
    async fn victim(&self) -> i64 {
        1
    }
    fn delete(&self, id: i64) {
        let mut v = self.vendor.lock().unwrap();
        for p in v.people.iter_mut().filter(|p| p.0 == id) {
            p.3 = true;
        }
    }
    async fn find_deletions(&self) -> u64 {
        let r = self.sync().await;
        assert_eq!(r.outcome, Outcome::Succeeded, "{:?}", r.error);
        let c = self.db.client().await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM fake_records WHERE source_deleted_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n as u64
    }
}

#[tokio::test]
async fn the_fake_fourth_source_keeps_the_contract() {
    contract(&Fake::new().await).await;
}
