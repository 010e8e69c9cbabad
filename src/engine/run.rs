//! One run of one stream (see the module doc of `engine`).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::batch::{Batch, RunInfo, SourceError};
use super::plan::Plan;
pub use super::plan::Range;
use super::source::Stream;
use crate::model::{Outcome, StreamKey, StreamState, Window};

/// Why a run stopped before its range was done. It keeps its type through the run and
/// becomes text only in the run's report (`RunReport::error`, `sync_runs.error`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Getting a window's data failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Writing failed, or the claim was lost (`WarehouseError::LostClaim`).
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
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
use super::write::{StateChange, WriteError, Written, write_batch};
use crate::events::{RunFinished, WindowCommitted, reason_label};
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
    warehouse: Warehouse,
    claims: Claims,
    /// Held while one run analyzes the changed tables: a hundred runs finishing together
    /// analyze once, not a hundred times in a row (ANALYZE of one table waits for another).
    analyzing: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    #[cfg(feature = "fault-points")]
    faults: Arc<FaultPoints>,
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
        self.run_windows(claim, source, range, cancel, progress, run_id, state)
            .instrument(span)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_windows(
        &self,
        claim: &Claim,
        source: &Stream,
        range: Range,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&Progress) + Sync),
        run_id: i64,
        mut state: StreamState,
    ) -> Result<RunReport, WarehouseError> {
        let key = source.key();
        let started = Instant::now();
        let before = source.requests();
        let (mut plan, run_start, run_end) = Plan::for_run(source, range, &state);
        let backfill = matches!(range, Range::Backfill { .. });
        let info = |w: &Window| RunInfo {
            first: Some(w.start) == run_start,
            backfill,
        };
        let mut totals = RunTotals::default();
        let mut new_rejects = 0;
        let mut committed = 0usize;
        let mut error: Option<RunError> = None;
        // A source whose windows do not depend on each other's state has the next window
        // fetched while the current one is written (its transaction still covers exactly its
        // own rows and watermark).
        let pipelined = source.pipelined();
        let mut prefetched: Option<(Window, Option<Result<Batch, SourceError>>)> = None;
        let mut current = plan.next_window();
        // The erasures known when each window was read: one recorded meanwhile makes its
        // commit read the window again (see `privacy::current_version`).
        let mut prefetched_seen = 0;
        while let Some(window) = current.take() {
            let (fetched, seen) = match prefetched.take() {
                Some((w, r)) if w == window => (r, prefetched_seen),
                _ => {
                    let seen = match self.refresh_erasures(source).await {
                        Ok(v) => v,
                        Err(e) => {
                            error = Some(e.into());
                            break;
                        }
                    };
                    let r = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => None,
                        _ = claim.lost().cancelled() => None,
                        r = source.fetch(&window, &state, info(&window)) => Some(r),
                    };
                    (r, seen)
                }
            };
            let batch = match fetched {
                None => {
                    error = Some(stopped(claim, key));
                    break;
                }
                Some(Err(SourceError::Http(e)))
                    if crate::http::is_too_large(&e) && plan.retry_smaller(&window) =>
                {
                    tracing::info!(from = %window.start, to = %window.end, "window answered too much; splitting it");
                    current = plan.next_window();
                    continue;
                }
                Some(Err(SourceError::WindowTooFull { held, .. }))
                    if plan.retry_smaller(&window) =>
                {
                    tracing::info!(from = %window.start, to = %window.end, held, "window holds too many records; splitting it");
                    current = plan.next_window();
                    continue;
                }
                Some(Err(e)) => {
                    error = Some(e.into());
                    break;
                }
                Some(Ok(b)) => b,
            };
            plan.feedback(batch.records());
            let next = plan.next_window();
            let prefetch = next.filter(|_| pipelined);
            // The prefetch reads the state as it was before this window (pipelined sources do
            // not depend on it); only then is a copy needed.
            let snapshot = prefetch.map(|_| state.clone()).unwrap_or_default();
            let step = plan
                .step()
                .map(|s| s.num_seconds().clamp(1, i64::from(i32::MAX)) as i32);
            let commit = self.commit_fresh(
                claim,
                source,
                &window,
                (batch, seen),
                &mut state,
                (range, step, info(&window)),
            );
            let result = match prefetch {
                Some(next) => {
                    prefetched_seen = source.privacy().map_or(0, |p| p.privacy.erasures.version());
                    let fetch_next = async {
                        tokio::select! {
                            biased;
                            _ = cancel.cancelled() => None,
                            _ = claim.lost().cancelled() => None,
                            r = source.fetch(&next, &snapshot, info(&next)) => Some(r),
                        }
                    };
                    let (result, next_batch) = tokio::join!(commit, fetch_next);
                    prefetched = Some((next, next_batch));
                    result
                }
                None => commit.await,
            };
            match result {
                Ok(w) => {
                    committed += 1;
                    for r in &w.nulled {
                        *totals.nulled.entry(reason_label(&r.reason)).or_default() += 1;
                    }
                    totals.written += w.counts.written;
                    totals.unchanged += w.counts.unchanged;
                    totals.rejected += w.rejected.len() as u64;
                    new_rejects += w.new_rejects;
                    let from = run_start.unwrap_or(window.start);
                    progress(&Progress {
                        done: committed,
                        total: committed + usize::from(next.is_some()) + plan.remaining(),
                        covered: window.end - from,
                        span: run_end.unwrap_or(window.end) - from,
                        written: totals.written,
                        unchanged: totals.unchanged,
                        rejected: totals.rejected,
                        elapsed: started.elapsed(),
                    });
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
            current = next;
        }
        let after = source.requests();
        totals.requests = after.requests - before.requests;
        totals.retries = after.retries - before.retries;
        totals.fallbacks = after.fallbacks - before.fallbacks;
        let unavailable = match &error {
            Some(RunError::Source(SourceError::Unavailable { state, .. })) => Some(state.clone()),
            _ => None,
        };
        let outcome = match (&error, committed) {
            _ if unavailable.is_some() => Outcome::Unavailable,
            (Some(_), 0) => Outcome::Failed,
            (Some(_), _) => Outcome::Partial,
            (None, _) if new_rejects > 0 => Outcome::Partial,
            (None, _) => Outcome::Succeeded,
        };
        let report = RunReport {
            key: key.clone(),
            run_id: Some(run_id),
            outcome,
            totals,
            stopped: matches!(error, Some(RunError::Stopped)),
            unavailable,
            // The error becomes text here, in the report, and nowhere before.
            error: error.map(|e| e.to_string()),
            watermark: state.watermark,
        };
        self.finish(run_id, &report, started).await?;
        Ok(report)
    }

    /// Reads the erasures recorded since this process last looked; the version now known (0
    /// for a source without personal data).
    async fn refresh_erasures(&self, source: &Stream) -> Result<i64, WarehouseError> {
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
    async fn finish(
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

    /// [`Engine::commit_window`], reading the window again (at most three times) when an
    /// erasure was recorded after it was read, so that no erased person is written back.
    async fn commit_fresh(
        &self,
        claim: &Claim,
        source: &Stream,
        window: &Window,
        (mut batch, mut seen): (Batch, i64),
        state: &mut StreamState,
        (range, step, info): (Range, Option<i32>, RunInfo),
    ) -> Result<Written, RunError> {
        for _ in 0..3 {
            match self
                .commit_window(claim, source, window, batch, state, (range, step), seen)
                .await
            {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    tracing::info!(from = %window.start, to = %window.end, "an erasure was recorded while the window was read; reading it again");
                    seen = self.refresh_erasures(source).await?;
                    batch = source.fetch(window, state, info).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RunError::ErasuresKeptComing {
            from: window.start,
            to: window.end,
        })
    }

    /// Writes one window and moves the watermark, in one transaction (the one write path of
    /// a batch, [`super::write::write_batch`], fenced by the run's claim).
    /// `None` (nothing written) when an erasure newer than `seen` was recorded meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn commit_window(
        &self,
        claim: &Claim,
        source: &Stream,
        window: &Window,
        batch: Batch,
        state: &mut StreamState,
        (range, window_seconds): (Range, Option<i32>),
        seen: i64,
    ) -> Result<Option<Written>, WarehouseError> {
        let key = source.key();
        let mut conn = self.warehouse.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(WarehouseError::query("starting a window transaction"))?;
        if let Some(p) = source.privacy()
            && !crate::privacy::warehouse::prepare_write(&*tx, p.privacy, seen).await?
        {
            return Ok(None);
        }
        let t_write = Instant::now();
        // A backfill never moves the regular watermark, in either direction: forwards would
        // skip what lies between the old watermark and the backfilled range.
        let watermark = match range {
            Range::Regular => Some(window.end),
            Range::Backfill { .. } => None,
        };
        let change = StateChange::Window {
            claim,
            schema: self.warehouse.schema(),
            watermark,
            window_seconds,
        };
        let mut written = match write_batch(&tx, key, batch, source.privacy(), change).await {
            Ok(w) => w,
            Err(WriteError::Warehouse(e)) => return Err(e),
            Err(WriteError::Source(e)) => {
                unreachable!("a window's state is replaced, never updated: {e}")
            }
        };
        let write_ms = t_write.elapsed().as_secs_f64() * 1000.0;
        #[cfg(feature = "fault-points")]
        if self
            .faults
            .fail_before_commit
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(WarehouseError::FaultInjected {
                doing: "committing a window",
            });
        }
        let t_commit = Instant::now();
        tx.commit()
            .await
            .map_err(WarehouseError::query("committing a window"))?;
        tracing::debug!(
            write_ms,
            commit_ms = t_commit.elapsed().as_secs_f64() * 1000.0,
            records = written.records,
            "window written"
        );
        written.emit(key, &self.metrics);
        WindowCommitted {
            key,
            window,
            written: written.counts.written,
            unchanged: written.counts.unchanged,
            watermark: written.watermark,
        }
        .emit(&self.metrics);
        state.watermark = written.watermark;
        if let Some(s) = written.state.take() {
            state.state = s;
        }
        Ok(Some(written))
    }
}

/// Why a run stopped before its range was finished.
fn stopped(claim: &Claim, key: &StreamKey) -> RunError {
    if claim.lost().is_cancelled() {
        WarehouseError::LostClaim {
            stream: key.to_string(),
        }
        .into()
    } else {
        RunError::Stopped
    }
}
