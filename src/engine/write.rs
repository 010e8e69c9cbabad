//! The one write path of a batch, for a polled window and for the records webhook events
//! named alike: inside the caller's transaction, write the rows (the source's own SQL), apply
//! the privacy policy's after-write steps (deletions at the source, storage limits), clear the
//! earlier rejections of the records that parsed and set aside the new ones, then change the
//! stream's `sync_state` (after the rows: every writer locks them in that order). What it wrote
//! is reported with [`Written::emit`] once the transaction has committed.

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::batch::{Batch, PrivacyOf, SourceError};
use super::claims::Claim;
use crate::events::RecordRejected;
use crate::model::{Rejected, StreamKey, WriteCounts};
use crate::telemetry::Metrics;
use crate::warehouse::{self, WarehouseError};

/// Turns the stream's committed state into the state after the pushed records.
pub type StateUpdate =
    Box<dyn FnOnce(&serde_json::Value) -> Result<serde_json::Value, SourceError> + Send>;

/// How a batch changes its stream's `sync_state`.
pub enum StateChange<'a> {
    /// A polled window: fenced by the run's claim; the watermark moves to `watermark` (never
    /// back; `None` for a backfill), and the state and window size are replaced when given.
    Window {
        claim: &'a Claim,
        schema: &'a str,
        watermark: Option<DateTime<Utc>>,
        window_seconds: Option<i32>,
    },
    /// Records named by webhook events: the watermark stays; the state is updated on the
    /// state as committed, under its row lock.
    Push(StateUpdate),
}

/// A batch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// What a batch wrote, to report once its transaction committed.
#[derive(Debug, Default)]
pub struct Written {
    pub counts: WriteCounts,
    /// Sessions marked deleted at the source (and erased).
    pub erased: u64,
    /// Records in the batch.
    pub records: usize,
    pub rejected: Vec<Rejected>,
    /// How many of `rejected` were not set aside before (same key and reason).
    pub new_rejects: u64,
    pub nulled: Vec<Rejected>,
    /// The stream's watermark after the write.
    pub watermark: Option<DateTime<Utc>>,
    /// The newest session time the stream has stored, after the write.
    pub newest: Option<DateTime<Utc>>,
    /// The state the batch replaced `sync_state.state` with (a window's), to keep in memory.
    pub state: Option<serde_json::Value>,
}

/// Writes `batch` of stream `key` inside `tx` (which the caller commits).
pub async fn write_batch(
    tx: &Transaction<'_>,
    key: &StreamKey,
    batch: Batch,
    privacy: Option<PrivacyOf<'_>>,
    change: StateChange<'_>,
) -> Result<Written, WriteError> {
    let counts = batch
        .rows
        .write(tx, &key.account)
        .await
        .map_err(WarehouseError::query("writing rows"))?;
    let keys = batch.rows.keys();
    let mut erased = 0;
    if let Some(p) = privacy {
        erased = crate::privacy::warehouse::after_write(
            tx,
            p.privacy,
            p.inventory,
            &key.account,
            &keys,
            &batch.gone,
        )
        .await?
        .0;
    }
    warehouse::clear_rejects(tx, key, &keys).await?;
    let new_rejects = warehouse::put_rejects(tx, key, &batch.rejected).await?;
    let (saved, state) = match change {
        StateChange::Window {
            claim,
            schema,
            watermark,
            window_seconds,
        } => {
            // Fenced: only while the stream is still this process's (its row stays locked
            // until the commit).
            claim.check(tx, schema).await?;
            let w = warehouse::save_state(
                tx,
                key,
                watermark,
                batch.state.as_ref(),
                window_seconds,
                batch.rows.newest(),
            )
            .await?;
            (w, batch.state)
        }
        StateChange::Push(update) => {
            let current = warehouse::lock_state(tx, key).await?;
            let next = update(&current)?;
            let w = warehouse::save_state(tx, key, None, Some(&next), None, batch.rows.newest())
                .await?;
            (w, None)
        }
    };
    Ok(Written {
        counts,
        erased,
        records: batch.rows.len(),
        rejected: batch.rejected,
        new_rejects,
        nulled: batch.nulled,
        watermark: saved.watermark,
        newest: saved.newest,
        state,
    })
}

impl Written {
    /// The events of the records set aside, the values nulled and the sessions erased (after
    /// the commit).
    pub fn emit(&self, key: &StreamKey, metrics: &Metrics) {
        crate::events::NewestRecord {
            key,
            newest: self.newest,
        }
        .emit(metrics);
        if self.erased > 0 {
            crate::events::SessionsErasedAtSource {
                key,
                sessions: self.erased,
                cause: "deleted",
            }
            .emit(metrics);
        }
        for (list, set_aside) in [(&self.rejected, true), (&self.nulled, false)] {
            for r in list {
                RecordRejected {
                    key,
                    record_key: &r.record_key,
                    reason: &r.reason,
                    set_aside,
                }
                .emit(metrics);
            }
        }
    }
}
