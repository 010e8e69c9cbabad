//! mluvii SessionModel + routingHistory → one normalized session with its operators, routing
//! events and durations (sources.md §3, warehouse.md). Enum values (channel, source, status,
//! activityType) are kept as text, whatever they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::durations::{self, Durations, Event, Inputs, OperatorTimes};
use crate::engine::Rejected;
use crate::engine::Vetted;
use crate::lenient::{self, Fields};

/// How a session is read into rows: raise it when a change to this module changes what a stored
/// row holds for the same record, so that stored rows are rewritten at their next read.
pub const READ_VERSION: &str = "mluvii-3";

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub session_id: i64,
    pub company_id: Option<i64>,
    pub department_id: Option<i64>,
    pub channel: Option<String>,
    pub source: Option<String>,
    pub status: Option<String>,
    pub direct_call_number: Option<String>,
    pub phone_callback_number: Option<String>,
    pub widget: Option<String>,
    pub url: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub guest_joined_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub waited_seconds: Option<f64>,
    pub length_seconds: Option<f64>,
    pub guest_feedback_stars: Option<i32>,
    /// `likert` or `nps` (`GuestFeedbackScale`, lower-cased): stars of the two never average.
    pub guest_feedback_scale: Option<String>,
    pub termination_reason: Option<String>,
    pub guest_left: Option<bool>,
    /// A chatbot took part.
    pub chatbot: Option<bool>,
    pub tags: Option<Value>,
    /// The SessionModel as received (NUL removed).
    pub raw: Value,
    /// The routingHistory as received (NUL removed).
    pub routing_raw: Value,
    /// Fingerprint of `raw`, `routing_raw` and [`READ_VERSION`]: equal means unchanged.
    pub content_hash: String,
    pub operators: Vec<Operator>,
    pub events: Vec<RoutingEvent>,
    pub durations: Durations,
    /// Its documents went through the privacy seam.
    pub vetted: Vetted,
}

impl Session {
    /// Final once CLOSED or BLACKLISTED (mluvii's `SessionStatus`: a blacklisted guest's
    /// session goes no further): nothing about it changes any more.
    pub fn is_final(&self) -> bool {
        self.status.as_deref().is_some_and(is_final_status)
    }
}

/// Whether a status is final (sources.md §3).
pub fn is_final_status(status: &str) -> bool {
    ["CLOSED", "BLACKLISTED"]
        .iter()
        .any(|f| f.eq_ignore_ascii_case(status))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub user_id: i64,
    pub user_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    pub left_at: Option<DateTime<Utc>>,
    pub concluded_at: Option<DateTime<Utc>>,
    pub queue_seconds: Option<f64>,
    pub acw_seconds: Option<f64>,
    /// The operator's note on the session (free text; scrubbed by the policy before it is read).
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutingEvent {
    pub routing_request_id: Option<i64>,
    pub occurred_at: Option<DateTime<Utc>>,
    pub activity_type: Option<String>,
    pub group_id: Option<i64>,
    pub group_name: Option<String>,
    pub operator_user_id: Option<i64>,
    pub phone_number: Option<String>,
}

/// One session, or why it was set aside; plus the values that were nulled (counted).
pub enum Normalized {
    Session(Box<Session>, Vec<Rejected>),
    Rejected(Rejected),
}

pub(super) fn date(f: &Fields<'_>, name: &str) -> Result<Option<DateTime<Utc>>, String> {
    f.date(name)
}

fn duration(f: &Fields<'_>, name: &str) -> Result<Option<f64>, String> {
    match f.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => {
            let s = lenient::text(v).unwrap_or_default();
            durations::parse_iso_duration(&s)
                .map(Some)
                .map_err(|e| format!("invalid_{name}: {e}"))
        }
    }
}

fn int(f: &Fields<'_>, name: &str) -> Result<Option<i64>, String> {
    f.int(name).map_err(|e| format!("invalid_{name}: {e}"))
}

/// A nested object's field (`group.id`, `operator.userId`), case-insensitively.
fn nested<'a>(f: &Fields<'a>, object: &str) -> Option<Fields<'a>> {
    match f.get(object) {
        Some(Value::Object(o)) => Some(Fields::new(o)),
        _ => None,
    }
}

/// Normalizes a session from its detail and routing history.
pub fn normalize(detail: Value, routing: Value, vetted: Vetted, fallback_key: &str) -> Normalized {
    let mut raw = detail;
    let mut routing_raw = routing;
    lenient::clean_json(&mut raw);
    lenient::clean_json(&mut routing_raw);
    let reject = |key: &str, reason: String, raw: Value, routing: Value| {
        Normalized::Rejected(Rejected {
            record_key: key.to_string(),
            reason,
            payload: serde_json::json!({ "session": raw, "routingHistory": routing }),
        })
    };
    let Value::Object(obj) = &raw else {
        return reject(
            fallback_key,
            format!(
                "not_an_object: the session detail is {}",
                lenient::short(&raw)
            ),
            raw.clone(),
            routing_raw,
        );
    };
    let f = Fields::new(obj);
    let session_id = match f.int("id") {
        Ok(Some(id)) => id,
        Ok(None) => {
            return reject(
                fallback_key,
                "missing_id: the session has no id".into(),
                raw.clone(),
                routing_raw,
            );
        }
        Err(e) => {
            return reject(
                fallback_key,
                format!("invalid_id: {e}"),
                raw.clone(),
                routing_raw,
            );
        }
    };
    let key = session_id.to_string();
    match build(session_id, &f, &routing_raw, vetted) {
        Ok((mut s, nulled)) => {
            s.content_hash = lenient::fingerprint_parts(&[
                READ_VERSION,
                &raw.to_string(),
                "\u{1}",
                &routing_raw.to_string(),
            ]);
            s.raw = raw;
            s.routing_raw = routing_raw;
            let nulled = nulled
                .into_iter()
                .map(|reason| Rejected {
                    record_key: key.clone(),
                    reason,
                    payload: Value::Null,
                })
                .collect();
            Normalized::Session(Box::new(s), nulled)
        }
        Err(reason) => reject(&key, reason, raw.clone(), routing_raw),
    }
}

fn build(
    session_id: i64,
    f: &Fields<'_>,
    routing_raw: &Value,
    vetted: Vetted,
) -> Result<(Session, Vec<String>), String> {
    let created_at = date(f, "created")?;
    let guest_joined_at = date(f, "guestjoined")?;
    let started_at = date(f, "started")?;
    let ended_at = date(f, "ended")?;
    let mut waited = duration(f, "waited")?;
    let mut length = duration(f, "length")?;
    let stars = int(f, "guestfeedbackstars")?
        .map(|v| i32::try_from(v).map_err(|_| format!("invalid_guestFeedbackStars: {v}")))
        .transpose()?;
    // A date that means "not set" (lenient::read_date: mluvii is a .NET service, whose
    // DateTime.MinValue is 0001-01-01) is None and counted as nulled, like SuperOffice's.
    let mut unset = f.take_unset();
    // An empty duration where its state never happened means "none", not "0 s" (the contract
    // is silent; docs/sync.md, "Dates and durations that mean not set"): `length` (ACTIVE) of a
    // session that never started, `waited` (PBX to operator) of one no guest ever joined.
    if length == Some(0.0) && started_at.is_none() {
        length = None;
        unset.push("empty_duration: length was 0 s for a session that never started".into());
    }
    if waited == Some(0.0) && guest_joined_at.is_none() {
        waited = None;
        unset.push("empty_duration: waited was 0 s for a session no guest joined".into());
    }
    let operators = operators(f, &mut unset)?;
    let events = events(routing_raw, &mut unset)?;
    // Fields whose shape no mluvii reference at hand confirms (docs/sources.md, section 3): a
    // value that is not what is expected is NULL and counted, never a reason to set the session
    // aside.
    let guest_left = f.boolean("guestleft").unwrap_or_else(|e| {
        unset.push(format!("unreadable_value: {e}"));
        None
    });
    let chatbot = chatbot(f, &mut unset);
    let source = f.text("source");
    let inputs = Inputs {
        created: created_at,
        guest_joined: guest_joined_at,
        started: started_at,
        length,
        waited,
        source: source.as_deref(),
        operators: operators
            .iter()
            .map(|o| OperatorTimes {
                user_id: o.user_id,
                left: o.left_at,
                concluded: o.concluded_at,
            })
            .collect(),
        events: events
            .iter()
            .map(|e| Event {
                activity_type: e.activity_type.as_deref(),
                at: e.occurred_at,
                operator_user_id: e.operator_user_id,
            })
            .collect(),
    };
    let d = Durations::compute(&inputs);
    let operators = operators
        .into_iter()
        .map(|mut o| {
            if let Some(&(q, a)) = d.operators.get(&o.user_id) {
                o.queue_seconds = q;
                o.acw_seconds = a;
            }
            o
        })
        .collect();
    let nulled = unset
        .into_iter()
        .chain(
            d.negative
                .iter()
                .map(|name| format!("negative_duration: {name} came out negative")),
        )
        .collect();
    Ok((
        Session {
            session_id,
            company_id: int(f, "companyid")?,
            department_id: int(f, "departmentid")?,
            channel: f.text("channel"),
            source,
            status: f.text("status"),
            direct_call_number: f.text("directcallnumber"),
            phone_callback_number: f.text("phonecallbacknumber"),
            widget: f.text("widget"),
            url: f.text("url"),
            created_at,
            guest_joined_at,
            started_at,
            ended_at,
            waited_seconds: d.pbx_wait,
            length_seconds: d.active,
            guest_feedback_stars: stars,
            // Field names as mluvii's SessionModel (mluvii.ApiModels) writes them in camelCase;
            // the scale is an enum (Likert, NPS), kept in lower case; an unknown one as given.
            guest_feedback_scale: f.text("guestfeedbackscale").map(|v| v.to_ascii_lowercase()),
            termination_reason: f.text("terminationreason"),
            guest_left,
            chatbot,
            tags: f.get("tags").cloned(),
            raw: Value::Null,
            routing_raw: Value::Null,
            content_hash: String::new(),
            operators,
            events,
            durations: d,
            vetted,
        },
        nulled,
    ))
}

/// Whether a chatbot took part: `chatbot` (or `chatbotInvolved`, `hasChatbot`) as a boolean;
/// absent, unknown; any other value unknown too, and counted.
fn chatbot(f: &Fields<'_>, unset: &mut Vec<String>) -> Option<bool> {
    for name in ["chatbot", "chatbotinvolved", "haschatbot"] {
        match f.boolean(name) {
            Ok(Some(b)) => return Some(b),
            Ok(None) => {}
            Err(e) => unset.push(format!("unreadable_value: {e}")),
        }
    }
    None
}

/// The operators, one per `userId`: a user who joined twice keeps the first `joined` and the
/// last `left` and `concluded` (still open if any stint is open).
fn operators(f: &Fields<'_>, unset: &mut Vec<String>) -> Result<Vec<Operator>, String> {
    let list = match f.get("operators") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "invalid_operators: not a list: {}",
                lenient::short(other)
            ));
        }
    };
    let mut by_user: BTreeMap<i64, Operator> = BTreeMap::new();
    let mut order = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(format!("invalid_operators: entry {i} is not an object"));
        };
        let of = Fields::new(o);
        let user_id = match of.int("userid") {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("invalid_operators: entry {i} has no userId")),
            Err(e) => return Err(format!("invalid_operators: entry {i}: {e}")),
        };
        let op = Operator {
            user_id,
            user_name: of.text("username"),
            first_name: of.text("firstname"),
            last_name: of.text("lastname"),
            joined_at: date(&of, "joined")?,
            left_at: date(&of, "left")?,
            concluded_at: date(&of, "concluded")?,
            queue_seconds: None,
            acw_seconds: None,
            note: of.text("note"),
        };
        unset.extend(of.take_unset());
        match by_user.get_mut(&user_id) {
            None => {
                order.push(user_id);
                by_user.insert(user_id, op);
            }
            Some(prev) => {
                let stints = [&*prev, &op];
                let open = stints
                    .iter()
                    .any(|x| x.left_at.is_none() || x.concluded_at.is_none());
                let left_open = stints.iter().any(|x| x.left_at.is_none());
                prev.joined_at = min_opt(prev.joined_at, op.joined_at);
                prev.left_at = if left_open {
                    None
                } else {
                    prev.left_at.max(op.left_at)
                };
                prev.concluded_at = if open {
                    None
                } else {
                    prev.concluded_at.max(op.concluded_at)
                };
                // Notes of both stints, in order.
                prev.note = match (prev.note.take(), op.note) {
                    (Some(a), Some(b)) if a != b => Some(format!("{a}\n{b}")),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|u| by_user.remove(&u))
        .collect())
}

fn min_opt(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn events(routing: &Value, unset: &mut Vec<String>) -> Result<Vec<RoutingEvent>, String> {
    let list = match routing {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        Value::Object(o) => match ["value", "items", "data", "routingHistory"]
            .iter()
            .find_map(|k| o.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)))
        {
            Some((_, Value::Array(a))) => a,
            _ => {
                return Err(format!(
                    "invalid_routing_history: not a list: {}",
                    lenient::short(routing)
                ));
            }
        },
        other => {
            return Err(format!(
                "invalid_routing_history: not a list: {}",
                lenient::short(other)
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(format!(
                "invalid_routing_history: entry {i} is not an object"
            ));
        };
        let ef = Fields::new(o);
        let group = nested(&ef, "group");
        let operator = nested(&ef, "operator");
        let at = |e: String| format!("{e} (routing entry {i})");
        out.push(RoutingEvent {
            routing_request_id: int(&ef, "routingrequestid").map_err(at)?,
            occurred_at: date(&ef, "timestamp").map_err(at)?,
            activity_type: ef.text("activitytype"),
            group_id: group
                .as_ref()
                .map(|g| int(g, "id"))
                .transpose()
                .map_err(at)?
                .flatten(),
            group_name: group.as_ref().and_then(|g| g.text("name")),
            operator_user_id: operator
                .as_ref()
                .map(|g| int(g, "userid"))
                .transpose()
                .map_err(at)?
                .flatten(),
            phone_number: ef.text("phonenumber"),
        });
        unset.extend(ef.take_unset());
    }
    Ok(out)
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
