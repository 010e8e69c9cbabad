//! `sessionsync renormalize`: rows rebuilt from what the warehouse stores (`raw` and the source's
//! other documents), with no vendor request: how a fix or a new derived column reaches the rows
//! stored before it. Vendor-agnostic: a source says which documents it reads and turns them into
//! rows ([`Rebuild`](super::Rebuild)); the engine pages through the account's sessions by key, writes each batch
//! through the one write path (under the stream's claim, in one transaction with a checkpoint),
//! and rows whose content did not change are not rewritten (their fingerprint).
//!
//! Privacy: a stored document is already what the row's policy label says (a value dropped,
//! hashed or erased stays so). Rows labelled with the policy in force are rebuilt from it as they
//! are (the policy is not applied a second time: no hash of a hash); rows labelled otherwise are
//! left alone and counted (`privacy apply`, or a `backfill`, brings them under the policy first).

use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::batch::Batch;
use super::claims::Waited;
use super::rebuild::StoredRecord;
use super::run::Engine;
use super::source::Stream;
use crate::model::{SessionTable, StreamKey};
use crate::warehouse::{self, WarehouseError};

/// What a renormalize is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct RenormalizeOptions {
    /// Only sessions that started at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Count what would change, and change nothing (each batch rolled back).
    pub dry_run: bool,
    /// Sessions per transaction.
    pub batch: i64,
}

/// What a renormalize did, for one stream.
#[derive(Debug, Clone, Default)]
pub struct RenormalizeReport {
    pub key: Option<StreamKey>,
    /// The session table rebuilt.
    pub table: &'static str,
    /// Sessions read.
    pub read: u64,
    /// Sessions whose rows changed (rewritten, or with `dry_run` to be rewritten).
    pub rewritten: u64,
    pub unchanged: u64,
    /// Stored under another privacy policy than the one in force: left as they are.
    pub other_policy: u64,
    /// Documents that no longer make a row: set aside in `rejected_records`.
    pub rejected: u64,
    /// Rows written in each child table (those of the sessions rewritten).
    pub children: std::collections::BTreeMap<&'static str, u64>,
    /// It went through every session of its range (it may be resumed otherwise).
    pub complete: bool,
    pub dry_run: bool,
    pub elapsed: std::time::Duration,
}

/// The checkpoint stream of a renormalize (`sync_state`, stream `renormalize`): where the last
/// committed batch ended, so that a run stopped halfway resumes there.
pub fn checkpoint_key(stream: &StreamKey) -> StreamKey {
    StreamKey {
        source: stream.source,
        account: stream.account.clone(),
        stream: "renormalize",
    }
}

impl Engine {
    /// Rebuilds `stream`'s stored rows. `Err` when the warehouse fails.
    pub async fn renormalize(
        &self,
        stream: &Stream,
        options: RenormalizeOptions,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&RenormalizeReport) + Sync),
    ) -> Result<RenormalizeReport, RenormalizeError> {
        let key = stream.key();
        let started = Instant::now();
        let mut report = RenormalizeReport {
            key: Some(key.clone()),
            dry_run: options.dry_run,
            ..RenormalizeReport::default()
        };
        let Some(rebuild) = stream.rebuild() else {
            report.complete = true;
            return Ok(report);
        };
        let table = rebuild.table();
        report.table = table.table;
        let tag = stream
            .privacy()
            .map(|p| p.privacy.tag())
            .unwrap_or_default();
        let ck = checkpoint_key(key);
        let mut after = match options.dry_run {
            true => i64::MIN,
            false => resume_point(&self.shared.warehouse, &ck, options.from).await?,
        };
        let documents = rebuild.documents();
        let sql = read_sql(table, &documents, options.from.is_some());
        loop {
            if cancel.is_cancelled() {
                return Err(RenormalizeError::Stopped);
            }
            let t0 = Instant::now();
            let rows = {
                let conn = self.shared.warehouse.conn().await?;
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                    vec![&key.account, &after, &options.batch];
                if let Some(from) = &options.from {
                    params.push(from);
                }
                conn.query(&sql, &params)
                    .await
                    .map_err(WarehouseError::query("reading stored sessions to rebuild"))?
            };
            let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
                break;
            };
            report.read += rows.len() as u64;
            let mut records = Vec::with_capacity(rows.len());
            for r in &rows {
                let label: Option<String> = r.get(1);
                if stream.privacy().is_some() && label.as_deref() != Some(tag.as_str()) {
                    report.other_policy += 1;
                    continue;
                }
                records.push(StoredRecord {
                    vetted: super::vetted::Vetted::stored(),
                    id: r.get(0),
                    documents: (0..documents.len())
                        .map(|i| r.get::<_, serde_json::Value>(i + 2))
                        .collect(),
                });
            }
            let t1 = t0.elapsed();
            let passed = records.len() as u64;
            let batch = rebuild.rebuild(records);
            let t2 = t0.elapsed();
            self.write_rebuilt(stream, batch, (&ck, last), &options, passed, &mut report)
                .await?;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
            tracing::debug!(
                stream = %key,
                sessions = rows.len(),
                read_ms = ms(t1),
                rebuild_ms = ms(t2 - t1),
                write_ms = ms(t0.elapsed() - t2),
                "renormalize batch"
            );
            after = last;
            progress(&report);
        }
        report.complete = true;
        if !options.dry_run {
            let conn = self.shared.warehouse.conn().await?;
            conn.execute(
                "DELETE FROM sync_state WHERE source = $1 AND account = $2 AND stream = $3",
                &[&ck.source, &ck.account, &ck.stream],
            )
            .await
            .map_err(WarehouseError::query("clearing the renormalize checkpoint"))?;
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// One batch: its rows through the one write path and what the source derives, under the
    /// stream's claim, with the checkpoint, in one transaction (rolled back for a dry run).
    async fn write_rebuilt(
        &self,
        stream: &Stream,
        batch: Batch,
        (ck, last): (&StreamKey, i64),
        options: &RenormalizeOptions,
        passed: u64,
        report: &mut RenormalizeReport,
    ) -> Result<(), RenormalizeError> {
        let key = stream.key();
        let wait = super::auditor::CLAIM_WAIT;
        let mut claim = match self.claims.claim_waiting(key, wait, None).await? {
            Waited::Claimed(c) => c,
            Waited::Busy | Waited::Stopped => {
                return Err(RenormalizeError::ClaimBusy {
                    stream: key.to_string(),
                });
            }
        };
        let result = async {
            let mut conn = self.shared.warehouse.conn().await?;
            claim.fence(&**conn).await?;
            let tx = conn
                .transaction()
                .await
                .map_err(WarehouseError::query("starting a renormalize batch"))?;
            if let Some(p) = stream.privacy() {
                // The erasure lock, shared: an erase waits for this batch, or this batch for it.
                let seen = crate::privacy::current_version(&*tx)
                    .await
                    .map_err(WarehouseError::query("checking the recorded erasures"))?;
                crate::privacy::warehouse::prepare_write(&*tx, p.privacy, seen).await?;
            }
            let w = super::write::write_rows(&tx, key, batch, stream.privacy())
                .await?
                .into_counts();
            if !claim.holds(&*tx, self.shared.warehouse.schema()).await? {
                return Err(RenormalizeError::LostClaim {
                    stream: key.to_string(),
                });
            }
            if options.dry_run {
                tx.rollback()
                    .await
                    .map_err(WarehouseError::query("rolling back a dry run's batch"))?;
            } else {
                warehouse::save_checkpoint(
                    &*tx,
                    ck,
                    &serde_json::json!({ "after": last, "from": options.from }),
                )
                .await?;
                tx.commit()
                    .await
                    .map_err(WarehouseError::query("committing a renormalize batch"))?;
            }
            // What the source found unchanged before the write (and left out of the batch) is
            // unchanged too: every record passed is written, set aside or unchanged.
            report.rewritten += w.0.written;
            report.rejected += w.1;
            report.unchanged += passed.saturating_sub(w.0.written + w.1);
            for (t, n) in w.0.children {
                *report.children.entry(t).or_insert(0) += n;
            }
            Ok(())
        }
        .await;
        self.claims.release(claim).await;
        result
    }
}

/// Where a renormalize of `from` resumes: after the key its last committed batch ended on, when
/// that batch belonged to a run over the same range.
async fn resume_point(
    wh: &warehouse::Warehouse,
    ck: &StreamKey,
    from: Option<DateTime<Utc>>,
) -> Result<i64, WarehouseError> {
    let conn = wh.conn().await?;
    let state = warehouse::load_state(&**conn, ck).await?.state;
    let same_range = state.get("from") == Some(&serde_json::json!(from));
    Ok(match state.get("after").and_then(|v| v.as_i64()) {
        Some(after) if same_range => {
            tracing::info!(stream = %ck, after, "resuming the renormalize after the last committed batch");
            after
        }
        _ => i64::MIN,
    })
}

/// The next batch of stored sessions: `$1` account, `$2` the last key read, `$3` the batch size,
/// `$4` (with `from`) the earliest start. A range of the primary key, whatever the statistics.
pub fn read_sql(t: SessionTable, documents: &[String], from: bool) -> String {
    let docs: String = documents.iter().map(|d| format!(", {d}")).collect();
    let start = if from {
        format!(" AND t.{} >= $4", t.start)
    } else {
        String::new()
    };
    format!(
        "SELECT t.{id}::bigint, t.privacy_policy{docs} FROM {table} t
          WHERE t.account = $1 AND t.{id} > $2::bigint{start}
          ORDER BY t.account, t.{id} LIMIT $3",
        id = t.id,
        table = t.table
    )
}

/// Why a renormalize stopped.
#[derive(Debug, thiserror::Error)]
pub enum RenormalizeError {
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("stopped by shutdown; what was committed stays, and the next run resumes after it")]
    Stopped,
    #[error(
        "{stream}'s sync held the stream for 10 minutes; stopped (what was committed stays; run it again to resume)"
    )]
    ClaimBusy { stream: String },
    #[error(
        "{stream}: this process lost its claim on the stream; the batch was not written (run it again to resume)"
    )]
    LostClaim { stream: String },
}
