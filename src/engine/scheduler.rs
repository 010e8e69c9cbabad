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
//! - **Shutdown.** Waiting streams leave the queue at once; running ones stop at their next
//!   fetch or window boundary.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Engine, Source, StreamKey};
use crate::events::{StreamDequeued, StreamQueued};
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
        self.metrics.streams_running.dec();
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
        self.metrics.streams_running.inc();
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
    sources: Vec<Arc<dyn Source>>,
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

async fn stream_loop(
    engine: Arc<Engine>,
    source: Arc<dyn Source>,
    slots: Slots,
    shutdown: CancellationToken,
) {
    let key = source.key().clone();
    let schedule = &source.settings().schedule;
    loop {
        let now = Utc::now();
        let Some(due) = schedule.next_after(now) else {
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
        let tolerance = replica_tolerance(due, schedule.next_after(due));
        if let Err(e) = engine.run_due(&*source, due, tolerance, &shutdown).await {
            tracing::error!(stream = %key, error = %e, "run could not be recorded; the next scheduled run retries");
        }
        drop(slot);
        if shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
