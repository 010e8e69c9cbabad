//! The Take Control source: one request per window, its body parsed and normalized on the
//! blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use chrono_tz::Tz;

use super::client::Client;
use super::config::{OutputFormat, TakeControlApi, TakeControlSettings};
use super::normalize::{self, BodyProblem, Normalized};
use super::store;
use crate::config::{KeyProblem, SourceSettings};
use crate::engine::{Batch, RunInfo, Source, SourceContext, SourceError, StreamState, Window};

pub struct TakeControl {
    pub(super) cx: Arc<SourceContext>,
    pub(super) settings: TakeControlSettings,
    pub(super) client: Client,
}

impl TakeControl {
    pub fn new(settings: TakeControlSettings, cx: Arc<SourceContext>) -> Self {
        TakeControl {
            client: Client::new(cx.clone(), settings.clone()),
            cx,
            settings,
        }
    }
}

impl SourceSettings for TakeControlSettings {
    fn read(entry: toml::Value, prefix: &str) -> Result<Self, KeyProblem> {
        super::config::read(entry, prefix)
    }

    fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source> {
        Box::new(TakeControl::new(self.clone(), cx))
    }
}

#[async_trait]
impl Source for TakeControl {
    /// Rows rebuilt from what the warehouse stores (`rebuild.rs`).
    fn rebuild(&self) -> Option<&dyn crate::engine::Rebuild> {
        Some(self)
    }

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
            Ok(batch) => batch.rows(),
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

    /// The history of whole days, compared with the warehouse (`audit.rs`).
    fn audit(&self) -> Option<&dyn crate::engine::Audit> {
        Some(self)
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
        let (body, endpoint) = self.client.fetch_body(window).await?;
        let xml = matches!(
            (self.settings.api, self.settings.output_format),
            (TakeControlApi::Legacy, OutputFormat::Xml)
        );
        let (window_copy, tz) = (*window, self.settings.timezone);
        let cx = self.cx.clone();
        // Parsing and normalizing a window is CPU work of tens of milliseconds: it runs on the
        // blocking pool so that it never stalls the write of the previous window, which the
        // engine drives on the same task (see `Source::pipelined`).
        let parsed = tokio::task::spawn_blocking(move || {
            let records = if xml && !body.trim_start().starts_with('{') {
                normalize::records_from_xml(&body)
            } else {
                normalize::records_from_json(&body)
            };
            records.map(|r| into_batch(r, &window_copy, tz, &cx))
        })
        .await
        .map_err(|e| SourceError::Body {
            endpoint,
            detail: format!("the parser stopped unexpectedly: {e}"),
        })?;
        parsed.map_err(|p| match p {
            BodyProblem::Vendor(message) => SourceError::Vendor { message },
            BodyProblem::Unreadable(detail) => SourceError::Body { endpoint, detail },
        })
    }
}

/// Normalizes a window's records; a later duplicate of an id replaces an earlier one.
pub(super) fn into_batch(
    records: Vec<serde_json::Map<String, serde_json::Value>>,
    window: &Window,
    tz: Tz,
    cx: &SourceContext,
) -> Batch {
    let n = normalize_all(records, window, tz, cx);
    Batch::new(store::SessionRows(n.sessions))
        .with_rejected(n.rejected)
        .with_nulled(n.nulled)
}

/// A window's records, normalized (before they become a [`Batch`]).
pub(super) struct NormalizedAll {
    pub sessions: Vec<normalize::Session>,
    pub rejected: Vec<crate::model::Rejected>,
    pub nulled: Vec<crate::model::Rejected>,
}

/// As [`into_batch`], the sessions left to adjust (`rebuild.rs`).
pub(super) fn normalize_all(
    records: Vec<serde_json::Map<String, serde_json::Value>>,
    window: &Window,
    tz: Tz,
    cx: &SourceContext,
) -> NormalizedAll {
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
        match normalize::normalize(rec, &fallback, tz, cx) {
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
    NormalizedAll {
        sessions,
        rejected,
        nulled,
    }
}
