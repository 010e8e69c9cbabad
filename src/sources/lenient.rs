//! Lenient reading of vendor records (sources.md, "Leniency"): case-insensitive field names,
//! numbers as strings, several spellings of booleans, empty string as null, NUL removed.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// A record's fields by lower-cased name.
pub struct Fields<'a>(HashMap<String, &'a Value>);

impl<'a> Fields<'a> {
    pub fn new(obj: &'a serde_json::Map<String, Value>) -> Self {
        Fields(
            obj.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        )
    }

    /// The value, `None` when absent, JSON null or an empty string.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).copied().filter(|v| !is_empty(v))
    }

    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).and_then(text)
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, String> {
        self.get(name)
            .map(|v| boolean(v).ok_or_else(|| format!("{name} is not a boolean: {}", short(v))))
            .transpose()
    }

    /// A timestamp with an offset (or without, read as UTC); `Err` is the reason
    /// `invalid_<name>: …` for `rejected_records`.
    pub fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(s) => parse_local_datetime(&s, chrono_tz::UTC)
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "invalid_{name}: `{}` is not a timestamp",
                        s.chars().take(40).collect::<String>()
                    )
                }),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, String> {
        self.get(name)
            .map(|v| int(v).ok_or_else(|| format!("{name} is not an integer: {}", short(v))))
            .transpose()
    }
}

/// JSON null or a blank string: what [`Fields::get`] treats as absent.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A value as text (NUL removed); objects and arrays as JSON.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(clean(s)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(clean(&other.to_string())),
    }
}

pub fn boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "t" => Some(true),
            "false" | "0" | "no" | "n" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Removes NUL characters (PostgreSQL text and jsonb cannot hold them).
pub fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

/// Removes NUL characters from every string and key of a JSON value.
pub fn clean_json(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', ""),
        Value::Array(a) => a.iter_mut().for_each(clean_json),
        Value::Object(o) => {
            if o.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(o);
                for (k, mut val) in old {
                    clean_json(&mut val);
                    o.insert(k.replace('\0', ""), val);
                }
            } else {
                o.values_mut().for_each(clean_json);
            }
        }
        _ => {}
    }
}

/// FNV-1a (64 bits) of a text, in hex: a stable fingerprint to tell whether a record changed.
pub fn fingerprint(text: &str) -> String {
    fingerprint_parts(&[text])
}

/// [`fingerprint`] of the concatenated parts, without concatenating them.
pub fn fingerprint_parts(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A short rendering of a value for error messages.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// A zone-less `YYYY-MM-DD HH:MM:SS` (also with `T`, fractions, or a date alone) read in `tz`;
/// a value with an offset or `Z` is read as such. Fractions finer than PostgreSQL's microsecond
/// (SuperOffice writes seven digits) are rounded as PostgreSQL rounds such a literal.
pub fn parse_local_datetime(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    // The common case, whole seconds, needs no rounding.
    if let Some(naive) = fast_naive(s.trim()) {
        return local_to_utc(naive, tz);
    }
    parse_unrounded(s, tz).map(|t| {
        t.duration_round(chrono::TimeDelta::microseconds(1))
            .unwrap_or(t)
    })
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), the common case, read without a format interpreter.
fn fast_naive(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )
}

fn parse_unrounded(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    const FORMATS: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
    ];
    let naive = FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    local_to_utc(naive, tz)
}

/// A wall-clock time in `tz` as UTC: the earlier instant when ambiguous, shifted past a gap.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + chrono::TimeDelta::hours(1)))
                .earliest()
        })
        .map(|d| d.with_timezone(&Utc))
}

/// `later − earlier` in seconds; `Err(value)` when negative (the caller nulls and counts it).
pub fn duration_seconds(
    earlier: Option<DateTime<Utc>>,
    later: Option<DateTime<Utc>>,
) -> Result<Option<f64>, f64> {
    match (earlier, later) {
        (Some(a), Some(b)) => {
            let d = (b - a)
                .num_microseconds()
                .map_or((b - a).num_seconds() as f64, |us| us as f64 / 1e6);
            if d < 0.0 { Err(d) } else { Ok(Some(d)) }
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_scalars() {
        assert_eq!(boolean(&json!("TRUE")), Some(true));
        assert_eq!(boolean(&json!(0)), Some(false));
        assert_eq!(boolean(&json!("maybe")), None);
        assert_eq!(int(&json!("42")), Some(42));
        assert_eq!(int(&json!(42.0)), Some(42));
        assert_eq!(int(&json!("4x")), None);
        assert_eq!(text(&json!("a\u{0}b")), Some("ab".into()));
    }

    #[test]
    fn the_fast_path_agrees_with_the_formats() {
        for s in [
            "2024-01-05 10:00:00",
            "2024-02-29T23:59:59",
            "1999-12-31 00:00:01",
        ] {
            let fast = fast_naive(s).unwrap();
            let slow =
                NaiveDateTime::parse_from_str(&s.replace('T', " "), "%Y-%m-%d %H:%M:%S").unwrap();
            assert_eq!(fast, slow);
        }
        for s in [
            "2023-02-29 10:00:00",
            "2024-01-05 24:00:00",
            "2024-01-05 10:00:0x",
            "2024/01/05 10:00:00",
        ] {
            assert!(fast_naive(s).is_none(), "{s}");
        }
    }

    #[test]
    fn dates_in_zone() {
        let utc = parse_local_datetime("2024-01-05 10:00:00", chrono_tz::UTC).unwrap();
        assert_eq!(utc.to_rfc3339(), "2024-01-05T10:00:00+00:00");
        let prague =
            parse_local_datetime("2024-07-05 10:00:00", chrono_tz::Europe::Prague).unwrap();
        assert_eq!(prague.to_rfc3339(), "2024-07-05T08:00:00+00:00");
        assert!(parse_local_datetime("2024-13-05 10:00:00", chrono_tz::UTC).is_none());
        assert!(parse_local_datetime("2024-01-05", chrono_tz::UTC).is_some());
    }

    #[test]
    fn clean_json_removes_nul_everywhere() {
        let mut v = json!({"a\u{0}": ["x\u{0}y", {"b": "\u{0}"}]});
        clean_json(&mut v);
        assert_eq!(v, json!({"a": ["xy", {"b": ""}]}));
    }
}
