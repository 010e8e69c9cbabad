//! The steps of one run of one claimed stream ([`Run`]): the windows in turn, each fetched,
//! committed with the watermark in one transaction, and reported; the run's record at the end.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, RunInfo, SourceError};
use super::claims::Claim;
use super::outcome::{Progress, RunError, RunReport};
use super::plan::Plan;
use super::plan::Range;
use super::source::Stream;
use super::write::{Written, write_rows};
use crate::events::{RunFinished, WindowCommitted, reason_label};
use crate::model::{Outcome, RequestCounts, RunTotals, StreamState, Window};
use crate::telemetry::Metrics;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// One run of one claimed stream: what it runs over, and how far it has got. Its steps are
/// its methods: [`Run::run`] takes the windows in turn (fetch, commit, report progress), the
/// next one fetched while the current one is written for a pipelined source.
pub(super) struct Run<'a> {
    pub(super) shared: &'a Shared,
    pub(super) claim: &'a Claim,
    pub(super) stream: &'a Stream,
    pub(super) range: Range,
    pub(super) cancel: &'a CancellationToken,
    pub(super) run_id: i64,
    pub(super) plan: Plan,
    /// Where the run's range starts and ends (as planned).
    pub(super) start: Option<DateTime<Utc>>,
    pub(super) end: Option<DateTime<Utc>>,
    pub(super) totals: RunTotals,
    /// Records set aside for the first time (a run that sets any aside is `partial`).
    pub(super) new_rejects: u64,
    /// Windows committed.
    pub(super) committed: usize,
    pub(super) started: Instant,
    /// The account's request counts when the run began (its share goes into `sync_runs`).
    pub(super) before: RequestCounts,
}

/// A window's batch, fetched ahead while the previous window was written, with the erasure
/// version known when its fetch began.
type Prefetched = (Window, Option<Result<Batch, SourceError>>, i64);

impl Run<'_> {
    /// Every window of the plan in turn, then the run's record; the state is the stream's as
    /// loaded, and follows each commit.
    pub(super) async fn run(
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
                    let (written, next_batch) = tokio::join!(
                        self.commit_fresh(&window, batch, seen, state),
                        self.fetch(&n, &snapshot)
                    );
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
        Ok(self.shared.refresh_erasures(self.stream).await?)
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
        let (key, shared) = (self.stream.key(), self.shared);
        let mut conn = shared.warehouse.conn().await?;
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
        if !self.claim.holds(&*tx, shared.warehouse.schema()).await? {
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
        if shared
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
        written.emit(key, &shared.metrics);
        WindowCommitted {
            key,
            window,
            written: written.counts.written,
            unchanged: written.counts.unchanged,
            watermark: written.watermark,
        }
        .emit(&shared.metrics);
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
                RunError::Source(e) if e.read_again() => format!(
                    "{}; nothing of the failed window was written, and the next run reads it again",
                    e.of(self.stream.key())
                ),
                RunError::Source(e) => e.of(self.stream.key()),
                e => e.to_string(),
            }),
            watermark: state.watermark,
        };
        self.shared
            .finish(self.run_id, &report, self.started)
            .await?;
        Ok(report)
    }
}

/// Fault points for tests of the engine's guarantees, compiled only with the cargo feature
/// `fault-points` (the test command enables it; release builds have none).
#[cfg(feature = "fault-points")]
#[derive(Debug, Default)]
pub struct FaultPoints {
    /// Fail each window after its rows are written and before its transaction commits.
    pub fail_before_commit: std::sync::atomic::AtomicBool,
}

/// What every run of an engine shares: the warehouse, the metrics, the lock that lets one run
/// at a time analyze the tables it changed, and (tests only) the fault points.
pub(super) struct Shared {
    pub(super) warehouse: Warehouse,
    pub(super) metrics: Arc<Metrics>,
    /// Held while one run analyzes the changed tables: a hundred runs finishing together
    /// analyze once, not a hundred times in a row (ANALYZE of one table waits for another).
    pub(super) analyzing: tokio::sync::Mutex<()>,
    #[cfg(feature = "fault-points")]
    pub(super) faults: Arc<FaultPoints>,
}

impl Shared {
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
