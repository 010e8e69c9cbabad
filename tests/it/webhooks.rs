//! Webhooks end to end: real PostgreSQL, the real listener over HTTP, the simulators as the
//! vendors (their own signing and Basic credentials, their registration test), and the worker
//! that re-reads the named sessions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sessionsync::config::Settings;
use sessionsync::engine::WebhookState;
use sessionsync::webhooks;
use sessionsync_sim::mluvii::MluviiSim;
use sessionsync_sim::superoffice::{
    SimCredentials, SuperOfficeSim, generate, seed_samples, signature,
};
use tokio_util::sync::CancellationToken;

const TICKET: &str = SO_TICKET;
const APP_TOKEN: &str = SO_APP_TOKEN;
const SECRET: &str = "whsec-Zq81-never-shown";
const CLIENT_ID: &str = "api-user";
const CLIENT_SECRET: &str = "api-pass-93kd";
const HOOK_USER: &str = "sessionsync";
const HOOK_PASSWORD: &str = "hook-pw-Xy7/never-shown";

fn creds() -> SimCredentials {
    SimCredentials {
        ticket: TICKET.into(),
        app_token: APP_TOKEN.into(),
        bearer: "bearer-tok-77".into(),
    }
}

fn so_toml(base: &str, account: &str, secret: Option<&str>) -> String {
    let secret = secret
        .map(|s| format!("webhook_secret = \"{s}\""))
        .unwrap_or_default();
    so_account_toml(
        base,
        account,
        &format!(
            "schedule = \"0 0 1 1 *\"\nrequests_per_second = 500\nmax_retries = 2\nmax_retry_wait = \"1s\"\ntimeout = \"5s\"\n{secret}"
        ),
    )
}

fn ml_toml(base: &str) -> String {
    ml_account_toml(
        base,
        "main",
        (CLIENT_ID, CLIENT_SECRET),
        t("2024-03-01T00:00:00Z"),
        &format!(
            "schedule = \"0 0 1 1 *\"\nrequests_per_second = 500\nmax_retries = 2\nmax_retry_wait = \"1s\"\ntimeout = \"5s\"\nwebhook_user = \"{HOOK_USER}\"\nwebhook_password = \"{HOOK_PASSWORD}\""
        ),
    )
}

/// The listener (and, when asked, the worker) of `h`'s sources, in process; stopped when dropped.
struct Hooks {
    addr: SocketAddr,
    running: webhooks::Listening,
    shutdown: CancellationToken,
}

impl Hooks {
    async fn start(settings: &Settings, h: &Harness) -> Hooks {
        let shutdown = CancellationToken::new();
        let running = webhooks::listen(
            "127.0.0.1:0".parse().unwrap(),
            &h.sources,
            &settings.warehouse,
            &h.metrics,
            &shutdown,
        )
        .await
        .unwrap();
        Hooks {
            addr: running.addr,
            running,
            shutdown,
        }
    }

    fn work(&self) {
        self.running.work();
    }

    fn url(&self, source: &str, account: &str) -> String {
        format!("http://{}/webhooks/{source}/{account}", self.addr)
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn so_event(event: &str, id: i64, event_id: &str) -> String {
    json!({
        "EventId": event_id, "Timestamp": "2024-05-01T10:00:00Z", "Changes": [],
        "Event": event, "PrimaryKey": id, "Entity": "chatsession",
        "ContextIdentifier": "Cust12345", "ChangedByAssociateId": 5,
        "WebhookName": "sessionsync-cust1", "FieldValues": {},
    })
    .to_string()
}

/// POSTs `body` with `headers`; the status and the outcome the listener named.
async fn post(
    url: &str,
    headers: &[(&str, String)],
    body: impl Into<reqwest::Body>,
) -> (u16, String) {
    let mut rb = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    let outcome = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["outcome"].as_str().map(String::from))
        .unwrap_or_default();
    (status, outcome)
}

async fn signed(url: &str, secret: &str, body: &str) -> (u16, String) {
    post(
        url,
        &[("x-superoffice-signature", signature(secret, body))],
        body.to_string(),
    )
    .await
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    use base64::Engine as _;
    (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    )
}

/// Waits until `sql` (one bigint) returns `want`, for at most `limit`; the last value.
async fn eventually(c: &tokio_postgres::Client, sql: &str, want: i64, limit: Duration) -> i64 {
    let start = Instant::now();
    loop {
        let got: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
        if got == want || start.elapsed() > limit {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn synced(c: &tokio_postgres::Client, id: i64) -> DateTime<Utc> {
    c.query_one(
        "SELECT last_synced_at FROM superoffice_chat_sessions WHERE chat_session_id = $1",
        &[&(id as i32)],
    )
    .await
    .unwrap()
    .get(0)
}

async fn open(c: &tokio_postgres::Client) -> bool {
    c.query_one(
        "SELECT coalesce(state->'open' ? '77', false) FROM sync_state WHERE source = 'mluvii'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn so_setup() -> (TestDb, SuperOfficeSim, Settings, Harness) {
    let db = TestDb::new().await;
    let mut chats = seed_samples();
    chats.extend(generate(
        3,
        10,
        t("2024-02-01T00:00:00Z"),
        t("2024-02-10T00:00:00Z"),
    ));
    let sim = SuperOfficeSim::start(creds(), chats).await.unwrap();
    let toml = format!(
        "[webhooks]\nlisten = \"127.0.0.1:0\"\n{}{}",
        so_toml(&sim.base_url(), "cust1", Some(SECRET)),
        so_toml(&sim.base_url(), "nohook", None)
    );
    let s = settings(&db, &toml);
    let h = Harness::new(&s).await;
    (db, sim, s, h)
}

#[tokio::test]
async fn signatures_and_credentials_are_checked_before_anything_is_recorded() {
    let (db, sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    let url = hooks.url("superoffice", "cust1");
    let body = so_event("chatsession.changed", 195, "e-1");
    let c = db.client().await;

    assert_eq!(signed(&url, "wrong-secret", &body).await.0, 401);
    assert_eq!(post(&url, &[], body.clone()).await.0, 401, "missing header");
    assert_eq!(
        post(
            &url,
            &[("x-superoffice-signature", "not base64!".into())],
            body.clone()
        )
        .await
        .0,
        401
    );
    let altered = body.replace("195", "196");
    assert_eq!(
        post(
            &url,
            &[("x-superoffice-signature", signature(SECRET, &body))],
            altered
        )
        .await
        .0,
        401,
        "body altered after signing"
    );
    assert_eq!(count(&c, "webhook_events").await, 0, "nothing recorded");
    for (source, account, what) in [
        ("superoffice", "nobody", "an unknown account"),
        ("superoffice", "nohook", "an account without webhook_secret"),
        ("takecontrol", "cust1", "a source without webhooks"),
    ] {
        let answer = signed(&hooks.url(source, account), SECRET, &body).await;
        assert_eq!(answer.0, 404, "{what}");
    }

    let (status, outcome) = signed(&url, SECRET, &body).await;
    assert_eq!((status, outcome.as_str()), (200, "accepted"));
    // The same delivery again while it waits: one row.
    let (status, outcome) = signed(&url, SECRET, &body).await;
    assert_eq!((status, outcome.as_str()), (200, "duplicate"));
    assert_eq!(count(&c, "webhook_events").await, 1);

    // Another event for the same session while both wait: one read of the session for both.
    let other = so_event("chatsession.message", 195, "e-2");
    assert_eq!(signed(&url, SECRET, &other).await, (200, "accepted".into()));
    assert_eq!(count(&c, "webhook_events").await, 2);
    sim.log().clear();
    hooks.work();
    assert_eq!(
        eventually(
            &c,
            "SELECT count(*) FROM webhook_events",
            0,
            Duration::from_secs(10)
        )
        .await,
        0
    );
    let reads = sim
        .log()
        .entries()
        .iter()
        .filter(|e| e.path == "/api/v1/ChatSession/{id}")
        .count();
    assert_eq!(
        reads, 1,
        "events for one session arriving together cause one read"
    );
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 1);

    let text = h.metrics.encode();
    let n = |outcome: &str| {
        metric(
            &text,
            "sessionsync_webhook_events_total",
            &["account=\"cust1\"", &format!("outcome=\"{outcome}\"")],
        )
    };
    assert_eq!(n("unauthorized"), 4.0, "{text}");
    assert_eq!((n("accepted"), n("duplicate")), (2.0, 1.0));
    assert!(!text.contains("nobody"), "unknown accounts are not labels");
}

#[tokio::test]
async fn mluvii_requires_its_basic_credentials() {
    let db = TestDb::new().await;
    let sim = MluviiSim::start(CLIENT_ID, CLIENT_SECRET, Vec::new())
        .await
        .unwrap();
    let s = settings(
        &db,
        &format!(
            "[webhooks]\nlisten = \"127.0.0.1:0\"\n{}",
            ml_toml(&sim.base_url())
        ),
    );
    let h = Harness::new(&s).await;
    let hooks = Hooks::start(&s, &h).await;
    let url = hooks.url("mluvii", "main");
    let body = json!({"eventType": "SessionEnded", "data": {"id": 5, "tenantId": 1}}).to_string();
    assert_eq!(post(&url, &[], body.clone()).await.0, 401);
    assert_eq!(
        post(&url, &[basic(HOOK_USER, "wrong")], body.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        post(&url, &[basic("someone", HOOK_PASSWORD)], body.clone())
            .await
            .0,
        401
    );
    let c = db.client().await;
    assert_eq!(count(&c, "webhook_events").await, 0);
    let ok = post(&url, &[basic(HOOK_USER, HOOK_PASSWORD)], body.clone()).await;
    assert_eq!(ok, (200, "accepted".into()));
    let ignored = post(
        &url,
        &[basic(HOOK_USER, HOOK_PASSWORD)],
        json!({"eventType": "ChatbotGreeted", "data": {"id": 5}}).to_string(),
    )
    .await;
    assert_eq!(ignored, (200, "ignored".into()));
    let no_id = post(
        &url,
        &[basic(HOOK_USER, HOOK_PASSWORD)],
        json!({"eventType": "SessionEnded", "data": {}}).to_string(),
    )
    .await;
    assert_eq!(no_id.0, 400);
    assert_eq!(count(&c, "webhook_events").await, 1);
}

#[tokio::test]
async fn an_event_lands_its_session_in_seconds_and_duplicates_and_replays_are_harmless() {
    let (db, sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    hooks.work();
    let url = hooks.url("superoffice", "cust1");
    let c = db.client().await;
    let chat = sim
        .chats()
        .into_iter()
        .find(|x| !x.messages.is_empty())
        .unwrap();
    let (id, messages) = (chat.id(), chat.messages.len() as i64);
    assert!(messages > 0);

    let started = Instant::now();
    let body = so_event("chatsession.changed", id, "e-1");
    assert_eq!(signed(&url, SECRET, &body).await.0, 200);
    let landed = eventually(
        &c,
        &format!("SELECT count(*) FROM superoffice_chat_messages WHERE chat_session_id = {id}"),
        messages,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(landed, messages, "the session's messages land");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        count(&c, "superoffice_chat_sessions WHERE account = 'cust1'").await,
        1,
        "only the named session"
    );
    assert_eq!(count(&c, "sync_runs").await, 0, "without a sync run");
    let watermark: Option<DateTime<Utc>> = c
        .query_one("SELECT max(watermark) FROM sync_state", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(watermark, None, "the watermark does not move");
    eventually(
        &c,
        "SELECT count(*) FROM webhook_events",
        0,
        Duration::from_secs(5),
    )
    .await;
    let first = synced(&c, id).await;

    // The same delivery again, after it was acted on: read again, nothing rewritten.
    sim.log().clear();
    assert_eq!(signed(&url, SECRET, &body).await.0, 200);
    let start = Instant::now();
    while sim.log().is_empty() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually(
        &c,
        "SELECT count(*) FROM webhook_events",
        0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(synced(&c, id).await, first, "a duplicate rewrites nothing");

    // A replay after the session changed picks the change up, and the new message.
    sim.update(id, |e| e["CustomerName"] = json!("Changed Customer"));
    sim.post_message(id, "a later message");
    assert_eq!(signed(&url, SECRET, &body).await.0, 200);
    let changed = eventually(
        &c,
        &format!("SELECT count(*) FROM superoffice_chat_sessions WHERE chat_session_id = {id} AND customer_name = 'Changed Customer'"),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(changed, 1);
    assert_eq!(
        eventually(
            &c,
            &format!("SELECT count(*) FROM superoffice_chat_messages WHERE chat_session_id = {id}"),
            messages + 1,
            Duration::from_secs(5)
        )
        .await,
        messages + 1
    );
    // Messages are read after the last one stored, not from the start.
    let afters: Vec<i64> = sim
        .message_requests()
        .iter()
        .filter(|(s, _)| *s == id)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(afters.first(), Some(&0));
    assert!(afters.last().unwrap() > &0, "{afters:?}");

    let text = h.metrics.encode();
    assert!(
        metric(
            &text,
            "sessionsync_webhook_lag_seconds_count",
            &["source=\"superoffice\""]
        ) >= 3.0,
        "{text}"
    );
}

#[tokio::test]
async fn registration_and_the_vendors_own_pushes_for_both_vendors() {
    // SuperOffice: register (its test POST is answered 200 `ignored`), then every change the
    // simulator makes reaches the warehouse on its own.
    let (db, sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    hooks.work();
    let so = h
        .sources
        .iter()
        .find(|x| x.key().account == "cust1")
        .unwrap()
        .clone();
    let hook = so.webhook().unwrap();
    assert!(matches!(
        hook.state().await.unwrap(),
        WebhookState::Problem(_)
    ));
    let target: reqwest::Url = hooks.url("superoffice", "cust1").parse().unwrap();
    let said = hook.register(&target).await.unwrap();
    assert!(said.contains("registered"), "{said}");
    assert!(!said.contains(SECRET));
    let said = hook.register(&target).await.unwrap();
    assert!(said.contains("updated webhook 1"), "{said}");
    assert_eq!(sim.webhooks().len(), 1);
    assert!(matches!(
        hook.state().await.unwrap(),
        WebhookState::Active(_)
    ));
    let c = db.client().await;
    sim.update(452, |e| e["CustomerName"] = json!("Pushed By Vendor"));
    let n = eventually(
        &c,
        "SELECT count(*) FROM superoffice_chat_sessions WHERE chat_session_id = 452 AND customer_name = 'Pushed By Vendor'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(n, 1);
    assert!(sim.deliveries().iter().all(|d| d.delivered));

    // mluvii: register; a second registration meets 409 and updates; a session concluded is
    // written CLOSED and leaves the open set.
    let created = Utc::now() - TimeDelta::minutes(30);
    // Still in after-call work.
    let session = ml_session_in_acw(77, created, TimeDelta::seconds(12), "PT4M48S");
    let ml = MluviiSim::start(CLIENT_ID, CLIENT_SECRET, vec![session])
        .await
        .unwrap();
    let db2 = TestDb::new().await;
    let s2 = settings(
        &db2,
        &format!(
            "[webhooks]\nlisten = \"127.0.0.1:0\"\n{}",
            ml_toml(&ml.base_url())
        ),
    );
    let h2 = Harness::new(&s2).await;
    let hooks2 = Hooks::start(&s2, &h2).await;
    hooks2.work();
    let r = h2.sync().await;
    assert_eq!(r.totals.written, 1, "{:?}", r.error);
    let c2 = db2.client().await;
    assert!(open(&c2).await, "in ACW: open, re-polled");
    let hook = h2.sources[0].webhook().unwrap();
    let target: reqwest::Url = hooks2.url("mluvii", "main").parse().unwrap();
    let said = hook.register(&target).await.unwrap();
    assert!(said.contains("registered webhook 1"), "{said}");
    assert!(
        !said.contains(HOOK_PASSWORD) && said.contains("redacted"),
        "{said}"
    );
    let said = hook.register(&target).await.unwrap();
    assert!(said.contains("updated webhook 1"), "{said}");
    assert_eq!(ml.webhooks().len(), 1);
    assert!(matches!(
        hook.state().await.unwrap(),
        WebhookState::Active(_)
    ));
    ml.update(77, |s| {
        s.operators[0].concluded = Some(Utc::now() - TimeDelta::seconds(5))
    });
    let closed = eventually(
        &c2,
        "SELECT count(*) FROM mluvii_sessions WHERE session_id = 77 AND status = 'CLOSED'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(closed, 1);
    // The simulator logs a delivery once its answer is in, which may come after the commit.
    let waited = Instant::now();
    while ml.deliveries().is_empty() && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ml.deliveries().last().map(|d| d.event_type.clone()),
        Some("SessionOperatorConcluded".into())
    );
    assert!(!open(&c2).await, "CLOSED by the event: no longer re-polled");
    let acw: Option<f64> = c2
        .query_one(
            "SELECT acw_seconds FROM mluvii_session_durations WHERE session_id = 77",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(acw.is_some());
    ml.log().clear();
    let r = h2.sync().await;
    assert_eq!(r.totals.written, 0);
    assert!(
        ml.log()
            .entries()
            .iter()
            .all(|e| e.path == "/api/v1/Sessions"),
        "the next poll does not read it again"
    );
}

#[tokio::test]
async fn hostile_bodies_get_clear_answers_and_nothing_recorded() {
    let (db, _sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    let url = hooks.url("superoffice", "cust1");
    let c = db.client().await;

    let huge = "x".repeat(2 << 20);
    assert_eq!(signed(&url, SECRET, &huge).await.0, 413, "over 1 MiB");
    // Without a Content-Length (chunked), the cap still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'a'; 100_000])).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    assert_eq!(post(&url, &[], stream).await.0, 413);
    assert_eq!(signed(&url, SECRET, "not json at all").await.0, 400);
    assert_eq!(signed(&url, SECRET, "[1, 2, 3]").await.0, 400);
    let big_number = r#"{"Event": "chatsession.changed", "PrimaryKey": 1e400}"#;
    assert_eq!(signed(&url, SECRET, big_number).await.0, 400);
    let too_big_id = r#"{"Event": "chatsession.changed", "PrimaryKey": 99999999999999999999999}"#;
    assert_eq!(signed(&url, SECRET, too_big_id).await.0, 400);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(signed(&url, SECRET, &deep).await.0, 400, "deep nesting");
    let deep_inside = format!(
        r#"{{"Event": "chatsession.changed", "PrimaryKey": 5, "FieldValues": {}{}}}"#,
        "{\"a\":".repeat(5000),
        "}".repeat(5000)
    );
    assert_eq!(signed(&url, SECRET, &deep_inside).await.0, 400);
    let unknown = so_event("person.changed", 5, "e-unknown");
    assert_eq!(
        signed(&url, SECRET, &unknown).await,
        (200, "ignored".into()),
        "an unknown event type is accepted, so the vendor does not disable the webhook"
    );
    assert_eq!(count(&c, "webhook_events").await, 0);
    let text = h.metrics.encode();
    assert_eq!(
        metric(
            &text,
            "sessionsync_webhook_events_total",
            &["outcome=\"ignored\""]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "sessionsync_webhook_events_total",
            &["outcome=\"malformed\""]
        ),
        8.0,
        "{text}"
    );
}

#[tokio::test]
async fn an_event_whose_session_is_gone_is_set_aside_not_retried() {
    let (db, _sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    hooks.work();
    let url = hooks.url("superoffice", "cust1");
    let c = db.client().await;
    assert_eq!(
        signed(
            &url,
            SECRET,
            &so_event("chatsession.created", 424242, "e-gone")
        )
        .await
        .0,
        200
    );
    let n = eventually(
        &c,
        "SELECT count(*) FROM rejected_records WHERE record_key = '424242' AND reason LIKE 'not_found:%'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(n, 1);
    assert_eq!(
        eventually(
            &c,
            "SELECT count(*) FROM webhook_events",
            0,
            Duration::from_secs(5)
        )
        .await,
        0
    );
}

/// A TCP proxy in front of PostgreSQL that can be switched off (the warehouse "down").
struct Proxy {
    addr: SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (u, g) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !u.load(SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let born = g.load(SeqCst);
                let g = g.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while g.load(SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = copy => {}, _ = cut => {} }
                });
            }
        });
        Proxy {
            addr,
            up,
            generation,
        }
    }

    fn set(&self, up: bool) {
        use std::sync::atomic::Ordering::SeqCst;
        self.up.store(up, SeqCst);
        if !up {
            self.generation.fetch_add(1, SeqCst);
        }
    }
}

#[tokio::test]
async fn the_warehouse_down_answers_503_and_records_nothing_then_recovers() {
    let (db, _sim, _s, _h) = so_setup().await;
    let mut url = reqwest::Url::parse(&db.url).unwrap();
    let pg: SocketAddr = tokio::net::lookup_host(format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = Proxy::start(pg).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let via_proxy = url.to_string();
    let s = Settings::from_toml(
        std::path::Path::new("test.toml"),
        &format!(
            "[webhooks]\nlisten = \"127.0.0.1:0\"\n{}",
            so_toml(&_sim.base_url(), "cust1", Some(SECRET))
        ),
        &move |name| (name == "DATABASE_URL").then(|| via_proxy.clone()),
        &sessionsync::sources::configs(),
    )
    .unwrap();
    let h = Harness::new(&s).await;
    let hooks = Hooks::start(&s, &h).await;
    let url = hooks.url("superoffice", "cust1");
    let c = db.client().await;
    assert_eq!(
        signed(&url, SECRET, &so_event("chatsession.changed", 195, "e-a")).await,
        (200, "accepted".into())
    );
    proxy.set(false);
    // The proxy cuts its open connections within 20 ms; let it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let down = signed(&url, SECRET, &so_event("chatsession.changed", 452, "e-b")).await;
    assert_eq!(down, (503, "unavailable".into()));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        count(&c, "webhook_events").await,
        1,
        "nothing recorded while down"
    );
    proxy.set(true);
    assert_eq!(
        signed(&url, SECRET, &so_event("chatsession.changed", 452, "e-b")).await,
        (200, "accepted".into()),
        "the vendor's retry is accepted once the warehouse is back"
    );
    assert_eq!(count(&c, "webhook_events").await, 2);
}

/// `sessionsync run` as a child process with JSON logs (stderr captured to a file).
fn daemon(config: &std::path::Path, log: &std::path::Path) -> tokio::process::Child {
    spawn_daemon(&["run"], config, &[], log)
}

async fn wait_listening(port: u16) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "daemon did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigkill_right_after_200_loses_nothing_and_no_secret_leaks() {
    let db = TestDb::new().await;
    let sim = SuperOfficeSim::start(creds(), seed_samples())
        .await
        .unwrap();
    let ml = MluviiSim::start(CLIENT_ID, CLIENT_SECRET, Vec::new())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("sessionsync-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (hook_port, metrics_port) = (free_port(), free_port());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[warehouse]\nurl = \"{}\"\n[server]\nlisten = \"127.0.0.1:{metrics_port}\"\n[webhooks]\nlisten = \"127.0.0.1:{hook_port}\"\n{}{}",
            db.url,
            so_toml(&sim.base_url(), "cust1", Some(SECRET)),
            ml_toml(&ml.base_url())
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{hook_port}/webhooks/superoffice/cust1");
    let (log1, log2) = (dir.join("run1.log"), dir.join("run2.log"));

    // The vendor API hangs, so the worker is mid-read when the process dies.
    sim.faults()
        .push(sessionsync_sim::Fault::Delay(Duration::from_secs(30)), 1);
    let mut first = daemon(&config, &log1);
    wait_listening(hook_port).await;
    let c = db.client().await;
    let mut answer = (0, String::new());
    for _ in 0..100 {
        // Until the schema is migrated, events are answered 503.
        answer = signed(
            &url,
            SECRET,
            &so_event("chatsession.changed", 195, "e-kill"),
        )
        .await;
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, "accepted".into()));
    // Wrong credentials on the way: they must not reach any log either.
    let wrong = post(
        &format!("http://127.0.0.1:{hook_port}/webhooks/mluvii/main"),
        &[basic(HOOK_USER, "guessed-pw-Q9")],
        "{}",
    )
    .await;
    assert_eq!(wrong.0, 401);
    first.kill().await.unwrap();
    assert_eq!(count(&c, "superoffice_chat_sessions").await, 0);
    assert_eq!(
        count(&c, "webhook_events").await,
        1,
        "the event survived the kill"
    );

    sim.faults().clear();
    let mut second = daemon(&config, &log2);
    // The killed worker had leased the event while it read the session (no transaction
    // open): it is due again once that lease (webhooks::worker::LEASE, 30 s) runs out.
    let n = eventually(
        &c,
        "SELECT count(*) FROM superoffice_chat_sessions WHERE chat_session_id = 195",
        1,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(n, 1, "processed after the restart");
    assert_eq!(
        eventually(
            &c,
            "SELECT count(*) FROM webhook_events",
            0,
            Duration::from_secs(5)
        )
        .await,
        0
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    second.kill().await.unwrap();
    let logs = format!(
        "{}{}",
        std::fs::read_to_string(&log1).unwrap(),
        std::fs::read_to_string(&log2).unwrap()
    );
    assert!(logs.contains("webhook"), "{logs}");
    for secret in [
        SECRET,
        HOOK_PASSWORD,
        "guessed-pw-Q9",
        CLIENT_SECRET,
        TICKET,
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
        let tables = c
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = 'sessionsync' AND data_type IN ('text', 'jsonb')",
                &[],
            )
            .await
            .unwrap();
        for r in tables {
            let (table, col): (String, String) = (r.get(0), r.get(1));
            let n: i64 = c
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE strpos({col}::text, $1) > 0"),
                    &[&secret],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{secret} in {table}.{col}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_register_and_check_commands_speak_plainly_and_never_print_the_secret() {
    let (db, sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    let dir = std::env::temp_dir().join(format!("sessionsync-register-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[warehouse]\nurl = \"{}\"\n{}{}",
            db.url,
            so_toml(&sim.base_url(), "cust1", Some(SECRET)),
            so_toml(&sim.base_url(), "nohook", None)
        ),
    )
    .unwrap();
    // Async: the simulator and the listener answer from this test's runtime meanwhile.
    let cli = |args: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sessionsync"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("DATABASE_URL")
            .output()
    };
    let public = format!("http://{}", hooks.addr);
    let out = cli(&[
        "webhooks",
        "register",
        "--source",
        "superoffice",
        "--account",
        "cust1",
        "--public-url",
        &public,
    ])
    .await
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("registered a new webhook"), "{stdout}");
    assert!(
        stdout.contains("/webhooks/superoffice/cust1"),
        "the target is the listener's path: {stdout}"
    );
    assert!(stderr.contains("not HTTPS"), "{stderr}");
    assert!(stderr.contains("no `[webhooks] listen`"), "{stderr}");
    assert_eq!(sim.webhooks().len(), 1);
    assert_eq!(
        sim.webhooks()[0].secret,
        SECRET,
        "registered with the configured secret"
    );

    let out = cli(&[
        "webhooks",
        "register",
        "--source",
        "superoffice",
        "--account",
        "nohook",
        "--public-url",
        &public,
    ])
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no `webhook_secret`"), "{stderr}");

    let out = cli(&["check"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.lines().any(|l| l.starts_with("OK")
            && l.contains("superoffice/cust1 webhook")
            && l.contains("Active")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("[webhooks] listen")),
        "an account with a secret but no listener is a problem: {stdout}"
    );
    for text in [&stdout, &String::from_utf8_lossy(&out.stderr).to_string()] {
        assert!(!text.contains(SECRET));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_webhook_re_read_stores_superoffices_not_set_dates_as_null_and_counts_them() {
    let (db, sim, s, h) = so_setup().await;
    sim.upsert(sessionsync_sim::superoffice::SimChat {
        entity: json!({
            "ChatSessionId": 4242, "Status": "InQueue", "SessionKey": "sk-q",
            "WhenRequested": "2024-02-03T10:00:00.0000000+01:00",
            "WhenStarted": "0001-01-01T00:00:00", "WhenEnded": "1760-01-01T00:00:00",
            "WhenIdle": "1753-01-01T00:00:00", "WhenFetched": "9999-12-31T23:59:59.9999999",
        }),
        updated: Utc::now(),
        messages: vec![
            json!({"ChatMessageId": 90001, "ChatSessionId": 4242, "Message": "hello?",
            "WhenPosted": "0001-01-01T00:00:00"}),
        ],
    });
    let hooks = Hooks::start(&s, &h).await;
    hooks.work();
    let c = db.client().await;
    let body = so_event("chatsession.changed", 4242, "e-unset");
    assert_eq!(
        signed(&hooks.url("superoffice", "cust1"), SECRET, &body)
            .await
            .0,
        200
    );
    let landed = eventually(
        &c,
        "SELECT count(*) FROM superoffice_chat_messages WHERE chat_session_id = 4242",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(landed, 1);
    assert_eq!(
        count(
            &c,
            "superoffice_chat_sessions WHERE chat_session_id = 4242 AND requested_at IS NOT NULL
               AND started_at IS NULL AND ended_at IS NULL AND idle_at IS NULL AND fetched_at IS NULL
               AND queue_seconds IS NULL AND handle_seconds IS NULL AND total_seconds IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &c,
            "superoffice_chat_messages WHERE chat_session_id = 4242 AND posted_at IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        count(&c, "rejected_records").await,
        0,
        "counted, not set aside"
    );
    let text = h.metrics.encode();
    assert_eq!(
        metric(
            &text,
            "sessionsync_values_nulled_total",
            &["reason=\"null_date\""]
        ),
        5.0,
        "{text}"
    );
}

/// An address that accepts connections and never answers (a hung vendor API).
async fn hanging_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn two_hung_tenants_delay_only_their_own_runs_and_events() {
    let db = TestDb::new().await;
    let sim = SuperOfficeSim::start(creds(), seed_samples())
        .await
        .unwrap();
    let (hung, _hang) = hanging_endpoint().await;
    let mut toml = String::from("[webhooks]\nlisten = \"127.0.0.1:0\"\n");
    for i in 0..6 {
        toml.push_str(&so_toml(&sim.base_url(), &format!("ok{i}"), Some(SECRET)));
    }
    for i in 0..2 {
        toml.push_str(
            &so_toml(&hung, &format!("hung{i}"), Some(SECRET))
                .replace("timeout = \"5s\"", "timeout = \"120s\""),
        );
    }
    let s = settings(&db, &toml);
    let h = Harness::new(&s).await;
    let hooks = Hooks::start(&s, &h).await;
    hooks.work();
    let c = db.client().await;

    // Every account's stream runs at once (default engine settings).
    let cancel = CancellationToken::new();
    let mut runs = Vec::new();
    for src in &h.sources {
        let (engine, src, cancel) = (h.engine.clone(), src.clone(), cancel.clone());
        let account = src.key().account.clone();
        runs.push((
            account,
            tokio::spawn(async move { engine.run_once(&src, &cancel).await.unwrap() }),
        ));
    }
    // Events for the hung accounts first: their drains are left waiting on the vendor.
    let chat = sim.chats()[0].id();
    for i in 0..2 {
        let url = hooks.url("superoffice", &format!("hung{i}"));
        let body = so_event("chatsession.changed", chat, &format!("h-{i}"));
        assert_eq!(signed(&url, SECRET, &body).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for i in 0..6 {
        let url = hooks.url("superoffice", &format!("ok{i}"));
        let body = so_event("chatsession.changed", chat, &format!("ok-{i}"));
        assert_eq!(signed(&url, SECRET, &body).await.0, 200);
    }
    let waiting = eventually(
        &c,
        "SELECT count(*) FROM webhook_events WHERE account LIKE 'ok%'",
        0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(waiting, 0, "the healthy accounts' events landed");
    assert!(started.elapsed() < Duration::from_secs(5));
    let landed = metric(
        &h.metrics.encode(),
        "sessionsync_webhook_lag_seconds_count",
        &["superoffice"],
    );
    assert!(landed >= 6.0, "{landed} events applied");

    // The six healthy runs complete while the two hung ones are still waiting.
    let (mut healthy, mut hanging) = (Vec::new(), Vec::new());
    for (account, run) in runs {
        if account.starts_with("ok") {
            healthy.push(run);
        } else {
            hanging.push(run);
        }
    }
    for run in healthy {
        let report = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("a healthy account's run finished")
            .unwrap();
        assert_eq!(
            report.outcome,
            sessionsync::engine::Outcome::Succeeded,
            "{:?}",
            report.error
        );
    }
    assert!(
        hanging.iter().all(|r| !r.is_finished()),
        "still waiting on their vendor"
    );
    assert_eq!(
        count(&c, "webhook_events WHERE account LIKE 'hung%'").await,
        2,
        "the hung accounts' events wait, leased"
    );
    let sessions = count(&c, "superoffice_chat_sessions WHERE account LIKE 'ok%'").await;
    assert_eq!(sessions, 6 * sim.chats().len() as i64);
    cancel.cancel();
    for run in hanging {
        let report = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("a hung run stops at shutdown")
            .unwrap();
        assert_eq!(report.outcome, sessionsync::engine::Outcome::Failed);
    }
}

/// Open files of this process (the listener's and the test's own sockets alike).
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// `n` connections to `addr`, opened 500 at a time.
async fn connect_many(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let batch = (n - out.len()).min(500);
        let opened =
            futures::future::join_all((0..batch).map(|_| tokio::net::TcpStream::connect(addr)))
                .await;
        out.extend(opened.into_iter().filter_map(Result::ok));
    }
    out
}

/// Whether the server closed `s` (or answered and closed) within `limit`.
async fn closed_by_server(s: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until.into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_withstands_idle_and_trickling_clients() {
    use tokio::io::AsyncWriteExt;
    use webhooks::listener::{BODY_DEADLINE, HEADER_DEADLINE, connection_cap};
    let (db, _sim, s, h) = so_setup().await;
    let hooks = Hooks::start(&s, &h).await;
    let url = hooks.url("superoffice", "cust1");
    let shutdown = CancellationToken::new();
    let (health, _server) = sessionsync::server::spawn(
        "127.0.0.1:0".parse().unwrap(),
        h.metrics.clone(),
        h.engine.warehouse().clone(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let (soft, _) = rlimit_nofile();
    let cap = connection_cap(soft);
    assert!(
        cap < soft as usize / 2,
        "the cap ({cap}) stays well below the fd limit ({soft})"
    );
    let healthz = || async {
        let started = Instant::now();
        let r = reqwest::get(format!("http://{health}/healthz"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        started.elapsed()
    };

    // 2,000 clients that connect and send nothing, 200 that trickle their headers, 200 that
    // trickle a body they announced (one byte every 300 ms), all held open.
    let mut idle = connect_many(hooks.addr, 2000).await;
    let mut tricklers = Vec::new();
    for (i, mut c) in connect_many(hooks.addr, 400).await.into_iter().enumerate() {
        tricklers.push(tokio::spawn(async move {
            let head = if i % 2 == 0 {
                "POST /webhooks/superoffice/cust1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_string()
            } else {
                "POST /webhooks/superoffice/cust1 HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_string()
            };
            let body_first = i % 2 == 0;
            if body_first && c.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for b in 0..1000u32 {
                let byte = if body_first { b'a' } else { head.as_bytes()[b as usize % head.len()] };
                if c.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Signed events land within seconds, and health answers within a second.
    for i in 0..5 {
        let started = Instant::now();
        let answered = signed(
            &url,
            SECRET,
            &so_event("chatsession.changed", 1000 + i, &format!("flood-{i}")),
        )
        .await;
        assert_eq!(answered, (200, "accepted".into()), "event {i}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "event {i} took {:?}",
            started.elapsed()
        );
    }
    assert!(healthz().await < Duration::from_secs(1));
    let c = db.client().await;
    assert_eq!(count(&c, "webhook_events").await, 5);

    // Idle connections are closed after the header deadline; trickled bodies after the body's.
    let mut closed = 0;
    for s in idle.iter_mut().take(50) {
        closed += usize::from(closed_by_server(s, HEADER_DEADLINE + Duration::from_secs(3)).await);
    }
    assert_eq!(
        closed, 50,
        "idle connections closed after {HEADER_DEADLINE:?}"
    );
    tokio::time::sleep(BODY_DEADLINE).await;
    let text = h.metrics.encode();
    let open = metric(&text, "sessionsync_webhook_connections ", &[]);
    assert!(
        open < 10.0,
        "{open} connections still open after the deadlines"
    );
    for t in &tricklers {
        t.abort();
    }
    drop(idle);

    // A flood past the cap: the excess is refused at once, the process keeps file descriptors
    // to spare, health still answers, and once the flood is gone events land again.
    let before = open_files();
    let started = Instant::now();
    let flood = connect_many(hooks.addr, cap + 300).await;
    println!(
        "flood of {} connections opened in {:?}",
        cap + 300,
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = h.metrics.encode();
    let refused = metric(&text, "sessionsync_webhook_connections_refused_total", &[]);
    assert!(
        refused >= 200.0,
        "refused {refused} of {} connections (cap {cap})",
        cap + 300
    );
    assert!(metric(&text, "sessionsync_webhook_connections ", &[]) <= cap as f64);
    assert!(open_files() < before + 2 * cap + 400 && open_files() < soft as usize);
    assert!(healthz().await < Duration::from_secs(1));
    drop(flood);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = signed(
        &url,
        SECRET,
        &so_event("chatsession.changed", 1010, "after-flood"),
    )
    .await;
    assert_eq!(answered, (200, "accepted".into()));
    shutdown.cancel();
}

/// The soft and hard limits of open files.
fn rlimit_nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

/// An older or on-site mluvii tenant knows fewer event types: it gets the subset it accepts,
/// and `check` names the missing ones. A registration whose answer was lost (5xx after the
/// webhook was created) is listed before anything is sent again: no duplicate webhook.
#[tokio::test]
async fn mluvii_registration_fits_an_older_tenant_and_never_duplicates_after_a_5xx() {
    let ml = MluviiSim::start(CLIENT_ID, CLIENT_SECRET, vec![])
        .await
        .unwrap();
    ml.set_known_event_types(Some(&[
        "SessionStarted",
        "SessionEnded",
        "SessionForwarded",
        "UserStatusChanged",
    ]));
    let db = TestDb::new().await;
    let s = settings(
        &db,
        &format!(
            "[webhooks]\nlisten = \"127.0.0.1:0\"\n{}",
            ml_toml(&ml.base_url())
        ),
    );
    let h = Harness::new(&s).await;
    let hooks = Hooks::start(&s, &h).await;
    let hook = h.sources[0].webhook().unwrap();
    let target: reqwest::Url = hooks.url("mluvii", "main").parse().unwrap();
    ml.fail_next_registration_after_create();
    let said = hook.register(&target).await.unwrap();
    assert!(
        said.contains("events SessionStarted, SessionForwarded, SessionEnded")
            && said.contains("the tenant does not offer SessionCreated, SessionOperatorJoined, SessionOperatorLeft, SessionOperatorConcluded (polling covers them)"),
        "{said}"
    );
    let listed = ml.webhooks();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0].event_types,
        vec!["SessionStarted", "SessionForwarded", "SessionEnded"]
    );
    // The refused POST (400), then one POST that created it (answered 500), then no POST: the
    // list showed it, and it was updated.
    assert_eq!(ml.registration_posts(), 2);
    assert!(said.contains("updated webhook 1"), "{said}");
    match hook.state().await.unwrap() {
        WebhookState::Active(t) => assert!(
            t.contains("events missing: SessionCreated, SessionOperatorJoined, SessionOperatorLeft, SessionOperatorConcluded"),
            "{t}"
        ),
        other => panic!("{other:?}"),
    }
}

/// A SuperOffice Online tenant that moved: a webhook's session is read from the host the state
/// API names now.
#[tokio::test]
async fn superoffice_online_webhook_reads_follow_the_tenant_to_its_new_host() {
    use sessionsync_sim::superoffice_online::{APPLICATION_KEY_PEM, OnlineCredentials, OnlineSim};
    let sim = OnlineSim::start(OnlineCredentials::default(), seed_samples())
        .await
        .unwrap();
    let c = &sim.creds;
    let db = TestDb::new().await;
    let toml = format!(
        "[webhooks]\nlisten = \"127.0.0.1:0\"\n[[superoffice]]\naccount = \"cust1\"\nenvironment = \"{}\"\ncontext_identifier = \"{}\"\napp_token = \"{}\"\nsystem_user_token = \"{}\"\nprivate_key = '''\n{}'''\nstart = \"1995-01-01T00:00:00Z\"\nschedule = \"0 0 1 1 *\"\nrequests_per_second = 500\nmax_retries = 2\nmax_retry_wait = \"1s\"\nwebhook_secret = \"{SECRET}\"\n",
        sim.environment_url(),
        c.context,
        c.app_token,
        c.system_user_token,
        APPLICATION_KEY_PEM
    );
    let s = settings(&db, &toml);
    let h = Harness::new(&s).await;
    let r = h.sync().await;
    assert_eq!(r.totals.written, 3, "{:?}", r.error);
    let hooks = Hooks::start(&s, &h).await;
    hooks.work();
    let conn = db.client().await;
    sim.move_tenant();
    sim.tenant
        .update(195, |e| e["LastMessage"] = json!("after the move"));
    let body = so_event("chatsession.changed", 195, "moved-1");
    let (status, outcome) = signed(&hooks.url("superoffice", "cust1"), SECRET, &body).await;
    assert_eq!((status, outcome.as_str()), (200, "accepted"));
    let read = eventually(
        &conn,
        "SELECT count(*) FROM superoffice_chat_sessions WHERE chat_session_id = 195 AND last_message = 'after the move'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(read, 1, "the session was read again, from the new host");
    let log = sim.tenant_requests();
    assert!(
        log.iter().any(|(host, s)| *host == 0 && *s == 421),
        "{log:?}"
    );
    assert!(
        log.iter().any(|(host, s)| *host == 1 && *s == 200),
        "{log:?}"
    );
}
