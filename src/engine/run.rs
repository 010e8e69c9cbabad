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
use crate::model::{Outcome, RequestCounts, StreamKey, StreamState, Window};

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
use super::write::{Written, write_rows};
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
}

/// One run of one claimed stream: what it runs over, and how far it has got. Its steps are
/// its methods: [`Run::run`] takes the windows in turn (fetch, commit, report progress), the
/// next one fetched while the current one is written for a pipelined source.
struct Run<'a> {
    engine: &'a Engine,
    claim: &'a Claim,
    stream: &'a Stream,
    range: Range,
    cancel: &'a CancellationToken,
    run_id: i64,
    plan: Plan,
    /// Where the run's range starts and ends (as planned).
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    totals: RunTotals,
    /// Records set aside for the first time (a run that sets any aside is `partial`).
    new_rejects: u64,
    /// Windows committed.
    committed: usize,
    started: Instant,
    /// The account's request counts when the run began (its share goes into `sync_runs`).
    before: RequestCounts,
}

/// A window's batch, fetched ahead while the previous window was written, with the erasure
/// version known when its fetch began.
type Prefetched = (Window, Option<Result<Batch, SourceError>>, i64);

impl Run<'_> {
    /// Every window of the plan in turn, then the run's record; the state is the stream's as
    /// loaded, and follows each commit.
    async fn run(
        mut self,
        mut state: StreamState,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<RunReport, WarehouseError> {
        let error = self.windows(&mut state, progress).await.err();
        self.finish(state, error).await
    }

    /// The windows, until the plan is done or one fails.
    async fn windows(
        &mut self,
        state: &mut StreamState,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RunError> {
        let mut prefetched: Option<Prefetched> = None;
        let mut current = self.plan.next_window();
        while let Some(window) = current.take() {
            let (fetched, seen) = match prefetched.take() {
                Some((w, r, seen)) if w == window => (r, seen),
                // The erasures known when the window was read: one recorded meanwhile makes its
                // commit read it again (see `privacy::current_version`).
                _ => {
                    let seen = self.refreshed().await?;
                    (self.fetch(&window, state).await, seen)
                }
            };
            let Some(batch) = self.split_or_keep(&window, fetched)? else {
                current = self.plan.next_window();
                continue;
            };
            self.plan.feedback(batch.records());
            let next = self.plan.next_window();
            let written = match next.filter(|_| self.stream.pipelined()) {
                // The prefetch reads the state as it was before this window (pipelined sources
                // do not depend on it).
                Some(n) => {
                    let snapshot = state.clone();
                    let seen_next = self.erasures_known();
                    let fetch_next = self.fetch_detached(n, snapshot);
                    let (written, next_batch) =
                        tokio::join!(self.commit_fresh(&window, batch, seen, state), fetch_next);
                    prefetched = Some((n, next_batch, seen_next));
                    written
                }
                None => self.commit_fresh(&window, batch, seen, state).await,
            }?;
            self.committed(&window, written, next.is_some(), progress);
            current = next;
        }
        Ok(())
    }

    fn info(&self, w: &Window) -> RunInfo {
        RunInfo {
            first: Some(w.start) == self.start,
            backfill: matches!(self.range, Range::Backfill { .. }),
        }
    }

    /// Fetches `window`; `None` when the run is stopped or its claim lost meanwhile.
    async fn fetch(
        &self,
        window: &Window,
        state: &StreamState,
    ) -> Option<Result<Batch, SourceError>> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => None,
            _ = self.claim.lost().cancelled() => None,
            r = self.stream.fetch(window, state, self.info(window)) => Some(r),
        }
    }

    /// [`Run::fetch`] of the next window, borrowing only what does not change while the
    /// current window is committed.
    fn fetch_detached(
        &self,
        window: Window,
        state: StreamState,
    ) -> impl std::future::Future<Output = Option<Result<Batch, SourceError>>> + use<'_> {
        let (cancel, claim, stream, info) =
            (self.cancel, self.claim, self.stream, self.info(&window));
        async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                _ = claim.lost().cancelled() => None,
                r = stream.fetch(&window, &state, info) => Some(r),
            }
        }
    }

    /// The batch of a fetch; `None` when the window answered too much and the plan splits it;
    /// an error stops the run.
    fn split_or_keep(
        &mut self,
        window: &Window,
        fetched: Option<Result<Batch, SourceError>>,
    ) -> Result<Option<Batch>, RunError> {
        match fetched {
            None => Err(self.stopped()),
            Some(Err(SourceError::Http(e)))
                if crate::http::is_too_large(&e) && self.plan.retry_smaller(window) =>
            {
                tracing::info!(from = %window.start, to = %window.end, "window answered too much; splitting it");
                Ok(None)
            }
            Some(Err(SourceError::WindowTooFull { held, .. }))
                if self.plan.retry_smaller(window) =>
            {
                tracing::info!(from = %window.start, to = %window.end, held, "window holds too many records; splitting it");
                Ok(None)
            }
            Some(Err(e)) => Err(e.into()),
            Some(Ok(b)) => Ok(Some(b)),
        }
    }

    /// Why the run stopped before its range was finished.
    fn stopped(&self) -> RunError {
        if self.claim.lost().is_cancelled() {
            RunError::LostClaim {
                stream: self.stream.key().to_string(),
            }
        } else {
            RunError::Stopped
        }
    }

    /// The erasure version this process knows (0 for a source without personal data).
    fn erasures_known(&self) -> i64 {
        self.stream
            .privacy()
            .map_or(0, |p| p.privacy.erasures.version())
    }

    /// Reads the erasures recorded since this process last looked: the version now known.
    async fn refreshed(&self) -> Result<i64, RunError> {
        Ok(self.engine.refresh_erasures(self.stream).await?)
    }

    /// A committed window: its counts added to the run's, and the progress reported.
    fn committed(
        &mut self,
        window: &Window,
        w: Written,
        more: bool,
        progress: &(dyn Fn(&Progress) + Sync),
    ) {
        self.committed += 1;
        let totals = &mut self.totals;
        for r in &w.nulled {
            *totals.nulled.entry(reason_label(&r.reason)).or_default() += 1;
        }
        totals.written += w.counts.written;
        totals.unchanged += w.counts.unchanged;
        totals.rejected += w.rejected.len() as u64;
        self.new_rejects += w.new_rejects;
        let from = self.start.unwrap_or(window.start);
        progress(&Progress {
            done: self.committed,
            total: self.committed + usize::from(more) + self.plan.remaining(),
            covered: window.end - from,
            span: self.end.unwrap_or(window.end) - from,
            written: totals.written,
            unchanged: totals.unchanged,
            rejected: totals.rejected,
            elapsed: self.started.elapsed(),
        });
    }

    /// [`Run::commit`], reading the window again (at most three times) when an erasure was
    /// recorded after it was read, so that no erased person is written back.
    async fn commit_fresh(
        &self,
        window: &Window,
        mut batch: Batch,
        mut seen: i64,
        state: &mut StreamState,
    ) -> Result<Written, RunError> {
        for _ in 0..3 {
            match self.commit(window, batch, seen, state).await? {
                Some(done) => return Ok(done),
                None => {
                    tracing::info!(from = %window.start, to = %window.end, "an erasure was recorded while the window was read; reading it again");
                    seen = self.refreshed().await?;
                    batch = self.stream.fetch(window, state, self.info(window)).await?;
                }
            }
        }
        Err(RunError::ErasuresKeptComing {
            from: window.start,
            to: window.end,
        })
    }

    /// Writes one window and moves the watermark, in one transaction (the one write path of
    /// a batch, [`super::write::write_rows`], fenced by the run's claim).
    /// `None` (nothing written) when an erasure newer than `seen` was recorded meanwhile.
    async fn commit(
        &self,
        window: &Window,
        batch: Batch,
        seen: i64,
        state: &mut StreamState,
    ) -> Result<Option<Written>, RunError> {
        let (key, engine) = (self.stream.key(), self.engine);
        let mut conn = engine.warehouse.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(WarehouseError::query("starting a window transaction"))?;
        if let Some(p) = self.stream.privacy()
            && !crate::privacy::warehouse::prepare_write(&*tx, p.privacy, seen).await?
        {
            return Ok(None);
        }
        let t_write = Instant::now();
        let rows = write_rows(&tx, key, batch, self.stream.privacy()).await?;
        // Fenced: only while the stream is still this process's (its row stays locked until
        // the commit).
        if !self.claim.holds(&*tx, engine.warehouse.schema()).await? {
            return Err(RunError::LostClaim {
                stream: key.to_string(),
            });
        }
        // A backfill never moves the regular watermark, in either direction: forwards would
        // skip what lies between the old watermark and the backfilled range.
        let watermark = match self.range {
            Range::Regular => Some(window.end),
            Range::Backfill { .. } => None,
        };
        let step = self
            .plan
            .step()
            .map(|s| s.num_seconds().clamp(1, i64::from(i32::MAX)) as i32);
        let mut written = rows.save(&tx, key, watermark, step).await?;
        let write_ms = t_write.elapsed().as_secs_f64() * 1000.0;
        #[cfg(feature = "fault-points")]
        if engine
            .faults
            .fail_before_commit
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(WarehouseError::FaultInjected {
                doing: "committing a window",
            }
            .into());
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
        written.emit(key, &engine.metrics);
        WindowCommitted {
            key,
            window,
            written: written.counts.written,
            unchanged: written.counts.unchanged,
            watermark: written.watermark,
        }
        .emit(&engine.metrics);
        state.watermark = written.watermark;
        if let Some(s) = written.state.take() {
            state.state = s;
        }
        Ok(Some(written))
    }

    /// The run's record: its outcome from how it ended, written to `sync_runs` and reported.
    async fn finish(
        self,
        state: StreamState,
        error: Option<RunError>,
    ) -> Result<RunReport, WarehouseError> {
        let mut totals = self.totals;
        let after = self.stream.requests();
        totals.requests = after.requests - self.before.requests;
        totals.retries = after.retries - self.before.retries;
        totals.fallbacks = after.fallbacks - self.before.fallbacks;
        let unavailable = match &error {
            Some(RunError::Source(SourceError::Unavailable { state, .. })) => Some(state.clone()),
            _ => None,
        };
        let outcome = match (&error, self.committed) {
            _ if unavailable.is_some() => Outcome::Unavailable,
            (Some(_), 0) => Outcome::Failed,
            (Some(_), _) => Outcome::Partial,
            (None, _) if self.new_rejects > 0 => Outcome::Partial,
            (None, _) => Outcome::Succeeded,
        };
        let report = RunReport {
            key: self.stream.key().clone(),
            run_id: Some(self.run_id),
            outcome,
            totals,
            stopped: matches!(error, Some(RunError::Stopped)),
            unavailable,
            // The error becomes text here, in the report, and nowhere before: a source's with
            // the stream named once.
            error: error.map(|e| match e {
                RunError::Source(e) => e.of(self.stream.key()),
                e => e.to_string(),
            }),
            watermark: state.watermark,
        };
        self.engine
            .finish(self.run_id, &report, self.started)
            .await?;
        Ok(report)
    }
}
