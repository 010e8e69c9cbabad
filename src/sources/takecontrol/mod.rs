//! N-able Take Control session history (sources.md §1), REST and legacy flavours.
//!
//! A window `[start, end)` is asked for as `FILTER_DATE_START_INI = start − 1 s` and
//! `FILTER_DATE_START_END = end`: the API's filters are strict (`>` and `<`) on whole seconds, so
//! this covers exactly the seconds `start ..= end − 1 s`, and consecutive windows neither overlap
//! nor leave the boundary second out.

mod body;
pub mod config;
pub mod normalize;
pub mod personal;
pub mod store;
mod transcript;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::engine::{Batch, RunInfo, Source, SourceContext, SourceError, StreamState, Window};
pub use config::{OutputFormat, SOURCE, TakeControlApi, TakeControlSettings};
use normalize::{BodyProblem, Normalized};

pub const REST_PATH: &str = "/rest/session/history";
pub const LEGACY_PATH: &str = "/integration/get_history_api.php";

/// Every variable the connector asks for.
pub const VARS: [&str; 18] = [
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

pub struct TakeControl {
    cx: Arc<SourceContext>,
    settings: TakeControlSettings,
}

crate::config::impl_account_settings!(TakeControlSettings, SOURCE, TakeControl::new);

impl TakeControl {
    pub fn new(settings: TakeControlSettings, cx: Arc<SourceContext>) -> Self {
        TakeControl { cx, settings }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        crate::http::endpoint_url(&self.settings.base_url, path)
    }

    /// An instant as the API's zone-less `YYYY-MM-DD HH:MM:SS` in the account's zone.
    fn format_filter(&self, t: DateTime<Utc>) -> String {
        format_in_zone(t, self.settings.timezone)
    }

    /// A 403, explained with what Take Control's key documentation says can cause it; other
    /// failures pass through.
    fn http_error(&self, e: crate::http::HttpError) -> SourceError {
        match e {
            crate::http::HttpError::Status {
                status: 403, body, ..
            } => SourceError::Vendor {
                source_name: SOURCE,
                account: self.cx.key.account.clone(),
                message: format!(
                    "HTTP 403 ({body}). Take Control refuses a key for three reasons its key documentation names: session history needs a private key (a public key cannot read it); keys expire (at most one year after they were made: make a new one in the Admin Area and update `api_key`); and a key with an IP allowlist refuses hosts outside it (add this host's public address)"
                ),
            },
            e => SourceError::Http(e),
        }
    }

    async fn fetch_body(&self, window: &Window) -> Result<(String, &'static str), SourceError> {
        let ini = self.format_filter(window.start - TimeDelta::seconds(1));
        let end = self.format_filter(window.end);
        let key = &self.settings.api_key;
        match self.settings.api {
            TakeControlApi::Rest => {
                let url = self.url(REST_PATH);
                let body = serde_json::json!({
                    "vars": VARS,
                    "filters": { "FILTER_DATE_START_INI": ini, "FILTER_DATE_START_END": end },
                });
                let resp = self
                    .cx
                    .http
                    .send(REST_PATH, |c| {
                        c.get(url.clone())
                            .header("INTEGRATION-KEY", key.expose())
                            .header("Accept", "application/json")
                            .json(&body)
                    })
                    .await
                    .map_err(|e| self.http_error(e))?;
                Ok((resp.text().into_owned(), REST_PATH))
            }
            TakeControlApi::Legacy => {
                let url = self.url(LEGACY_PATH);
                let format = match self.settings.output_format {
                    OutputFormat::Xml => "XML",
                    OutputFormat::Json => "JSON",
                };
                let vars = VARS.join(" ");
                let resp = self
                    .cx
                    .http
                    .send(LEGACY_PATH, |c| {
                        c.get(url.clone()).query(&[
                            ("KEY", key.expose()),
                            ("VARS", vars.as_str()),
                            ("FILTER_DATE_START_INI", ini.as_str()),
                            ("FILTER_DATE_START_END", end.as_str()),
                            ("OUTPUT_FORMAT", format),
                        ])
                    })
                    .await
                    .map_err(|e| self.http_error(e))?;
                Ok((resp.text().into_owned(), LEGACY_PATH))
            }
        }
    }
}

pub fn format_in_zone(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

#[async_trait]
impl Source for TakeControl {
    /// Windows are independent: the next is fetched while the current one is written.
    fn pipelined(&self) -> bool {
        true
    }

    /// One request for the last 30 days: it answers, and it shows sessions (none: a warning
    /// naming what the key needs).
    async fn check(&self) -> Result<String, SourceError> {
        let now = Utc::now();
        let window = Window {
            start: now - crate::engine::SILENCE_CHECK,
            end: now,
        };
        let seen = match self
            .fetch(&window, &StreamState::default(), RunInfo::default())
            .await
        {
            Ok(batch) => batch.rows.len(),
            // More than a response may hold: there are sessions.
            Err(SourceError::Http(e)) if crate::http::is_too_large(&e) => usize::MAX,
            Err(e) => return Err(e),
        };
        Ok(if seen == 0 {
            "answered (the session history)\nWARN: no session in the last 30 days is visible with this key: session history needs a private key with access to the history of the technicians whose sessions you expect (a key limited to other endpoints or other technicians sees none)".to_string()
        } else {
            "answered (the session history); sessions of the last 30 days are visible".to_string()
        })
    }

    /// Windows are plain ranges of start times: the engine sizes them by density.
    fn windowing(&self) -> crate::engine::Windowing {
        crate::engine::Windowing::Adaptive
    }

    async fn fetch(
        &self,
        window: &Window,
        _state: &StreamState,
        _run: RunInfo,
    ) -> Result<Batch, SourceError> {
        let (body, endpoint) = self.fetch_body(window).await?;
        let xml = matches!(
            (self.settings.api, self.settings.output_format),
            (TakeControlApi::Legacy, OutputFormat::Xml)
        );
        let (window_copy, tz) = (*window, self.settings.timezone);
        let (privacy, account) = (self.cx.privacy.clone(), self.cx.key.account.clone());
        // Parsing and normalizing a window is CPU work of tens of milliseconds: it runs on the
        // blocking pool so that it never stalls the write of the previous window, which the
        // engine drives on the same task (see `Source::pipelined`).
        let parsed = tokio::task::spawn_blocking(move || {
            let records = if xml && !body.trim_start().starts_with('{') {
                normalize::records_from_xml(&body)
            } else {
                normalize::records_from_json(&body)
            };
            records.map(|r| into_batch(r, &window_copy, tz, &privacy, &account))
        })
        .await
        .map_err(|e| SourceError::Body {
            source_name: SOURCE,
            account: self.cx.key.account.clone(),
            endpoint,
            detail: format!("the parser stopped unexpectedly: {e}"),
        })?;
        parsed.map_err(|p| match p {
            BodyProblem::Vendor(message) => SourceError::Vendor {
                source_name: SOURCE,
                account: self.cx.key.account.clone(),
                message,
            },
            BodyProblem::Unreadable(detail) => SourceError::Body {
                source_name: SOURCE,
                account: self.cx.key.account.clone(),
                endpoint,
                detail,
            },
        })
    }
}

/// Normalizes a window's records; a later duplicate of an id replaces an earlier one.
fn into_batch(
    records: Vec<serde_json::Map<String, serde_json::Value>>,
    window: &Window,
    tz: Tz,
    privacy: &crate::privacy::Privacy,
    account: &str,
) -> Batch {
    let mut sessions: Vec<normalize::Session> = Vec::with_capacity(records.len());
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut rejected = Vec::new();
    let mut nulled = Vec::new();
    for (i, rec) in records.into_iter().enumerate() {
        let fallback = format!(
            "{}..{}#{i}",
            window.start.format("%Y-%m-%dT%H:%M:%SZ"),
            window.end.format("%Y-%m-%dT%H:%M:%SZ")
        );
        match normalize::normalize(rec, &fallback, tz, privacy, account) {
            Normalized::Session(s, n) => {
                nulled.extend(n);
                match index.get(&s.session_id) {
                    Some(&at) => sessions[at] = *s,
                    None => {
                        index.insert(s.session_id, sessions.len());
                        sessions.push(*s);
                    }
                }
            }
            Normalized::Rejected(r) => rejected.push(r),
        }
    }
    Batch {
        record_keys: sessions.iter().map(|s| s.session_id.to_string()).collect(),
        rows: Box::new(store::SessionRows(sessions)),
        rejected,
        nulled,
        state: None,
        gone: Vec::new(),
    }
}
