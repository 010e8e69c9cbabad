//! The webhook listener's events: requests answered, events applied, connections refused or
//! counted, work that failed.

use std::time::Duration;

use super::stream_labels;
use crate::model::StreamKey;
use crate::telemetry::{Metrics, SourceLabels, WebhookLabels};

/// A webhook request for a configured account was answered. Only the outcome is logged: never
/// the body or a header of the request.
pub struct WebhookAnswered<'a> {
    pub source: &'a str,
    pub account: &'a str,
    /// `accepted`, `duplicate`, `ignored`, `unauthorized`, `malformed` or `unavailable`.
    pub outcome: &'static str,
    pub status: u16,
    /// The vendor's event type, once the request is authenticated and parsed.
    pub event_type: Option<&'a str>,
    /// Why it was refused (no request content).
    pub detail: Option<&'a str>,
}

impl WebhookAnswered<'_> {
    pub fn emit(&self, m: &Metrics) {
        let (source, account, outcome, status) =
            (self.source, self.account, self.outcome, self.status);
        let event_type = self.event_type.unwrap_or("");
        let detail = self.detail.unwrap_or("");
        match outcome {
            "accepted" | "duplicate" | "ignored" => {
                tracing::debug!(
                    source,
                    account,
                    outcome,
                    status,
                    event_type,
                    "webhook event"
                )
            }
            _ => tracing::warn!(
                source,
                account,
                outcome,
                status,
                detail,
                "webhook request refused"
            ),
        }
        m.webhook_events
            .get_or_create(&WebhookLabels {
                source: source.into(),
                account: account.into(),
                outcome: outcome.into(),
            })
            .inc();
    }
}

/// Sessions named by webhook events were re-read and committed, and their events deleted from
/// the inbox.
pub struct WebhookApplied<'a> {
    pub key: &'a StreamKey,
    pub events: usize,
    pub sessions: usize,
    pub written: u64,
    pub unchanged: u64,
    /// Seconds from each event's arrival to the commit.
    pub lags: &'a [f64],
}

impl WebhookApplied<'_> {
    pub fn emit(&self, m: &Metrics) {
        let k = self.key;
        tracing::info!(source = k.source, account = %k.account, stream = k.stream, events = self.events, sessions = self.sessions, written = self.written, unchanged = self.unchanged, max_lag_ms = (self.lags.iter().cloned().fold(0.0, f64::max) * 1000.0) as u64, "webhook events applied");
        let l = stream_labels(k);
        m.rows_written.get_or_create(&l).inc_by(self.written);
        m.rows_unchanged.get_or_create(&l).inc_by(self.unchanged);
        let h = m.webhook_lag.get_or_create(&SourceLabels {
            source: k.source.into(),
        });
        for lag in self.lags {
            h.observe(*lag);
        }
    }
}

/// The webhook listener refused a connection at once: `cap` connections were open already.
pub struct WebhookConnectionRefused {
    pub cap: usize,
}

impl WebhookConnectionRefused {
    pub fn emit(&self, m: &Metrics) {
        tracing::debug!(
            cap = self.cap,
            "webhook connection refused: the listener holds as many connections as it allows"
        );
        m.webhook_connections_refused.inc();
    }
}

/// The webhook listener's open connections changed.
pub struct WebhookConnections {
    pub open: usize,
}

impl WebhookConnections {
    pub fn emit(&self, m: &Metrics) {
        m.webhook_connections
            .set(i64::try_from(self.open).unwrap_or(i64::MAX));
    }
}

/// Acting on webhook events failed; they stay in the inbox and are tried again later, or are
/// set aside when `gave_up`.
pub struct WebhookFailed<'a> {
    pub key: &'a StreamKey,
    pub events: usize,
    pub error: &'a str,
    pub retry_in: Duration,
    pub gave_up: bool,
}

impl WebhookFailed<'_> {
    pub fn emit(&self, _m: &Metrics) {
        let k = self.key;
        if self.gave_up {
            tracing::error!(source = k.source, account = %k.account, stream = k.stream, events = self.events, error = self.error, "webhook events set aside in rejected_records after repeated failures; polling reconciles their sessions");
        } else {
            tracing::warn!(source = k.source, account = %k.account, stream = k.stream, events = self.events, error = self.error, retry_in_ms = self.retry_in.as_millis() as u64, "acting on webhook events failed; retrying");
        }
    }
}
