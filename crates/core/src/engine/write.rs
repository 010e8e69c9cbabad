//! The one write path of a batch, for a polled window and for the records webhook events
//! named alike ([`write_rows`]): inside the caller's transaction, write the rows (the source's
//! own SQL), apply the privacy policy's after-write steps (deletions at the source, storage
//! limits), clear the earlier rejections of the records that parsed and set aside the new ones;
//! then the stream's `sync_state` changes ([`RowsWritten::save`], `save_pushed`: after the rows,
//! every writer locks them in that order). What it wrote is reported with [`Written::emit`] once
//! the transaction has committed.

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use super::batch::{Batch, PrivacyOf};
use crate::events::RecordRejected;
use crate::model::{Rejected, StreamKey, WriteCounts};
use crate::telemetry::Metrics;
use crate::warehouse::{self, WarehouseError};

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

/// The rows of a batch, written: what is left to record is how the stream's `sync_state`
/// changes ([`RowsWritten::save`] for a window, `webhook::write_pushed` for pushed records).
pub struct RowsWritten {
    written: Written,
    state: Option<serde_json::Value>,
    newest: Option<DateTime<Utc>>,
}

/// Writes the rows of `batch` of stream `key` inside `tx` (which the caller commits), applies
/// the privacy policy's after-write steps and records the rejections; the stream's state is
/// changed next, by the caller.
pub async fn write_rows(
    tx: &Transaction<'_>,
    key: &StreamKey,
    batch: Batch,
    privacy: Option<PrivacyOf<'_>>,
) -> Result<RowsWritten, WarehouseError> {
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
    Ok(RowsWritten {
        written: Written {
            counts,
            erased,
            records: batch.rows.len(),
            rejected: batch.rejected,
            new_rejects,
            nulled: batch.nulled,
            ..Written::default()
        },
        newest: batch.rows.newest(),
        state: batch.state,
    })
}

impl RowsWritten {
    /// What the rows' write counted, and how many records it set aside (a write whose
    /// `sync_state` does not change: a renormalize's).
    pub fn into_counts(self) -> (WriteCounts, u64) {
        (self.written.counts, self.written.rejected.len() as u64)
    }

    /// A polled window's change of `sync_state` (after [`Claim`]'s check): the watermark moves
    /// to `watermark` (never back; `None` for a backfill), and the state and window size are
    /// replaced when given.
    pub async fn save(
        self,
        tx: &Transaction<'_>,
        key: &StreamKey,
        watermark: Option<DateTime<Utc>>,
        window_seconds: Option<i32>,
    ) -> Result<Written, WarehouseError> {
        let saved = warehouse::save_state(
            tx,
            key,
            watermark,
            self.state.as_ref(),
            window_seconds,
            self.newest,
        )
        .await?;
        Ok(self.saved(saved, true))
    }

    /// Pushed records' change of `sync_state`: the watermark stays, and the state becomes
    /// `state` (worked out from the state as committed, `warehouse::lock_state`).
    pub async fn save_pushed(
        self,
        tx: &Transaction<'_>,
        key: &StreamKey,
        state: &serde_json::Value,
    ) -> Result<Written, WarehouseError> {
        let saved = warehouse::save_state(tx, key, None, Some(state), None, self.newest).await?;
        Ok(self.saved(saved, false))
    }

    /// What was written, with the stream's state after it (`keep_state`: the window's state,
    /// to keep in memory).
    fn saved(self, saved: warehouse::Saved, keep_state: bool) -> Written {
        Written {
            watermark: saved.watermark,
            newest: saved.newest,
            state: self.state.filter(|_| keep_state),
            ..self.written
        }
    }
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
