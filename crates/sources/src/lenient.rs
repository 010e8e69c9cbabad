//! Lenient reading of vendor records (sources.md, "Leniency"): case-insensitive field names,
//! numbers as strings, several spellings of booleans, empty string as null, NUL removed.

use std::cell::RefCell;
use std::collections::HashMap;

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// A record's fields by lower-cased name, and the "not set" dates met while reading them.
pub struct Fields<'a> {
    fields: HashMap<String, &'a Value>,
    unset: RefCell<Vec<String>>,
}

impl<'a> Fields<'a> {
    pub fn new(obj: &'a serde_json::Map<String, Value>) -> Self {
        Fields {
            fields: obj
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            unset: RefCell::new(Vec::new()),
        }
    }

    /// The value, `None` when absent, JSON null or an empty string.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.fields.get(name).copied().filter(|v| !is_empty(v))
    }

    /// The reasons (`null_date: …`) of the dates [`Fields::date`] read as "not set" so far, for
    /// the run's "values nulled" report; taking them empties the list.
    pub fn take_unset(&self) -> Vec<String> {
        std::mem::take(&mut *self.unset.borrow_mut())
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
    /// `invalid_<name>: …` for `rejected_records`. A date that means "not set" (see
    /// [`read_date`]) is `None`, and its reason is kept for [`Fields::take_unset`].
    pub fn date(&self, name: &str) -> Result<Option<DateTime<Utc>>, String> {
        self.date_in(name, chrono_tz::UTC)
    }

    /// [`Fields::date`] with a value without an offset read in `tz` (a SuperOffice tenant that
    /// ignores the `SO-TimeZone` header writes its base time zone's wall clock).
    pub fn date_in(&self, name: &str, tz: Tz) -> Result<Option<DateTime<Utc>>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(s) => match read_date(&s, tz) {
                Some(DateValue::Set(t)) => Ok(Some(t)),
                Some(DateValue::Unset) => {
                    self.unset.borrow_mut().push(unset_reason(name, &s));
                    Ok(None)
                }
                None => Err(format!(
                    "invalid_{name}: `{}` is not a timestamp",
                    s.chars().take(40).collect::<String>()
                )),
            },
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
    if let Some(dt) = with_compact_offset(s) {
        return Some(dt);
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

/// A timestamp whose offset is written without a colon (`+0100`, `-0500`), as SuperOffice writes
/// it with `SO-TimeZone: …, includeTZOffset` (sources.md §2), or as hours alone (`+01`).
fn with_compact_offset(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    // The offset starts at the last sign after the time's `T` or space (a date has `-` too).
    let time_at = s.find(['T', ' '])?;
    let sign = s[time_at..].rfind(['+', '-'])? + time_at;
    let digits = &s[sign + 1..];
    if !(digits.len() == 4 || digits.len() == 2) || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    let secs = (hours * 3600 + minutes * 60) * if b[sign] == b'-' { -1 } else { 1 };
    let offset = chrono::FixedOffset::east_opt(secs)?;
    let head = s[..sign].replace(' ', "T");
    let naive = NaiveDateTime::parse_from_str(&head, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&head, "%Y-%m-%dT%H:%M"))
        .ok()?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|d| d.with_timezone(&Utc))
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

/// The earliest date that is a date: anything before means "not set".
pub const FIRST_REAL_DATE: &str = "1900-01-01T00:00:00Z";
/// The latest date that is a date: anything after means "not set" (or "forever").
pub const LAST_REAL_DATE: &str = "9000-01-01T00:00:00Z";

/// Whether a date is one of the values vendors write for "no date". SuperOffice has no null date
/// (docs/sources.md §2): its database stores an unknown date as 1760-01-01, .NET turns that into
/// `DateTime.MinValue` (`0001-01-01T00:00:00`), SQL Server's minimum 1753-01-01 appears too, and
/// 9999-12-31 means "forever". mluvii is a .NET service as well. So any date before 1900-01-01
/// or after 9000-01-01, with or without fractions or an offset, is read as "not set".
pub fn is_unset_date(t: DateTime<Utc>) -> bool {
    let first = DateTime::parse_from_rfc3339(FIRST_REAL_DATE).expect("constant");
    let last = DateTime::parse_from_rfc3339(LAST_REAL_DATE).expect("constant");
    t < first || t > last
}

/// A vendor's date: a real one, or one that means "not set".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateValue {
    Set(DateTime<Utc>),
    Unset,
}

/// Reads a vendor date as [`parse_local_datetime`] does, and tells the values that mean "not
/// set" apart: those of [`is_unset_date`], and MySQL's zero date (`0000-00-00`, with or without
/// a time), which PHP services such as Take Control's write for an empty date. `None` when it is
/// no date at all.
pub fn read_date(s: &str, tz: Tz) -> Option<DateValue> {
    let t = s.trim();
    if t.starts_with("0000-00-00") {
        return Some(DateValue::Unset);
    }
    parse_local_datetime(t, tz).map(|d| {
        if is_unset_date(d) {
            DateValue::Unset
        } else {
            DateValue::Set(d)
        }
    })
}

/// A date where an unreadable one is simply unknown (a transcript line's time): `None` for no
/// date, a bad one, and one that means "not set".
pub fn date_or_none(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    match read_date(s, tz) {
        Some(DateValue::Set(t)) => Some(t),
        _ => None,
    }
}

/// The "values nulled" reason of a date that means "not set".
pub fn unset_reason(name: &str, value: &str) -> String {
    format!(
        "null_date: {name} was `{}`, which means \"not set\"",
        value.trim().chars().take(40).collect::<String>()
    )
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
    fn offsets_with_and_without_a_colon_and_z_read_alike() {
        let want: DateTime<Utc> = "2018-12-24T12:34:45Z".parse().unwrap();
        for s in [
            "2018-12-24T07:34:45-0500",
            "2018-12-24T07:34:45-05:00",
            "2018-12-24T13:34:45+0100",
            "2018-12-24T13:34:45+01",
            "2018-12-24T12:34:45Z",
            "2018-12-24T12:34:45+0000",
            "2018-12-24 13:34:45+0100",
        ] {
            assert_eq!(
                parse_local_datetime(s, chrono_tz::Asia::Tokyo),
                Some(want),
                "{s}"
            );
        }
        // Seven fractional digits with a compact offset, rounded to the microsecond.
        let t = parse_local_datetime("2018-12-24T13:34:45.1234567+0100", chrono_tz::UTC).unwrap();
        assert_eq!(t.to_rfc3339(), "2018-12-24T12:34:45.123457+00:00");
        // Without an offset: the zone given (Norway: +01:00 in winter, +02:00 in summer).
        let oslo = chrono_tz::Europe::Oslo;
        assert_eq!(
            parse_local_datetime("2018-12-24T13:34:45", oslo),
            Some(want)
        );
        assert_eq!(
            parse_local_datetime("2018-07-24T14:34:45.0000000", oslo)
                .unwrap()
                .to_rfc3339(),
            "2018-07-24T12:34:45+00:00"
        );
        // Not offsets: a bad one is no date.
        assert_eq!(parse_local_datetime("2018-12-24T13:34:45+2500", oslo), None);
        assert_eq!(parse_local_datetime("2018-12-24T13:34:45+010", oslo), None);
        // Not set stays not set in any zone and with any offset form.
        for s in [
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59.9999999",
            "1760-01-01T00:00:00+0100",
        ] {
            assert_eq!(read_date(s, oslo), Some(DateValue::Unset), "{s}");
        }
    }

    #[test]
    fn dates_that_mean_not_set() {
        for s in [
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00.0000000",
            "0001-01-01T00:00:00+01:00",
            "1760-01-01T00:00:00",
            "1753-01-01T00:00:00",
            "1753-01-01T00:00:00.000Z",
            "1899-12-31T23:59:59.99+00:00",
            "9999-12-31T23:59:59.9999999",
            "9999-12-31T00:00:00+02:00",
            "9000-01-01T00:00:00.000001Z",
            "0000-00-00 00:00:00",
            "0000-00-00",
        ] {
            assert_eq!(read_date(s, chrono_tz::UTC), Some(DateValue::Unset), "{s}");
        }
        for s in [
            "1900-01-01T00:00:00Z",
            "2013-12-04T17:54:07.9918437+01:00",
            "9000-01-01T00:00:00Z",
        ] {
            assert!(
                matches!(read_date(s, chrono_tz::UTC), Some(DateValue::Set(_))),
                "{s}"
            );
        }
        assert_eq!(read_date("next tuesday", chrono_tz::UTC), None);
        let obj =
            json!({"WhenStarted": "0001-01-01T00:00:00", "WhenEnded": "2024-01-01T00:00:00Z"});
        let f = Fields::new(obj.as_object().unwrap());
        assert_eq!(f.date("whenstarted"), Ok(None));
        assert!(f.date("whenended").unwrap().is_some());
        let unset = f.take_unset();
        assert_eq!(unset.len(), 1);
        assert!(unset[0].starts_with("null_date: whenstarted was `0001-01-01T00:00:00`"));
        assert!(f.take_unset().is_empty());
    }

    #[test]
    fn clean_json_removes_nul_everywhere() {
        let mut v = json!({"a\u{0}": ["x\u{0}y", {"b": "\u{0}"}]});
        clean_json(&mut v);
        assert_eq!(v, json!({"a": ["xy", {"b": ""}]}));
    }
}
