//! Take Control simulator: `GET /rest/session/history` (JSON body, `INTEGRATION-KEY`) and the
//! legacy `get_history_api.php` (query string, XML or JSON), with the strict `>` / `<` start
//! filters, 403 on a wrong key, and sessions that appear in history only once they have ended
//! (unless marked `listed_open`, which lists them with an empty DATE_END).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Timelike, Utc};
use quick_xml::escape::escape;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::{Faults, RequestLog, SimServer, apply_fault, serve, truncate};

#[derive(Debug, Clone, PartialEq)]
pub struct SimMessage {
    pub date: NaiveDateTime,
    pub from: String,
    pub kind: String,
    pub text: String,
    /// Write the text as CDATA (it must not contain `]]>`).
    pub cdata: bool,
}

/// One session as the vendor holds it. Times are UTC.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSession {
    pub id: i64,
    pub start: NaiveDateTime,
    pub end: Option<NaiveDateTime>,
    /// Listed in history before it ends (with an empty DATE_END).
    pub listed_open: bool,
    pub computer_name: String,
    pub tech_username: String,
    pub tech_name: String,
    pub customer_name: String,
    pub customer_email: String,
    pub problem_description: String,
    pub notes: String,
    pub chat: Vec<SimMessage>,
    pub videos: Vec<String>,
    pub custom: Option<(String, String)>,
    /// Not in the history yet: indexed late ([`TakeControlSim::index_late`]), it appears with
    /// its old dates when revealed.
    pub unindexed: bool,
    /// Its ID is written as text that is not a number: a record the source must set aside
    /// (odd data), the rest of the answer unharmed.
    pub malformed: bool,
}

impl SimSession {
    /// A session with plain defaults; times are cut to whole seconds, as the API has them.
    pub fn new(id: i64, start: NaiveDateTime, end: Option<NaiveDateTime>) -> Self {
        SimSession {
            id,
            start: whole_second(start),
            end: end.map(whole_second),
            listed_open: false,
            computer_name: format!("PC-{id}"),
            tech_username: "tech@acme.example".into(),
            tech_name: "Tess Tech".into(),
            customer_name: format!("Customer {id}"),
            customer_email: format!("c{id}@example.com"),
            problem_description: "Printer offline".into(),
            notes: String::new(),
            chat: Vec::new(),
            videos: Vec::new(),
            custom: None,
            unindexed: false,
            malformed: false,
        }
    }

    fn visible(&self, now: NaiveDateTime) -> bool {
        !self.unindexed && (self.listed_open || self.end.is_some_and(|e| e <= now))
    }
}

pub struct Shared {
    key: String,
    sessions: RwLock<BTreeMap<i64, SimSession>>,
    /// Legacy XML: CHAT_INFO / VIDEO_LINKS as escaped text instead of nested elements.
    escaped_nested_xml: RwLock<bool>,
    pub faults: Faults,
    pub log: RequestLog,
    /// Days whose history cannot be listed (500).
    pub broken_days: super::BrokenDays,
}

/// A running Take Control simulator.
pub struct TakeControlSim {
    pub server: SimServer,
    pub shared: Arc<Shared>,
}

impl TakeControlSim {
    pub async fn start(key: &str, sessions: Vec<SimSession>) -> std::io::Result<Self> {
        let (router, shared) = router(key, sessions);
        Ok(TakeControlSim {
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

    /// Listings that reach `day` fail (500) from now on.
    pub fn break_listing(&self, day: chrono::NaiveDate) {
        self.shared.broken_days.add(day);
    }

    /// Adds or replaces a session.
    pub fn upsert(&self, s: SimSession) {
        self.shared
            .sessions
            .write()
            .expect("sessions")
            .insert(s.id, s);
    }

    /// A session the vendor indexes late: held, but not in the history until [`Self::reveal`]
    /// (then it appears with its own, old dates, behind every lookback).
    pub fn index_late(&self, mut s: SimSession) {
        s.unindexed = true;
        self.upsert(s);
    }

    /// Puts a late-indexed session into the history.
    pub fn reveal(&self, id: i64) {
        self.update(id, |s| s.unindexed = false);
    }

    /// Deletes a session outright: the history no longer lists it (Take Control has no read by
    /// id, so nothing else tells).
    pub fn delete(&self, id: i64) {
        self.shared.sessions.write().expect("sessions").remove(&id);
    }

    pub fn update(&self, id: i64, f: impl FnOnce(&mut SimSession)) {
        if let Some(s) = self.shared.sessions.write().expect("sessions").get_mut(&id) {
            f(s);
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

    /// Sessions a sync at this moment can see (ended, or listed while open).
    pub fn visible_sessions(&self) -> Vec<SimSession> {
        let now = Utc::now().naive_utc();
        self.sessions()
            .into_iter()
            .filter(|s| s.visible(now))
            .collect()
    }

    pub fn set_escaped_nested_xml(&self, on: bool) {
        *self.shared.escaped_nested_xml.write().expect("flag") = on;
    }
}

/// The simulator's routes and state, to serve anywhere.
pub fn router(key: &str, sessions: Vec<SimSession>) -> (Router, Arc<Shared>) {
    let shared = Arc::new(Shared {
        key: key.to_string(),
        sessions: RwLock::new(sessions.into_iter().map(|s| (s.id, s)).collect()),
        escaped_nested_xml: RwLock::new(false),
        faults: Faults::default(),
        log: RequestLog::default(),
        broken_days: Default::default(),
    });
    let router = Router::new()
        .route("/rest/session/history", get(rest_history))
        .route("/integration/get_history_api.php", get(legacy_history))
        .route("/integration/get_session_history.php", get(legacy_history))
        .with_state(shared.clone());
    (router, shared)
}

/// A seeded dataset of `n` ended sessions starting in `[from, to)` (all ended by `to`), with
/// chat transcripts that hold entities, CDATA, emoji, right-to-left text and the odd NUL byte,
/// video links, custom fields, and bursts of sessions sharing one second.
pub fn generate(seed: u64, n: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<SimSession> {
    generate_with(seed, n, from, to, None)
}

/// As [`generate`], with exactly `messages` chat messages per session when given.
pub fn generate_with(
    seed: u64,
    n: usize,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    messages: Option<usize>,
) -> Vec<SimSession> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (from, to) = (
        whole_second(from.naive_utc()).and_utc(),
        whole_second(to.naive_utc()).and_utc(),
    );
    let span = (to - from).num_seconds().max(2);
    let texts = [
        "Hello & welcome",
        "My <drive> is gone",
        "שלום, המדפסת לא עובדת",
        "Works now 👍🏽",
        "Quote \"this\" 'and' that",
        "Line one\nLine two",
        "Ünïcödé ñ ç",
        "a > b && c < d",
        "Tab\there",
    ];
    let mut out = Vec::with_capacity(n);
    let mut prev_start = None;
    for i in 0..n {
        let id = 100_000 + i as i64;
        // Every 25th session shares the previous one's start second.
        let start = match prev_start {
            Some(p) if i % 25 == 0 => p,
            _ => (from + TimeDelta::seconds(rng.random_range(0..span - 1))).naive_utc(),
        };
        prev_start = Some(start);
        let max_len = ((to.naive_utc() - start).num_seconds()).clamp(1, 3600);
        let end = start + TimeDelta::seconds(rng.random_range(1..=max_len));
        let mut s = SimSession::new(id, start, Some(end));
        s.notes = if i % 3 == 0 {
            format!("Fixed driver for {id}")
        } else {
            String::new()
        };
        let random_msgs = rng.random_range(0..=6usize);
        let n_msgs = messages.unwrap_or(random_msgs);
        for m in 0..n_msgs {
            let mut text = texts[rng.random_range(0..texts.len())].to_string();
            if i % 97 == 0 && m == 0 {
                text.push('\u{0}');
                text.push_str("after NUL");
            }
            s.chat.push(SimMessage {
                date: start + TimeDelta::seconds(m as i64 * 7),
                from: if m % 2 == 0 {
                    s.tech_username.clone()
                } else {
                    s.customer_name.clone()
                },
                kind: if m % 2 == 0 {
                    "tech".into()
                } else {
                    "customer".into()
                },
                cdata: m % 4 == 1 && !text.contains('\u{0}'),
                text,
            });
        }
        if i % 5 == 0 {
            s.videos = vec![
                format!("https://video.example/{id}/1.mp4"),
                format!("https://video.example/{id}/2.mp4?a=1&b=2"),
            ];
        }
        if i % 3 == 0 {
            s.custom = Some((
                "Priority".into(),
                ["Low", "High", "Urgent"][(i / 3) % 3].into(),
            ));
        }
        out.push(s);
    }
    out
}

/// `t` without its fraction of a second.
pub fn whole_second(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).expect("0 is a valid nanosecond")
}

fn fmt(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn parse_filter(v: Option<&str>) -> Result<Option<NaiveDateTime>, ()> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
            })
            .map(Some)
            .map_err(|_| ()),
    }
}

fn chat_xml(s: &SimSession) -> String {
    if s.chat.is_empty() {
        return String::new();
    }
    let mut x = String::from("<chat>");
    for m in &s.chat {
        let text = if m.cdata {
            format!("<![CDATA[{}]]>", m.text)
        } else {
            escape(&m.text).into_owned()
        };
        x.push_str(&format!(
            "<message><date>{}</date><from>{}</from><type>{}</type><text>{}</text></message>",
            fmt(m.date),
            escape(&m.from),
            escape(&m.kind),
            text
        ));
    }
    x.push_str("</chat>");
    x
}

fn videos_xml(s: &SimSession) -> String {
    if s.videos.is_empty() {
        return String::new();
    }
    let inner: String = s
        .videos
        .iter()
        .map(|u| format!("<video><url>{}</url></video>", escape(u)))
        .collect();
    format!("<videos>{inner}</videos>")
}

/// The session's value of one var, as the API would write it in JSON.
fn var_json(s: &SimSession, var: &str) -> Value {
    match var {
        "ID" if s.malformed => json!(format!("{}-not-a-number", s.id)),
        "ID" => json!(s.id),
        "COMPUTER_NAME" => json!(s.computer_name),
        "COMPUTER_DOMAIN" => json!("WORKGROUP"),
        "COMPUTER_OS" => json!("Windows 11"),
        "TECH_USERNAME" => json!(s.tech_username),
        "TECH_NAME" => json!(s.tech_name),
        "CUSTOMER_NAME" => json!(s.customer_name),
        "CUSTOMER_EMAIL" => json!(s.customer_email),
        "CUSTOMER_NUMBER" => {
            if s.id % 2 == 0 {
                json!(format!("C-{}", s.id))
            } else {
                Value::Null
            }
        }
        "PROBLEM_DESCRIPTION" => json!(s.problem_description),
        "NOTES" => json!(s.notes),
        "HAS_VIDEOS" => {
            if s.id % 2 == 0 {
                json!(!s.videos.is_empty())
            } else {
                json!(if s.videos.is_empty() { "FALSE" } else { "TRUE" })
            }
        }
        "DATE_START" => json!(fmt(s.start)),
        "DATE_END" => json!(s.end.map(fmt).unwrap_or_default()),
        "CHAT_INFO" => json!(chat_xml(s)),
        "VIDEO_LINKS" => json!(videos_xml(s)),
        "CUSTOM_FIELD_NAME" => json!(s.custom.as_ref().map(|c| c.0.clone()).unwrap_or_default()),
        "CUSTOM_FIELD_VALUE" => json!(s.custom.as_ref().map(|c| c.1.clone()).unwrap_or_default()),
        _ => Value::Null,
    }
}

/// Every variable the API knows (sources.md §1a, seed 000): what a request that names none gets.
/// The simulator's own copy: it must not take the vendor's shape from the code it tests.
const ALL_VARS: [&str; 18] = [
    "ID",
    "COMPUTER_NAME",
    "COMPUTER_DOMAIN",
    "COMPUTER_OS",
    "TECH_USERNAME",
    "TECH_NAME",
    "CUSTOMER_NAME",
    "CUSTOMER_EMAIL",
    "CUSTOMER_NUMBER",
    "PROBLEM_DESCRIPTION",
    "NOTES",
    "HAS_VIDEOS",
    "DATE_START",
    "DATE_END",
    "CHAT_INFO",
    "VIDEO_LINKS",
    "CUSTOM_FIELD_NAME",
    "CUSTOM_FIELD_VALUE",
];

fn select(
    shared: &Shared,
    ini: Option<NaiveDateTime>,
    end: Option<NaiveDateTime>,
) -> Vec<SimSession> {
    let now = Utc::now().naive_utc();
    let mut rows: Vec<SimSession> = shared
        .sessions
        .read()
        .expect("sessions")
        .values()
        .filter(|s| s.visible(now))
        .filter(|s| ini.is_none_or(|i| s.start > i) && end.is_none_or(|e| s.start < e))
        .cloned()
        .collect();
    rows.sort_by_key(|s| (s.start, s.id));
    rows
}

fn rest_error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"result": "ERROR", "errorDetails": msg}).to_string(),
    )
        .into_response()
}

async fn rest_history(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let path = "/rest/session/history";
    let _in_flight = sh.log.enter();
    let resp = rest_answer(&sh, &headers, &body).await;
    sh.log.push(path, resp.status().as_u16());
    resp
}

async fn rest_answer(sh: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let cut = match apply_fault(&sh.faults, |m| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"result": "ERROR", "errorDetails": m}).to_string(),
        )
            .into_response()
    })
    .await
    {
        Err(r) => return r,
        Ok(cut) => cut,
    };
    if headers.get("integration-key").and_then(|v| v.to_str().ok()) != Some(sh.key.as_str()) {
        return rest_error(StatusCode::FORBIDDEN, "Invalid key");
    }
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return rest_error(StatusCode::BAD_REQUEST, "Invalid request body"),
    };
    let filters = req.get("filters").cloned().unwrap_or(json!({}));
    let f = |k: &str| filters.get(k).and_then(Value::as_str).map(str::to_string);
    let (Ok(ini), Ok(end)) = (
        parse_filter(f("FILTER_DATE_START_INI").as_deref()),
        parse_filter(f("FILTER_DATE_START_END").as_deref()),
    ) else {
        return rest_error(
            StatusCode::BAD_REQUEST,
            "Invalid FILTER_DATE_START_INI or FILTER_DATE_START_END value.",
        );
    };
    if sh
        .broken_days
        .reached(ini.map(|t| t.and_utc()), end.map(|t| t.and_utc()))
    {
        return super::BrokenDays::answer();
    }
    let vars: Vec<String> = req
        .get("vars")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_ascii_uppercase))
                .collect()
        })
        .unwrap_or_else(|| ALL_VARS.iter().map(|s| s.to_string()).collect());
    let rows: Vec<Value> = select(sh, ini, end)
        .iter()
        .map(|s| {
            Value::Object(
                vars.iter()
                    .map(|v| (v.to_ascii_lowercase(), var_json(s, v)))
                    .collect(),
            )
        })
        .collect();
    // The vendor answers `details` both as an object and as an array: alternate by size.
    let part = json!({"nrequests": rows.len(), "requests": rows});
    let details = if rows.len().is_multiple_of(2) {
        json!([part])
    } else {
        part
    };
    let mut text =
        json!({"result": "SUCCESS", "details": details, "errorDetails": null}).to_string();
    if cut {
        text = truncate(text);
    }
    (StatusCode::OK, [("content-type", "application/json")], text).into_response()
}

async fn legacy_history(
    State(sh): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let _in_flight = sh.log.enter();
    let resp = legacy_answer(&sh, &q).await;
    sh.log
        .push("/integration/get_history_api.php", resp.status().as_u16());
    resp
}

fn xml_error(msg: &str) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/xml")],
        format!(
            "<response><error_msg>{}</error_msg></response>",
            escape(msg)
        ),
    )
        .into_response()
}

async fn legacy_answer(sh: &Shared, q: &HashMap<String, String>) -> Response {
    let cut = match apply_fault(&sh.faults, xml_error).await {
        Err(r) => return r,
        Ok(cut) => cut,
    };
    if q.get("KEY") != Some(&sh.key) {
        return xml_error("Invalid KEY.");
    }
    let Some(vars) = q.get("VARS") else {
        return xml_error("Invalid VARS value.");
    };
    let vars: Vec<String> = vars
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    let Ok(ini) = parse_filter(q.get("FILTER_DATE_START_INI").map(String::as_str)) else {
        return xml_error("Invalid FILTER_DATE_START_INI value.");
    };
    let Ok(end) = parse_filter(q.get("FILTER_DATE_START_END").map(String::as_str)) else {
        return xml_error("Invalid FILTER_DATE_START_END value.");
    };
    if sh
        .broken_days
        .reached(ini.map(|t| t.and_utc()), end.map(|t| t.and_utc()))
    {
        return super::BrokenDays::answer();
    }
    let rows = select(sh, ini, end);
    let json_out = q
        .get("OUTPUT_FORMAT")
        .is_some_and(|f| f.eq_ignore_ascii_case("JSON"));
    let mut text = if json_out {
        let reqs: Vec<Value> = rows
            .iter()
            .map(|s| Value::Object(vars.iter().map(|v| (v.clone(), var_json(s, v))).collect()))
            .collect();
        json!({"result": "SUCCESS", "details": {"nrequests": reqs.len(), "requests": reqs}})
            .to_string()
    } else {
        let escaped = *sh.escaped_nested_xml.read().expect("flag");
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><response><nrequests>{}</nrequests><requests>",
            rows.len()
        );
        for s in &rows {
            x.push_str("<request>");
            for v in &vars {
                let inner = match v.as_str() {
                    "CHAT_INFO" | "VIDEO_LINKS" => {
                        let nested = if v == "CHAT_INFO" {
                            chat_xml(s)
                        } else {
                            videos_xml(s)
                        };
                        if escaped {
                            escape(&nested).into_owned()
                        } else {
                            nested
                        }
                    }
                    _ => match var_json(s, v) {
                        Value::String(t) => escape(&t).into_owned(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    },
                };
                x.push_str(&format!("<{v}>{inner}</{v}>"));
            }
            x.push_str("</request>");
        }
        x.push_str("</requests></response>");
        x
    };
    if cut {
        text = truncate(text);
    }
    let ct = if json_out {
        "application/json"
    } else {
        "text/xml"
    };
    (StatusCode::OK, [("content-type", ct)], text).into_response()
}
