//! The daemon's loops: one task per stream, each sleeping until its next cron instant, then
//! waiting its turn for one of the engine's slots (`engine.max_concurrent_streams`).
//!
//! - **Order.** Slots are handed out first come, first served (tokio's semaphore is fair): a
//!   stream that became due earlier runs earlier, and none starves when a hundred accounts
//!   share one schedule.
//! - **No double run.** After a run (or a skip) the next instant is computed from the clock, so
//!   instants that passed while the stream waited or ran are not made up for.
//! - **Replicas.** A stream takes its advisory lock only once it holds a slot, so a replica
//!   never holds a stream's lock while that stream waits in its own queue; and a run is skipped
//!   when another replica already ran the stream for the same instant.
//! - **Back-off.** A stream whose runs failed [`BACKOFF_AFTER`] times in a row skips the
//!   instants of a growing pause ([`backoff`]: 2, 4, 8 ... periods, at most an hour), so a
//!   tenant that keeps failing does not take a slot at every instant; a run that succeeds (or
//!   makes progress) resets it. Metrics `sessionsync_stream_consecutive_failures` and
//!   `sessionsync_stream_backoff_until_timestamp_seconds`; `status` shows the same.
//! - **Freshness.** Instants that passed while a stream waited or ran are counted
//!   (`sessionsync_schedule_missed_instants_total`), and how late each run started
//!   (`sessionsync_schedule_start_delay_seconds`): a daemon that cannot keep up shows there.
//! - **Shutdown.** Waiting streams leave the queue at once; running ones stop at their next
//!   fetch or window boundary.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::run::Engine;
use super::source::Stream;
use crate::events::{FailureStreak, InstantsMissed, RunStarted, StreamDequeued, StreamQueued};
use crate::model::{Outcome, StreamKey};
use crate::settings::Schedule;
use crate::telemetry::Metrics;

/// The engine's run slots, shared by every stream of a process.
#[derive(Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    limit: usize,
    metrics: Arc<Metrics>,
}

/// A held slot; running streams are counted while it lives.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        crate::events::SlotHeld { held: false }.emit(&self.metrics);
    }
}

impl Slots {
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        let limit = limit.max(1);
        Slots {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
            metrics,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits for a slot in first-come order; `None` if `shutdown` comes first.
    pub async fn acquire(&self, key: &StreamKey, shutdown: &CancellationToken) -> Option<Slot> {
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = StreamQueued {
                    key,
                    limit: self.limit,
                };
                queued.emit(&self.metrics);
                let waited = std::time::Instant::now();
                let got = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => None,
                    p = self.semaphore.clone().acquire_owned() => p.ok(),
                };
                StreamDequeued {
                    key,
                    waited: waited.elapsed(),
                }
                .emit(&self.metrics);
                got?
            }
        };
        crate::events::SlotHeld { held: true }.emit(&self.metrics);
        Some(Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }
}

/// Runs every stream on its schedule, at most `slots.limit()` at once, until `shutdown` is
/// cancelled; then returns once every stream has finished (a run in progress stops at its next
/// window boundary or fetch).
pub async fn run_scheduler(
    engine: Arc<Engine>,
    sources: Vec<Arc<Stream>>,
    slots: Slots,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    for source in sources {
        tasks.spawn(stream_loop(
            engine.clone(),
            source,
            slots.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// How far before its instant another replica's run of the same stream still counts as this
/// instant's: clocks of replicas and the database differ a little, never by half a period.
fn replica_tolerance(due: DateTime<Utc>, next: Option<DateTime<Utc>>) -> TimeDelta {
    let half_period = next.map_or(TimeDelta::seconds(5), |n| (n - due) / 2);
    half_period.min(TimeDelta::seconds(5))
}

/// Failed runs in a row after which a stream backs off.
pub const BACKOFF_AFTER: u32 = 2;

/// The longest back-off (or one period of a schedule longer than that).
pub const BACKOFF_CAP: TimeDelta = TimeDelta::hours(1);

/// After `failures` failed runs in a row, how long a stream on a schedule of `period` waits
/// before its next run: nothing below [`BACKOFF_AFTER`], then the period doubled per failure
/// (2, 4, 8 ... periods), at most [`BACKOFF_CAP`].
pub fn backoff(failures: u32, period: TimeDelta) -> Option<TimeDelta> {
    if failures < BACKOFF_AFTER {
        return None;
    }
    let factor = 1i32 << (failures - 1).min(20);
    let cap = BACKOFF_CAP.max(period);
    Some(period.checked_mul(factor).unwrap_or(cap).min(cap))
}

/// The schedule's period around `at`: the time between its next two instants.
pub fn period(schedule: &Schedule, at: DateTime<Utc>) -> TimeDelta {
    schedule.period(at)
}

/// Instants of `schedule` in `(after, until]` (counted up to 10,000).
pub fn instants_between(schedule: &Schedule, after: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    let mut n = 0;
    let mut t = after;
    while n < 10_000 {
        match schedule.next_after(t) {
            Some(next) if next <= until => {
                n += 1;
                t = next;
            }
            _ => break,
        }
    }
    n
}

/// How a stream stands against its schedule, as `status` shows it (from `sync_runs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Instants that passed since its latest run started without a run of their own (the
    /// instants of a back-off not counted): above 0, the daemon is not keeping up.
    pub missed: u64,
    /// Until when it backs off after failing several runs in a row.
    pub backoff_until: Option<DateTime<Utc>>,
}

/// The [`Freshness`] at `now` of a stream on `schedule` whose latest run started at
/// `last_started` and whose latest finished runs failed `failures` times in a row, the last of
/// them finishing at `last_finished`. An instant counts as missed once its run is a minute (or
/// half a period) late.
pub fn freshness(
    schedule: &Schedule,
    last_started: DateTime<Utc>,
    last_finished: Option<DateTime<Utc>>,
    failures: u32,
    now: DateTime<Utc>,
) -> Freshness {
    let p = period(schedule, last_started);
    let backoff_until = last_finished
        .zip(backoff(failures, p))
        .map(|(at, pause)| at + pause);
    let grace = (p / 2).min(TimeDelta::minutes(1));
    let from = (last_started + TimeDelta::seconds(5)).max(backoff_until.unwrap_or(last_started));
    let missed = instants_between(schedule, from, now - grace);
    Freshness {
        missed,
        backoff_until: backoff_until.filter(|u| *u > now),
    }
}

async fn stream_loop(
    engine: Arc<Engine>,
    source: Arc<Stream>,
    slots: Slots,
    shutdown: CancellationToken,
) {
    let key = source.key().clone();
    let schedule = &source.settings().schedule;
    let metrics = engine.metrics().clone();
    let mut failures = 0u32;
    let mut not_before: Option<DateTime<Utc>> = None;
    loop {
        let now = Utc::now();
        // A stream that keeps failing skips the instants of its back-off.
        let from = not_before.map_or(now, |nb| nb.max(now));
        let Some(due) = schedule.next_after(from) else {
            tracing::error!(stream = %key, schedule = schedule.as_str(), "the schedule has no future instant; this stream will not run");
            return;
        };
        tracing::debug!(stream = %key, next = %due, "next run scheduled");
        let wait = (due - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(slot) = slots.acquire(&key, &shutdown).await else {
            return;
        };
        RunStarted {
            key: &key,
            delay: (Utc::now() - due).to_std().unwrap_or_default(),
        }
        .emit(&metrics);
        let tolerance = replica_tolerance(due, schedule.next_after(due));
        let report = match engine.run_due(&source, due, tolerance, &shutdown).await {
            Ok(report) => Some(report),
            Err(e) => {
                tracing::error!(stream = %key, error = %e, "run could not be recorded; the next scheduled run retries");
                None
            }
        };
        drop(slot);
        // A run that shutdown stopped says nothing of the vendor; one that ended on its own
        // is counted even when shutdown came meanwhile, so that the metrics tell its outcome.
        match &report {
            Some(r) if r.stopped => return,
            None if shutdown.is_cancelled() => return,
            _ => {}
        }
        let outcome = report.map(|r| r.outcome);
        let finished = Utc::now();
        match outcome {
            Some(Outcome::Succeeded | Outcome::Partial) => failures = 0,
            // A tenant the vendor reports down is expected (maintenance): no failure.
            Some(Outcome::Skipped | Outcome::Unavailable) => {}
            Some(Outcome::Failed) | None => failures += 1,
        }
        not_before = backoff(failures, period(schedule, due)).map(|pause| finished + pause);
        FailureStreak {
            key: &key,
            failures,
            until: not_before,
        }
        .emit(&metrics);
        let missed = instants_between(schedule, due, finished);
        if missed > 0 {
            InstantsMissed {
                key: &key,
                missed,
                since: due,
            }
            .emit(&metrics);
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_from_the_second_up_to_an_hour() {
        let five = TimeDelta::minutes(5);
        assert_eq!(backoff(0, five), None);
        assert_eq!(backoff(1, five), None);
        assert_eq!(backoff(2, five), Some(TimeDelta::minutes(10)));
        assert_eq!(backoff(3, five), Some(TimeDelta::minutes(20)));
        assert_eq!(backoff(4, five), Some(TimeDelta::minutes(40)));
        assert_eq!(backoff(5, five), Some(TimeDelta::hours(1)));
        assert_eq!(backoff(500, five), Some(TimeDelta::hours(1)));
        let daily = TimeDelta::days(1);
        assert_eq!(backoff(3, daily), Some(daily), "never below one period");
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let at: DateTime<Utc> = "2024-01-01T00:02:00Z".parse().unwrap();
        assert_eq!(period(&s, at), five);
        assert_eq!(instants_between(&s, at, at + TimeDelta::minutes(13)), 3);
        assert_eq!(instants_between(&s, at, at + TimeDelta::minutes(2)), 0);

        // On time; then a run still going 12 minutes later has missed two instants.
        let started: DateTime<Utc> = "2024-01-01T00:05:00.300Z".parse().unwrap();
        let on_time = freshness(&s, started, None, 0, started + TimeDelta::minutes(4));
        assert_eq!(on_time.missed, 0);
        assert_eq!(
            freshness(&s, started, None, 0, started + TimeDelta::seconds(310)).missed,
            0,
            "the next run has a minute's grace"
        );
        assert_eq!(
            freshness(&s, started, None, 0, started + TimeDelta::minutes(12)).missed,
            2
        );
        // Backing off: the skipped instants are not missed ones.
        let finished = started + TimeDelta::seconds(20);
        let f = freshness(
            &s,
            started,
            Some(finished),
            3,
            started + TimeDelta::minutes(12),
        );
        assert_eq!(f.backoff_until, Some(finished + TimeDelta::minutes(20)));
        assert_eq!(f.missed, 0);
    }

    #[test]
    fn the_replica_tolerance_is_below_half_a_period() {
        let due: DateTime<Utc> = "2024-01-01T00:05:00Z".parse().unwrap();
        assert_eq!(
            replica_tolerance(due, Some(due + TimeDelta::minutes(5))),
            TimeDelta::seconds(5)
        );
        assert_eq!(
            replica_tolerance(due, Some(due + TimeDelta::seconds(2))),
            TimeDelta::seconds(1)
        );
        assert_eq!(replica_tolerance(due, None), TimeDelta::seconds(5));
    }

    #[tokio::test]
    async fn slots_are_served_first_come_first_served_and_shutdown_empties_the_queue() {
        let metrics = Arc::new(Metrics::new());
        let slots = Slots::new(1, metrics.clone());
        let shutdown = CancellationToken::new();
        let key = |i: usize| StreamKey {
            source: "test",
            account: format!("a{i}"),
            stream: "s",
        };
        let first = slots.acquire(&key(0), &shutdown).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 1..=5 {
            let (slots, order, shutdown) = (slots.clone(), order.clone(), shutdown.clone());
            waiting.push(tokio::spawn(async move {
                let slot = slots.acquire(&key(i), &shutdown).await;
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(slot);
            }));
            // Each becomes due after the previous one.
            while metrics.streams_waiting.get() < i as i64 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(metrics.streams_waiting.get(), 5);
        assert_eq!(metrics.streams_running.get(), 1);
        drop(first);
        for w in waiting {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(metrics.streams_waiting.get(), 0);
        assert_eq!(metrics.streams_running.get(), 0);

        // Shutdown: a waiting stream leaves the queue without a slot.
        let held = slots.acquire(&key(0), &shutdown).await.unwrap();
        let (s2, sd) = (slots.clone(), shutdown.clone());
        let waiter = tokio::spawn(async move { s2.acquire(&key(9), &sd).await.is_none() });
        while metrics.streams_waiting.get() < 1 {
            tokio::task::yield_now().await;
        }
        shutdown.cancel();
        assert!(waiter.await.unwrap());
        assert_eq!(metrics.streams_waiting.get(), 0);
        drop(held);
    }
}
