//! Take Control response bodies → records: the REST envelope, the legacy JSON and XML
//! outputs (one malformed record set aside, not the window), and `<error_msg>` answers.

use serde_json::{Map, Value};

use crate::lenient::{self, Fields};
use crate::xml::{self, Element};

/// What a response body said, when it is not data.
#[derive(Debug, PartialEq)]
pub enum BodyProblem {
    /// The vendor reported an error (`<error_msg>`, `"result":"ERROR"`).
    Vendor(String),
    /// Not readable as the expected format (cut off, HTML, unexpected shape).
    Unreadable(String),
}
/// Records of a JSON body (REST, or legacy with `OUTPUT_FORMAT=JSON`).
pub fn records_from_json(body: &str) -> Result<Vec<Map<String, Value>>, BodyProblem> {
    let trimmed = body.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('<') {
        return records_from_xml(trimmed);
    }
    let v: Value = serde_json::from_str(trimmed).map_err(|e| {
        BodyProblem::Unreadable(format!(
            "not valid JSON ({e}); the body may have been cut off"
        ))
    })?;
    match v {
        Value::Array(rows) => objects(rows),
        Value::Object(mut o) => {
            let f = Fields::new(&o);
            if let Some(msg) = f.text("error_msg") {
                return Err(BodyProblem::Vendor(msg.trim().to_string()));
            }
            let result = f.text("result");
            if let Some(r) = &result
                && !r.eq_ignore_ascii_case("success")
            {
                let detail = f
                    .text("errordetails")
                    .or_else(|| f.text("error"))
                    .or_else(|| f.text("message"));
                return Err(BodyProblem::Vendor(format!(
                    "result {r}: {}",
                    detail.unwrap_or_else(|| "no details given".into())
                )));
            }
            let has_requests = f.get("requests").is_some();
            let has_result = result.is_some();
            // The records are moved out of the parsed body, not copied.
            match take_field(&mut o, "details") {
                Some(Value::Array(parts)) => {
                    let mut out = Vec::new();
                    for p in parts {
                        out.extend(requests_of(p)?);
                    }
                    Ok(out)
                }
                Some(d @ Value::Object(_)) => requests_of(d),
                Some(other) => Err(BodyProblem::Unreadable(format!(
                    "`details` is {}",
                    lenient::short(&other)
                ))),
                None if has_requests => requests_of(Value::Object(o)),
                None if has_result => Ok(Vec::new()),
                None => Err(BodyProblem::Unreadable(
                    "a JSON object with neither `result` nor `details`".into(),
                )),
            }
        }
        other => Err(BodyProblem::Unreadable(format!(
            "unexpected JSON {}",
            lenient::short(&other)
        ))),
    }
}

/// Removes and returns a field (name matched case-insensitively), unless null or blank.
fn take_field(o: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let key = o.keys().find(|k| k.eq_ignore_ascii_case(name))?.clone();
    o.remove(&key).filter(|v| !lenient::is_empty(v))
}

fn requests_of(details: Value) -> Result<Vec<Map<String, Value>>, BodyProblem> {
    let Value::Object(mut d) = details else {
        return Err(BodyProblem::Unreadable(format!(
            "a `details` entry is {}",
            lenient::short(&details)
        )));
    };
    match take_field(&mut d, "requests") {
        None => Ok(Vec::new()),
        Some(Value::Array(rows)) => objects(rows),
        Some(o @ Value::Object(_)) => objects(vec![o]),
        Some(other) => Err(BodyProblem::Unreadable(format!(
            "`requests` is {}",
            lenient::short(&other)
        ))),
    }
}

fn objects(rows: Vec<Value>) -> Result<Vec<Map<String, Value>>, BodyProblem> {
    Ok(rows
        .into_iter()
        .map(|r| match r {
            Value::Object(o) => o,
            // Kept (and rejected later with the reason) rather than dropped.
            other => Map::from_iter([("_unparsed".to_string(), other)]),
        })
        .collect())
}

/// Records of a legacy XML body (`<response><requests><request>...`).
pub fn records_from_xml(body: &str) -> Result<Vec<Map<String, Value>>, BodyProblem> {
    let head: String = body
        .chars()
        .take(200)
        .collect::<String>()
        .to_ascii_lowercase();
    if head.contains("<html") || head.contains("<!doctype html") {
        return Err(BodyProblem::Unreadable(
            "an HTML page instead of data (a proxy or login page?)".into(),
        ));
    }
    let root = match xml::parse(body) {
        Ok(root) => root,
        // A complete document with a broken record inside: keep the others.
        Err(e) if body.trim_end().ends_with("</response>") && body.contains("<request>") => {
            return Ok(records_one_by_one(body, &e));
        }
        Err(e) => {
            return Err(BodyProblem::Unreadable(format!(
                "not well-formed XML ({e}); the body may have been cut off"
            )));
        }
    };
    let response = root.child("response").unwrap_or(&root);
    if let Some(msg) = response.child_text("error_msg") {
        return Err(BodyProblem::Vendor(msg.trim().to_string()));
    }
    let Some(requests) = response.child("requests") else {
        if response.child("nrequests").is_some() {
            return Ok(Vec::new());
        }
        return Err(BodyProblem::Unreadable(
            "XML without <requests> or <error_msg>".into(),
        ));
    };
    Ok(requests
        .children
        .iter()
        .map(|r| match element_to_json(r) {
            Value::Object(o) => o,
            other => Map::from_iter([("_unparsed".to_string(), other)]),
        })
        .collect())
}

/// Key under which a record that could not be parsed carries its text and error.
pub const MALFORMED: &str = "_malformed_xml";

/// Parses each `<request>…</request>` of a complete but ill-formed document on its own.
fn records_one_by_one(body: &str, whole_error: &str) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<request>") {
        let after = &rest[i..];
        let end = after
            .find("</request>")
            .map_or(after.len(), |j| j + "</request>".len());
        let chunk = &after[..end];
        match xml::parse(chunk) {
            Ok(root) => {
                if let Some(Value::Object(o)) = root.child("request").map(element_to_json) {
                    out.push(o);
                }
            }
            Err(e) => out.push(Map::from_iter([
                (MALFORMED.to_string(), Value::String(chunk.to_string())),
                ("_error".to_string(), Value::String(e)),
            ])),
        }
        rest = &after[end..];
    }
    if out.is_empty() {
        out.push(Map::from_iter([(
            MALFORMED.to_string(),
            Value::String(whole_error.to_string()),
        )]));
    }
    out
}

/// An element as JSON: text when it has no children, else an object (repeated names → arrays).
pub fn element_to_json(el: &Element) -> Value {
    if el.children.is_empty() {
        return Value::String(el.text.clone());
    }
    let mut map = Map::new();
    for c in &el.children {
        let v = element_to_json(c);
        match map.get_mut(&c.name) {
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None => {
                map.insert(c.name.clone(), v);
            }
        }
    }
    Value::Object(map)
}
