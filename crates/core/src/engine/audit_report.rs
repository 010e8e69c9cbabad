//! What an audit is asked to do and what it reports, step by step and in the end.

use super::audit::Days;
use crate::model::{Outcome, RunTotals, StreamKey};
use crate::warehouse::audits::DayAudit;

/// What an audit is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    pub days: Days,
    /// Report without changing anything (no `audits` row, no run recorded).
    pub dry_run: bool,
}

/// Where an audit is, for a live line on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditStep {
    Listing { days: usize },
    Confirming { sessions: usize },
    Reading { sessions: usize },
    Writing,
}

/// What an audit did.
#[derive(Debug, Clone)]
pub struct AuditReport {
    /// The audited stream's key.
    pub key: StreamKey,
    pub run_id: Option<i64>,
    /// The days compared (after the stream's `start` and the storage limit); `None` when none is
    /// left.
    pub days: Option<Days>,
    pub per_day: Vec<DayAudit>,
    /// Succeeded: every day's listing completed; Partial: some did not; Unavailable: the vendor
    /// reports the tenant down; Failed: an error (in `error`); Skipped: another process audits
    /// the account, or the source has no audit.
    pub outcome: Outcome,
    pub error: Option<String>,
    pub totals: RunTotals,
    pub dry_run: bool,
}

impl AuditReport {
    pub(super) fn not_run(
        key: &StreamKey,
        outcome: Outcome,
        error: Option<String>,
        dry_run: bool,
    ) -> Self {
        AuditReport {
            key: key.clone(),
            run_id: None,
            days: None,
            per_day: Vec::new(),
            outcome,
            error,
            totals: RunTotals::default(),
            dry_run,
        }
    }

    fn sum(&self, f: impl Fn(&DayAudit) -> u64) -> u64 {
        self.per_day.iter().map(f).sum()
    }
    pub fn listed(&self) -> u64 {
        self.sum(|d| d.listed)
    }
    pub fn stored(&self) -> u64 {
        self.sum(|d| d.stored)
    }
    pub fn missing(&self) -> u64 {
        self.sum(|d| d.missing)
    }
    pub fn gone(&self) -> u64 {
        self.sum(|d| d.gone)
    }
    /// Every day's listing completed.
    pub fn complete(&self) -> bool {
        self.per_day.iter().all(|d| d.complete)
            && matches!(self.outcome, Outcome::Succeeded | Outcome::Partial)
    }
}
