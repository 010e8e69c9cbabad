//! What a row of mluvii's Sessions list says: the rows of a page, a row's id and creation
//! time, and whether the row is a whole session (then only its routing history is read).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::normalize::date;
use crate::lenient::{self, Fields};

/// Whether a listed row is a whole SessionModel, as mluvii's own sample client reads the list:
/// it carries what the normalizer needs (`id`, `created`, `status` and the `operators` with
/// their times). A row that lacks any of them is completed by reading the detail.
pub fn is_whole_session(row: &Value) -> bool {
    let Value::Object(o) = row else {
        return false;
    };
    let f = Fields::new(o);
    ["id", "created", "status"]
        .iter()
        .all(|k| f.get(k).is_some())
        && matches!(f.get("operators"), Some(Value::Array(_)))
}

/// Lists of the `Sessions` endpoint: a bare array, or an object wrapping one.
pub fn list_items(body: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_str(body.trim_start_matches('\u{feff}').trim())
        .map_err(|e| format!("not valid JSON ({e}); the body may have been cut off"))?;
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(o) => {
            let found = ["value", "items", "data", "sessions", "results"]
                .iter()
                .find_map(|k| o.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)));
            match found {
                Some((_, Value::Array(a))) => Ok(a.clone()),
                _ => Err(format!(
                    "expected a list of sessions, got {}",
                    lenient::short(&Value::Object(o.clone()))
                )),
            }
        }
        other => Err(format!(
            "expected a list of sessions, got {}",
            lenient::short(&other)
        )),
    }
}

/// What the list says about one session: its id, and its `created` and `status` when given.
pub struct Listed {
    pub id: Result<i64, String>,
    pub created: Option<DateTime<Utc>>,
    pub status: Option<String>,
}

pub fn listed(item: &Value) -> Listed {
    let empty = Map::new();
    let obj = match item {
        Value::Object(o) => o,
        Value::Number(_) | Value::String(_) => {
            return Listed {
                id: lenient::int(item).ok_or_else(|| lenient::short(item)),
                created: None,
                status: None,
            };
        }
        _ => &empty,
    };
    let f = Fields::new(obj);
    Listed {
        id: match f.int("id") {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(format!("no id in {}", lenient::short(item))),
            Err(e) => Err(e),
        },
        created: date(&f, "created").ok().flatten(),
        status: f.text("status"),
    }
}
