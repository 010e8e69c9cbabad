//! The daemon's loops: one task per stream, each sleeping until its next cron instant.

use std::sync::Arc;

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Engine, Source};

/// Runs every stream on its schedule until `shutdown` is cancelled, then returns once every
/// stream has finished (a run in progress stops at its next window boundary or fetch).
pub async fn run_scheduler(
    engine: Arc<Engine>,
    sources: Vec<Arc<dyn Source>>,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    for source in sources {
        tasks.spawn(stream_loop(engine.clone(), source, shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

async fn stream_loop(engine: Arc<Engine>, source: Arc<dyn Source>, shutdown: CancellationToken) {
    let key = source.key().clone();
    loop {
        let now = Utc::now();
        let Some(next) = source.settings().schedule.next_after(now) else {
            tracing::error!(stream = %key, schedule = source.settings().schedule.as_str(), "the schedule has no future instant; this stream will not run");
            return;
        };
        tracing::debug!(stream = %key, next = %next, "next run scheduled");
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        if let Err(e) = engine.run_once(&*source, &shutdown).await {
            tracing::error!(stream = %key, error = %e, "run could not be recorded; the next scheduled run retries");
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}
