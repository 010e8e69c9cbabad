//! Internal events: each one writes its log line and moves its metric in one place, so that
//! what operators read in logs and what dashboards plot cannot drift apart.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{Outcome, StreamKey, Window};
use crate::telemetry::{
    EndpointLabels, Metrics, RejectLabels, RequestLabels, RetryLabels, RunLabels,
    SourceAccountLabels, SourceLabels, SourceStreamLabels, StreamLabels,
};

mod webhooks;
pub use webhooks::*;

fn stream_labels(k: &StreamKey) -> StreamLabels {
    StreamLabels {
        source: k.source.to_string(),
        account: k.account.clone(),
        stream: k.stream.to_string(),
    }
}

/// One HTTP exchange with a source API finished (any status, or a transport error).
pub struct HttpResponded<'a> {
    pub source: &'a str,
    pub account: &'a str,
    pub endpoint: &'a str,
    pub status: Option<u16>,
    pub elapsed: Duration,
}

impl HttpResponded<'_> {
    pub fn emit(&self, m: &Metrics) {
        let status = self
            .status
            .map_or_else(|| "error".to_string(), |s| s.to_string());
        tracing::debug!(source = self.source, account = self.account, endpoint = self.endpoint, status = %status, elapsed_ms = self.elapsed.as_millis() as u64, "http response");
        m.http_requests
            .get_or_create(&RequestLabels {
                source: self.source.into(),
                account: self.account.into(),
                endpoint: self.endpoint.into(),
                status,
            })
            .inc();
        m.http_duration
            .get_or_create(&EndpointLabels {
                source: self.source.into(),
                endpoint: self.endpoint.into(),
            })
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A request will be retried after `wait`.
pub struct HttpRetrying<'a> {
    pub source: &'a str,
    pub account: &'a str,
    pub endpoint: &'a str,
    pub reason: &'static str,
    pub wait: Duration,
    pub detail: &'a str,
}

impl HttpRetrying<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::warn!(
            source = self.source,
            account = self.account,
            endpoint = self.endpoint,
            reason = self.reason,
            wait_ms = self.wait.as_millis() as u64,
            detail = self.detail,
            "retrying request"
        );
        m.http_retries
            .get_or_create(&RetryLabels {
                source: self.source.into(),
                account: self.account.into(),
                reason: self.reason.into(),
            })
            .inc();
    }
}

/// A record was set aside (it goes to `rejected_records`: `sessionsync_records_rejected_total`),
/// or one of its values was stored as NULL in a row that landed (`sessionsync_values_nulled_total`:
/// not an error, nothing set aside; docs/operations.md lists each reason).
pub struct RecordRejected<'a> {
    pub key: &'a StreamKey,
    pub record_key: &'a str,
    pub reason: &'a str,
    /// false: the record landed, only a value was nulled (e.g. a negative duration).
    pub set_aside: bool,
}

impl RecordRejected<'_> {
    pub fn emit(&self, m: &Metrics) {
        let k = self.key;
        let labels = RejectLabels {
            source: k.source.into(),
            account: k.account.clone(),
            stream: k.stream.into(),
            reason: reason_label(self.reason),
        };
        if self.set_aside {
            tracing::warn!(source = k.source, account = %k.account, stream = k.stream, record = self.record_key, reason = self.reason, "record set aside in rejected_records");
            m.records_rejected.get_or_create(&labels).inc();
        } else {
            // Counted per run (RunFinished says how many, by reason); each one at DEBUG.
            tracing::debug!(source = k.source, account = %k.account, stream = k.stream, record = self.record_key, reason = self.reason, "value stored as NULL");
            m.values_nulled.get_or_create(&labels).inc();
        }
    }
}

/// Reasons carry detail after a colon; the metric label keeps the stable part only.
pub fn reason_label(reason: &str) -> String {
    reason
        .split(':')
        .next()
        .unwrap_or(reason)
        .trim()
        .to_string()
}

/// A window's rows and the stream's watermark committed together.
pub struct WindowCommitted<'a> {
    pub key: &'a StreamKey,
    pub window: &'a Window,
    pub written: u64,
    pub unchanged: u64,
    pub watermark: Option<DateTime<Utc>>,
}

impl WindowCommitted<'_> {
    pub fn emit(&self, m: &Metrics) {
        let k = self.key;
        tracing::info!(source = k.source, account = %k.account, stream = k.stream, from = %self.window.start, to = %self.window.end, written = self.written, unchanged = self.unchanged, "window committed");
        let l = stream_labels(k);
        m.rows_written.get_or_create(&l).inc_by(self.written);
        m.rows_unchanged.get_or_create(&l).inc_by(self.unchanged);
        if let Some(w) = self.watermark {
            m.watermark.get_or_create(&l).set(w.timestamp() as f64);
        }
    }
}

/// The newest session time a stream has stored (read at a run's start, or after a write):
/// `sessionsync_newest_record_timestamp_seconds`, which shows a stream that stays silent.
pub struct NewestRecord<'a> {
    pub key: &'a StreamKey,
    pub newest: Option<DateTime<Utc>>,
}

impl NewestRecord<'_> {
    pub fn emit(&self, m: &Metrics) {
        if let Some(t) = self.newest {
            m.newest_record
                .get_or_create(&stream_labels(self.key))
                .set(t.timestamp() as f64);
        }
    }
}

/// A stream's run read its state: how new its newest record is, and how new it is expected to
/// be (`expect_data_within`, exported for the alert `SessionsyncNoNewData`).
pub struct StreamExpectation<'a> {
    pub key: &'a StreamKey,
    pub newest: Option<DateTime<Utc>>,
    pub expect_data_within: Option<Duration>,
}

impl StreamExpectation<'_> {
    pub fn emit(&self, m: &Metrics) {
        NewestRecord {
            key: self.key,
            newest: self.newest,
        }
        .emit(m);
        if let Some(d) = self.expect_data_within {
            m.expect_data_within
                .get_or_create(&stream_labels(self.key))
                .set(d.as_secs_f64());
            if let Some(t) = self.newest {
                let silent = (Utc::now() - t).to_std().unwrap_or_default();
                if silent > d {
                    tracing::warn!(stream = %self.key, newest = %t, expect_data_within = ?d, "no new record for longer than expect_data_within: the credentials may no longer see the data, or nothing happens at the vendor");
                }
            }
        }
    }
}

/// A stream run ended.
pub struct RunFinished<'a> {
    pub key: &'a StreamKey,
    pub run_id: i64,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub written: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// Values nulled, by reason.
    pub nulled: &'a std::collections::BTreeMap<String, u64>,
    /// Records read by id because their listed row was incomplete.
    pub fallbacks: u64,
    pub error: Option<&'a str>,
    /// The vendor's state of a tenant that is not running (outcome `Unavailable`).
    pub unavailable: Option<&'a str>,
}

impl RunFinished<'_> {
    pub fn emit(&self, m: &Metrics) {
        let k = self.key;
        let outcome = self.outcome.as_str();
        let nulled: u64 = self.nulled.values().sum();
        if nulled > 0 {
            let reasons: Vec<String> = self
                .nulled
                .iter()
                .map(|(r, c)| format!("{r}={c}"))
                .collect();
            tracing::info!(source = k.source, account = %k.account, stream = k.stream, run_id = self.run_id, nulled, reasons = %reasons.join(","), "values nulled in records that landed (counted, not set aside)");
        }
        if self.fallbacks > 0 {
            tracing::info!(source = k.source, account = %k.account, stream = k.stream, run_id = self.run_id, fallbacks = self.fallbacks, "listed rows lacked what the source needs: read by id, one request each");
            m.fallback_reads
                .get_or_create(&SourceAccountLabels {
                    source: k.source.into(),
                    account: k.account.clone(),
                })
                .inc_by(self.fallbacks);
        }
        m.set_unavailable(k.source, &k.account, self.unavailable);
        match self.outcome {
            Outcome::Unavailable => {
                tracing::info!(source = k.source, account = %k.account, stream = k.stream, run_id = self.run_id, outcome, state = self.unavailable.unwrap_or(""), elapsed_ms = self.elapsed.as_millis() as u64, error = self.error.unwrap_or(""), "run ended: the vendor reports the tenant not running (not a failure; nothing lost)")
            }
            Outcome::Succeeded => {
                tracing::info!(source = k.source, account = %k.account, stream = k.stream, run_id = self.run_id, outcome, elapsed_ms = self.elapsed.as_millis() as u64, written = self.written, unchanged = self.unchanged, rejected = self.rejected, "run finished")
            }
            _ => {
                tracing::warn!(source = k.source, account = %k.account, stream = k.stream, run_id = self.run_id, outcome, elapsed_ms = self.elapsed.as_millis() as u64, written = self.written, unchanged = self.unchanged, rejected = self.rejected, error = self.error.unwrap_or(""), "run finished")
            }
        }
        m.sync_runs
            .get_or_create(&RunLabels {
                source: k.source.into(),
                account: k.account.clone(),
                stream: k.stream.into(),
                outcome: outcome.into(),
            })
            .inc();
        m.sync_duration
            .get_or_create(&SourceStreamLabels {
                source: k.source.into(),
                stream: k.stream.into(),
            })
            .observe(self.elapsed.as_secs_f64());
        if self.outcome == Outcome::Succeeded {
            m.last_success
                .get_or_create(&stream_labels(k))
                .set(Utc::now().timestamp() as f64);
        }
    }
}

/// A due stream found every slot taken and joined the queue.
pub struct StreamQueued<'a> {
    pub key: &'a StreamKey,
    pub limit: usize,
}

impl StreamQueued<'_> {
    pub fn emit(&self, m: &Metrics) {
        let waiting = m.streams_waiting.inc() + 1;
        tracing::info!(stream = %self.key, waiting, max_concurrent_streams = self.limit, "due, waiting for a free slot (engine.max_concurrent_streams)");
    }
}

/// A stream's run started (it got its slot), `delay` after its cron instant.
pub struct RunStarted<'a> {
    pub key: &'a StreamKey,
    pub delay: Duration,
}

impl RunStarted<'_> {
    pub fn emit(&self, m: &Metrics) {
        m.start_delay
            .get_or_create(&stream_labels(self.key))
            .set(self.delay.as_secs_f64());
        tracing::debug!(stream = %self.key, delay_ms = self.delay.as_millis() as u64, "run started");
    }
}

/// Sessions the source deleted (gone when read by id, SuperOffice's `Deleted`) or anonymised
/// (mluvii) had their personal data erased: `cause` says which ("deleted", "anonymised").
pub struct SessionsErasedAtSource<'a> {
    pub key: &'a StreamKey,
    pub sessions: u64,
    pub cause: &'static str,
}

impl SessionsErasedAtSource<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(stream = %self.key, sessions = self.sessions, cause = self.cause, "sessions the source {} since the last look: their personal data erased", self.cause);
        m.erased_sessions
            .get_or_create(&SourceLabels {
                source: self.key.source.to_string(),
            })
            .inc_by(self.sessions);
    }
}

/// A stream took a slot (`held`) or gave it back: the running-streams gauge follows.
pub struct SlotHeld {
    pub held: bool,
}

impl SlotHeld {
    pub fn emit(&self, m: &Metrics) {
        if self.held {
            m.streams_running.inc();
        } else {
            m.streams_running.dec();
        }
        tracing::trace!(held = self.held, running = m.streams_running.get(), "slot");
    }
}

/// The storage limits (`retain_sessions`, `retain_transcripts`) removed rows, per table.
pub struct RetentionApplied<'a> {
    pub rows: &'a std::collections::BTreeMap<String, u64>,
}

impl RetentionApplied<'_> {
    pub fn emit(&self, m: &Metrics) {
        for (table, n) in self.rows {
            m.retention_deleted_rows
                .get_or_create(&crate::telemetry::TableLabels {
                    table: table.clone(),
                })
                .inc_by(*n);
        }
        let total: u64 = self.rows.values().sum();
        tracing::info!(rows = total, "storage limits applied");
    }
}

/// This process took a stream's lock and recorded run `run_id` (which replica runs what).
pub struct RunClaimed<'a> {
    pub key: &'a StreamKey,
    pub run_id: i64,
}

impl RunClaimed<'_> {
    pub fn emit(&self, _m: &Metrics) {
        tracing::info!(stream = %self.key, run_id = self.run_id, "run claimed: this process holds the stream's lock");
    }
}

/// Cron instants of a stream passed while it waited or ran: the daemon is not keeping up.
pub struct InstantsMissed<'a> {
    pub key: &'a StreamKey,
    pub missed: u64,
    pub since: DateTime<Utc>,
}

impl InstantsMissed<'_> {
    pub fn emit(&self, m: &Metrics) {
        m.missed_instants
            .get_or_create(&stream_labels(self.key))
            .inc_by(self.missed);
        tracing::warn!(stream = %self.key, missed = self.missed, due = %self.since, "behind schedule: instants passed while the stream waited for a slot or was still running (raise engine.max_concurrent_streams, or give the stream a longer schedule)");
    }
}

/// After a run: how many failed in a row, and until when the stream backs off (`None`: it
/// runs at its next instant).
pub struct FailureStreak<'a> {
    pub key: &'a StreamKey,
    pub failures: u32,
    pub until: Option<DateTime<Utc>>,
}

impl FailureStreak<'_> {
    pub fn emit(&self, m: &Metrics) {
        let labels = stream_labels(self.key);
        m.consecutive_failures
            .get_or_create(&labels)
            .set(i64::from(self.failures));
        m.backoff_until
            .get_or_create(&labels)
            .set(self.until.map_or(0.0, |u| u.timestamp() as f64));
        if let Some(until) = self.until {
            tracing::warn!(stream = %self.key, failures = self.failures, until = %until, "failed several runs in a row: backing off (no run before `until`; a run that succeeds resets it)");
        }
    }
}

/// A queued stream left the queue (it got its slot, or shutdown came first).
pub struct StreamDequeued<'a> {
    pub key: &'a StreamKey,
    pub waited: Duration,
}

impl StreamDequeued<'_> {
    pub fn emit(&self, m: &Metrics) {
        m.streams_waiting.dec();
        tracing::debug!(stream = %self.key, waited_ms = self.waited.as_millis() as u64, "left the queue");
    }
}

/// A completeness audit of one account ended (sources.md section 5).
pub struct AuditFinished<'a> {
    /// The audited stream.
    pub key: &'a StreamKey,
    pub run_id: Option<i64>,
    pub outcome: Outcome,
    pub dry_run: bool,
    /// The days compared, as said to a person (`2026-11-30..2026-12-06`).
    pub days: String,
    pub listed: u64,
    pub stored: u64,
    pub missing: u64,
    pub gone: u64,
    /// Days whose listing did not complete.
    pub incomplete: usize,
    pub error: Option<&'a str>,
    pub elapsed: Duration,
}

impl AuditFinished<'_> {
    pub fn emit(&self, m: &Metrics) {
        let k = self.key;
        let labels = SourceAccountLabels {
            source: k.source.into(),
            account: k.account.clone(),
        };
        let (listed, stored, missing, gone, incomplete) = (
            self.listed,
            self.stored,
            self.missing,
            self.gone,
            self.incomplete,
        );
        let elapsed_ms = self.elapsed.as_millis() as u64;
        let (outcome, dry_run, days) = (self.outcome.as_str(), self.dry_run, &self.days);
        match (self.error, self.outcome) {
            (Some(e), _) => {
                tracing::warn!(source = k.source, account = %k.account, run_id = self.run_id, outcome, dry_run, days = %days, error = %e, elapsed_ms, "audit failed")
            }
            (None, Outcome::Skipped) => {}
            _ if incomplete > 0 => {
                tracing::warn!(source = k.source, account = %k.account, run_id = self.run_id, outcome, dry_run, days = %days, listed, stored, missing, gone, incomplete, elapsed_ms, "audit finished: some days could not be listed completely (nothing flagged for them)")
            }
            // Repaired already: the metrics (and SessionsyncAuditFoundMissing) say it.
            _ if missing > 0 || gone > 0 => {
                tracing::info!(source = k.source, account = %k.account, run_id = self.run_id, outcome, dry_run, days = %days, listed, stored, missing, gone, elapsed_ms, "audit finished: stored what the warehouse lacked, flagged what the vendor deleted")
            }
            _ => {
                tracing::info!(source = k.source, account = %k.account, run_id = self.run_id, outcome, dry_run, days = %days, listed, stored, elapsed_ms, "audit finished: the warehouse matches the vendor's list")
            }
        }
        if self.dry_run || self.run_id.is_none() {
            return;
        }
        // Present from the first audit on, so that an increase is seen from 0.
        m.audit_missing.get_or_create(&labels).inc_by(missing);
        m.audit_gone.get_or_create(&labels).inc_by(gone);
        if self.error.is_none() && incomplete == 0 && self.outcome == Outcome::Succeeded {
            m.audit_last_complete
                .get_or_create(&labels)
                .set(Utc::now().timestamp() as f64);
        }
    }
}

/// The daemon audits an account: its audit series exist from the start (a counter that appears
/// at its first increase is an increase no alert sees), and the last complete audit is the one
/// the warehouse recorded.
pub struct AuditScheduled<'a> {
    pub key: &'a StreamKey,
    /// Its last complete audit, else when it began to be synced.
    pub since: Option<chrono::DateTime<Utc>>,
}

impl AuditScheduled<'_> {
    pub fn emit(&self, m: &Metrics) {
        let labels = SourceAccountLabels {
            source: self.key.source.into(),
            account: self.key.account.clone(),
        };
        m.audit_missing.get_or_create(&labels).inc_by(0);
        m.audit_gone.get_or_create(&labels).inc_by(0);
        let since = self.since.unwrap_or_else(Utc::now);
        m.audit_last_complete
            .get_or_create(&labels)
            .set(since.timestamp() as f64);
    }
}
