//! One run of one stream (see the module doc of `engine`).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::batch::SourceError;
use super::plan::Plan;
pub use super::plan::Range;
use super::source::Stream;
use super::steps::Run;
use crate::model::{Outcome, StreamKey};

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
use super::claims::{Claim, Claims};
use crate::events::RunFinished;
use crate::model::RunTotals;
use crate::telemetry::Metrics;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// Fault points for tests of the engine's guarantees, compiled only with the cargo feature
/// `fault-points` (the test command enables it; release builds have none).
#[cfg(feature = "fault-points")]
#[derive(Debug, Default)]
pub struct FaultPoints {
    /// Fail each window after its rows are written and before its transaction commits.
    pub fail_before_commit: std::sync::atomic::AtomicBool,
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

pub struct Engine {
    pub(super) warehouse: Warehouse,
    claims: Claims,
    /// Held while one run analyzes the changed tables: a hundred runs finishing together
    /// analyze once, not a hundred times in a row (ANALYZE of one table waits for another).
    analyzing: tokio::sync::Mutex<()>,
    pub(super) metrics: Arc<Metrics>,
    #[cfg(feature = "fault-points")]
    pub(super) faults: Arc<FaultPoints>,
}

impl Engine {
    pub fn new(warehouse: Warehouse, metrics: Arc<Metrics>) -> Self {
        Engine {
            claims: Claims::new(warehouse.clone()),
            analyzing: tokio::sync::Mutex::new(()),
            warehouse,
            metrics,
            #[cfg(feature = "fault-points")]
            faults: Arc::default(),
        }
    }

    /// The engine's fault points (tests only).
    #[cfg(feature = "fault-points")]
    pub fn faults(&self) -> &FaultPoints {
        &self.faults
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs the stream once, now. `Err` only when the warehouse itself fails; a source that
    /// fails gives an `Ok` report with outcome `failed` or `partial`.
    pub async fn run_once(
        &self,
        source: &Stream,
        cancel: &CancellationToken,
    ) -> Result<RunReport, WarehouseError> {
        self.run(source, Range::Regular, cancel, &|_| {}).await
    }

    /// Runs the stream over `range`, calling `progress` after each window.
    pub async fn run(
        &self,
        source: &Stream,
        range: Range,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<RunReport, WarehouseError> {
        self.run_unless_done(source, range, cancel, progress, None)
            .await
    }

    /// The daemon's run of a stream due at `due`: skipped when another process already
    /// started a run of it at or after `due − tolerance` (replicas share one schedule; the one
    /// that gets the stream's lock second must not fetch the same windows again).
    pub async fn run_due(
        &self,
        source: &Stream,
        due: DateTime<Utc>,
        tolerance: TimeDelta,
        cancel: &CancellationToken,
    ) -> Result<RunReport, WarehouseError> {
        self.run_unless_done(
            source,
            Range::Regular,
            cancel,
            &|_| {},
            Some(due - tolerance),
        )
        .await
    }

    async fn run_unless_done(
        &self,
        source: &Stream,
        range: Range,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&Progress) + Sync),
        done_since: Option<DateTime<Utc>>,
    ) -> Result<RunReport, WarehouseError> {
        let key = source.key();
        let Some(mut claim) = self.claims.try_claim(key).await? else {
            tracing::info!(source = key.source, account = %key.account, stream = key.stream, "skipped: another sessionsync process is running this stream");
            return Ok(RunReport::not_run(key, Outcome::Skipped, None));
        };
        let result = self
            .run_claimed(&mut claim, source, range, cancel, progress, done_since)
            .await;
        self.claims.release(claim).await;
        result
    }

    /// The run of a stream this process holds: a connection to fence the claim, check the
    /// last run and read the state, given back before the first fetch.
    async fn run_claimed(
        &self,
        claim: &mut Claim,
        source: &Stream,
        range: Range,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&Progress) + Sync),
        done_since: Option<DateTime<Utc>>,
    ) -> Result<RunReport, WarehouseError> {
        let key = source.key();
        let (run_id, state) = {
            let conn = self.warehouse.conn().await?;
            claim.fence(&**conn).await?;
            if let Some(since) = done_since
                && warehouse::last_run_started(&**conn, key)
                    .await?
                    .is_some_and(|t| t >= since)
            {
                tracing::debug!(source = key.source, account = %key.account, stream = key.stream, "skipped: another sessionsync process already ran this stream for this instant");
                return Ok(RunReport::not_run(key, Outcome::Skipped, None));
            }
            let run_id = warehouse::start_run(&conn, key).await?;
            crate::events::RunClaimed { key, run_id }.emit(&self.metrics);
            let state = warehouse::load_state(&**conn, key).await?;
            crate::events::StreamExpectation {
                key,
                // While it has stored nothing, it has been silent since its `start`.
                newest: state.newest.or(Some(source.settings().start)),
                expect_data_within: source.settings().expect_data_within,
            }
            .emit(&self.metrics);
            (run_id, state)
        };
        // Every line logged during the run carries its id.
        let span = tracing::info_span!("run", run_id, source = key.source, account = %key.account, stream = key.stream);
        let (plan, start, end) = Plan::for_run(source, range, &state);
        let run = Run {
            engine: self,
            claim,
            stream: source,
            range,
            cancel,
            run_id,
            plan,
            start,
            end,
            totals: RunTotals::default(),
            new_rejects: 0,
            committed: 0,
            started: Instant::now(),
            before: source.requests(),
        };
        run.run(state, progress).instrument(span).await
    }

    /// Reads the erasures recorded since this process last looked; the version now known (0
    /// for a source without personal data).
    pub(super) async fn refresh_erasures(&self, source: &Stream) -> Result<i64, WarehouseError> {
        match source.privacy() {
            Some(p) => {
                let conn = self.warehouse.conn().await?;
                p.privacy
                    .erasures
                    .refresh(&**conn)
                    .await
                    .map_err(WarehouseError::query("reading the recorded erasures"))
            }
            None => Ok(0),
        }
    }

    /// Records the run's end, analyzes tables it changed a lot, and reports it.
    pub(super) async fn finish(
        &self,
        run_id: i64,
        r: &RunReport,
        started: Instant,
    ) -> Result<(), WarehouseError> {
        let totals = &r.totals;
        let conn = self.warehouse.conn().await?;
        warehouse::finish_run(&conn, run_id, r.outcome, totals, r.error.as_deref()).await?;
        let analyzing = match totals.written {
            0 => None,
            _ => self.analyzing.try_lock().ok(),
        };
        if analyzing.is_some() {
            match warehouse::analyze_stale(&conn, self.warehouse.schema()).await {
                Ok(t) if !t.is_empty() => {
                    tracing::debug!(tables = %t.join(", "), "analyzed tables that changed by more than a tenth")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not analyze the changed tables; PostgreSQL's autovacuum will")
                }
            }
        }
        RunFinished {
            key: &r.key,
            run_id,
            outcome: r.outcome,
            elapsed: started.elapsed(),
            written: totals.written,
            unchanged: totals.unchanged,
            rejected: totals.rejected,
            nulled: &totals.nulled,
            fallbacks: totals.fallbacks,
            error: r.error.as_deref(),
            unavailable: r.unavailable.as_deref(),
        }
        .emit(&self.metrics);
        Ok(())
    }
}
