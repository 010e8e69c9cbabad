//! One run of one stream (see the module doc of `engine`).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::claims::{Claim, Claims};
pub use super::outcome::{Progress, RunError, RunReport};
use super::plan::Plan;
pub use super::plan::Range;
use super::source::Stream;
#[cfg(feature = "fault-points")]
pub use super::steps::FaultPoints;
use super::steps::{Run, Shared};
use crate::model::{Outcome, RunTotals};
use crate::telemetry::Metrics;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// Runs streams: each run claims its stream, then takes its windows in turn (`steps.rs`).
pub struct Engine {
    pub(super) shared: Shared,
    pub(super) claims: Claims,
}

impl Engine {
    pub fn new(warehouse: Warehouse, metrics: Arc<Metrics>) -> Self {
        Engine {
            claims: Claims::new(warehouse.clone()),
            shared: Shared {
                analyzing: tokio::sync::Mutex::new(()),
                warehouse,
                metrics,
                #[cfg(feature = "fault-points")]
                faults: Arc::default(),
            },
        }
    }

    /// The engine's fault points (tests only).
    #[cfg(feature = "fault-points")]
    pub fn faults(&self) -> &FaultPoints {
        &self.shared.faults
    }

    pub fn warehouse(&self) -> &Warehouse {
        &self.shared.warehouse
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
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
            let conn = self.shared.warehouse.conn().await?;
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
            crate::events::RunClaimed { key, run_id }.emit(&self.shared.metrics);
            let state = warehouse::load_state(&**conn, key).await?;
            crate::events::StreamExpectation {
                key,
                // While it has stored nothing, it has been silent since its `start`.
                newest: state.newest.or(Some(source.settings().start)),
                expect_data_within: source.settings().expect_data_within,
            }
            .emit(&self.shared.metrics);
            (run_id, state)
        };
        // Every line logged during the run carries its id.
        let span = tracing::info_span!("run", run_id, source = key.source, account = %key.account, stream = key.stream);
        let (plan, start, end) = Plan::for_run(source, range, &state);
        let run = Run {
            shared: &self.shared,
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
}
