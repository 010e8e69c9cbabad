//! Take Control responses → records → normalized sessions (sources.md §1).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

pub use super::body::{
    BodyProblem, MALFORMED, element_to_json, records_from_json, records_from_xml,
};
use super::personal;
use crate::engine::Rejected;
use crate::engine::{SourceContext, Vetted};
use crate::lenient::{self, Fields};
use crate::privacy::{Kind, Scrub};
use crate::xml;

/// A normalized session with its child rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub session_id: i64,
    pub computer_name: Option<String>,
    pub computer_domain: Option<String>,
    pub computer_os: Option<String>,
    pub tech_username: Option<String>,
    pub tech_name: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_number: Option<String>,
    pub problem_description: Option<String>,
    pub notes: Option<String>,
    pub has_videos: Option<bool>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub custom_fields: Option<Value>,
    /// The record as received (XML converted to JSON), NUL removed, serialized once.
    pub raw: String,
    /// Fingerprint of the record as received and how it is read (see [`content_hash`]).
    pub content_hash: String,
    pub messages: Vec<ChatMessage>,
    pub videos: Vec<String>,
    /// Its record went through the privacy seam.
    pub vetted: Vetted,
}

pub use super::transcript::ChatMessage;

/// The chat lines and video links of a record, parsed from it as received (before the policy
/// applied to it), each `None` when the record has none.
pub type Children = (
    Option<Result<Vec<ChatMessage>, String>>,
    Option<Result<Vec<String>, String>>,
);

/// Bumped whenever normalization changes, so that stored rows are rewritten once.
const NORMALIZATION_VERSION: &str = "1";

/// Every stored column and child row is a function of the record, the account's time zone and
/// the normalization code: their fingerprint says whether a stored session is unchanged.
pub fn content_hash(raw_json: &str, tz: Tz) -> String {
    lenient::fingerprint_parts(&[NORMALIZATION_VERSION, "|", tz.name(), "|", raw_json])
}

/// Outcome of normalizing one record.
pub enum Normalized {
    Session(Box<Session>, Vec<Rejected>),
    Rejected(Rejected),
}

/// Turns one record into a session, or says why it cannot be; the record passes the privacy
/// seam of `cx` (`SourceContext::personal`) before any column is read from it.
pub fn normalize(
    mut record: Map<String, Value>,
    fallback_key: &str,
    tz: Tz,
    cx: &SourceContext,
) -> Normalized {
    let mut raw = Value::Object(std::mem::take(&mut record));
    lenient::clean_json(&mut raw);
    // Personal data (personal.rs): an erasure is matched on the values as received; the
    // transcript and links are read from them before the policy applies to the record, and
    // every column below is read from the record as the policy leaves it.
    let (id, received_children) = match &raw {
        Value::Object(o) if !cx.privacy.is_inert() => {
            let f = Fields::new(o);
            let children = (
                f.get("chat_info").map(|v| chat_messages(v, tz)),
                f.get("video_links").map(video_links),
            );
            (f.text("id").unwrap_or_default(), Some(children))
        }
        _ => (String::new(), None),
    };
    let personal = cx.personal(&id, false, &mut [(&mut raw, personal::RECORD)]);
    // Read once: the children as received are used whenever they were read (a record the
    // policy left as it was reads the same from either), and scrubbed when it did not.
    let scrub = personal.scrubbed.then_some(&personal.scrub);
    read(
        raw,
        received_children,
        scrub,
        personal.vetted,
        fallback_key,
        tz,
    )
}

/// A record that went through the privacy seam (`vetted`; or stored as the policy of its row
/// left it: `renormalize`) into a session: `received` its children as received, which `scrub`
/// (when the policy changed anything) scrubs line by line; without them they are read from the
/// record itself.
pub fn read(
    raw: Value,
    received_children: Option<Children>,
    scrub: Option<&Scrub<'_>>,
    vetted: Vetted,
    fallback_key: &str,
    tz: Tz,
) -> Normalized {
    let Value::Object(obj) = &raw else {
        return Normalized::Rejected(Rejected {
            record_key: fallback_key.to_string(),
            reason: format!("not_an_object: the record is {}", lenient::short(&raw)),
            payload: raw,
        });
    };
    let f = Fields::new(obj);
    let reject = |key: String, reason: String, raw: Value| {
        Normalized::Rejected(Rejected {
            record_key: key,
            reason,
            payload: raw,
        })
    };
    if let Some(text) = f.text(MALFORMED) {
        // The id, if it can be read, names the record; else its position.
        let id = text
            .split("<ID>")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let key = id.map_or_else(|| fallback_key.to_string(), |i| i.to_string());
        let why = f.text("_error").unwrap_or_default();
        return reject(key, format!("malformed_xml: {why}"), raw);
    }
    let session_id = match f.int("id") {
        Ok(Some(id)) => id,
        Ok(None) => {
            return reject(
                fallback_key.into(),
                "missing_id: the record has no ID".into(),
                raw,
            );
        }
        Err(e) => return reject(fallback_key.into(), format!("invalid_id: {e}"), raw),
    };
    let key = session_id.to_string();
    let mut nulled = Vec::new();
    // A date that means "not set" (MySQL's zero date `0000-00-00 00:00:00`, which PHP services
    // write for an empty date, or one before 1900 / after 9000: lenient::read_date) is None,
    // and counted as nulled: an empty DATE_START is still a reason to set the record aside.
    let mut date = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
        match f.text(name) {
            None => Ok(None),
            Some(s) => match lenient::read_date(&s, tz) {
                Some(lenient::DateValue::Set(t)) => Ok(Some(t)),
                Some(lenient::DateValue::Unset) => {
                    nulled.push(Rejected {
                        record_key: key.clone(),
                        reason: lenient::unset_reason(&name.to_ascii_uppercase(), &s),
                        payload: Value::Null,
                    });
                    Ok(None)
                }
                None => Err(format!(
                    "invalid_{}: `{}` is not a date",
                    name,
                    s.chars().take(40).collect::<String>()
                )),
            },
        }
    };
    let started_at = match date("date_start") {
        Ok(Some(d)) => Some(d),
        Ok(None) => return reject(key, "missing_date_start: DATE_START is empty".into(), raw),
        Err(e) => return reject(key, e, raw),
    };
    let ended_at = match date("date_end") {
        Ok(d) => d,
        Err(e) => return reject(key, e, raw),
    };
    let has_videos = match f.boolean("has_videos") {
        Ok(b) => b,
        Err(e) => return reject(key, format!("invalid_has_videos: {e}"), raw),
    };
    let (chat_info, links) = match received_children {
        Some(parsed) => parsed,
        None => (
            f.get("chat_info").map(|v| chat_messages(v, tz)),
            f.get("video_links").map(video_links),
        ),
    };
    let mut messages = match chat_info.transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return reject(key, format!("malformed_chat_info: {e}"), raw),
    };
    let mut videos = match links.transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return reject(key, format!("malformed_video_links: {e}"), raw),
    };
    if let Some(scrub) = scrub {
        for m in &mut messages {
            let class = personal::author_class(m.author_type.as_deref());
            m.author = scrub.text(class, Kind::Text, m.author.take());
            m.message = scrub.text(personal::MESSAGE_TEXT, Kind::Text, m.message.take());
        }
        videos = videos
            .into_iter()
            .filter_map(|u| scrub.text(personal::MESSAGE_TEXT, Kind::Text, Some(u)))
            .collect();
    }
    let duration_seconds = match lenient::duration_seconds(started_at, ended_at) {
        Ok(d) => d,
        Err(d) => {
            nulled.push(Rejected {
                record_key: key.clone(),
                reason: format!(
                    "negative_duration: DATE_END is {:.0} s before DATE_START",
                    -d
                ),
                payload: Value::Null,
            });
            None
        }
    };
    let custom_fields = custom_fields(f.get("custom_field_name"), f.get("custom_field_value"));
    let session = Session {
        session_id,
        computer_name: f.text("computer_name"),
        computer_domain: f.text("computer_domain"),
        computer_os: f.text("computer_os"),
        tech_username: f.text("tech_username"),
        tech_name: f.text("tech_name"),
        customer_name: f.text("customer_name"),
        customer_email: f.text("customer_email"),
        customer_number: f.text("customer_number"),
        problem_description: f.text("problem_description"),
        notes: f.text("notes"),
        has_videos,
        started_at,
        ended_at,
        duration_seconds,
        custom_fields,
        messages,
        videos,
        raw: String::new(),
        content_hash: String::new(),
        vetted,
    };
    let raw = raw.to_string();
    let content_hash = content_hash(&raw, tz);
    Normalized::Session(
        Box::new(Session {
            raw,
            content_hash,
            ..session
        }),
        nulled,
    )
}

/// `{name: value}` from CUSTOM_FIELD_NAME / CUSTOM_FIELD_VALUE (single values or parallel arrays).
fn custom_fields(names: Option<&Value>, values: Option<&Value>) -> Option<Value> {
    let names: Vec<String> = match names? {
        Value::Array(a) => a.iter().filter_map(lenient::text).collect(),
        v => lenient::text(v).into_iter().collect(),
    };
    let values: Vec<Value> = match values {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| lenient::text(v).map_or(Value::Null, Value::String))
            .collect(),
        Some(v) => vec![lenient::text(v).map_or(Value::Null, Value::String)],
        None => vec![],
    };
    let map: Map<String, Value> = names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, values.get(i).cloned().unwrap_or(Value::Null)))
        .collect();
    if map.is_empty() {
        None
    } else {
        Some(Value::Object(map))
    }
}

/// CHAT_INFO as JSON (an XML string, or XML already converted to JSON) → messages, in order.
fn chat_messages(v: &Value, tz: Tz) -> Result<Vec<ChatMessage>, String> {
    match v {
        Value::String(s) => transcript(s, tz),
        other => messages_of(&*xml_value(other)?, tz),
    }
}

/// A CHAT_INFO transcript (XML text) → messages, in order. The regular shape is read in one
/// streaming pass; anything else through the general XML → JSON path.
pub fn transcript(xml: &str, tz: Tz) -> Result<Vec<ChatMessage>, String> {
    if xml.trim().is_empty() {
        return Ok(Vec::new());
    }
    match super::transcript::fast(xml, tz) {
        Some(messages) => Ok(messages),
        None => transcript_general(xml, tz),
    }
}

/// The general path, which defines what a transcript means.
pub(super) fn transcript_general(xml: &str, tz: Tz) -> Result<Vec<ChatMessage>, String> {
    messages_of(&xml_tree(xml)?, tz)
}

fn messages_of(tree: &Value, tz: Tz) -> Result<Vec<ChatMessage>, String> {
    Ok(xml_items(tree, "chat", "message")
        .into_iter()
        .map(|m| match m {
            Value::Object(o) => {
                let f = Fields::new(o);
                ChatMessage {
                    sent_at: f.text("date").and_then(|s| lenient::date_or_none(&s, tz)),
                    author: f.text("from"),
                    author_type: f.text("type"),
                    message: o
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("text"))
                        .and_then(|(_, v)| lenient::text(v)),
                }
            }
            other => ChatMessage {
                sent_at: None,
                author: None,
                author_type: None,
                message: lenient::text(other),
            },
        })
        .collect())
}

/// VIDEO_LINKS → URLs, in order.
fn video_links(v: &Value) -> Result<Vec<String>, String> {
    let tree = xml_value(v)?;
    Ok(xml_items(&tree, "videos", "video")
        .into_iter()
        .filter_map(|e| match e {
            Value::Object(o) => Fields::new(o).text("url"),
            other => lenient::text(other),
        })
        .map(|s| s.trim().to_string())
        .collect())
}

/// The `<item>` entries under `<wrapper>` (or at the top) of a nested-XML tree, in order.
fn xml_items<'a>(tree: &'a Value, wrapper: &str, item: &str) -> Vec<&'a Value> {
    let outer = child_ci(tree, wrapper).unwrap_or(tree);
    match child_ci(outer, item) {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one) => vec![one],
    }
}

/// A nested-XML field as a JSON tree: strings are parsed as XML, objects taken as they are.
fn xml_value(v: &Value) -> Result<Cow<'_, Value>, String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Ok(Cow::Owned(Value::Object(Map::new()))),
        Value::String(s) => xml_tree(s).map(Cow::Owned),
        Value::Object(_) => Ok(Cow::Borrowed(v)),
        other => Err(format!("expected XML, got {}", lenient::short(other))),
    }
}

fn xml_tree(s: &str) -> Result<Value, String> {
    let root = xml::parse(s)?;
    if root.children.is_empty() {
        let shown: String = s.chars().take(60).collect();
        return Err(format!("no XML elements in {shown:?}"));
    }
    Ok(element_to_json(&root))
}

fn child_ci<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(v: Value) -> Normalized {
        normalize(
            v.as_object().unwrap().clone(),
            "w#0",
            chrono_tz::UTC,
            &SourceContext::offline("takecontrol", "a", crate::privacy::Privacy::keep_all()),
        )
    }

    #[test]
    fn rest_envelope_object_and_array_details() {
        let a = records_from_json(
            r#"{"result":"SUCCESS","details":{"nrequests":1,"requests":[{"id":1}]}}"#,
        )
        .unwrap();
        let b = records_from_json(r#"{"result":"SUCCESS","details":[{"nrequests":1,"requests":[{"id":1}]},{"requests":[{"id":2}]}]}"#).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn error_bodies_are_errors_not_empty() {
        assert_eq!(
            records_from_json(r#"{"result":"ERROR","errorDetails":"Invalid key"}"#),
            Err(BodyProblem::Vendor("result ERROR: Invalid key".into()))
        );
        assert_eq!(
            records_from_xml(
                "<response><error_msg>Invalid FILTER_DATE_START_INI value.</error_msg></response>"
            ),
            Err(BodyProblem::Vendor(
                "Invalid FILTER_DATE_START_INI value.".into()
            ))
        );
        assert!(matches!(
            records_from_json(r#"{"result":"SUCCESS","details":{"requests":[{"id":1},"#),
            Err(BodyProblem::Unreadable(_))
        ));
        assert!(matches!(
            records_from_xml("<html><body>502 Bad Gateway</body></html>"),
            Err(BodyProblem::Unreadable(_))
        ));
        assert!(matches!(
            records_from_json("<!DOCTYPE html><html></html>"),
            Err(BodyProblem::Unreadable(_))
        ));
    }

    #[test]
    fn legacy_xml_nested_and_escaped_chat() {
        let chat = r#"<chat><message><date>2024-01-05 10:00:03</date><from>tech@acme.com</from><type>tech</type><text>Hello &amp; welcome</text></message><message><date>2024-01-05 10:00:40</date><from>John Doe</from><type>customer</type><text><![CDATA[My <drive> is gone]]></text></message></chat>"#;
        let body = |chat: &str| {
            format!(
                r#"<response><nrequests>1</nrequests><requests><request><ID>12334</ID><DATE_START>2024-01-05 10:00:00</DATE_START><DATE_END>2024-01-05 10:20:41</DATE_END><HAS_VIDEOS>TRUE</HAS_VIDEOS>
          <CHAT_INFO>{chat}</CHAT_INFO><VIDEO_LINKS><videos><video><url>https://x/rec1.mp4</url></video></videos></VIDEO_LINKS></request></requests></response>"#
            )
        };
        let nested = body(chat);
        let escaped = body(&quick_xml::escape::escape(chat));
        for body in [nested.to_string(), escaped] {
            let recs = records_from_xml(&body).unwrap();
            let Normalized::Session(s, _) = norm(Value::Object(recs[0].clone())) else {
                panic!("rejected")
            };
            assert_eq!(s.session_id, 12334);
            assert_eq!(s.has_videos, Some(true));
            assert_eq!(s.duration_seconds, Some(1241.0));
            assert_eq!(s.videos, vec!["https://x/rec1.mp4"]);
            assert_eq!(s.messages.len(), 2, "{body}");
            assert_eq!(s.messages[0].message.as_deref(), Some("Hello & welcome"));
            assert_eq!(s.messages[1].message.as_deref(), Some("My <drive> is gone"));
            assert_eq!(s.messages[1].author_type.as_deref(), Some("customer"));
        }
    }

    #[test]
    fn one_broken_record_in_a_complete_document_does_not_poison_the_others() {
        let body = "<response><requests><request><ID>1</ID><DATE_START>2024-01-05 10:00:00</DATE_START></request>\
                    <request><ID>2</ID><CHAT_INFO><chat><message><text><![CDATA[]]><]]></text></message></chat></CHAT_INFO></request>\
                    <request><ID>3</ID><DATE_START>2024-01-05 11:00:00</DATE_START></request></requests></response>";
        let recs = records_from_xml(body).unwrap();
        assert_eq!(recs.len(), 3);
        let cx = SourceContext::offline("takecontrol", "a", crate::privacy::Privacy::keep_all());
        let kinds: Vec<String> = recs
            .into_iter()
            .map(|r| match normalize(r, "w#", chrono_tz::UTC, &cx) {
                Normalized::Session(s, _) => s.session_id.to_string(),
                Normalized::Rejected(r) => {
                    format!("{}:{}", r.record_key, r.reason.split(':').next().unwrap())
                }
            })
            .collect();
        assert_eq!(kinds, ["1", "2:malformed_xml", "3"]);
        // A cut-off document is still an error for the whole window.
        assert!(matches!(
            records_from_xml(&body[..body.len() - 40]),
            Err(BodyProblem::Unreadable(_))
        ));
    }

    #[test]
    fn mysql_zero_dates_mean_not_set() {
        let Normalized::Session(s, nulled) = norm(json!({
            "id": "8", "date_start": "2024-01-05 10:00:00", "date_end": "0000-00-00 00:00:00",
            "chat_info": "<chat><message><date>0000-00-00 00:00:00</date><text>hi</text></message></chat>"
        })) else {
            panic!()
        };
        assert_eq!((s.ended_at, s.duration_seconds), (None, None));
        assert_eq!(s.messages[0].sent_at, None);
        assert_eq!(nulled.len(), 1);
        assert!(
            nulled[0].reason.starts_with("null_date: DATE_END"),
            "{}",
            nulled[0].reason
        );
        let Normalized::Rejected(r) = norm(json!({"id": "9", "date_start": "0000-00-00 00:00:00"}))
        else {
            panic!()
        };
        assert!(r.reason.starts_with("missing_date_start"), "{}", r.reason);
    }

    #[test]
    fn rest_record_with_xml_strings_nul_and_custom_fields() {
        let Normalized::Session(s, nulled) = norm(json!({
            "id": "7", "date_start": "2024-01-05 10:00:00", "date_end": "2024-01-05 09:00:00",
            "has_videos": "FALSE", "customer_name": "A\u{0}B",
            "chat_info": "<chat><message><text>x\u{0}y &#x1F600;</text></message></chat>",
            "video_links": "", "custom_field_name": "Priority", "custom_field_value": "High"
        })) else {
            panic!()
        };
        assert_eq!(s.customer_name.as_deref(), Some("AB"));
        assert_eq!(s.messages[0].message.as_deref(), Some("xy 😀"));
        assert_eq!(s.duration_seconds, None);
        assert!(nulled[0].reason.starts_with("negative_duration"));
        assert_eq!(s.custom_fields, Some(json!({"Priority": "High"})));
        assert!(!s.raw.contains("\\u0000"));
    }

    #[test]
    fn bad_records_are_rejected_with_reasons() {
        let cases = [
            (json!({"date_start": "2024-01-05 10:00:00"}), "missing_id"),
            (
                json!({"id": "x1", "date_start": "2024-01-05 10:00:00"}),
                "invalid_id",
            ),
            (
                json!({"id": 1, "date_start": "yesterday"}),
                "invalid_date_start",
            ),
            (
                json!({"id": 1, "date_start": "2024-01-05 10:00:00", "chat_info": "<chat><message>"}),
                "malformed_chat_info",
            ),
            (
                json!({"id": 1, "date_start": "2024-01-05 10:00:00", "has_videos": "perhaps"}),
                "invalid_has_videos",
            ),
        ];
        for (rec, reason) in cases {
            match norm(rec) {
                Normalized::Rejected(r) => {
                    assert!(r.reason.starts_with(reason), "{} vs {reason}", r.reason)
                }
                Normalized::Session(..) => panic!("{reason} accepted"),
            }
        }
    }
}
