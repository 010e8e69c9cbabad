//! Acts on recorded events: per account, claim the due events (`FOR UPDATE SKIP LOCKED`, so
//! replicas share the inbox without reading an event twice at once), re-read each named
//! session once however many events name it, and in the claiming transaction write the
//! sessions (the source's own rows code), set aside what could not be read, update the
//! stream's state and delete the events. The watermark never moves; polling goes on.
//!
//! A vendor API that fails leaves the events in the inbox, tried again after a growing pause;
//! after [`MAX_ATTEMPTS`] the sessions are set aside in `rejected_records` (polling still
//! reconciles them) so that nothing is retried forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::inbox::{self, Claimed};
use super::{CONCURRENT_DRAINS, Endpoint, Endpoints};
use crate::engine::push::{self, PushError};
use crate::engine::{Rejected, SourceError};
use crate::events::{WebhookApplied, WebhookFailed};
use crate::telemetry::Metrics;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// Failed attempts after which an account's claimed events are set aside.
pub const MAX_ATTEMPTS: i32 = 8;

/// How often an idle account looks at the inbox anyway (events recorded by another replica,
/// or due again after a failure). Events this process records wake it at once.
const IDLE_LOOK: Duration = Duration::from_secs(3);

/// The pause after a failed attempt: 1 s, doubling, at most a minute.
fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 6) as u32).min(Duration::from_secs(60))
}

/// A failed attempt, to report once it is recorded.
struct Failure {
    events: usize,
    error: String,
    retry_in: Duration,
    gave_up: bool,
}

/// What one drain did.
enum Drained {
    Nothing,
    Applied,
    Failed,
}

/// Runs one worker per endpoint until `shutdown`.
pub async fn run(
    endpoints: Endpoints,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let drains = Arc::new(Semaphore::new(CONCURRENT_DRAINS));
    let deleted = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for ep in endpoints.iter() {
        let w = Worker {
            endpoint: ep.clone(),
            warehouse: warehouse.clone(),
            metrics: metrics.clone(),
            drains: drains.clone(),
            deleted: deleted.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.spawn(async move { w.run(shutdown).await });
    }
    while tasks.join_next().await.is_some() {}
}

struct Worker {
    endpoint: Arc<Endpoint>,
    warehouse: Warehouse,
    metrics: Arc<Metrics>,
    drains: Arc<Semaphore>,
    deleted: Arc<AtomicU64>,
}

impl Worker {
    async fn run(&self, shutdown: CancellationToken) {
        loop {
            // Drain while there is something due; a failure waits for the next look.
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                let Ok(_turn) = self.drains.acquire().await else {
                    return;
                };
                match self.drain().await {
                    Ok(Drained::Applied) => continue,
                    Ok(Drained::Nothing | Drained::Failed) => break,
                    Err(e) => {
                        tracing::warn!(stream = %self.endpoint.source.key(), error = %e, "cannot act on webhook events now (warehouse); trying again shortly");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.endpoint.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_LOOK) => {}
            }
        }
    }

    /// Claims the account's due events and acts on them, in one transaction.
    async fn drain(&self) -> Result<Drained, WarehouseError> {
        let source = &self.endpoint.source;
        let Some(hook) = source.webhook() else {
            return Ok(Drained::Nothing);
        };
        let key = source.key();
        let mut conn = self.warehouse.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(WarehouseError::query("starting a webhook transaction"))?;
        let claimed = inbox::claim(&*tx, key.source, &key.account)
            .await
            .map_err(WarehouseError::query("claiming webhook events"))?;
        if claimed.is_empty() {
            return Ok(Drained::Nothing);
        }
        let mut ids: Vec<i64> = claimed.iter().map(|c| c.session_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let state = warehouse::load_state(&*tx, key).await?;
        // The sessions are read with the erasures known now; one recorded meanwhile makes them
        // read again, under the erasure lock (privacy::erase::prepare_write).
        let privacy = source.privacy();
        let seen = match privacy {
            Some(p) => p
                .privacy
                .erasures
                .refresh(&*tx)
                .await
                .map_err(WarehouseError::query("reading the recorded erasures"))?,
            None => 0,
        };
        let mut locked = false;
        let pushed = loop {
            let pushed = match hook.fetch_ids(&ids, &state).await {
                Ok(p) => p,
                Err(e) => {
                    let failed = self.fail(&tx, &claimed, &ids, &e).await?;
                    tx.commit()
                        .await
                        .map_err(WarehouseError::query("committing a failed webhook attempt"))?;
                    self.report(&failed);
                    return Ok(Drained::Failed);
                }
            };
            match privacy {
                Some(p) if !locked => {
                    locked = true;
                    if crate::warehouse::privacy::prepare_write(&*tx, p.privacy, seen).await? {
                        break pushed;
                    }
                    p.privacy
                        .erasures
                        .refresh(&*tx)
                        .await
                        .map_err(WarehouseError::query("reading the recorded erasures"))?;
                }
                _ => break pushed,
            }
        };
        let written = match push::write_pushed(&tx, key, pushed, privacy).await {
            Ok(w) => w,
            Err(PushError::Warehouse(e)) => return Err(e),
            Err(PushError::Source(e)) => {
                // The state changed under us into something unreadable: let the transaction
                // go and count the attempt on its own.
                drop(tx);
                let tx = conn
                    .transaction()
                    .await
                    .map_err(WarehouseError::query("starting a webhook transaction"))?;
                let again = inbox::claim(&*tx, key.source, &key.account)
                    .await
                    .map_err(WarehouseError::query("claiming webhook events"))?;
                let failed = self.fail(&tx, &again, &ids, &e).await?;
                tx.commit()
                    .await
                    .map_err(WarehouseError::query("committing a failed webhook attempt"))?;
                self.report(&failed);
                return Ok(Drained::Failed);
            }
        };
        let removed = inbox::delete(&*tx, &claimed)
            .await
            .map_err(WarehouseError::query("deleting applied webhook events"))?;
        tx.commit()
            .await
            .map_err(WarehouseError::query("committing webhook events"))?;
        let now = Utc::now();
        let lags: Vec<f64> = claimed
            .iter()
            .map(|c| (now - c.received_at).as_seconds_f64().max(0.0))
            .collect();
        written.emit(key, &self.metrics);
        WebhookApplied {
            key,
            events: claimed.len(),
            sessions: ids.len(),
            written: written.counts.written,
            unchanged: written.counts.unchanged,
            lags: &lags,
        }
        .emit(&self.metrics);
        self.vacuum_now_and_then(removed).await;
        Ok(Drained::Applied)
    }

    /// Counts a failed attempt on `claimed` (inside `tx`); after the last one, sets their
    /// sessions aside in `rejected_records` and deletes them.
    async fn fail(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        claimed: &[Claimed],
        ids: &[i64],
        error: &SourceError,
    ) -> Result<Failure, WarehouseError> {
        let attempts = claimed.iter().map(|c| c.attempts).max().unwrap_or(0) + 1;
        let text = error.to_string();
        let key = self.endpoint.source.key();
        let gave_up = attempts >= MAX_ATTEMPTS;
        let retry_in = backoff(attempts);
        if gave_up {
            let rejects: Vec<Rejected> = ids
                .iter()
                .map(|id| Rejected {
                    record_key: id.to_string(),
                    reason: format!("webhook_failed: {MAX_ATTEMPTS} attempts to read it after webhook events failed; last: {text}"),
                    payload: serde_json::json!({ "id": id }),
                })
                .collect();
            warehouse::put_rejects(&**tx, key, &rejects).await?;
            inbox::delete(&**tx, claimed)
                .await
                .map_err(WarehouseError::query("deleting webhook events given up on"))?;
        } else {
            let at = Utc::now() + TimeDelta::from_std(retry_in).unwrap_or(TimeDelta::seconds(60));
            inbox::failed(&**tx, claimed, at, &text)
                .await
                .map_err(WarehouseError::query("recording a failed webhook attempt"))?;
        }
        Ok(Failure {
            events: claimed.len(),
            error: text,
            retry_in,
            gave_up,
        })
    }

    fn report(&self, f: &Failure) {
        WebhookFailed {
            key: self.endpoint.source.key(),
            events: f.events,
            error: &f.error,
            retry_in: f.retry_in,
            gave_up: f.gave_up,
        }
        .emit(&self.metrics);
    }

    /// With autovacuum off, the deleted rows of a busy inbox would pile up in its heap: after
    /// every [`inbox::VACUUM_EVERY`] deletions (across accounts) it is vacuumed.
    async fn vacuum_now_and_then(&self, removed: u64) {
        let before = self.deleted.fetch_add(removed, Ordering::Relaxed);
        if before / inbox::VACUUM_EVERY == (before + removed) / inbox::VACUUM_EVERY {
            return;
        }
        let result = async {
            let c = self.warehouse.conn().await?;
            c.batch_execute("VACUUM webhook_events")
                .await
                .map_err(WarehouseError::query("vacuuming webhook_events"))
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not vacuum webhook_events; autovacuum will");
        }
    }
}
