//! SuperOffice simulator: the ChatSession archive list (`$select`, `$filter`, `$orderBy`,
//! `$top`, `$skip`, optional `odata.nextLink`), the entity by id, its messages `after` an id,
//! `ChatSessionsForUser`, and the agent endpoints SuperOffice's official client uses
//! (`GetChatSessionEntity`, `GetChatMessages`). Authentication is `SOTICKET` + `SO-AppToken` or
//! `Bearer`; anything else is 401. Entities carry a SessionKey, as the real API's do, so tests
//! can prove it never lands.
//!
//! As SuperOffice's references say (sources.md §2):
//! - each archive column takes only the operators of its restriction type: `afterTime` on a
//!   date column such as `updatedDate` is refused (400), as a tenant refuses it;
//! - dates come in the tenant's base zone (`NO`, Norway) **without an offset** unless the
//!   request's `SO-TimeZone` header names a zone; with `includeTZOffset` they carry the offset
//!   written `+HHMM`. Filter values are read in the same zone. The archive's `updatedDate` is
//!   always UTC. A tenant with time-zone support switched off ([`SuperOfficeSim::set_timezone_support`])
//!   ignores the header;
//! - `ReadByCustomer` is an integer (values beyond 0 and 1 occur).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeDelta, Utc};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{
    Delivery, Faults, Outbox, Outgoing, RequestLog, SimServer, apply_fault, post_once, serve,
    truncate,
};

/// One chat session as SuperOffice holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimChat {
    /// The ChatSessionEntity (PascalCase), SessionKey included.
    pub entity: Value,
    /// `updatedDate` of the archive (UTC).
    pub updated: DateTime<Utc>,
    pub messages: Vec<Value>,
}

impl SimChat {
    pub fn id(&self) -> i64 {
        self.entity["ChatSessionId"].as_i64().unwrap_or(0)
    }
}

/// The credentials the simulator accepts.
#[derive(Debug, Clone)]
pub struct SimCredentials {
    pub ticket: String,
    pub app_token: String,
    pub bearer: String,
}

pub struct Shared {
    creds: SimCredentials,
    chats: RwLock<BTreeMap<i64, SimChat>>,
    next_links: RwLock<bool>,
    next_message_id: AtomicI64,
    /// `(session, after)` of every Messages request.
    pub message_requests: std::sync::Mutex<Vec<(i64, i64)>>,
    pub faults: Faults,
    pub log: RequestLog,
    webhooks: RwLock<Vec<SimWebhook>>,
    outbox: Outbox,
    next_event: AtomicI64,
    /// Sessions removed by [`SuperOfficeSim::vanish`], with when: the archive lists each as
    /// changed then (a purged row), and reading it answers 404.
    vanished: RwLock<Vec<(i64, DateTime<Utc>)>>,
    /// Chats held (read by id answers) but not in the archive's list nor the agent's yet: indexed
    /// late ([`SuperOfficeSim::index_late`]).
    unindexed: RwLock<std::collections::BTreeSet<i64>>,
    /// Days whose chats cannot be listed by `whenRequested` (500).
    pub broken_days: super::BrokenDays,
    /// Whether the tenant honours `SO-TimeZone` (its time-zone support is on).
    timezone_support: std::sync::atomic::AtomicBool,
    /// Every `SO-TimeZone` header received (empty when a request had none).
    pub timezone_headers: std::sync::Mutex<Vec<String>>,
    /// SuperOffice Online around this tenant: it admits requests (host, state, tickets).
    online: std::sync::OnceLock<Arc<crate::superoffice_online::Online>>,
}

impl Shared {
    pub(crate) fn set_online(&self, online: Arc<crate::superoffice_online::Online>) {
        let _ = self.online.set(online);
    }
}

/// A webhook registered with the simulator (`POST /api/v1/Webhook`).
#[derive(Debug, Clone, PartialEq)]
pub struct SimWebhook {
    pub id: i64,
    pub name: String,
    pub events: Vec<String>,
    pub target: String,
    pub secret: String,
    pub state: String,
}

pub struct SuperOfficeSim {
    /// Its own server; `None` when served by [`crate::superoffice_online::OnlineSim`]'s hosts.
    pub server: Option<SimServer>,
    base: String,
    pub shared: Arc<Shared>,
}

impl SuperOfficeSim {
    pub async fn start(creds: SimCredentials, chats: Vec<SimChat>) -> std::io::Result<Self> {
        let (router, shared) = router(creds, chats);
        let server = serve(router).await?;
        Ok(SuperOfficeSim {
            base: server.base_url(),
            server: Some(server),
            shared,
        })
    }

    /// The tenant served elsewhere (SuperOffice Online's hosts), at `base`.
    pub(crate) fn from_shared(shared: Arc<Shared>, base: String) -> Self {
        SuperOfficeSim {
            server: None,
            base,
            shared,
        }
    }

    pub fn base_url(&self) -> String {
        self.base.clone()
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Switches the tenant's time-zone support: off, it ignores `SO-TimeZone` and writes every
    /// date in its base zone ([`BASE_ZONE`]) without an offset.
    pub fn set_timezone_support(&self, on: bool) {
        self.shared.timezone_support.store(on, Ordering::Relaxed);
    }

    /// Every `SO-TimeZone` header received so far (empty where a request had none).
    pub fn timezone_headers(&self) -> Vec<String> {
        self.shared
            .timezone_headers
            .lock()
            .expect("headers")
            .clone()
    }

    /// Pages of the archive list carry an `odata.nextLink` (with `$skip`) while more remain.
    pub fn set_next_links(&self, on: bool) {
        *self.shared.next_links.write().expect("flag") = on;
    }

    /// Adds or replaces a session (a registered webhook hears `chatsession.created` or
    /// `chatsession.changed`).
    pub fn upsert(&self, c: SimChat) {
        let id = c.id();
        let existed = self
            .shared
            .chats
            .write()
            .expect("chats")
            .insert(id, c)
            .is_some();
        let event = if existed {
            "chatsession.changed"
        } else {
            "chatsession.created"
        };
        self.shared.emit(event, id);
    }

    /// Changes an entity; its `updatedDate` becomes now (`chatsession.changed`).
    pub fn update(&self, id: i64, f: impl FnOnce(&mut Value)) {
        if let Some(c) = self.shared.chats.write().expect("chats").get_mut(&id) {
            f(&mut c.entity);
            c.updated = Utc::now();
        } else {
            return;
        }
        self.shared.emit("chatsession.changed", id);
    }

    /// Deletes a session in SuperOffice's way: its status becomes `Deleted` (updatedDate now).
    pub fn delete(&self, id: i64) {
        self.update(id, |e| e["Status"] = json!("Deleted"));
    }

    /// Removes a session entirely: reading it by id answers 404 from now on; the archive still
    /// lists it once as changed (its row's updatedDate is now), as a purge would.
    pub fn vanish(&self, id: i64) {
        self.shared.chats.write().expect("chats").remove(&id);
        self.shared
            .vanished
            .write()
            .expect("vanished")
            .push((id, Utc::now()));
    }

    /// A chat SuperOffice indexes late: read by id answers, but neither list shows it until
    /// [`Self::reveal`] (then with its own, old `WhenRequested` and `updatedDate`; no event).
    pub fn index_late(&self, c: SimChat) {
        let id = c.id();
        self.shared.unindexed.write().expect("unindexed").insert(id);
        self.shared.chats.write().expect("chats").insert(id, c);
    }

    /// Puts a late-indexed chat into the lists.
    pub fn reveal(&self, id: i64) {
        self.shared
            .unindexed
            .write()
            .expect("unindexed")
            .remove(&id);
    }

    /// Listings by `whenRequested` that reach `day` fail (500) from now on.
    pub fn break_listing(&self, day: chrono::NaiveDate) {
        self.shared.broken_days.add(day);
    }

    /// Deletes a chat outright, with no trace: no list shows it, reading it answers 404, no
    /// event is sent (unlike [`Self::vanish`], whose row the archive lists once as changed).
    pub fn purge(&self, id: i64) {
        self.shared.chats.write().expect("chats").remove(&id);
    }

    /// Sends `event` about session `id` to every active webhook registered for it, as the
    /// vendor would (a replay, or an event type of the test's choosing).
    pub fn emit(&self, event: &str, id: i64) {
        self.shared.emit(event, id);
    }

    /// The registered webhooks.
    pub fn webhooks(&self) -> Vec<SimWebhook> {
        self.shared.webhooks.read().expect("webhooks").clone()
    }

    /// Registers a webhook directly (as if done in SuperOffice's settings).
    pub fn add_webhook(&self, name: &str, target: &str, secret: &str) -> i64 {
        let mut hooks = self.shared.webhooks.write().expect("webhooks");
        let id = hooks.len() as i64 + 1;
        hooks.push(SimWebhook {
            id,
            name: name.into(),
            events: EVENTS.iter().map(|e| e.to_string()).collect(),
            target: target.into(),
            secret: secret.into(),
            state: "Active".into(),
        });
        id
    }

    /// Every webhook delivery finished so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.outbox.deliveries()
    }

    /// Posts a message to a session (its `updatedDate` becomes now); returns the message id.
    pub fn post_message(&self, id: i64, text: &str) -> i64 {
        let mid = self.shared.next_message_id.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.shared.chats.write().expect("chats").get_mut(&id) {
            c.messages.push(message_json(mid, id, text, Utc::now()));
            c.entity["LastMessage"] = json!(text);
            c.updated = Utc::now();
        } else {
            return mid;
        }
        self.shared.emit("chatsession.message", id);
        mid
    }

    /// `(session, after)` of every Messages request so far.
    pub fn message_requests(&self) -> Vec<(i64, i64)> {
        self.shared
            .message_requests
            .lock()
            .expect("requests")
            .clone()
    }

    pub fn chats(&self) -> Vec<SimChat> {
        self.shared
            .chats
            .read()
            .expect("chats")
            .values()
            .cloned()
            .collect()
    }
}

/// The simulator's routes and state, to serve anywhere.
pub fn router(creds: SimCredentials, chats: Vec<SimChat>) -> (Router, Arc<Shared>) {
    let max_msg = chats
        .iter()
        .flat_map(|c| c.messages.iter())
        .filter_map(|m| m["ChatMessageId"].as_i64())
        .max()
        .unwrap_or(0);
    let shared = Arc::new(Shared {
        creds,
        chats: RwLock::new(chats.into_iter().map(|c| (c.id(), c)).collect()),
        next_links: RwLock::new(false),
        next_message_id: AtomicI64::new(max_msg + 1),
        message_requests: std::sync::Mutex::new(Vec::new()),
        faults: Faults::default(),
        log: RequestLog::default(),
        webhooks: RwLock::new(Vec::new()),
        outbox: Outbox::new(),
        next_event: AtomicI64::new(1),
        vanished: RwLock::new(Vec::new()),
        unindexed: RwLock::default(),
        broken_days: Default::default(),
        timezone_support: std::sync::atomic::AtomicBool::new(true),
        timezone_headers: std::sync::Mutex::new(Vec::new()),
        online: std::sync::OnceLock::new(),
    });
    let router = Router::new()
        .route("/api/v1/Webhook", get(list_webhooks).post(register_webhook))
        .route("/api/v1/Webhook/{id}", axum::routing::put(update_webhook))
        .route("/api/v1/ChatSession", get(list))
        .route("/api/v1/ChatSession/{id}", get(entity))
        .route("/api/v1/ChatSession/{id}/Messages", get(messages))
        .route("/api/v1/Agents/Chat/ChatSessionsForUser", post(for_user))
        .route(
            "/api/v1/Agents/Chat/GetChatSessionEntity",
            post(agent_entity),
        )
        .route("/api/v1/Agents/Chat/GetChatMessages", post(agent_messages))
        .route("/api/v1/Agents/Chat/ChatTopicsForUser", post(topics))
        .with_state(shared.clone());
    (router, shared)
}

fn message_json(mid: i64, session: i64, text: &str, at: DateTime<Utc>) -> Value {
    json!({
        "ChatMessageId": mid, "ChatSessionId": session,
        "Type": if mid % 2 == 0 { "ToCustomer" } else { "ToUser" },
        "Message": text, "Author": if mid % 2 == 0 { "Agent Smith" } else { "Customer" },
        // An int32 in SuperOffice's reference: values beyond 0 and 1 occur.
        "ReadByCustomer": mid % 4, "SpecialType": "None", "SpecialParam": "",
        "WhenPosted": so_date(at, 1),
    })
}

/// A date as SuperOffice writes it: an offset and seven fractional digits.
pub fn so_date(t: DateTime<Utc>, offset_hours: i32) -> String {
    let off = FixedOffset::east_opt(offset_hours * 3600).expect("valid offset");
    let local = t.with_timezone(&off);
    format!(
        "{}.{:07}{}",
        local.format("%Y-%m-%dT%H:%M:%S"),
        local.timestamp_subsec_nanos() / 100,
        local.format("%:z")
    )
}

fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"Error": msg, "ErrorType": "SoException"}).to_string(),
    )
        .into_response()
}

/// What a request is answered with: whether the body is cut (a fault), and how its dates are
/// written.
struct Answer {
    cut: bool,
    dates: Rendering,
}

async fn gate(sh: &Shared, headers: &HeaderMap) -> Result<Answer, Response> {
    let cut = gate_cut(sh, headers).await?;
    let asked = headers
        .get("so-timezone")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    sh.timezone_headers
        .lock()
        .expect("headers")
        .push(asked.clone());
    let dates = if sh.timezone_support.load(Ordering::Relaxed) {
        Rendering::asked(&asked).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?
    } else {
        Rendering::base()
    };
    Ok(Answer { cut, dates })
}

async fn gate_cut(sh: &Shared, headers: &HeaderMap) -> Result<bool, Response> {
    if let Some(online) = sh.online.get() {
        online.admit(headers).map_err(|r| *r)?;
        return apply_fault(&sh.faults, |m| error(StatusCode::INTERNAL_SERVER_ERROR, m)).await;
    }
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = h("authorization");
    let (scheme, value) = auth.split_once(' ').unwrap_or(("", ""));
    let ok = match scheme.to_ascii_lowercase().as_str() {
        "soticket" => value == sh.creds.ticket && h("so-apptoken") == sh.creds.app_token,
        "bearer" => value == sh.creds.bearer,
        _ => false,
    };
    if !ok {
        return Err(error(StatusCode::UNAUTHORIZED, "Authentication failed"));
    }
    apply_fault(&sh.faults, |m| error(StatusCode::INTERNAL_SERVER_ERROR, m)).await
}

fn body(v: &Value, cut: bool) -> Response {
    let s = v.to_string();
    let s = if cut { truncate(s) } else { s };
    ([("content-type", "application/json; charset=utf-8")], s).into_response()
}

/// The tenant's base time zone: `NO` (Norway), +01:00, +02:00 in summer.
pub const BASE_ZONE: chrono_tz::Tz = chrono_tz::Europe::Oslo;

/// SuperOffice's own time-zone codes and ids (a few of `GET /api/v1/timezone`).
const ZONES: [(&str, &str, chrono_tz::Tz); 4] = [
    ("UTC", "1", chrono_tz::UTC),
    ("NO", "261", chrono_tz::Europe::Oslo),
    ("DK", "140", chrono_tz::Europe::Copenhagen),
    ("US-NY", "460", chrono_tz::America::New_York),
];

/// How the dates of an answer are written (and its filter values read).
#[derive(Debug, Clone, Copy)]
pub struct Rendering {
    pub zone: chrono_tz::Tz,
    /// `includeTZOffset`: the offset is written, as `+HHMM`.
    pub offset: bool,
}

impl Rendering {
    /// No header, or a tenant that ignores it: the base zone's wall clock, no offset.
    pub fn base() -> Self {
        Rendering {
            zone: BASE_ZONE,
            offset: false,
        }
    }

    /// From an `SO-TimeZone` header: `<code or id>`, optionally `, includeTZOffset`.
    pub fn asked(header: &str) -> Result<Self, String> {
        let mut r = Rendering::base();
        for part in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part.eq_ignore_ascii_case("includeTZOffset") {
                r.offset = true;
            } else {
                r.zone = ZONES
                    .iter()
                    .find(|(code, id, _)| part.eq_ignore_ascii_case(code) || part == *id)
                    .map(|(_, _, z)| *z)
                    .ok_or_else(|| format!("Unknown time zone '{part}' in SO-TimeZone"))?;
            }
        }
        Ok(r)
    }

    /// An instant as SuperOffice writes it: seven fractional digits, in the zone, with `+HHMM`
    /// when asked.
    pub fn write(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.zone);
        let mut out = format!(
            "{}.{:07}",
            local.format("%Y-%m-%dT%H:%M:%S"),
            local.timestamp_subsec_nanos() / 100
        );
        if self.offset {
            out.push_str(&local.format("%z").to_string());
        }
        out
    }

    /// A wall-clock filter value, read in the zone.
    fn read(&self, v: &str) -> Result<DateTime<Utc>, String> {
        let naive = NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S"))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
            })
            .map_err(|_| format!("'{v}' is not a date and time"))?;
        naive
            .and_local_timezone(self.zone)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("'{v}' does not exist in {}", self.zone))
    }

    /// Rewrites every `When…` date of a record (an entity or a message) held with an offset;
    /// a "not set" value (no offset) stays as it is.
    pub fn apply(&self, v: &mut Value) {
        if let Value::Object(o) = v {
            for (k, val) in o.iter_mut() {
                if !k.to_ascii_lowercase().starts_with("when") {
                    continue;
                }
                if let Some(t) = val
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                {
                    *val = json!(self.write(t.with_timezone(&Utc)));
                }
            }
        }
    }
}

/// The restriction type of an archive column (SuperOffice's ChatSession archive provider).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Restriction {
    Int,
    DateTime,
    Date,
    ListAny,
    Text,
}

/// The archive's columns, by restriction type.
const COLUMNS: [(&str, Restriction); 11] = [
    ("chatSessionId", Restriction::Int),
    ("rating", Restriction::Int),
    ("queueLength", Restriction::Int),
    ("whenRequested", Restriction::DateTime),
    ("whenStarted", Restriction::DateTime),
    ("whenEnded", Restriction::DateTime),
    ("updatedDate", Restriction::Date),
    ("registeredDate", Restriction::Date),
    ("status", Restriction::ListAny),
    ("firstMessage", Restriction::Text),
    ("lastMessage", Restriction::Text),
];

/// The operators each restriction type takes (SuperOffice's "Restriction Types" page).
fn operators(r: Restriction) -> &'static [&'static str] {
    match r {
        Restriction::Int => &[
            "eq", "ne", "lt", "le", "gt", "ge", "equals", "greater", "less", "unequals",
        ],
        Restriction::DateTime => &["afterTime", "beforeTime", "dateTime"],
        Restriction::Date => &["before", "date", "after", "dateBetween"],
        Restriction::ListAny => &["oneOf", "notOneOf"],
        Restriction::Text => &["is", "isNot", "contains", "begins"],
    }
}

/// One `$filter` clause, checked against its column's restriction type.
#[derive(Debug, Clone)]
enum Clause {
    Int(&'static str, String, i64),
    Time(&'static str, String, DateTime<Utc>),
    Day(
        &'static str,
        String,
        chrono::NaiveDate,
        Option<chrono::NaiveDate>,
    ),
    List(&'static str, bool, Vec<String>),
    Text(&'static str, String, String),
}

fn parse_filter(f: &str, zone: &Rendering) -> Result<Vec<Clause>, String> {
    let lower = f.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut rest = f;
    let mut rest_lower = lower.as_str();
    loop {
        let (clause, next, next_lower) = match rest_lower.find(" and ") {
            Some(i) => (&rest[..i], &rest[i + 5..], &rest_lower[i + 5..]),
            None => (rest, "", ""),
        };
        out.push(parse_clause(clause.trim(), zone)?);
        if next.is_empty() {
            break;
        }
        rest = next;
        rest_lower = next_lower;
    }
    Ok(out)
}

fn parse_clause(clause: &str, zone: &Rendering) -> Result<Clause, String> {
    let parts: Vec<&str> = clause.splitn(3, ' ').collect();
    let [field, op, value] = parts.as_slice() else {
        return Err(format!("Invalid restriction '{clause}'"));
    };
    let (column, kind) = COLUMNS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(field))
        .copied()
        .ok_or_else(|| format!("Unknown column '{field}' in archive provider ChatSession"))?;
    let Some(op) = operators(kind)
        .iter()
        .find(|o| o.eq_ignore_ascii_case(op))
        .map(|o| o.to_string())
    else {
        return Err(format!(
            "Operator '{op}' is not valid for column '{column}' (restriction type {kind:?}; valid: {})",
            operators(kind).join(", ")
        ));
    };
    let quoted = |v: &str| v.trim().trim_matches('\'').to_string();
    let values: Vec<String> = value.split(',').map(quoted).collect();
    Ok(match kind {
        Restriction::Int => Clause::Int(
            column,
            op,
            values[0]
                .parse()
                .map_err(|_| format!("'{}' is not an integer", values[0]))?,
        ),
        Restriction::DateTime => Clause::Time(column, op, zone.read(&values[0])?),
        Restriction::Date => {
            // Only the date part is used.
            let day = |v: &str| {
                chrono::NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), "%Y-%m-%d")
                    .map_err(|_| format!("'{v}' is not a date"))
            };
            let second = if op == "dateBetween" {
                Some(day(values.get(1).ok_or("dateBetween takes two dates")?)?)
            } else {
                None
            };
            Clause::Day(column, op, day(&values[0])?, second)
        }
        Restriction::ListAny => Clause::List(column, op == "oneOf", values),
        Restriction::Text => Clause::Text(column, op, values.join(",")),
    })
}

/// An archive row as the filter sees it.
struct Row {
    id: i64,
    updated: DateTime<Utc>,
    entity: Value,
}

impl Row {
    fn time(&self, column: &str) -> Option<DateTime<Utc>> {
        let key = match column {
            "whenRequested" | "registeredDate" => "WhenRequested",
            "whenStarted" => "WhenStarted",
            "whenEnded" => "WhenEnded",
            _ => return Some(self.updated),
        };
        self.entity[key]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    fn text(&self, column: &str) -> String {
        let key = match column {
            "status" => "Status",
            "firstMessage" => "FirstMessage",
            _ => "LastMessage",
        };
        match &self.entity[key] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    fn matches(&self, c: &Clause) -> bool {
        match c {
            Clause::Int(column, op, v) => {
                let x = if *column == "chatSessionId" {
                    Some(self.id)
                } else {
                    self.entity[if *column == "rating" {
                        "Rating"
                    } else {
                        "InitialQueuePos"
                    }]
                    .as_i64()
                };
                x.is_some_and(|x| match op.to_ascii_lowercase().as_str() {
                    "eq" | "equals" => x == *v,
                    "ne" | "unequals" => x != *v,
                    "lt" | "less" => x < *v,
                    "le" => x <= *v,
                    "gt" | "greater" => x > *v,
                    _ => x >= *v,
                })
            }
            Clause::Time(column, op, v) => self.time(column).is_some_and(|t| match op.as_str() {
                "afterTime" => t >= *v,
                "beforeTime" => t < *v,
                _ => t == *v,
            }),
            Clause::Day(column, op, d, d2) => self.time(column).is_some_and(|t| {
                let day = t.date_naive();
                match op.as_str() {
                    "before" => day < *d,
                    "date" => day == *d,
                    "after" => day > *d,
                    _ => day >= *d && d2.is_none_or(|e| day <= e),
                }
            }),
            Clause::List(column, any, values) => {
                let x = self.text(column);
                values.iter().any(|v| v.eq_ignore_ascii_case(&x)) == *any
            }
            Clause::Text(column, op, v) => {
                let x = self.text(column);
                match op.as_str() {
                    "is" => x == *v,
                    "isNot" => x != *v,
                    "contains" => x.contains(v.as_str()),
                    _ => x.starts_with(v.as_str()),
                }
            }
        }
    }

    /// The row as the archive answers it: the `$select`ed columns (dates in the request's zone;
    /// `updatedDate` always UTC, without an offset).
    fn select(&self, columns: &[&str], dates: &Rendering) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("PrimaryKey".into(), json!(self.id));
        out.insert("EntityName".into(), json!("chat"));
        for c in columns {
            let v = match *c {
                "chatSessionId" => json!(self.id),
                "updatedDate" => json!(self.updated.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()),
                "whenRequested" | "whenStarted" | "whenEnded" => match self.time(c) {
                    Some(t) => json!(dates.write(t)),
                    None => {
                        let key = format!("W{}", &c[1..]);
                        self.entity.get(&key).cloned().unwrap_or(Value::Null)
                    }
                },
                "rating" => self.entity["Rating"].clone(),
                "queueLength" => self.entity["InitialQueuePos"].clone(),
                "registeredDate" => self.time("whenRequested").map_or(Value::Null, |t| {
                    json!(t.format("%Y-%m-%dT%H:%M:%S").to_string())
                }),
                other => json!(self.text(other)),
            };
            out.insert(c.to_string(), v);
        }
        Value::Object(out)
    }
}

async fn list(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let resp = list_answer(&sh, &headers, &q).await;
    sh.log.push("/api/v1/ChatSession", resp.status().as_u16());
    resp
}

async fn list_answer(sh: &Shared, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    let answer = match gate(sh, headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let filter = match q
        .get("$filter")
        .map(|f| parse_filter(f, &answer.dates))
        .transpose()
    {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let bound = |op: &str| {
        filter.iter().find_map(|c| match c {
            Clause::Time(col, o, v) if *col == "whenRequested" && o == op => Some(*v),
            _ => None,
        })
    };
    if filter
        .iter()
        .any(|c| matches!(c, Clause::Time(col, _, _) if *col == "whenRequested"))
        && sh
            .broken_days
            .reached(bound("afterTime"), bound("beforeTime"))
    {
        return super::BrokenDays::answer();
    }
    let mut columns: Vec<&str> = Vec::new();
    for c in q
        .get("$select")
        .map_or("chatSessionId,updatedDate,status", String::as_str)
        .split(',')
        .map(str::trim)
    {
        match COLUMNS.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)) {
            Some((n, _)) => columns.push(n),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Unknown column '{c}' in $select"),
                );
            }
        }
    }
    let top: usize = q.get("$top").and_then(|v| v.parse().ok()).unwrap_or(50);
    let skip: usize = q.get("$skip").and_then(|v| v.parse().ok()).unwrap_or(0);
    // Rows of the archive: the sessions, and the ones purged (listed once more as changed).
    let unindexed = sh.unindexed.read().expect("unindexed").clone();
    let mut rows: Vec<Row> = sh
        .chats
        .read()
        .expect("chats")
        .values()
        .filter(|c| !unindexed.contains(&c.id()))
        .map(|c| Row {
            id: c.id(),
            updated: c.updated,
            entity: c.entity.clone(),
        })
        .collect();
    for (id, at) in sh.vanished.read().expect("vanished").iter() {
        if !rows.iter().any(|r| r.id == *id) {
            rows.push(Row {
                id: *id,
                updated: *at,
                entity: json!({"Status": "Deleted"}),
            });
        }
    }
    rows.retain(|r| filter.iter().all(|c| r.matches(c)));
    rows.sort_by_key(|r| r.id);
    let total = rows.len();
    let page: Vec<Value> = rows
        .iter()
        .skip(skip)
        .take(top)
        .map(|r| r.select(&columns, &answer.dates))
        .collect();
    let mut out = json!({ "value": page });
    if *sh.next_links.read().expect("flag") && skip + top < total {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("127.0.0.1");
        let mut url =
            reqwest::Url::parse(&format!("http://{host}/api/v1/ChatSession")).expect("url");
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in q.iter().filter(|(k, _)| k.as_str() != "$skip") {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("$skip", &(skip + top).to_string());
        }
        out["odata.nextLink"] = json!(url.to_string());
    }
    body(&out, answer.cut)
}

/// One entity as answered: its dates in the request's zone.
fn entity_answer(sh: &Shared, id: Option<i64>, a: &Answer) -> Response {
    match id.and_then(|id| sh.chats.read().expect("chats").get(&id).cloned()) {
        Some(c) => {
            let mut e = c.entity;
            a.dates.apply(&mut e);
            body(&e, a.cut)
        }
        None => error(StatusCode::NOT_FOUND, "ChatSession not found"),
    }
}

/// The messages of a session after a message id, their dates in the request's zone.
fn messages_answer(sh: &Shared, id: Option<i64>, after: i64, a: &Answer) -> Response {
    if let Some(session) = id {
        sh.message_requests
            .lock()
            .expect("requests")
            .push((session, after));
    }
    match id.and_then(|id| sh.chats.read().expect("chats").get(&id).cloned()) {
        Some(c) => body(
            &Value::Array(
                c.messages
                    .iter()
                    .filter(|m| m["ChatMessageId"].as_i64().unwrap_or(0) > after)
                    .cloned()
                    .map(|mut m| {
                        a.dates.apply(&mut m);
                        m
                    })
                    .collect(),
            ),
            a.cut,
        ),
        None => error(StatusCode::NOT_FOUND, "ChatSession not found"),
    }
}

async fn entity(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let resp = match gate(&sh, &headers).await {
        Err(r) => r,
        Ok(a) => entity_answer(&sh, id.parse().ok(), &a),
    };
    sh.log
        .push("/api/v1/ChatSession/{id}", resp.status().as_u16());
    resp
}

async fn messages(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let after: i64 = q.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
    let resp = match gate(&sh, &headers).await {
        Err(r) => r,
        Ok(a) => messages_answer(&sh, id.parse().ok(), after, &a),
    };
    sh.log
        .push("/api/v1/ChatSession/{id}/Messages", resp.status().as_u16());
    resp
}

/// `POST Agents/Chat/GetChatSessionEntity?chatSessionEntityId=N` (the official client's way).
async fn agent_entity(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let id = q
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("chatSessionEntityId"))
        .and_then(|(_, v)| v.parse().ok());
    let resp = match gate(&sh, &headers).await {
        Err(r) => r,
        Ok(a) => entity_answer(&sh, id, &a),
    };
    sh.log.push(
        "/api/v1/Agents/Chat/GetChatSessionEntity",
        resp.status().as_u16(),
    );
    resp
}

/// `POST Agents/Chat/GetChatMessages` with `{"chatSessionId": N, "after": M}`.
async fn agent_messages(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    text: String,
) -> Response {
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |name: &str| {
        v.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        })
    };
    let resp = match gate(&sh, &headers).await {
        Err(r) => r,
        Ok(_) if field("chatSessionId").is_none() => {
            error(StatusCode::BAD_REQUEST, "chatSessionId is required")
        }
        Ok(a) => messages_answer(&sh, field("chatSessionId"), field("after").unwrap_or(0), &a),
    };
    sh.log.push(
        "/api/v1/Agents/Chat/GetChatMessages",
        resp.status().as_u16(),
    );
    resp
}

/// The tenant's chat topics (`ChatTopicEntity`: the ids the generated chats use, 1 to 3).
pub const TOPICS: [(i64, &str); 3] = [(1, "Sales"), (2, "Support"), (3, "Billing")];

/// `POST Agents/Chat/ChatTopicsForUser`: the chat topics, as `ChatTopicEntity[]`.
async fn topics(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let resp = match gate(&sh, &headers).await {
        Err(r) => r,
        Ok(a) => {
            let all: Vec<Value> = TOPICS
                .iter()
                .map(|(id, name)| {
                    json!({"ChatTopicId": id, "Name": name, "Description": "", "WelcomeMessage": "Hi", "BotEnabled": false})
                })
                .collect();
            body(&Value::Array(all), a.cut)
        }
    };
    sh.log.push(
        "/api/v1/Agents/Chat/ChatTopicsForUser",
        resp.status().as_u16(),
    );
    resp
}

async fn for_user(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let resp = match gate(&sh, &headers).await {
        Err(r) => r,
        Ok(a) => {
            let unindexed = sh.unindexed.read().expect("unindexed").clone();
            let all: Vec<Value> = sh
                .chats
                .read()
                .expect("chats")
                .values()
                .filter(|c| !unindexed.contains(&c.id()))
                .map(|c| {
                    let mut e = c.entity.clone();
                    a.dates.apply(&mut e);
                    e
                })
                .collect();
            body(&Value::Array(all), a.cut)
        }
    };
    sh.log.push(
        "/api/v1/Agents/Chat/ChatSessionsForUser",
        resp.status().as_u16(),
    );
    resp
}

/// The sample entities of seeds 003 (request and response) and 004, as printed there:
/// SessionKeys, dates with offsets and seven digits, and spans that come out negative.
pub fn seed_samples() -> Vec<SimChat> {
    let at = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .expect("seed date")
            .with_timezone(&Utc)
    };
    let fields =
        json!({"fieldName": {"FieldRight": null, "FieldType": "System.Int32", "FieldLength": 229}});
    vec![
        SimChat {
            entity: json!({
                "ChatSessionId": 195, "TopicId": 160, "User": null, "Person": null,
                "CustomerAlias": "cum", "CustomerHost": "molestias",
                "CustomerName": "Hermann, Schroeder and Stiedemann",
                "CustomerEmail": "bette_daugherty@corkery.name", "CustomerPhone": "517.452.4004",
                "CustomerConsented": false, "CustomerCompanyName": "Hettinger, White and Ziemann",
                "Status": "Closed", "FirstMessage": "tempora", "LastMessage": "vero",
                "WhenRequested": "2013-12-04T17:54:07.9918437+01:00",
                "WhenStarted": "2021-08-15T17:54:07.9918437+02:00",
                "WhenEnded": "2021-12-22T17:54:07.9918437+01:00",
                "WhenIdle": "2022-12-21T17:54:07.9918437+01:00",
                "WhenFetched": "2015-10-29T17:54:07.9918437+01:00",
                "SessionKey": "voluptas", "InitialQueuePos": 638, "AlertLevel": 822, "Rank": 745,
                "Flags": "CustomerIsTyping", "Contact": null, "Project": null, "Sale": null,
                "Ticket": null, "TransferTo": null, "ChatbotIsActive": false, "Rating": 718,
                "TableRight": null, "FieldProperties": fields,
                "_Links": {"Self": "https://www.example.com/api/v1/contact/321", "Archive": "https://www.example.com/api/v1/contact"}
            }),
            updated: at("2021-12-22T17:54:07Z"),
            messages: vec![],
        },
        SimChat {
            entity: json!({
                "ChatSessionId": 452, "TopicId": 699, "User": null, "Person": null,
                "CustomerAlias": "officiis", "CustomerHost": "et", "CustomerName": "Sipes Group",
                "CustomerEmail": "ida_marquardt@mills.com", "CustomerPhone": "627.849.5733 x0016",
                "CustomerConsented": true, "CustomerCompanyName": "Baumbach, Konopelski and Farrell",
                "Status": "Closed", "FirstMessage": "qui", "LastMessage": "perferendis",
                "WhenRequested": "2001-10-03T17:54:07.9762203+02:00",
                "WhenStarted": "1998-09-26T17:54:07.9762203+02:00",
                "WhenEnded": "2014-09-26T17:54:07.9762203+02:00",
                "WhenIdle": "2020-07-07T17:54:07.9762203+02:00",
                "WhenFetched": "2014-09-17T17:54:07.9762203+02:00",
                "SessionKey": "sapiente", "InitialQueuePos": 201, "AlertLevel": 405, "Rank": 69,
                "Flags": "CustomerIsTyping", "Contact": null, "Project": null, "Sale": null,
                "Ticket": null, "TransferTo": null, "ChatbotIsActive": false, "Rating": 579
            }),
            updated: at("2020-07-07T17:54:07Z"),
            messages: vec![],
        },
        SimChat {
            entity: json!({
                "ChatSessionId": 659, "TopicId": 260, "User": null, "Person": null,
                "CustomerAlias": "sit", "CustomerHost": "quia",
                "CustomerName": "Hilll, Powlowski and Wolf", "CustomerEmail": "greta@hoppemacejkovic.us",
                "CustomerPhone": "1-211-892-9693", "CustomerConsented": false,
                "CustomerCompanyName": "Vandervort, Bergstrom and Boehm", "Status": "Closed",
                "FirstMessage": "est", "LastMessage": "voluptas",
                "WhenRequested": "2002-05-24T17:54:02.7108516+02:00",
                "WhenStarted": "2019-05-21T17:54:02.7108516+02:00",
                "WhenEnded": "2018-10-29T17:54:02.7108516+01:00",
                "WhenIdle": "2010-05-14T17:54:02.7108516+02:00",
                "WhenFetched": "2023-07-10T17:54:02.7108516+02:00",
                "SessionKey": "ducimus", "InitialQueuePos": 214, "AlertLevel": 37, "Rank": 661,
                "Flags": "CustomerIsTyping", "Contact": null, "Project": null, "Sale": null,
                "Ticket": null, "TransferTo": null, "ChatbotIsActive": true, "Rating": 936,
                "TableRight": null, "FieldProperties": {"fieldName": {"FieldRight": null, "FieldType": "System.Int32", "FieldLength": 273}}
            }),
            updated: at("2023-07-10T17:54:02Z"),
            messages: vec![],
        },
    ]
}

/// A seeded dataset of `n` chat sessions requested in `[from, to)`, updated when they ended,
/// with nested User/Person/Contact entities, statuses as names and as numbers, an unknown
/// status, the odd negative span, and 0–5 messages each.
pub fn generate(seed: u64, n: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<SimChat> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let span = (to - from).num_milliseconds().max(2);
    let mut next_msg = 10_000i64;
    let statuses = [
        json!("Closed"),
        json!(9),
        json!("Finished"),
        json!("CustomerLast"),
        json!("TeleportedAway"),
    ];
    (0..n)
        .map(|i| {
            let id = 1_000 + i as i64;
            let requested = from + TimeDelta::milliseconds(rng.random_range(0..span * 9 / 10))
                + TimeDelta::nanoseconds(rng.random_range(0..10_000_000) * 100 % 1_000_000);
            let started = requested + TimeDelta::milliseconds(rng.random_range(1_000..120_000));
            let ended = started + TimeDelta::milliseconds(rng.random_range(30_000..1_800_000));
            // Odd data: every 17th was "started" before it was requested.
            let started = if i % 17 == 0 { requested - TimeDelta::seconds(30) } else { started };
            let offset = [0, 1, 2, -5][i % 4];
            let mut messages = Vec::new();
            for m in 0..rng.random_range(0..=5) {
                next_msg += 1;
                let text = ["Hello & welcome", "<b>bold</b> move", "Děkuji 👍", "line\nbreak", "nul\u{0}byte"][m % 5];
                messages.push(message_json(next_msg, id, text, started + TimeDelta::seconds(m as i64 * 20)));
            }
            let mut chat = SimChat {
                entity: json!({
                    "ChatSessionId": id, "TopicId": 1 + (i % 3),
                    "User": if i % 5 == 4 { Value::Null } else { json!({"AssociateId": 10 + (i % 4), "Name": "agent"}) },
                    "Person": if i % 2 == 0 { json!({"PersonId": 500 + i}) } else { Value::Null },
                    "Contact": if i % 3 == 0 { json!({"ContactId": 70 + (i % 9)}) } else { Value::Null },
                    "Project": null, "Sale": null,
                    "Ticket": if i % 7 == 0 { json!({"TicketId": 3000 + i}) } else { Value::Null },
                    "TransferTo": null,
                    "CustomerAlias": format!("visitor-{id}"), "CustomerHost": "198.51.100.7",
                    "CustomerName": format!("Customer {id}"), "CustomerEmail": format!("c{id}@example.com"),
                    "CustomerPhone": "", "CustomerConsented": if i % 2 == 0 { json!(true) } else { json!("FALSE") },
                    "CustomerCompanyName": "Acme s.r.o.",
                    "Status": statuses[i % statuses.len()].clone(),
                    "FirstMessage": "Hi", "LastMessage": "Bye",
                    "WhenRequested": so_date(requested, offset), "WhenStarted": so_date(started, offset),
                    "WhenEnded": so_date(ended, offset), "WhenIdle": so_date(ended, offset),
                    "WhenFetched": so_date(ended, offset),
                    "SessionKey": format!("sk-{:016x}", rng.random::<u64>()),
                    "InitialQueuePos": 1 + (i % 4), "AlertLevel": 0, "Rank": 1, "Flags": "None",
                    "ChatbotIsActive": "0", "Rating": (i % 6),
                }),
                updated: ended,
                messages,
            };
            // SuperOffice has no null date (sources.md §2): a chat still in the queue has
            // neither WhenStarted nor WhenEnded, a running one no WhenEnded, and each comes
            // as one of the "not set" forms; the odd message has no WhenPosted.
            let unset = UNSET_DATES[(i / 9) % UNSET_DATES.len()];
            if i % 9 == 4 {
                chat.entity["Status"] = json!("InQueue");
                chat.entity["WhenStarted"] = json!(unset);
                chat.entity["WhenEnded"] = json!(unset);
                chat.entity["WhenIdle"] = json!(unset);
            } else if i % 9 == 7 {
                chat.entity["Status"] = json!("CustomerLast");
                chat.entity["WhenEnded"] = json!(unset);
                chat.entity["WhenFetched"] = json!(FOREVER);
            }
            for m in chat.messages.iter_mut() {
                if m["ChatMessageId"].as_i64().unwrap_or(0) % 23 == 0 {
                    m["WhenPosted"] = json!(unset);
                }
            }
            // A closed chat's last message says who closed it (ChatMessageSpecialType:
            // ClosedByUser 10, ClosedByCustomer 11, ClosedByIdle 12; by name, or now and then by
            // number).
            let closed = matches!(chat.entity["Status"].as_str(), Some("Closed" | "Finished"))
                || chat.entity["Status"] == json!(9);
            if closed && let Some(last) = chat.messages.last_mut() {
                let (name, number) = [("ClosedByUser", 10), ("ClosedByCustomer", 11), ("ClosedByIdle", 12)][(i / 2) % 3];
                last["SpecialType"] = if i % 7 == 0 { json!(number) } else { json!(name) };
            }
            chat
        })
        .collect()
}

/// The three ways SuperOffice says "no date" (sources.md §2): `DateTime.MinValue`, the
/// database's 1760-01-01 and SQL Server's minimum; all without an offset.
pub const UNSET_DATES: [&str; 3] = [
    "0001-01-01T00:00:00",
    "1760-01-01T00:00:00",
    "1753-01-01T00:00:00",
];

/// How SuperOffice says "forever".
pub const FOREVER: &str = "9999-12-31T23:59:59.9999999";

/// `t` to the tick (100 ns) that SuperOffice writes.
pub fn tick(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos() / 100 * 100;
    DateTime::from_timestamp(t.timestamp(), nanos).expect("valid")
}

// --- Webhooks (sources.md §4a) ------------------------------------------------------------------

/// The event types SuperOffice sends for chat sessions.
pub const EVENTS: [&str; 3] = [
    "chatsession.created",
    "chatsession.changed",
    "chatsession.message",
];

/// Pauses before the two retries of an event.
const RETRIES: &[std::time::Duration] = &[
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(4),
];

/// After this many failed deliveries in a row, a webhook is stopped.
const FAILURES_BEFORE_STOP: usize = 9;

/// base64(HMAC-SHA256(secret, body)), as `X-SuperOffice-Signature` carries it.
pub fn signature(secret: &str, body: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl Shared {
    fn event_body(&self, hook: &SimWebhook, event: &str, id: i64) -> String {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        json!({
            "EventId": format!("{:08x}-0000-4000-8000-{:012x}", n, id),
            "Timestamp": so_date(Utc::now(), 0),
            "Changes": [],
            "Event": event,
            "PrimaryKey": id,
            "Entity": "chatsession",
            "ContextIdentifier": "Cust12345",
            "ChangedByAssociateId": 5,
            "WebhookName": hook.name,
            "FieldValues": {},
        })
        .to_string()
    }

    fn emit(&self, event: &str, id: i64) {
        // A webhook that failed too often in a row is stopped.
        if self.outbox.failures_in_a_row() >= FAILURES_BEFORE_STOP {
            for h in self.webhooks.write().expect("webhooks").iter_mut() {
                h.state = "TooManyErrors".into();
            }
        }
        let hooks = self.webhooks.read().expect("webhooks").clone();
        for hook in hooks
            .iter()
            .filter(|h| h.state == "Active" && h.events.iter().any(|e| e == event))
        {
            let Ok(url) = reqwest::Url::parse(&hook.target) else {
                continue;
            };
            let body = self.event_body(hook, event, id);
            let mut headers = vec![("x-superoffice-retry", "0".to_string())];
            if !hook.secret.is_empty() {
                headers.push(("x-superoffice-signature", signature(&hook.secret, &body)));
            }
            self.outbox.send(Outgoing {
                url,
                headers,
                body,
                event_type: event.into(),
                id,
                queued: std::time::Instant::now(),
                retries: RETRIES,
            });
        }
    }
}

fn webhook_json(h: &SimWebhook) -> Value {
    json!({
        "WebhookId": h.id, "Name": h.name, "Events": h.events, "TargetUrl": h.target,
        "State": h.state, "Type": "webhook",
    })
}

async fn list_webhooks(State(sh): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    let hooks = sh.webhooks.read().expect("webhooks").clone();
    body(
        &Value::Array(hooks.iter().map(webhook_json).collect()),
        false,
    )
}

/// Reads a registration body; SuperOffice tests the target with a signed POST first.
async fn webhook_from(text: &str, id: i64) -> Result<SimWebhook, Response> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))?;
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let events = super::string_list(&v["Events"]);
    let hook = SimWebhook {
        id,
        name: s("Name"),
        events,
        target: s("TargetUrl"),
        secret: s("Secret"),
        state: if s("State").is_empty() {
            "Active".into()
        } else {
            s("State")
        },
    };
    let Ok(url) = reqwest::Url::parse(&hook.target) else {
        return Err(error(StatusCode::BAD_REQUEST, "TargetUrl is not a URL"));
    };
    if hook.name.is_empty() || hook.events.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "Name and Events are required",
        ));
    }
    let test = json!({
        "EventId": "00000000-0000-4000-8000-000000000000", "Timestamp": so_date(Utc::now(), 0),
        "Event": "test", "PrimaryKey": 0, "Entity": "webhook", "WebhookName": hook.name,
        "Changes": [], "FieldValues": {},
    })
    .to_string();
    let headers = vec![("x-superoffice-signature", signature(&hook.secret, &test))];
    match post_once(&url, &headers, &test).await {
        Some(200) => Ok(hook),
        other => Err(error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Webhook test POST to the target failed ({}); it must answer 200",
                other.map_or("no answer".into(), |s| format!("HTTP {s}"))
            ),
        )),
    }
}

async fn register_webhook(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    text: String,
) -> Response {
    if let Err(r) = gate(&sh, &headers).await {
        return r;
    }
    let id = sh.webhooks.read().expect("webhooks").len() as i64 + 1;
    match webhook_from(&text, id).await {
        Ok(hook) => {
            let out = webhook_json(&hook);
            sh.webhooks.write().expect("webhooks").push(hook);
            sh.outbox.reset_failures();
            body(&out, false)
        }
        Err(r) => r,
    }
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
    if !sh
        .webhooks
        .read()
        .expect("webhooks")
        .iter()
        .any(|h| h.id == id)
    {
        return error(StatusCode::NOT_FOUND, "Webhook not found");
    }
    match webhook_from(&text, id).await {
        Ok(hook) => {
            let out = webhook_json(&hook);
            for h in sh.webhooks.write().expect("webhooks").iter_mut() {
                if h.id == id {
                    *h = hook.clone();
                }
            }
            sh.outbox.reset_failures();
            body(&out, false)
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_must_fit_its_columns_restriction_type() {
        let utc = Rendering::asked("UTC").unwrap();
        // What a tenant refuses: afterTime on a date column, a date operator on a datetime one.
        for bad in [
            "updatedDate afterTime '2024-01-05T10:00:00'",
            "whenRequested after '2024-01-05'",
            "chatSessionId afterTime '2024-01-05T10:00:00'",
            "status gt 3",
            "nosuchColumn eq 1",
        ] {
            assert!(parse_filter(bad, &utc).is_err(), "{bad}");
        }
        for good in [
            "updatedDate after '2024-01-04'",
            "whenRequested afterTime '2024-01-05T10:00:00' and chatSessionId gt 5",
            "updatedDate dateBetween '2024-01-01','2024-01-31'",
            "status oneOf 'Closed','Finished'",
        ] {
            assert!(parse_filter(good, &utc).is_ok(), "{good}");
        }
        // `after` on a date column is strictly after the day; only the date part is used.
        let row = Row {
            id: 7,
            updated: "2024-01-05T23:59:00Z".parse().unwrap(),
            entity: json!({"WhenRequested": "2024-01-05T10:00:00.0000000+01:00"}),
        };
        let f = |s: &str, r: &Rendering| parse_filter(s, r).unwrap();
        assert!(row.matches(&f("updatedDate after '2024-01-04'", &utc)[0]));
        assert!(!row.matches(&f("updatedDate after '2024-01-05T00:00:00'", &utc)[0]));
        // afterTime is after or equal, read in the request's zone (Norway: +01:00 in January).
        assert!(row.matches(&f("whenRequested afterTime '2024-01-05T09:00:00'", &utc)[0]));
        assert!(!row.matches(&f("whenRequested afterTime '2024-01-05T09:00:01'", &utc)[0]));
        let base = Rendering::base();
        assert!(row.matches(&f("whenRequested afterTime '2024-01-05T10:00:00'", &base)[0]));
        assert!(!row.matches(&f("whenRequested afterTime '2024-01-05T10:00:01'", &base)[0]));
    }

    #[test]
    fn dates_follow_the_so_timezone_header() {
        let t: DateTime<Utc> = "2024-07-01T12:00:05.1234567Z".parse().unwrap();
        assert_eq!(Rendering::base().write(t), "2024-07-01T14:00:05.1234567");
        assert_eq!(
            Rendering::asked("UTC, includeTZOffset").unwrap().write(t),
            "2024-07-01T12:00:05.1234567+0000"
        );
        assert_eq!(
            Rendering::asked("UTC,includeTZOffset").unwrap().write(t),
            "2024-07-01T12:00:05.1234567+0000"
        );
        assert_eq!(
            Rendering::asked("460,includeTZOffset").unwrap().write(t),
            "2024-07-01T08:00:05.1234567-0400"
        );
        assert_eq!(
            Rendering::asked("1").unwrap().write(t),
            "2024-07-01T12:00:05.1234567"
        );
        assert_eq!(
            Rendering::asked("includeTZOffset").unwrap().write(t),
            "2024-07-01T14:00:05.1234567+0200"
        );
        assert!(Rendering::asked("Mars/Olympus").is_err());
        // A "not set" date stays as it is.
        let mut e = json!({"WhenStarted": "0001-01-01T00:00:00", "WhenRequested": so_date(t, 1)});
        Rendering::asked("UTC, includeTZOffset")
            .unwrap()
            .apply(&mut e);
        assert_eq!(
            e,
            json!({"WhenStarted": "0001-01-01T00:00:00", "WhenRequested": "2024-07-01T12:00:05.1234567+0000"})
        );
    }

    #[test]
    fn dates_have_an_offset_and_seven_digits() {
        let t = DateTime::parse_from_rfc3339("2024-01-05T10:00:00.1234567Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(so_date(t, 1), "2024-01-05T11:00:00.1234567+01:00");
        assert_eq!(DateTime::parse_from_rfc3339(&so_date(t, -5)).unwrap(), t);
    }
}
