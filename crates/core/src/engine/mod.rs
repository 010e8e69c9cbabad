//! The engine: schedules, windows, locks, transactions, run records. It knows nothing of any
//! vendor: a source implements [`Source`] (`source.rs`, the seam), and the engine runs it as a
//! [`Stream`]. This file is the façade: it names the parts and re-exports what others use.
//!
//! One run of a stream:
//! 1. claim the stream: its advisory lock, held by the process's one lock-keeping connection
//!    (a stream never runs twice at once, even across daemons), fenced by a token
//!    ([`claims`]);
//! 2. read its state (`sync_state`), plan windows from `watermark − lookback` (or `start`) to now;
//! 3. for each window: fetch and parse (the source) holding no warehouse connection, then take
//!    one for **one transaction** that writes the rows, sets aside rejected records, checks the
//!    claim and moves the watermark to the window's end;
//! 4. record the run in `sync_runs`; release the lock.
//!
//! The completeness audit (`audit.rs` the seam a source implements, `auditor.rs` the run)
//! compares the warehouse with the vendor's own list, day by day, under the same claim.
//!
//! A window that fails stops the run: what was committed before it stays (`partial`), nothing of
//! it is written, and the next run starts again from the committed watermark.

pub mod audit;
mod audit_compare;
mod audit_loop;
mod audit_report;
mod auditor;
mod batch;
pub mod claims;
mod outcome;
mod plan;
mod rebuild;
pub mod renormalize;
mod run;
mod scheduler;
pub mod source;
mod steps;
mod vetted;
pub mod webhook;
mod windows;
pub mod write;

pub use crate::model::{
    Outcome, Rejected, RequestCounts, RunTotals, StreamKey, StreamState, Window, WriteCounts,
};
pub use audit::{Audit, Days, KeepRow, Listed, Listing, SessionTable};
pub use audit_loop::{audited, run_audits};
pub use audit_report::{AuditOptions, AuditReport, AuditStep};
pub use auditor::{AUDIT_STREAM, audit_key};
pub use batch::{Batch, PrivacyOf, Rows, RunInfo, SourceError, read_state, write_state};
pub use rebuild::{Rebuild, StoredRecord};
pub use renormalize::{RenormalizeError, RenormalizeOptions, RenormalizeReport};
#[cfg(feature = "fault-points")]
pub use run::FaultPoints;
pub use run::{Engine, Progress, Range, RunError, RunReport};
pub use scheduler::{Freshness, Slot, Slots, freshness, run_scheduler};
pub use source::{Personal, SILENCE_CHECK, Source, SourceContext, Stream, Vetted};
pub use webhook::{Pushed, Verdict, Webhook, WebhookState};
pub use windows::{
    AdaptiveWindows, FIRST_WINDOW, MIN_WINDOW, TARGET_RECORDS, Windowing, plan_windows,
};
