//! The plain data every layer shares: which stream, which window, what a run did. A leaf: it
//! imports nothing of the crate, so the engine, the warehouse, the events and the sources can all
//! use it without depending on each other.

use chrono::{DateTime, Utc};

/// Names one stream: `(source, account, stream)`, the key of `sync_state`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub source: &'static str,
    pub account: String,
    pub stream: &'static str,
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.source, self.account, self.stream)
    }
}

/// A session's id in its system: a number in every source (Take Control's and mluvii's
/// `bigint`, SuperOffice's `int`), bound as `bigint` (a `bigint[]` of several). A record that
/// has no readable id never becomes one: it is set aside under a text key of its own
/// ([`Rejected::record_key`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SessionId(pub i64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<i64> for SessionId {
    fn from(id: i64) -> Self {
        SessionId(id)
    }
}

impl From<i32> for SessionId {
    fn from(id: i32) -> Self {
        SessionId(i64::from(id))
    }
}

impl std::str::FromStr for SessionId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(SessionId)
    }
}

impl tokio_postgres::types::ToSql for SessionId {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for SessionId {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        i64::from_sql(ty, raw).map(SessionId)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

/// Where a stream's sessions are stored, for the completeness audit's count of a day: the
/// table, its id column and the column whose UTC day the audit compares by (Take Control
/// `started_at`, SuperOffice `requested_at`, mluvii `created_at`). The table has `account`,
/// `first_synced_at` and `source_deleted_at`, and an index that starts with the start column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTable {
    pub table: &'static str,
    pub id: &'static str,
    pub start: &'static str,
}

/// A half-open time range `[start, end)`, whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// What a stream remembers between runs (`sync_state`).
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub watermark: Option<DateTime<Utc>>,
    pub state: serde_json::Value,
    /// The window size the engine settled on last time (adaptive sources).
    pub window_seconds: Option<i32>,
    /// The newest session time the stream has stored (`sync_state.newest_record_at`).
    pub newest: Option<DateTime<Utc>>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Some progress was committed, but records were rejected or a window failed.
    Partial,
    Failed,
    /// Another process holds the stream's lock; nothing was done.
    Skipped,
    /// The vendor reports the tenant not running (maintenance, an upgrade): the run ended at
    /// once, nothing lost, the watermark unmoved; not a failure.
    Unavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// A record the source could not turn into rows (goes to `rejected_records`), or a value it
/// had to null (counted only).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub record_key: String,
    /// A stable reason code, optionally followed by `: detail`.
    pub reason: String,
    /// The record as received, minus secrets.
    pub payload: serde_json::Value,
}

/// Counts of one write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCounts {
    /// Sessions written (inserted or rewritten).
    pub written: u64,
    pub unchanged: u64,
    /// Rows the write put in each child table (the rows of the sessions it wrote), by table.
    pub children: std::collections::BTreeMap<&'static str, u64>,
}

/// Final figures of a run.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    pub written: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub requests: u64,
    pub retries: u64,
    /// Of `requests`, reads by id of records whose listed row was incomplete.
    pub fallbacks: u64,
    /// Values nulled in records that landed (e.g. a negative duration), by reason; reported
    /// with the run, not stored.
    pub nulled: std::collections::BTreeMap<String, u64>,
}

impl RunTotals {
    /// "17 values nulled: negative_duration (15), invalid_rating (2)", or `None`.
    pub fn nulled_summary(&self) -> Option<String> {
        let n: u64 = self.nulled.values().sum();
        if n == 0 {
            return None;
        }
        let reasons: Vec<String> = self
            .nulled
            .iter()
            .map(|(r, c)| format!("{r} ({c})"))
            .collect();
        Some(format!(
            "{n} value{} nulled: {}",
            if n == 1 { "" } else { "s" },
            reasons.join(", ")
        ))
    }
}

/// HTTP requests a source has sent so far, and how many of them were retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub requests: u64,
    pub retries: u64,
    /// Records read by id because their listed row lacked what the source needs (mluvii's
    /// abridged list rows): one request each, counted apart so that a tenant whose list is
    /// incomplete shows in the run line and in `sessionsync_fallback_reads_total`.
    pub fallbacks: u64,
}
