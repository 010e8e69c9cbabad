//! mluvii simulator: the OAuth token endpoint (tokens expire, can be revoked), the session list
//! with `Created`/`Ended`/`Status` filters and `limit`/`offset` paging, the detail and the
//! routing history of each session, and an optional server-side rate limit (429 + Retry-After
//! beyond R requests/s). Sessions move through ACW to CLOSED as the simulator's clock passes
//! their `left`/`concluded` times: a time still in the future is not shown yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, SecondsFormat, TimeDelta, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{
    Delivery, Faults, Outbox, Outgoing, RequestLog, SimServer, apply_fault, serve, truncate,
};

#[derive(Debug, Clone, PartialEq)]
pub struct SimOperator {
    pub user_id: i64,
    pub first_name: String,
    pub last_name: String,
    pub joined: Option<DateTime<Utc>>,
    pub left: Option<DateTime<Utc>>,
    pub concluded: Option<DateTime<Utc>>,
    /// The operator's note on the session (free text).
    pub note: Option<String>,
}

impl SimOperator {
    pub fn new(user_id: i64) -> Self {
        SimOperator {
            user_id,
            first_name: format!("Op{user_id}"),
            last_name: "Erator".into(),
            joined: None,
            left: None,
            concluded: None,
            note: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimRouting {
    pub at: DateTime<Utc>,
    pub activity_type: String,
    pub operator: Option<i64>,
    pub group: Option<(i64, String)>,
    pub phone_number: Option<String>,
}

impl SimRouting {
    pub fn new(at: DateTime<Utc>, activity_type: &str, operator: Option<i64>) -> Self {
        SimRouting {
            at,
            activity_type: activity_type.into(),
            operator,
            group: Some((10, "Support".into())),
            phone_number: None,
        }
    }
}

/// One session as mluvii holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSession {
    pub id: i64,
    pub channel: String,
    pub source: String,
    pub created: DateTime<Utc>,
    pub guest_joined: Option<DateTime<Utc>>,
    pub started: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    /// ISO 8601 durations, as the API writes them.
    pub waited: Option<String>,
    pub length: Option<String>,
    pub operators: Vec<SimOperator>,
    pub routing: Vec<SimRouting>,
    /// Overrides the status the clock would give (e.g. BLACKLISTED, or an unknown value).
    pub status: Option<String>,
    pub direct_call_number: Option<String>,
    pub phone_callback_number: Option<String>,
    pub tags: Vec<String>,
    pub stars: Option<i64>,
    /// `guest {ipAddress, identity, callParams, language}` as the SessionModel carries it.
    pub guest: Option<Value>,
    /// `activities [{time, type, text, file {downloadUrl}}]`: the chat itself.
    pub activities: Vec<Value>,
    pub feedback_text: Option<String>,
    pub url: String,
    /// When mluvii anonymised it (`Anonymized.Min/Max` filter on it).
    pub anonymized: Option<DateTime<Utc>>,
    /// Not in the `Sessions` list yet (indexed late: [`MluviiSim::index_late`]); its detail and
    /// routing answer as usual.
    pub unindexed: bool,
    /// `guestFeedbackScale` (`Likert`, `NPS`) of the stars.
    pub feedback_scale: Option<String>,
    pub termination_reason: Option<String>,
    pub guest_left: Option<bool>,
    /// A chatbot took part.
    pub chatbot: Option<bool>,
}

impl SimSession {
    pub fn new(id: i64, created: DateTime<Utc>) -> Self {
        SimSession {
            id,
            channel: "Chat".into(),
            source: "Default".into(),
            created,
            guest_joined: None,
            started: None,
            ended: None,
            waited: None,
            length: None,
            operators: Vec::new(),
            routing: Vec::new(),
            status: None,
            direct_call_number: None,
            phone_callback_number: None,
            tags: Vec::new(),
            stars: None,
            guest: None,
            activities: Vec::new(),
            feedback_text: None,
            url: "https://shop.example/help".into(),
            anonymized: None,
            unindexed: false,
            feedback_scale: None,
            termination_reason: None,
            guest_left: None,
            chatbot: None,
        }
    }

    /// What mluvii does when it anonymises a session (its customer's retention, or a request):
    /// the session keeps its id, times and statuses; its personal fields are emptied.
    pub fn anonymize(&mut self, at: DateTime<Utc>) {
        self.guest = None;
        self.activities.clear();
        self.feedback_text = None;
        self.direct_call_number = None;
        self.phone_callback_number = None;
        self.url = self.url.split('?').next().unwrap_or_default().to_string();
        for r in &mut self.routing {
            r.phone_number = None;
        }
        self.anonymized = Some(at);
    }

    /// The status at `now`, from the timeline.
    pub fn status_at(&self, now: DateTime<Utc>) -> String {
        if let Some(s) = &self.status {
            return s.clone();
        }
        let seen = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t <= now);
        let s = if seen(self.ended) {
            let in_acw = self
                .operators
                .iter()
                .any(|o| seen(o.left) && !seen(o.concluded));
            if in_acw { "ACW" } else { "CLOSED" }
        } else if seen(self.started) {
            "ACTIVE"
        } else if self.routing.iter().any(|r| r.at <= now) {
            "IN_QUEUE"
        } else {
            "CREATED"
        };
        s.to_string()
    }
}

/// Times are written with this offset (+01:00), as a Prague tenant would see them.
fn fmt(t: DateTime<Utc>) -> String {
    let prague = FixedOffset::east_opt(3600).expect("valid offset");
    t.with_timezone(&prague)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

fn shown(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Value {
    match t {
        Some(t) if t <= now => json!(fmt(t)),
        _ => Value::Null,
    }
}

pub struct Shared {
    client_id: String,
    client_secret: String,
    sessions: RwLock<BTreeMap<i64, SimSession>>,
    /// token → when it expires.
    tokens: Mutex<HashMap<String, Instant>>,
    token_lifetime: RwLock<Duration>,
    /// After this many more API requests, every issued token expires.
    expire_after: Mutex<Option<u64>>,
    issued: AtomicU64,
    clock: RwLock<Option<DateTime<Utc>>>,
    /// Server-side limit: (R per second, bucket level, last refill).
    rate: Mutex<Option<(f64, f64, Instant)>>,
    pub faults: Faults,
    pub log: RequestLog,
    webhooks: RwLock<Vec<SimWebhook>>,
    outbox: Outbox,
    /// List rows carry only `id`, `channel`, `source`, `status`, `created` and `ended` instead
    /// of the whole SessionModel (to test a client's fallback to the detail).
    abridged: std::sync::atomic::AtomicBool,
    /// The event types the tenant knows (`None`: all); an older or on-site tenant knows fewer
    /// and refuses a registration naming another with a 400 that names it.
    known_events: RwLock<Option<Vec<String>>>,
    /// The next registration POST creates the webhook, then answers 500 (a lost answer).
    fail_after_create: std::sync::atomic::AtomicBool,
    /// Registration POSTs received.
    pub registration_posts: std::sync::atomic::AtomicU64,
    /// Days whose sessions cannot be listed (500).
    pub broken_days: super::BrokenDays,
}

/// A webhook registered with the simulator (`POST /api/v1/Webhooks`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimWebhook {
    pub id: i64,
    pub event_types: Vec<String>,
    /// As registered, `user:password@` included.
    pub callback_url: String,
}

impl Shared {
    fn now(&self) -> DateTime<Utc> {
        self.clock.read().expect("clock").unwrap_or_else(Utc::now)
    }
}

/// A running mluvii simulator.
pub struct MluviiSim {
    pub server: SimServer,
    pub shared: Arc<Shared>,
}

impl MluviiSim {
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        sessions: Vec<SimSession>,
    ) -> std::io::Result<Self> {
        let (router, shared) = router(client_id, client_secret, sessions);
        Ok(MluviiSim {
            server: serve(router).await?,
            shared,
        })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Tokens issued so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.issued.load(Ordering::Relaxed)
    }

    /// Every token issued so far expires after `n` more API requests.
    pub fn expire_tokens_after(&self, n: u64) {
        *self.shared.expire_after.lock().expect("expiry") = Some(n);
    }

    pub fn set_token_lifetime(&self, d: Duration) {
        *self.shared.token_lifetime.write().expect("lifetime") = d;
    }

    /// Fixes the simulator's clock (`None`: the real time).
    /// List rows abridged (`id`, `channel`, `source`, `status`, `created`, `ended`) instead of
    /// whole SessionModels, as a tenant whose list leaves fields out would send them.
    pub fn set_abridged_list(&self, on: bool) {
        self.shared
            .abridged
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_clock(&self, t: Option<DateTime<Utc>>) {
        *self.shared.clock.write().expect("clock") = t;
    }

    /// At most `per_second` API requests per second (bucket of one second's worth); beyond
    /// that, 429 with `Retry-After`. `None` lifts the limit.
    pub fn set_rate_limit(&self, per_second: Option<f64>) {
        *self.shared.rate.lock().expect("rate") = per_second.map(|r| (r, r, Instant::now()));
    }

    /// Adds or replaces a session; a registered webhook hears `SessionCreated` for a new one,
    /// else the event its status suggests.
    pub fn upsert(&self, s: SimSession) {
        let id = s.id;
        let existed = self
            .shared
            .sessions
            .write()
            .expect("sessions")
            .insert(s.id, s)
            .is_some();
        if existed {
            self.shared.emit_for_status(id);
        } else {
            self.shared.emit("SessionCreated", id);
        }
    }

    /// Changes a session; a registered webhook hears the event its new status suggests
    /// (`SessionOperatorConcluded` once CLOSED, `SessionEnded` once ended, else
    /// `SessionStarted`).
    pub fn update(&self, id: i64, f: impl FnOnce(&mut SimSession)) {
        if let Some(s) = self.shared.sessions.write().expect("sessions").get_mut(&id) {
            f(s);
        } else {
            return;
        }
        self.shared.emit_for_status(id);
    }

    /// Anonymises session `id` as mluvii does after its customer's retention period: its
    /// personal fields are emptied and it is listed by `Anonymized.Min` from now on.
    pub fn anonymize(&self, id: i64) {
        let now = self.shared.now();
        if let Some(s) = self.shared.sessions.write().expect("sessions").get_mut(&id) {
            s.anonymize(now);
        }
    }

    /// Sends `event_type` about session `id` to every registered webhook that wants it.
    pub fn emit(&self, event_type: &str, id: i64) {
        self.shared.emit(event_type, id);
    }

    pub fn webhooks(&self) -> Vec<SimWebhook> {
        self.shared.webhooks.read().expect("webhooks").clone()
    }

    /// The tenant knows only these event types (an older or on-site tenant: `SessionStarted`,
    /// `SessionEnded`, `SessionForwarded`, `UserStatusChanged`); `None`: every type.
    pub fn set_known_event_types(&self, types: Option<&[&str]>) {
        *self.shared.known_events.write().expect("events") =
            types.map(|t| t.iter().map(|s| s.to_string()).collect());
    }

    /// The next registration POST creates its webhook, then answers 500 as if the answer was
    /// lost on the way.
    pub fn fail_next_registration_after_create(&self) {
        self.shared
            .fail_after_create
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Registration POSTs received so far.
    pub fn registration_posts(&self) -> u64 {
        self.shared
            .registration_posts
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every webhook delivery finished so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.outbox.deliveries()
    }

    /// Deletes a session outright: no longer listed, its detail answers 404.
    /// Listings that reach `day` fail (500) from now on.
    pub fn break_listing(&self, day: chrono::NaiveDate) {
        self.shared.broken_days.add(day);
    }

    pub fn remove(&self, id: i64) {
        self.shared.sessions.write().expect("sessions").remove(&id);
    }

    /// A session mluvii indexes late: its detail and routing answer, but the `Sessions` list
    /// leaves it out until [`Self::reveal`] (then with its own, old `created`).
    pub fn index_late(&self, mut s: SimSession) {
        s.unindexed = true;
        self.shared
            .sessions
            .write()
            .expect("sessions")
            .insert(s.id, s);
    }

    /// Puts a late-indexed session into the list.
    pub fn reveal(&self, id: i64) {
        if let Some(s) = self.shared.sessions.write().expect("sessions").get_mut(&id) {
            s.unindexed = false;
        }
    }

    pub fn sessions(&self) -> Vec<SimSession> {
        self.shared
            .sessions
            .read()
            .expect("sessions")
            .values()
            .cloned()
            .collect()
    }
}

/// The simulator's routes and state, to serve anywhere.
pub fn router(
    client_id: &str,
    client_secret: &str,
    sessions: Vec<SimSession>,
) -> (Router, Arc<Shared>) {
    let shared = Arc::new(Shared {
        client_id: client_id.into(),
        client_secret: client_secret.into(),
        sessions: RwLock::new(sessions.into_iter().map(|s| (s.id, s)).collect()),
        tokens: Mutex::new(HashMap::new()),
        token_lifetime: RwLock::new(Duration::from_secs(3600)),
        expire_after: Mutex::new(None),
        issued: AtomicU64::new(0),
        clock: RwLock::new(None),
        rate: Mutex::new(None),
        faults: Faults::default(),
        log: RequestLog::default(),
        webhooks: RwLock::new(Vec::new()),
        outbox: Outbox::new(),
        abridged: std::sync::atomic::AtomicBool::new(false),
        known_events: RwLock::new(None),
        fail_after_create: std::sync::atomic::AtomicBool::new(false),
        registration_posts: std::sync::atomic::AtomicU64::new(0),
        broken_days: Default::default(),
    });
    let router = Router::new()
        .route("/login/connect/token", post(token))
        .route(
            "/api/v1/Webhooks",
            get(list_webhooks).post(register_webhook),
        )
        .route("/api/v1/Webhooks/{id}", axum::routing::put(update_webhook))
        .route("/api/v1/Sessions", get(list))
        .route("/api/v1/Sessions/{id}", get(detail))
        .route("/api/v1/Sessions/{id}/routingHistory", get(routing))
        .with_state(shared.clone());
    (router, shared)
}

fn problem(status: StatusCode, title: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"title": title, "status": status.as_u16()}).to_string(),
    )
        .into_response()
}

async fn token(
    State(sh): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let resp = if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response()
    } else if form.get("client_id") != Some(&sh.client_id)
        || form.get("client_secret") != Some(&sh.client_secret)
    {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response()
    } else {
        let n = sh.issued.fetch_add(1, Ordering::Relaxed) + 1;
        let value = format!("sim-token-{n}-{:016x}", rand::rng().random::<u64>());
        let lifetime = *sh.token_lifetime.read().expect("lifetime");
        sh.tokens
            .lock()
            .expect("tokens")
            .insert(value.clone(), Instant::now() + lifetime);
        Json(json!({"access_token": value, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}))
            .into_response()
    };
    sh.log.push("/login/connect/token", resp.status().as_u16());
    resp
}

use axum::Json;

/// Authentication, rate limit and faults for an API request; `Ok(cut)` lets the handler answer.
async fn gate(sh: &Shared, headers: &HeaderMap) -> Result<bool, Response> {
    {
        let mut exp = sh.expire_after.lock().expect("expiry");
        if let Some(n) = exp.as_mut() {
            if *n == 0 {
                sh.tokens.lock().expect("tokens").clear();
                *exp = None;
            } else {
                *n -= 1;
            }
        }
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = sh
        .tokens
        .lock()
        .expect("tokens")
        .get(token)
        .is_some_and(|exp| *exp > Instant::now());
    if !valid {
        return Err(problem(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    if let Some((r, level, last)) = sh.rate.lock().expect("rate").as_mut() {
        let now = Instant::now();
        *level = (*level + now.duration_since(*last).as_secs_f64() * *r).min(*r);
        *last = now;
        if *level < 1.0 {
            let wait = ((1.0 - *level) / *r).ceil().max(1.0) as u64;
            let mut resp = problem(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            resp.headers_mut()
                .insert("retry-after", wait.to_string().parse().expect("ascii"));
            return Err(resp);
        }
        *level -= 1.0;
    }
    apply_fault(&sh.faults, |m| {
        problem(StatusCode::INTERNAL_SERVER_ERROR, m)
    })
    .await
}

fn json_body(v: &Value, cut: bool) -> Response {
    let body = v.to_string();
    let body = if cut { truncate(body) } else { body };
    ([("content-type", "application/json")], body).into_response()
}

/// A filter time: ISO 8601 with an offset, or a bare date (midnight UTC), as mluvii's own sample
/// clients send both.
fn parse_time(v: Option<&String>) -> Result<Option<DateTime<Utc>>, ()> {
    match v.map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
            })
            .map(Some)
            .map_err(|_| ()),
    }
}

async fn list(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let resp = list_answer(&sh, &headers, &q).await;
    sh.log.push("/api/v1/Sessions", resp.status().as_u16());
    resp
}

async fn list_answer(sh: &Shared, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    let cut = match gate(sh, headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    };
    let (Ok(cmin), Ok(cmax), Ok(emin), Ok(emax), Ok(amin), Ok(amax)) = (
        parse_time(get("Created.Min")),
        parse_time(get("Created.Max")),
        parse_time(get("Ended.Min")),
        parse_time(get("Ended.Max")),
        parse_time(get("Anonymized.Min")),
        parse_time(get("Anonymized.Max")),
    ) else {
        return problem(StatusCode::BAD_REQUEST, "Invalid date filter");
    };
    if sh.broken_days.reached(cmin, cmax) {
        return super::BrokenDays::answer();
    }
    let limit: usize = match get("limit").map(|v| v.parse()) {
        None => 100,
        Some(Ok(n)) if n > 0 => n,
        _ => return problem(StatusCode::BAD_REQUEST, "Invalid limit"),
    };
    let offset: usize = match get("offset").map(|v| v.parse()) {
        None => 0,
        Some(Ok(n)) => n,
        _ => return problem(StatusCode::BAD_REQUEST, "Invalid offset"),
    };
    let status = get("Status");
    let channel = get("Channel");
    let source = get("Source");
    let abridged = sh.abridged.load(std::sync::atomic::Ordering::Relaxed);
    let now = sh.now();
    let sessions = sh.sessions.read().expect("sessions");
    let items: Vec<Value> = sessions
        .values()
        .filter(|s| s.created <= now && !s.unindexed)
        .filter(|s| cmin.is_none_or(|m| s.created >= m) && cmax.is_none_or(|m| s.created <= m))
        .filter(|s| {
            let ended = s.ended.filter(|e| *e <= now);
            (emin.is_none() && emax.is_none())
                || ended.is_some_and(|e| emin.is_none_or(|m| e >= m) && emax.is_none_or(|m| e <= m))
        })
        .filter(|s| {
            (amin.is_none() && amax.is_none())
                || s.anonymized
                    .is_some_and(|a| amin.is_none_or(|m| a >= m) && amax.is_none_or(|m| a <= m))
        })
        .filter(|s| status.is_none_or(|st| s.status_at(now).eq_ignore_ascii_case(st)))
        .filter(|s| channel.is_none_or(|c| s.channel.eq_ignore_ascii_case(c)))
        .filter(|s| source.is_none_or(|c| s.source.eq_ignore_ascii_case(c)))
        .skip(offset)
        .take(limit)
        .map(|s| {
            if abridged {
                json!({
                    "id": s.id, "channel": s.channel, "source": s.source, "status": s.status_at(now),
                    "created": fmt(s.created), "ended": shown(s.ended, now),
                })
            } else {
                // The list rows are SessionModels (mluvii's sample client reads them as such).
                session_json(s, now)
            }
        })
        .collect();
    json_body(&Value::Array(items), cut)
}

fn session_json(s: &SimSession, now: DateTime<Utc>) -> Value {
    let ops: Vec<Value> = s
        .operators
        .iter()
        .filter(|o| o.joined.is_none_or(|j| j <= now))
        .map(|o| {
            json!({
                "userId": o.user_id, "userName": format!("{}.{}", o.first_name, o.last_name).to_lowercase(),
                "firstName": o.first_name, "lastName": o.last_name,
                "joined": shown(o.joined, now), "left": shown(o.left, now),
                "concluded": shown(o.concluded, now), "note": o.note,
            })
        })
        .collect();
    let ended_seen = s.ended.is_some_and(|e| e <= now);
    json!({
        "id": s.id, "companyId": 1, "departmentId": 2, "channel": s.channel, "source": s.source,
        "status": s.status_at(now), "directCallNumber": s.direct_call_number,
        "phoneCallbackNumber": s.phone_callback_number, "url": s.url,
        "widget": "default", "created": fmt(s.created), "guestJoined": shown(s.guest_joined, now),
        "started": shown(s.started, now), "ended": shown(s.ended, now),
        "waited": s.waited, "length": if ended_seen { json!(s.length) } else { Value::Null },
        "operators": ops, "recordings": Value::Null, "activities": s.activities,
        "guest": s.guest, "guestFeedbackText": s.feedback_text,
        "anonymized": s.anonymized.map(fmt),
        "tags": s.tags.iter().enumerate().map(|(i, t)| json!({"id": i + 1, "name": t})).collect::<Vec<_>>(),
        "guestFeedbackStars": s.stars, "guestFeedbackScale": s.feedback_scale,
        "terminationReason": s.termination_reason, "guestLeft": s.guest_left,
        "chatbot": s.chatbot,
    })
}

fn routing_json(s: &SimSession, now: DateTime<Utc>) -> Value {
    Value::Array(
        s.routing
            .iter()
            .filter(|r| r.at <= now)
            .map(|r| {
                json!({
                    "routingRequestId": s.id * 10 + 1, "timestamp": fmt(r.at),
                    "activityType": r.activity_type,
                    "group": r.group.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
                    "phoneNumber": r.phone_number,
                    "operator": r.operator.map(|u| json!({"userId": u, "firstName": format!("Op{u}"), "lastName": "Erator"})),
                    "forwardedByOperator": Value::Null, "invitedByOperator": Value::Null,
                })
            })
            .collect(),
    )
}

async fn detail(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let resp = one(&sh, &headers, &id, session_json).await;
    sh.log.push("/api/v1/Sessions/{id}", resp.status().as_u16());
    resp
}

async fn routing(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let resp = one(&sh, &headers, &id, routing_json).await;
    sh.log.push(
        "/api/v1/Sessions/{id}/routingHistory",
        resp.status().as_u16(),
    );
    resp
}

async fn one(
    sh: &Shared,
    headers: &HeaderMap,
    id: &str,
    render: fn(&SimSession, DateTime<Utc>) -> Value,
) -> Response {
    let cut = match gate(sh, headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<i64>() else {
        return problem(StatusCode::BAD_REQUEST, "Invalid id");
    };
    let now = sh.now();
    let body = match sh.sessions.read().expect("sessions").get(&id) {
        Some(s) if s.created <= now => render(s, now),
        _ => return problem(StatusCode::NOT_FOUND, "Session not found"),
    };
    json_body(&body, cut)
}

/// ISO 8601 duration of whole milliseconds, as mluvii writes them (`PT1M23.5S`).
pub fn iso(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.abs();
    let (h, m, s, frac) = (
        ms / 3_600_000,
        (ms / 60_000) % 60,
        (ms / 1000) % 60,
        ms % 1000,
    );
    let mut out = format!("{sign}PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push_str(&format!("{s}.{}S", f.trim_end_matches('0')));
    } else if s > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{s}S"));
    }
    out
}

/// The kinds of session [`generate`] makes, in turn.
pub const PATHS: [&str; 8] = [
    "chat answered",
    "abandoned in queue",
    "forwarded",
    "two operators",
    "callback",
    "campaign",
    "phone with PBX wait",
    "still in ACW",
];

/// A seeded dataset of `n` sessions created in `[from, to)`, cycling through [`PATHS`], with
/// millisecond timestamps, the odd unknown activityType and the odd negative span. Sessions of
/// the path "still in ACW" conclude up to ten minutes after `to`.
pub fn generate(seed: u64, n: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<SimSession> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let span_ms = (to - from).num_milliseconds().max(2);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = 500_000 + i as i64;
        let path = PATHS[i % PATHS.len()];
        let created = if path == "still in ACW" {
            // Recent, so that its ACW is a plausible few minutes long.
            to - TimeDelta::milliseconds(rng.random_range(900_000..1_200_000))
        } else {
            from + TimeDelta::milliseconds(rng.random_range(0..span_ms * 9 / 10))
        };
        let mut ms = |lo: i64, hi: i64| TimeDelta::milliseconds(rng.random_range(lo..hi));
        let mut s = SimSession::new(id, created);
        let rrc = created + ms(200, 3_000);
        s.routing
            .push(SimRouting::new(rrc, "RoutingRequestCreated", None));
        s.routing
            .push(SimRouting::new(rrc + ms(1, 50), "EnteredGroupQueue", None));
        if path == "abandoned in queue" {
            s.routing.push(SimRouting::new(
                rrc + ms(10_000, 60_000),
                "GroupQueueTimeoutExpired",
                None,
            ));
            s.ended = Some(rrc + ms(60_000, 90_000));
            s.routing
                .push(SimRouting::new(s.ended.unwrap(), "RoutingEnded", None));
            add_guest(&mut s, i);
            out.push(s);
            continue;
        }
        let op1 = 100 + (i as i64 % 7);
        let assigned = rrc + ms(1_000, 40_000);
        let accepted = assigned + ms(500, 15_000);
        s.routing
            .push(SimRouting::new(assigned, "AssignedToOperator", Some(op1)));
        s.routing
            .push(SimRouting::new(accepted, "AcceptedByOperator", Some(op1)));
        if i % 11 == 0 {
            s.routing.push(SimRouting::new(
                accepted + ms(1, 10),
                "BrandNewActivity",
                None,
            ));
        }
        s.started = Some(accepted);
        s.guest_joined = Some(accepted + ms(100, 4_000));
        let talk = ms(30_000, 900_000);
        let ended = accepted + talk;
        s.ended = Some(ended);
        s.length = Some(iso(talk.num_milliseconds()));
        let mut o1 = SimOperator::new(op1);
        o1.joined = Some(accepted);
        o1.left = Some(ended);
        o1.concluded = Some(ended + ms(5_000, 120_000));
        match path {
            "forwarded" => {
                let fwd = accepted + talk / 2;
                let op2 = op1 + 50;
                o1.left = Some(fwd);
                o1.concluded = Some(fwd + ms(1_000, 30_000));
                s.routing
                    .push(SimRouting::new(fwd, "ForwardedToUser", Some(op1)));
                s.routing.push(SimRouting::new(
                    fwd + ms(1, 500),
                    "AssignedToOperator",
                    Some(op2),
                ));
                s.routing.push(SimRouting::new(
                    fwd + ms(600, 5_000),
                    "AcceptedByOperator",
                    Some(op2),
                ));
                let mut o2 = SimOperator::new(op2);
                o2.joined = Some(fwd + ms(600, 5_000));
                o2.left = Some(ended);
                o2.concluded = Some(ended + ms(5_000, 60_000));
                s.operators.push(o2);
            }
            "two operators" => {
                let op2 = op1 + 60;
                s.routing.push(SimRouting::new(
                    accepted + ms(10_000, 20_000),
                    "InvitedUser",
                    Some(op2),
                ));
                let mut o2 = SimOperator::new(op2);
                o2.joined = Some(accepted + ms(20_000, 30_000));
                o2.left = Some(ended);
                o2.concluded = Some(ended + ms(130_000, 300_000));
                s.operators.push(o2);
            }
            "callback" => {
                s.source = "Callback".into();
                s.phone_callback_number = Some("+420600000000".into());
            }
            "campaign" => {
                s.source = "Campaign".into();
                s.channel = "Phone".into();
            }
            "phone with PBX wait" => {
                s.channel = "Phone".into();
                s.source = "IncomingCall".into();
                s.direct_call_number = Some("+420222000111".into());
                s.waited = Some(iso((accepted - created).num_milliseconds()));
            }
            "still in ACW" => {
                let talk = ms(30_000, 300_000);
                s.ended = Some(accepted + talk);
                s.length = Some(iso(talk.num_milliseconds()));
                o1.left = s.ended;
                o1.concluded = Some(to.max(accepted + talk) + ms(1_000, 600_000));
            }
            _ => {}
        }
        if i % 13 == 0 {
            // Odd data: the guest "joined" before the session was created.
            s.guest_joined = Some(created - ms(1_000, 5_000));
        }
        s.operators.insert(0, o1);
        s.tags = if i % 4 == 0 {
            vec!["vip".into()]
        } else {
            vec![]
        };
        s.stars = (i % 3 == 0).then(|| 1 + (i as i64 % 5));
        add_guest(&mut s, i);
        out.push(s);
    }
    out
}

/// The personal data a real SessionModel carries (sources.md §3): the guest's IP address,
/// identity and call parameters, the chat's texts and files, a feedback text, a query string.
/// Derived from the index alone, so the rest of the seeded data stays as it was.
fn add_guest(s: &mut SimSession, i: usize) {
    let id = s.id;
    s.feedback_scale = s
        .stars
        .map(|_| if i.is_multiple_of(2) { "Likert" } else { "NPS" }.to_string());
    // An NPS answer is 0 to 10; a Likert one stays 1 to 5.
    if s.feedback_scale.as_deref() == Some("NPS") {
        s.stars = Some(id % 11);
    }
    s.termination_reason = s
        .ended
        .map(|_| ["GuestLeft", "OperatorClosed", "Timeout"][i % 3].to_string());
    s.guest_left = s.ended.map(|_| i.is_multiple_of(3));
    s.chatbot = Some(i % 4 == 1);
    if let Some(o) = s.operators.first_mut() {
        o.note = Some(format!("Called back guest{id} about the invoice"));
    }
    s.guest = Some(json!({
        "ipAddress": format!("203.0.113.{}", i % 250),
        "identity": format!("guest{id}@example.org"),
        "callParams": {"phone": format!("+420 777 {:03} {:03}", i % 1000, id % 1000), "name": format!("Guest {id}")},
        "language": "cs",
    }));
    s.url = format!("https://shop.example/help?email=guest{id}%40example.org");
    let at = s.started.unwrap_or(s.created);
    if s.started.is_some() {
        s.activities = vec![
            json!({"time": fmt(at), "type": "ChatMessage", "text": format!("Dobrý den, tady guest{id}, potřebuji pomoc")}),
            json!({"time": fmt(at + TimeDelta::seconds(20)), "type": "ChatMessage", "text": format!("Moje číslo je +420 777 {:03} {:03}", i % 1000, id % 1000)}),
            json!({"time": fmt(at + TimeDelta::seconds(40)), "type": "File", "text": "invoice.pdf",
                   "file": {"downloadUrl": format!("https://files.mluvii.example/{id}/invoice.pdf?token=t{id}")}}),
        ];
    }
    if i.is_multiple_of(3) {
        s.feedback_text = Some(format!("Guest {id} says thanks"));
    }
}

// --- Webhooks (sources.md §4b) ------------------------------------------------------------------

/// The session event types mluvii sends.
pub const EVENTS: [&str; 7] = [
    "SessionCreated",
    "SessionStarted",
    "SessionOperatorJoined",
    "SessionForwarded",
    "SessionEnded",
    "SessionOperatorLeft",
    "SessionOperatorConcluded",
];

/// Pauses before the two retries of an event; then it is dropped.
const RETRIES: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(5)];

impl Shared {
    fn emit_for_status(&self, id: i64) {
        let now = self.now();
        let Some(status) = self
            .sessions
            .read()
            .expect("sessions")
            .get(&id)
            .map(|s| (s.status_at(now), s.ended.is_some_and(|e| e <= now)))
        else {
            return;
        };
        let event = match status {
            (st, _) if st == "CLOSED" => "SessionOperatorConcluded",
            (_, true) => "SessionEnded",
            _ => "SessionStarted",
        };
        self.emit(event, id);
    }

    fn emit(&self, event_type: &str, id: i64) {
        let now = self.now();
        // mluvii's payload models carry a few fields per event, never the whole SessionModel.
        let Some(data) = self.sessions.read().expect("sessions").get(&id).map(|s| {
            json!({
                "id": s.id, "tenantId": 1, "channel": s.channel, "source": s.source,
                "created": fmt(s.created), "started": shown(s.started, now),
                "ended": shown(s.ended, now),
            })
        }) else {
            return;
        };
        let body = json!({ "eventType": event_type, "data": data }).to_string();
        let hooks = self.webhooks.read().expect("webhooks").clone();
        for hook in hooks
            .iter()
            .filter(|h| h.event_types.iter().any(|e| e == event_type))
        {
            let Some((url, headers)) = callback(&hook.callback_url) else {
                continue;
            };
            self.outbox.send(Outgoing {
                url,
                headers,
                body: body.clone(),
                event_type: event_type.into(),
                id,
                queued: Instant::now(),
                retries: RETRIES,
            });
        }
    }
}

/// A callback URL without its `user:password@`, and the Basic header those become.
fn callback(registered: &str) -> Option<(reqwest::Url, Vec<(&'static str, String)>)> {
    use base64::Engine as _;
    let mut url = reqwest::Url::parse(registered).ok()?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut headers = Vec::new();
    if !url.username().is_empty() {
        let user = decode(url.username());
        let password = decode(url.password().unwrap_or_default());
        headers.push((
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
        ));
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    Some((url, headers))
}

fn hook_json(h: &SimWebhook) -> Value {
    json!({ "id": h.id, "eventTypes": h.event_types, "callbackUrl": h.callback_url })
}

/// `(eventTypes, callbackUrl)` of a registration body (mluvii's swagger `WebhookModel`; property
/// names compare case-insensitively, so `EventTypes`/`CallbackUrl` work too).
fn hook_from(text: &str) -> Result<(Vec<String>, String), &'static str> {
    let v: Value = serde_json::from_str(text).map_err(|_| "Invalid JSON")?;
    let field = |name: &str| {
        v.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    };
    let events = super::string_list(&field("eventTypes"));
    let url = field("callbackUrl")
        .as_str()
        .unwrap_or_default()
        .to_string();
    if events.is_empty() || reqwest::Url::parse(&url).is_err() {
        return Err("EventTypes and a valid CallbackUrl are required");
    }
    Ok((events, url))
}

/// A 400 naming the event types an older tenant does not know (ASP.NET's model-state form:
/// **assumed**, the public record shows no such answer), or `None`.
fn unknown_events(sh: &Shared, types: &[String]) -> Option<Response> {
    let known = sh.known_events.read().expect("events").clone()?;
    let unknown: Vec<String> = types
        .iter()
        .filter(|t| !known.iter().any(|k| k.eq_ignore_ascii_case(t)))
        .map(|t| format!("The value '{t}' is not valid."))
        .collect();
    (!unknown.is_empty()).then(|| {
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            json!({ "errors": { "eventTypes": unknown }, "status": 400 }).to_string(),
        )
            .into_response()
    })
}

/// Where a callback delivers, credentials aside (one webhook per target).
fn target(url: &str) -> String {
    callback(url)
        .map(|(u, _)| u.to_string())
        .unwrap_or_default()
}

async fn list_webhooks(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    let hooks = sh.webhooks.read().expect("webhooks").clone();
    json_body(&Value::Array(hooks.iter().map(hook_json).collect()), false)
}

async fn register_webhook(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    text: String,
) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    sh.registration_posts
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (event_types, callback_url) = match hook_from(&text) {
        Ok(h) => h,
        Err(why) => return problem(StatusCode::BAD_REQUEST, why),
    };
    if let Some(r) = unknown_events(&sh, &event_types) {
        return r;
    }
    let mut hooks = sh.webhooks.write().expect("webhooks");
    if let Some(existing) = hooks
        .iter()
        .find(|h| target(&h.callback_url) == target(&callback_url))
    {
        // The existing webhook's id, as a bare integer (int32 in mluvii's swagger).
        return (
            StatusCode::CONFLICT,
            [("content-type", "application/json")],
            existing.id.to_string(),
        )
            .into_response();
    }
    let hook = SimWebhook {
        id: hooks.len() as i64 + 1,
        event_types,
        callback_url,
    };
    let id = hook.id;
    hooks.push(hook);
    if sh
        .fail_after_create
        .swap(false, std::sync::atomic::Ordering::SeqCst)
    {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "An error occurred");
    }
    // The new webhook's id, as a bare integer.
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        id.to_string(),
    )
        .into_response()
}

async fn update_webhook(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    text: String,
) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    let (event_types, callback_url) = match hook_from(&text) {
        Ok(h) => h,
        Err(why) => return problem(StatusCode::BAD_REQUEST, why),
    };
    if let Some(r) = unknown_events(&sh, &event_types) {
        return r;
    }
    let mut hooks = sh.webhooks.write().expect("webhooks");
    match hooks.iter_mut().find(|h| h.id == id) {
        Some(h) => {
            h.event_types = event_types;
            h.callback_url = callback_url;
            StatusCode::NO_CONTENT.into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "Webhook not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_bodies_in_camel_and_pascal_case_read_alike() {
        let want = (
            vec!["SessionEnded".to_string()],
            "https://u:p@example.test/webhooks/mluvii/main".to_string(),
        );
        for body in [
            r#"{"eventTypes": ["SessionEnded"], "callbackUrl": "https://u:p@example.test/webhooks/mluvii/main"}"#,
            r#"{"EventTypes": ["SessionEnded"], "CallbackUrl": "https://u:p@example.test/webhooks/mluvii/main"}"#,
        ] {
            assert_eq!(hook_from(body), Ok(want.clone()), "{body}");
        }
        assert!(hook_from(r#"{"eventTypes": []}"#).is_err());
    }

    #[test]
    fn filter_times_may_be_bare_dates() {
        let v = "2024-01-05".to_string();
        assert_eq!(
            parse_time(Some(&v)),
            Ok(Some("2024-01-05T00:00:00Z".parse().unwrap()))
        );
        let v = "2024-01-05T10:00:00+02:00".to_string();
        assert_eq!(
            parse_time(Some(&v)),
            Ok(Some("2024-01-05T08:00:00Z".parse().unwrap()))
        );
        assert!(parse_time(Some(&"yesterday".to_string())).is_err());
    }
}
