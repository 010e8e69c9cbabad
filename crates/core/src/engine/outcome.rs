//! What a run reports: how far it has got ([`Progress`]), what it did ([`RunReport`]) and why
//! it stopped early ([`RunError`]).

use chrono::{DateTime, TimeDelta, Utc};

use super::batch::SourceError;
use crate::model::{Outcome, RunTotals, StreamKey};
use crate::warehouse::WarehouseError;

/// Why a run stopped before its range was done. It keeps its type through the run and
/// becomes text only in the run's report (`RunReport::error`, `sync_runs.error`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Getting a window's data failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Writing failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(
        "{stream}: this process lost its claim on the stream (the connection that held its lock was closed, or another process claimed it); the window was not written, and the next run (here or in another process) resumes from the committed watermark"
    )]
    LostClaim { stream: String },
    #[error(
        "stopped by shutdown before the range was finished; the next run resumes from the committed watermark"
    )]
    Stopped,
    #[error(
        "erasures kept being recorded while the window {from}..{to} was read; it is read again at the next run"
    )]
    ErasuresKeptComing {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// How far a run has got, after each window.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Windows committed, and the count expected now (adaptive windows change it as they go).
    pub done: usize,
    pub total: usize,
    /// The part of the run's time range already covered, and the whole range.
    pub covered: TimeDelta,
    pub span: TimeDelta,
    pub written: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub elapsed: std::time::Duration,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub key: StreamKey,
    pub run_id: Option<i64>,
    pub outcome: Outcome,
    pub totals: RunTotals,
    pub error: Option<String>,
    pub watermark: Option<DateTime<Utc>>,
    /// The run ended because of shutdown (`RunError::Stopped`): its outcome says nothing of
    /// the vendor, so it counts toward no failure streak.
    pub stopped: bool,
    /// The vendor's state of a tenant that is not running (outcome `Unavailable`).
    pub unavailable: Option<String>,
}

impl RunReport {
    /// A report for a stream that did not run (no `sync_runs` row): skipped, or stopped before
    /// it started.
    pub fn not_run(key: &StreamKey, outcome: Outcome, error: Option<String>) -> Self {
        RunReport {
            key: key.clone(),
            run_id: None,
            outcome,
            totals: RunTotals::default(),
            error,
            watermark: None,
            stopped: false,
            unavailable: None,
        }
    }
}
