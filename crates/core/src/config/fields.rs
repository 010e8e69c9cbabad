//! The keys every source entry takes, read and checked alike for every source (durations,
//! ranges, base URLs, identifiers, the stream and HTTP settings).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{HttpSettings, KeyProblem, Schedule, StreamSettings};

pub fn parse_duration(
    key: &str,
    v: Option<&str>,
    default: &str,
) -> Result<Duration, (String, String)> {
    let s = v.unwrap_or(default);
    humantime::parse_duration(s).map_err(|e| {
        (
            key.to_string(),
            format!(
                "`{s}` is not a duration ({e}); write e.g. \"30s\", \"15m\", \"24h\" or \"1d\""
            ),
        )
    })
}

/// The keys every stream takes, as written in the file.
pub struct StreamFields<'a> {
    pub account: &'a str,
    pub enabled: Option<bool>,
    pub schedule: Option<&'a str>,
    pub start: &'a str,
    pub lookback: Option<&'a str>,
    pub window: Option<&'a str>,
    /// The entry's `privacy = { … }` (none: `[privacy]` as it is).
    pub privacy: Option<crate::privacy::Overrides>,
    pub expect_data_within: Option<&'a str>,
    pub audit: Option<bool>,
}

pub fn stream_settings(
    k: &dyn Fn(&str) -> String,
    f: StreamFields<'_>,
    defaults: super::CommonDefaults,
) -> Result<StreamSettings, KeyProblem> {
    let StreamFields {
        account,
        enabled,
        schedule,
        start,
        lookback,
        window,
        privacy,
        expect_data_within,
        audit,
    } = f;
    if account.is_empty()
        || account.len() > 64
        || !account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err((
            k("account"),
            format!("`{account}` must be 1–64 characters of letters, digits, '-', '_' or '.'"),
        ));
    }
    let schedule =
        Schedule::parse(schedule.unwrap_or("*/5 * * * *")).map_err(|p| (k("schedule"), p))?;
    let start = DateTime::parse_from_rfc3339(start)
        .map_err(|e| {
            (
                k("start"),
                format!(
                    "`{start}` is not an RFC 3339 timestamp such as 2024-01-01T00:00:00Z ({e})"
                ),
            )
        })?
        .with_timezone(&Utc);
    let lookback = parse_duration(&k("lookback"), lookback, defaults.lookback)?;
    let window = parse_duration(&k("window"), window, defaults.window)?;
    if window < Duration::from_secs(60) {
        return Err((k("window"), "must be at least 1m".into()));
    }
    Ok(StreamSettings {
        account: account.to_string(),
        enabled: enabled.unwrap_or(true),
        schedule,
        start,
        lookback,
        window,
        privacy: privacy.unwrap_or_default(),
        audit: audit.unwrap_or(true),
        expect_data_within: match expect_data_within {
            None => None,
            Some(v) => {
                let d = parse_duration(&k("expect_data_within"), Some(v), "0s")?;
                if d < Duration::from_secs(3600) {
                    return Err((
                        k("expect_data_within"),
                        "must be at least 1h (how long a stream may stay without a new record before the alert)".into(),
                    ));
                }
                Some(d)
            }
        },
    })
}

/// An optional count with a default, held to a range.
pub fn in_range(
    k: &dyn Fn(&str) -> String,
    key: &str,
    value: Option<usize>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, KeyProblem> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err((
            k(key),
            format!("{v} must be between {} and {}", range.start(), range.end()),
        ))
    }
}

pub fn http_settings(
    k: &dyn Fn(&str) -> String,
    timeout: Option<&str>,
    max_retries: Option<usize>,
    max_retry_wait: Option<&str>,
    rps: Option<f64>,
    max_response_mb: Option<usize>,
) -> Result<HttpSettings, KeyProblem> {
    let max_response_mb = in_range(k, "max_response_mb", max_response_mb, 256, 1..=4096)?;
    let timeout = parse_duration(&k("timeout"), timeout, "30s")?;
    if timeout.is_zero() {
        return Err((k("timeout"), "must be greater than zero".into()));
    }
    let max_retry_wait = parse_duration(&k("max_retry_wait"), max_retry_wait, "5m")?;
    let requests_per_second = rps.unwrap_or(5.0);
    if !(requests_per_second.is_finite()
        && requests_per_second > 0.0
        && requests_per_second <= 10_000.0)
    {
        return Err((
            k("requests_per_second"),
            format!("{requests_per_second} must be a number above 0 and at most 10000"),
        ));
    }
    Ok(HttpSettings {
        timeout,
        max_retries: max_retries.unwrap_or(5),
        max_retry_wait,
        requests_per_second,
        max_response_mb,
    })
}

pub fn parse_base_url(key: &str, s: &str) -> Result<reqwest::Url, KeyProblem> {
    let url = reqwest::Url::parse(s)
        .map_err(|e| (key.to_string(), format!("`{s}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err((
            key.to_string(),
            format!("`{s}` must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}
