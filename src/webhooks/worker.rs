//! Acts on recorded events: per account, claim the due events in a short transaction
//! (`FOR UPDATE SKIP LOCKED`, then a lease of [`LEASE`], renewed while it lasts, so replicas share the inbox without
//! reading an event twice at once), re-read each named session once however many events name
//! it **holding neither a transaction nor a connection** (a tenant whose API hangs holds
//! nothing another account needs: every account has its own loop), then in one transaction
//! write the sessions (the source's own rows code), set aside what could not be read, update
//! the stream's state and delete the events. The watermark never moves; polling goes on.
//!
//! A vendor API that fails leaves the events in the inbox, tried again after a growing pause;
//! after [`MAX_ATTEMPTS`] the sessions are set aside in `rejected_records` (polling still
//! reconciles them) so that nothing is retried forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use super::inbox::{self, Claimed};
use super::{Endpoint, Endpoints};
use crate::engine::webhook;
use crate::engine::webhook::PushError;
use crate::engine::{Rejected, SourceError};
use crate::events::{WebhookApplied, WebhookFailed};
use crate::model::SessionId;
use crate::telemetry::Metrics;
use crate::warehouse::{self, Warehouse, WarehouseError};

/// Failed attempts after which an account's claimed events are set aside.
pub const MAX_ATTEMPTS: i32 = 8;

/// How long claimed events are an account's alone while their sessions are read; renewed
/// every [`RENEW_EVERY`] while the read lasts (rate ceiling, retries), so a process that dies
/// meanwhile leaves them due again within this time.
pub const LEASE: Duration = Duration::from_secs(30);

/// How often a lease is renewed while its sessions are read.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// How often an idle account looks at the inbox anyway (events recorded by another replica,
/// or due again after a failure). Events this process records wake it at once.
const IDLE_LOOK: Duration = Duration::from_secs(3);

/// The pause after a failed attempt: 1 s, doubling, at most a minute.
fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 6) as u32).min(Duration::from_secs(60))
}

/// The end of a lease taken or renewed now.
fn lease_end() -> chrono::DateTime<Utc> {
    Utc::now() + TimeDelta::from_std(LEASE).unwrap_or(TimeDelta::seconds(30))
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
    let deleted = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for ep in endpoints.iter() {
        let w = Worker {
            endpoint: ep.clone(),
            warehouse: warehouse.clone(),
            metrics: metrics.clone(),
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
                match self.drain(&shutdown).await {
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

    /// Claims the account's due events (a short transaction), reads their sessions from the
    /// vendor holding no connection, then writes them and deletes the events in one
    /// transaction.
    async fn drain(&self, shutdown: &CancellationToken) -> Result<Drained, WarehouseError> {
        let source = &self.endpoint.source;
        if source.webhook().is_none() {
            return Ok(Drained::Nothing);
        }
        let key = source.key();
        let privacy = source.privacy();
        let (mut claimed, state, mut seen) = {
            let mut conn = self.warehouse.conn().await?;
            let tx = conn
                .transaction()
                .await
                .map_err(WarehouseError::query("starting a webhook transaction"))?;
            let claimed = inbox::claim(&*tx, key.source, &key.account, lease_end())
                .await
                .map_err(WarehouseError::query("claiming webhook events"))?;
            if claimed.is_empty() {
                return Ok(Drained::Nothing);
            }
            let state = warehouse::load_state(&*tx, key).await?;
            // The sessions are read with the erasures known now; one recorded meanwhile makes
            // them read again (privacy::prepare_write, in the writing transaction).
            let seen = match privacy {
                Some(p) => p
                    .privacy
                    .erasures
                    .refresh(&*tx)
                    .await
                    .map_err(WarehouseError::query("reading the recorded erasures"))?,
                None => 0,
            };
            tx.commit()
                .await
                .map_err(WarehouseError::query("claiming webhook events"))?;
            (claimed, state, seen)
        };
        let mut ids: Vec<SessionId> = claimed.iter().map(|c| c.session_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for _ in 0..3 {
            let fetch = source.fetch_ids(&ids, &state);
            tokio::pin!(fetch);
            let mut renew =
                tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
            let fetched = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break None,
                    r = &mut fetch => break Some(r),
                    _ = renew.tick() => {
                        let conn = self.warehouse.conn().await?;
                        inbox::renew(&**conn, &mut claimed, lease_end())
                            .await
                            .map_err(WarehouseError::query("renewing the lease of webhook events"))?;
                    }
                }
            };
            let pushed = match fetched {
                None => {
                    // Due again at once for whoever runs next.
                    let conn = self.warehouse.conn().await?;
                    inbox::unlease(&**conn, &claimed)
                        .await
                        .map_err(WarehouseError::query("giving webhook events back"))?;
                    return Ok(Drained::Nothing);
                }
                Some(Ok(p)) => p,
                Some(Err(e)) => return self.failed(&claimed, &ids, &e).await,
            };
            let mut conn = self.warehouse.conn().await?;
            let tx = conn
                .transaction()
                .await
                .map_err(WarehouseError::query("starting a webhook transaction"))?;
            if let Some(p) = privacy
                && !crate::privacy::warehouse::prepare_write(&*tx, p.privacy, seen).await?
            {
                drop(tx);
                seen = p
                    .privacy
                    .erasures
                    .refresh(&**conn)
                    .await
                    .map_err(WarehouseError::query("reading the recorded erasures"))?;
                continue;
            }
            let written = match webhook::write_pushed(&tx, key, pushed, privacy).await {
                Ok(w) => w,
                Err(PushError::Warehouse(e)) => return Err(e),
                Err(PushError::State(e)) => {
                    // The state changed under us into something unreadable: let the
                    // transaction go and count the attempt on its own.
                    drop(tx);
                    drop(conn);
                    return self.failed(&claimed, &ids, &e).await;
                }
            };
            let removed = inbox::delete(&*tx, &claimed)
                .await
                .map_err(WarehouseError::query("deleting applied webhook events"))?;
            tx.commit()
                .await
                .map_err(WarehouseError::query("committing webhook events"))?;
            drop(conn);
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
            return Ok(Drained::Applied);
        }
        let again = SourceError::Vendor {
            message: "erasures kept being recorded while the sessions were read; they are read again at the next attempt".into(),
        };
        self.failed(&claimed, &ids, &again).await
    }

    /// Records a failed attempt on `claimed` in a transaction of its own, and reports it.
    async fn failed(
        &self,
        claimed: &[Claimed],
        ids: &[SessionId],
        error: &SourceError,
    ) -> Result<Drained, WarehouseError> {
        let mut conn = self.warehouse.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(WarehouseError::query("starting a webhook transaction"))?;
        let failed = self.fail(&tx, claimed, ids, error).await?;
        tx.commit()
            .await
            .map_err(WarehouseError::query("committing a failed webhook attempt"))?;
        self.report(&failed);
        Ok(Drained::Failed)
    }

    /// Counts a failed attempt on `claimed` (inside `tx`); after the last one, sets their
    /// sessions aside in `rejected_records` and deletes them.
    async fn fail(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        claimed: &[Claimed],
        ids: &[SessionId],
        error: &SourceError,
    ) -> Result<Failure, WarehouseError> {
        let attempts = claimed.iter().map(|c| c.attempts).max().unwrap_or(0) + 1;
        let key = self.endpoint.source.key();
        let text = error.of(key);
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
