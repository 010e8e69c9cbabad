//! SuperOffice ChatSessionEntity and ChatMessage → normalized rows (sources.md §2,
//! warehouse.md). `SessionKey` authenticates the customer's chat: it is removed from every
//! record before anything else happens, so it can reach no table, log, metric or hash.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::engine::{Rejected, Vetted};
use crate::lenient::{self, Fields};

/// The statuses by number (0–11), as some paths send them.
pub const STATUSES: [&str; 12] = [
    "Invalid",
    "PreChatForm",
    "Faq",
    "OfflineForm",
    "InQueue",
    "CustomerLast",
    "UserLast",
    "Finished",
    "Deleted",
    "Closed",
    "RequestPosted",
    "ClosedFromQueue",
];

/// Statuses after which a session takes no more messages.
pub fn is_terminal(status: Option<&str>) -> bool {
    status.is_some_and(|s| {
        ["Finished", "Deleted", "Closed", "ClosedFromQueue"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(s))
    })
}

/// Whether an entity's status says SuperOffice deleted the session (`Deleted`, or its number 8).
pub fn is_deleted(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            status(&Fields::new(o)).is_some_and(|s| s.eq_ignore_ascii_case("Deleted"))
        }
        _ => false,
    }
}

/// Removes every `SessionKey` (any case, any depth) from a record.
pub fn strip_secrets(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|k, _| !k.eq_ignore_ascii_case("sessionkey"));
            o.values_mut().for_each(strip_secrets);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub chat_session_id: i32,
    pub topic_id: Option<i32>,
    pub user_associate_id: Option<i32>,
    pub person_id: Option<i32>,
    pub contact_id: Option<i32>,
    pub project_id: Option<i32>,
    pub sale_id: Option<i32>,
    pub ticket_id: Option<i32>,
    pub transfer_to_associate_id: Option<i32>,
    pub customer_alias: Option<String>,
    pub customer_host: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub customer_company_name: Option<String>,
    pub customer_consented: Option<bool>,
    pub chatbot_is_active: Option<bool>,
    pub status: Option<String>,
    pub flags: Option<String>,
    pub first_message: Option<String>,
    pub last_message: Option<String>,
    pub requested_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub idle_at: Option<DateTime<Utc>>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub initial_queue_pos: Option<i32>,
    pub alert_level: Option<i32>,
    pub rank: Option<i32>,
    pub rating: Option<i32>,
    pub queue_seconds: Option<f64>,
    pub handle_seconds: Option<f64>,
    pub total_seconds: Option<f64>,
    /// The entity as received, without SessionKey.
    pub raw: Value,
    /// [`fingerprint`] of the entity as received (SessionKey removed): equal means unchanged.
    pub content_hash: String,
    /// Its entity went through the privacy seam.
    pub vetted: Vetted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub chat_message_id: i32,
    pub chat_session_id: i32,
    pub kind: Option<String>,
    pub special_type: Option<String>,
    pub special_param: Option<String>,
    pub author: Option<String>,
    pub message: Option<String>,
    /// `ReadByCustomer`, an int32 in SuperOffice's reference (not a boolean).
    pub read_by_customer: Option<i32>,
    pub posted_at: Option<DateTime<Utc>>,
}

pub enum Normalized {
    Session(Box<Session>, Vec<Rejected>),
    Rejected(Rejected),
}

/// A date; one without an offset is read in `tz` (sources.md §2: a tenant that ignores
/// `SO-TimeZone` writes its base zone's wall clock).
fn date(f: &Fields<'_>, name: &str, tz: Tz) -> Result<Option<DateTime<Utc>>, String> {
    f.date_in(name, tz)
}

fn int32(f: &Fields<'_>, name: &str) -> Result<Option<i32>, String> {
    let v = f.int(name).map_err(|e| format!("invalid_{name}: {e}"))?;
    v.map(|n| i32::try_from(n).map_err(|_| format!("invalid_{name}: {n} is out of range")))
        .transpose()
}

/// The id of a nested entity: `{"AssociateId": 5, ...}`, or a bare number.
fn nested_id(f: &Fields<'_>, name: &str, id_field: &str) -> Result<Option<i32>, String> {
    match f.get(name) {
        None => Ok(None),
        Some(Value::Object(o)) => {
            let inner = Fields::new(o);
            match int32(&inner, id_field)? {
                Some(id) => Ok(Some(id)),
                None => int32(&inner, "id"),
            }
        }
        Some(v) => lenient::int(v)
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("invalid_{name}: {}", lenient::short(v))),
    }
}

fn status(f: &Fields<'_>) -> Option<String> {
    let v = f.get("status")?;
    match lenient::int(v) {
        Some(n) if (0..12).contains(&n) => Some(STATUSES[n as usize].to_string()),
        _ => lenient::text(v),
    }
}

/// Normalizes one ChatSessionEntity (already without SessionKey); dates without an offset are
/// read in `tz`.
/// An entity that went through the privacy seam (`vetted`) into a session, or why it cannot be.
pub fn normalize(raw: Value, vetted: Vetted, fallback_key: &str, tz: Tz) -> Normalized {
    let reject = |key: &str, reason: String, raw: Value| {
        Normalized::Rejected(Rejected {
            record_key: key.to_string(),
            reason,
            payload: raw,
        })
    };
    let Value::Object(obj) = &raw else {
        return reject(
            fallback_key,
            format!("not_an_object: {}", lenient::short(&raw)),
            raw.clone(),
        );
    };
    let f = Fields::new(obj);
    let id = match int32(&f, "chatsessionid") {
        Ok(Some(id)) => id,
        Ok(None) => {
            return reject(
                fallback_key,
                "missing_id: no ChatSessionId".into(),
                raw.clone(),
            );
        }
        Err(e) => return reject(fallback_key, e, raw.clone()),
    };
    match build(id, &f, tz, vetted) {
        Ok((mut s, nulled)) => {
            s.raw = raw;
            let nulled = nulled
                .into_iter()
                .map(|reason| Rejected {
                    record_key: id.to_string(),
                    reason,
                    payload: Value::Null,
                })
                .collect();
            Normalized::Session(Box::new(s), nulled)
        }
        Err(reason) => reject(&id.to_string(), reason, raw.clone()),
    }
}

fn build(
    id: i32,
    f: &Fields<'_>,
    tz: Tz,
    vetted: Vetted,
) -> Result<(Session, Vec<String>), String> {
    let boolean = |name: &str| f.boolean(name).map_err(|e| format!("invalid_{name}: {e}"));
    // SuperOffice has no null date: a date that means "not set" (a chat still in the queue has
    // no WhenStarted, a running one no WhenEnded) reads as None and is counted as nulled, and
    // no duration is computed from it.
    let requested_at = date(f, "whenrequested", tz)?;
    let started_at = date(f, "whenstarted", tz)?;
    let ended_at = date(f, "whenended", tz)?;
    let idle_at = date(f, "whenidle", tz)?;
    let fetched_at = date(f, "whenfetched", tz)?;
    let mut nulled = f.take_unset();
    let mut span = |name: &str, a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| {
        match lenient::duration_seconds(a, b) {
            Ok(d) => d,
            Err(d) => {
                nulled.push(format!("negative_duration: {name} came out {d:.0} s"));
                None
            }
        }
    };
    let queue_seconds = span("queue_seconds", requested_at, started_at);
    let handle_seconds = span("handle_seconds", started_at, ended_at);
    let total_seconds = span("total_seconds", requested_at, ended_at);
    Ok((
        Session {
            chat_session_id: id,
            topic_id: int32(f, "topicid")?,
            user_associate_id: nested_id(f, "user", "associateid")?,
            person_id: nested_id(f, "person", "personid")?,
            contact_id: nested_id(f, "contact", "contactid")?,
            project_id: nested_id(f, "project", "projectid")?,
            sale_id: nested_id(f, "sale", "saleid")?,
            ticket_id: nested_id(f, "ticket", "ticketid")?,
            transfer_to_associate_id: nested_id(f, "transferto", "associateid")?,
            customer_alias: f.text("customeralias"),
            customer_host: f.text("customerhost"),
            customer_name: f.text("customername"),
            customer_email: f.text("customeremail"),
            customer_phone: f.text("customerphone"),
            customer_company_name: f.text("customercompanyname"),
            customer_consented: boolean("customerconsented")?,
            chatbot_is_active: boolean("chatbotisactive")?,
            status: status(f),
            flags: f.text("flags"),
            first_message: f.text("firstmessage"),
            last_message: f.text("lastmessage"),
            requested_at,
            started_at,
            ended_at,
            idle_at,
            fetched_at,
            initial_queue_pos: int32(f, "initialqueuepos")?,
            alert_level: int32(f, "alertlevel")?,
            rank: int32(f, "rank")?,
            rating: int32(f, "rating")?,
            queue_seconds,
            handle_seconds,
            total_seconds,
            raw: Value::Null,
            content_hash: String::new(),
            vetted,
        },
        nulled,
    ))
}

/// One ChatMessage, with the reasons of the values nulled in it (a `WhenPosted` that means "not
/// set"); `Err` names what is wrong with it.
pub fn message(v: &Value, session_id: i32, tz: Tz) -> Result<(Message, Vec<String>), String> {
    let Value::Object(o) = v else {
        return Err(format!("not_an_object: {}", lenient::short(v)));
    };
    let f = Fields::new(o);
    let id = int32(&f, "chatmessageid")?.ok_or("missing_id: no ChatMessageId")?;
    let m = Message {
        chat_message_id: id,
        chat_session_id: int32(&f, "chatsessionid")?.unwrap_or(session_id),
        kind: f.text("type"),
        special_type: f.text("specialtype"),
        special_param: f.text("specialparam"),
        author: f.text("author"),
        message: f.text("message"),
        read_by_customer: read_by_customer(&f)?,
        posted_at: date(&f, "whenposted", tz)?,
    };
    Ok((m, f.take_unset()))
}

/// `ReadByCustomer`: an int32 (any value); `true`/`false` from older paths read as 1/0.
fn read_by_customer(f: &Fields<'_>) -> Result<Option<i32>, String> {
    match f.get("readbycustomer") {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(i32::from(*b))),
        Some(v) => match lenient::int(v) {
            Some(n) => i32::try_from(n)
                .map(Some)
                .map_err(|_| format!("invalid_ReadByCustomer: {n} is out of range")),
            None => lenient::boolean(v)
                .map(|b| Some(i32::from(b)))
                .ok_or_else(|| {
                    format!(
                        "invalid_ReadByCustomer: not an integer: {}",
                        lenient::short(v)
                    )
                }),
        },
    }
}

/// A stable fingerprint of a record's JSON text, to tell whether it changed.
pub fn fingerprint(v: &Value) -> String {
    lenient::fingerprint_parts(&[READ_VERSION, &v.to_string()])
}

/// How a session is read into rows: raise it when a change to this module changes what a stored
/// row holds for the same record, so that stored rows are rewritten at their next read.
pub const READ_VERSION: &str = "superoffice-3";

#[cfg(test)]
mod tests {
    use super::*;

    /// A record through the seam, as a source's read passes it.
    fn vetted() -> Vetted {
        crate::engine::SourceContext::offline(
            "superoffice",
            "a",
            crate::privacy::Privacy::keep_all(),
        )
        .personal("1", false, &mut [])
        .vetted
    }
    use serde_json::json;

    #[test]
    fn seed_003_sample_response_normalizes_and_its_negative_spans_are_nulled() {
        let mut v = json!({
            "ChatSessionId": 195, "TopicId": 160, "User": null, "Person": null,
            "CustomerName": "Hermann, Schroeder and Stiedemann", "CustomerConsented": false,
            "Status": "Closed",
            "WhenRequested": "2013-12-04T17:54:07.9918437+01:00",
            "WhenStarted": "2021-08-15T17:54:07.9918437+02:00",
            "WhenEnded": "2021-12-22T17:54:07.9918437+01:00",
            "SessionKey": "voluptas", "Rating": 718,
            "FieldProperties": {"fieldName": {"FieldRight": null, "FieldType": "System.Int32", "FieldLength": 229}}
        });
        strip_secrets(&mut v);
        assert!(!v.to_string().contains("voluptas"));
        let Normalized::Session(s, nulled) = normalize(v, vetted(), "x", chrono_tz::UTC) else {
            panic!()
        };
        assert_eq!(
            s.requested_at.unwrap().to_rfc3339(),
            "2013-12-04T16:54:07.991844+00:00"
        );
        assert!(s.queue_seconds.unwrap() > 0.0);
        assert!(nulled.is_empty());
        // Seed 004's sample ends before it starts.
        let v = json!({"ChatSessionId": 659, "Status": 9,
            "WhenRequested": "2002-05-24T17:54:02.7108516+02:00",
            "WhenStarted": "2019-05-21T17:54:02.7108516+02:00",
            "WhenEnded": "2018-10-29T17:54:02.7108516+01:00"});
        let Normalized::Session(s, nulled) = normalize(v, vetted(), "x", chrono_tz::UTC) else {
            panic!()
        };
        assert_eq!(s.status.as_deref(), Some("Closed"));
        assert_eq!(s.handle_seconds, None);
        assert_eq!(nulled.len(), 1);
    }

    #[test]
    fn dates_in_every_form_a_tenant_writes_give_the_same_instant() {
        // Offset-less in the base zone (header ignored), `+HHMM` (includeTZOffset), `+HH:MM`, Z.
        let forms = [
            ("2024-07-01T14:00:05.1234567", chrono_tz::Europe::Oslo),
            ("2024-07-01T12:00:05.1234567+0000", chrono_tz::UTC),
            ("2024-07-01T14:00:05.1234567+0200", chrono_tz::Asia::Tokyo),
            ("2024-07-01T08:00:05.1234567-04:00", chrono_tz::UTC),
            ("2024-07-01T12:00:05.1234567Z", chrono_tz::Europe::Oslo),
        ];
        for (form, tz) in forms {
            let v = json!({"ChatSessionId": 1, "WhenRequested": form, "WhenStarted": "0001-01-01T00:00:00"});
            let Normalized::Session(s, nulled) = normalize(v, vetted(), "x", tz) else {
                panic!("{form}")
            };
            assert_eq!(
                s.requested_at.unwrap().to_rfc3339(),
                "2024-07-01T12:00:05.123457+00:00",
                "{form}"
            );
            assert_eq!(s.started_at, None);
            assert_eq!(nulled.len(), 1);
        }
    }

    #[test]
    fn read_by_customer_is_any_int32() {
        for (v, want) in [
            (json!(0), Some(0)),
            (json!(1), Some(1)),
            (json!(7), Some(7)),
            (json!(-3), Some(-3)),
            (json!("42"), Some(42)),
            (json!(true), Some(1)),
            (json!(null), None),
        ] {
            let m = json!({"ChatMessageId": 5, "ReadByCustomer": v});
            let (m, _) = message(&m, 1, chrono_tz::UTC).unwrap();
            assert_eq!(m.read_by_customer, want);
        }
        let m = json!({"ChatMessageId": 5, "ReadByCustomer": 4_000_000_000i64});
        assert!(message(&m, 1, chrono_tz::UTC).is_err());
    }

    #[test]
    fn nested_ids_flatten() {
        let v = json!({"ChatSessionId": 1, "User": {"AssociateId": 5, "Name": "ann"},
            "Person": {"PersonId": "7"}, "Contact": {"ContactId": 8}, "Project": null,
            "Sale": {"SaleId": 9}, "Ticket": {"TicketId": 10}, "TransferTo": {"AssociateId": 11},
            "Status": "SomethingNew"});
        let Normalized::Session(s, _) = normalize(v, vetted(), "x", chrono_tz::UTC) else {
            panic!()
        };
        assert_eq!(
            (
                s.user_associate_id,
                s.person_id,
                s.contact_id,
                s.project_id,
                s.sale_id,
                s.ticket_id,
                s.transfer_to_associate_id
            ),
            (Some(5), Some(7), Some(8), None, Some(9), Some(10), Some(11))
        );
        assert_eq!(s.status.as_deref(), Some("SomethingNew"));
    }
}
