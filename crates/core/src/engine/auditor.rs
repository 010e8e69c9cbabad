//! One completeness audit of one stream (sources.md section 5), vendor-agnostic: the source lists
//! and reads ([`Audit`]), the engine compares, claims, writes and records.
//!
//! 1. The audit's own lock (stream `audit` of the account): replicas audit an account once, and
//!    a run already started for the same instant is not repeated (`sync_runs`, stream `audit`).
//! 2. **List** the days in one query; when it fails, each day on its own, so that one day's
//!    failure costs only that day (it is then *incomplete*: nothing of it is stored or flagged).
//! 3. **Compare** each complete day with the warehouse (one range scan, read before the list, so
//!    that the rows of sessions held already are not kept): listed and absent is *missing*; stored
//!    and not listed is *unlisted*, only ever a session written before the listing began (one a
//!    sync wrote meanwhile may postdate the list).
//! 4. **Confirm** the unlisted by id where the vendor reads by id: a 404 (or a session the vendor
//!    marks deleted) is *gone*, a 200 means the list missed it (stored again, counted missing).
//!    Without a read by id (Take Control) the list is the reference, except when it holds nothing
//!    at all while the warehouse holds sessions of those days: a key that lost access answers
//!    that way, so nothing is flagged and the days count as incomplete.
//! 5. **Write** under the stream's own claim (the same as a sync's: never at the same time as the
//!    stream's sync, replicas included): the missing through the one write path (privacy seam,
//!    erasures, `retain_sessions`), the gone flagged and erased, and one `audits` row per day, in
//!    one transaction; a `--dry-run` stops before it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use super::audit::{Audit, Days, Listing};
use super::audit_compare::compare;
use super::audit_report::{AuditOptions, AuditReport, AuditStep};
use super::batch::{Batch, Rows, SourceError};
use super::claims::{Claim, Waited};
use super::run::Engine;
use super::source::Stream;
use super::webhook::{PushError, Pushed, write_pushed};
use crate::model::SessionId;
use crate::model::{Outcome, StreamKey, WriteCounts};
use crate::warehouse::audits::{self, DayAudit};
use crate::warehouse::{self, WarehouseError};

/// The name of the audit's own stream (its lock, its `sync_runs` rows).
pub const AUDIT_STREAM: &str = "audit";

/// How long an audit waits for the stream's claim (its sync running) before it gives up writing.
pub const CLAIM_WAIT: Duration = Duration::from_secs(600);

/// The key of the audit of `stream`'s account.
pub fn audit_key(stream: &StreamKey) -> StreamKey {
    StreamKey {
        source: stream.source,
        account: stream.account.clone(),
        stream: AUDIT_STREAM,
    }
}

/// Why an audit stopped.
#[derive(Debug, thiserror::Error)]
enum AuditError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("stopped by shutdown; nothing of this audit was written")]
    Stopped,
    #[error(
        "{stream}'s sync held the stream for {minutes} minutes; the audit's repairs were not written (run the audit again)",
        minutes = CLAIM_WAIT.as_secs() / 60
    )]
    ClaimBusy { stream: String },
    #[error(
        "{stream}: this process lost its claim on the stream while the audit wrote; nothing was written (run the audit again)"
    )]
    LostClaim { stream: String },
    #[error(
        "erasures kept being recorded while the audit read the missing sessions; nothing was written (run it again)"
    )]
    ErasuresKeptComing,
}

impl From<PushError> for AuditError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::State(e) => AuditError::Source(e),
            PushError::Warehouse(e) => AuditError::Warehouse(e),
        }
    }
}

/// A batch with no rows: an audit that only flags.
struct NoRows;

#[async_trait::async_trait]
impl Rows for NoRows {
    fn len(&self) -> usize {
        0
    }
    fn keys(&self) -> Vec<crate::model::SessionId> {
        Vec::new()
    }
    async fn write(
        &self,
        _: &tokio_postgres::Transaction<'_>,
        _: &str,
    ) -> Result<WriteCounts, tokio_postgres::Error> {
        Ok(WriteCounts::default())
    }
}

impl Engine {
    /// Audits `stream`'s account now (`sessionsync audit`). `Err` only when the warehouse fails
    /// before the audit could be recorded.
    pub async fn audit(
        &self,
        stream: &Stream,
        options: AuditOptions,
        cancel: &CancellationToken,
        progress: &(dyn Fn(AuditStep) + Sync),
    ) -> Result<AuditReport, WarehouseError> {
        self.audit_unless_done(stream, options, cancel, progress, None)
            .await
    }

    /// The daemon's audit due at `due`: skipped when another process already started one at or
    /// after `due − tolerance`.
    pub async fn audit_due(
        &self,
        stream: &Stream,
        options: AuditOptions,
        due: DateTime<Utc>,
        tolerance: TimeDelta,
        cancel: &CancellationToken,
    ) -> Result<AuditReport, WarehouseError> {
        self.audit_unless_done(stream, options, cancel, &|_| {}, Some(due - tolerance))
            .await
    }

    async fn audit_unless_done(
        &self,
        stream: &Stream,
        options: AuditOptions,
        cancel: &CancellationToken,
        progress: &(dyn Fn(AuditStep) + Sync),
        done_since: Option<DateTime<Utc>>,
    ) -> Result<AuditReport, WarehouseError> {
        let key = stream.key();
        let dry = options.dry_run;
        let Some(audit) = stream.audit() else {
            return Ok(AuditReport::not_run(
                key,
                Outcome::Skipped,
                Some(format!("{} has no completeness audit", key.source)),
                dry,
            ));
        };
        let akey = audit_key(key);
        // A dry run changes nothing, so it needs no lock.
        let lock = match dry {
            true => None,
            false => match self.claims.try_claim(&akey).await? {
                Some(c) => Some(c),
                None => {
                    tracing::info!(source = key.source, account = %key.account, "audit skipped: another sessionsync process is auditing this account");
                    return Ok(AuditReport::not_run(key, Outcome::Skipped, None, dry));
                }
            },
        };
        let result = self
            .audit_locked(stream, audit, options, cancel, progress, done_since)
            .await;
        if let Some(c) = lock {
            self.claims.release(c).await;
        }
        result
    }

    async fn audit_locked(
        &self,
        stream: &Stream,
        audit: &dyn Audit,
        options: AuditOptions,
        cancel: &CancellationToken,
        progress: &(dyn Fn(AuditStep) + Sync),
        done_since: Option<DateTime<Utc>>,
    ) -> Result<AuditReport, WarehouseError> {
        let key = stream.key();
        let akey = audit_key(key);
        let run_id = match options.dry_run {
            true => None,
            false => {
                let conn = self.shared.warehouse.conn().await?;
                if let Some(since) = done_since
                    && warehouse::last_run_started(&**conn, &akey)
                        .await?
                        .is_some_and(|t| t >= since)
                {
                    return Ok(AuditReport::not_run(key, Outcome::Skipped, None, false));
                }
                Some(warehouse::start_run(&conn, &akey).await?)
            }
        };
        let days = self.audited_days(stream, options.days);
        let started = Instant::now();
        let before = stream.requests();
        let mut report = AuditReport {
            run_id,
            days,
            ..AuditReport::not_run(key, Outcome::Succeeded, None, options.dry_run)
        };
        let result = match days {
            None => Ok(()),
            Some(days) => {
                self.audit_days(stream, audit, days, run_id, cancel, progress, &mut report)
                    .await
            }
        };
        if let Err(e) = result {
            report.outcome = Outcome::Failed;
            report.error = Some(match e {
                AuditError::Source(e) => e.of(key),
                e => e.to_string(),
            });
        } else if report.per_day.iter().any(|d| !d.complete) {
            report.outcome = match report.outcome {
                Outcome::Unavailable => Outcome::Unavailable,
                _ => Outcome::Partial,
            };
        }
        let after = stream.requests();
        report.totals.requests = after.requests - before.requests;
        report.totals.retries = after.retries - before.retries;
        if let Some(run_id) = run_id {
            let conn = self.shared.warehouse.conn().await?;
            warehouse::finish_run(
                &conn,
                run_id,
                report.outcome,
                &report.totals,
                report.error.as_deref(),
            )
            .await?;
        }
        crate::events::AuditFinished {
            key,
            run_id: report.run_id,
            outcome: report.outcome,
            dry_run: report.dry_run,
            days: report.days.map(|d| d.to_string()).unwrap_or_default(),
            listed: report.listed(),
            stored: report.stored(),
            missing: report.missing(),
            gone: report.gone(),
            incomplete: report.per_day.iter().filter(|d| !d.complete).count(),
            error: report.error.as_deref(),
            elapsed: started.elapsed(),
        }
        .emit(&self.shared.metrics);
        Ok(report)
    }

    /// `days` from the stream's `start` and the storage limit on (a day before either is not
    /// audited: what lies before them is not the warehouse's to hold).
    fn audited_days(&self, stream: &Stream, days: Days) -> Option<Days> {
        let mut not_before = stream.settings().start;
        if let Some(d) = stream.privacy().and_then(|p| p.privacy.retain_sessions) {
            not_before = not_before.max(crate::privacy::cutoff(d, Utc::now()));
        }
        days.not_before(not_before)
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit_days(
        &self,
        stream: &Stream,
        audit: &dyn Audit,
        days: Days,
        run_id: Option<i64>,
        cancel: &CancellationToken,
        progress: &(dyn Fn(AuditStep) + Sync),
        report: &mut AuditReport,
    ) -> Result<(), AuditError> {
        let key = stream.key();
        let table = audit.table();
        progress(AuditStep::Listing { days: days.len() });
        let began = {
            let conn = self.shared.warehouse.conn().await?;
            audits::clock(&**conn).await?
        };
        // What the warehouse holds of those days, read before the list: a listed row of a
        // session held already is not kept, and nothing written after this can be taken for gone.
        let window = days.window();
        let stored = {
            let conn = self.shared.warehouse.conn().await?;
            audits::stored_sessions(&**conn, table, &key.account, window.start, window.end).await?
        };
        let held_live: std::collections::HashSet<SessionId> =
            stored.iter().filter(|s| !s.deleted).map(|s| s.id).collect();
        let keep_row = |id: SessionId| !held_live.contains(&id);
        let (listing, mut failed) =
            cancellable(cancel, list_days(audit, days, key, &keep_row)).await?;
        if failed.values().any(|(_, unavailable)| *unavailable) {
            report.outcome = Outcome::Unavailable;
        }
        let mut cmp = compare(&listing, &stored, days, &failed, began);
        // Listed as missing by the range scan, but stored with a start on another day: held.
        let held = {
            let conn = self.shared.warehouse.conn().await?;
            let ids: Vec<SessionId> = cmp.missing.keys().copied().collect();
            audits::held(&**conn, table, &key.account, &ids).await?
        };
        for (id, deleted) in held {
            if deleted {
                cmp.restored.push(id);
            } else {
                cmp.missing.remove(&id);
            }
        }

        // Confirm what the list no longer shows.
        let unlisted: Vec<SessionId> = cmp.unlisted.keys().copied().collect();
        let mut found: BTreeMap<SessionId, NaiveDate> = BTreeMap::new();
        let mut gone: BTreeMap<SessionId, NaiveDate> = cmp.deleted.clone();
        if !unlisted.is_empty() {
            progress(AuditStep::Confirming {
                sessions: unlisted.len(),
            });
            match cancellable(cancel, audit.still_there(&unlisted)).await? {
                Some(there) => {
                    for (id, day) in &cmp.unlisted {
                        match there.contains(id) {
                            true => found.insert(*id, *day),
                            false => gone.insert(*id, *day),
                        };
                    }
                }
                // No read by id: the list is the reference, unless it listed nothing at all.
                None if listing.sessions.is_empty() => {
                    let why = format!(
                        "the vendor listed no session at all for days the warehouse holds {} of: a key that lost access to the history answers like this, so nothing was flagged",
                        unlisted.len()
                    );
                    tracing::warn!(source = key.source, account = %key.account, sessions = unlisted.len(), "{why}");
                    for day in cmp.unlisted.values() {
                        failed.insert(*day, (why.clone(), false));
                    }
                }
                None => gone.extend(cmp.unlisted.iter().map(|(id, d)| (*id, *d))),
            }
        }
        let mut per_day: BTreeMap<NaiveDate, DayAudit> = days
            .each()
            .map(|day| {
                let error = failed.get(&day).map(|(e, _)| e.clone());
                (
                    day,
                    DayAudit {
                        day,
                        listed: cmp.listed.get(&day).copied().unwrap_or(0),
                        stored: 0,
                        missing: 0,
                        gone: 0,
                        complete: error.is_none(),
                        error,
                    },
                )
            })
            .collect();
        for day in cmp.missing.values().chain(found.values()) {
            if let Some(d) = per_day.get_mut(day) {
                d.missing += 1;
            }
        }
        for day in gone.values() {
            if let Some(d) = per_day.get_mut(day) {
                d.gone += 1;
            }
        }
        if report.dry_run {
            // What is stored now, for the days as they are.
            for s in stored.iter().filter(|s| !s.deleted) {
                if let Some(d) = per_day.get_mut(&s.start.date_naive()) {
                    d.stored += 1;
                }
            }
            report.per_day = per_day.into_values().collect();
            return Ok(());
        }

        // Write: the missing and those still there, the gone flagged, the days recorded.
        let to_read: Vec<SessionId> = cmp.missing.keys().chain(found.keys()).copied().collect();
        let gone_ids: Vec<SessionId> = gone.keys().copied().collect();
        for _ in 0..3 {
            let seen = self.shared.refresh_erasures(stream).await?;
            let pushed = match to_read.is_empty() {
                true => None,
                false => {
                    progress(AuditStep::Reading {
                        sessions: to_read.len(),
                    });
                    let state = {
                        let conn = self.shared.warehouse.conn().await?;
                        warehouse::load_state(&**conn, key).await?
                    };
                    Some(cancellable(cancel, stream.audit_read(&listing, &to_read, &state)).await?)
                }
            };
            progress(AuditStep::Writing);
            let writes = pushed.is_some() || !gone_ids.is_empty() || !cmp.restored.is_empty();
            let mut claim = match writes {
                true => match self
                    .claims
                    .claim_waiting(key, CLAIM_WAIT, Some(cancel))
                    .await?
                {
                    Waited::Claimed(c) => Some(c),
                    Waited::Busy => {
                        return Err(AuditError::ClaimBusy {
                            stream: key.to_string(),
                        });
                    }
                    Waited::Stopped => return Err(AuditError::Stopped),
                },
                false => None,
            };
            let done = self
                .write_audit(
                    stream,
                    claim.as_mut(),
                    pushed,
                    &gone_ids,
                    &cmp.restored,
                    (seen, run_id),
                    days,
                    &mut per_day,
                    report,
                )
                .await;
            if let Some(c) = claim {
                self.claims.release(c).await;
            }
            if done? {
                report.per_day = per_day.into_values().collect();
                return Ok(());
            }
            tracing::info!(source = key.source, account = %key.account, "an erasure was recorded while the audit read; reading again");
        }
        Err(AuditError::ErasuresKeptComing)
    }

    /// One transaction: the rows, the flags, the restores and the `audits` rows; `false` (nothing
    /// written) when an erasure newer than `seen` was recorded meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn write_audit(
        &self,
        stream: &Stream,
        claim: Option<&mut Claim>,
        pushed: Option<Pushed>,
        gone: &[SessionId],
        restored: &[SessionId],
        (seen, run_id): (i64, Option<i64>),
        days: Days,
        per_day: &mut BTreeMap<NaiveDate, DayAudit>,
        report: &mut AuditReport,
    ) -> Result<bool, AuditError> {
        let key = stream.key();
        let shared = &self.shared;
        let table = stream.audit().map(|a| a.table()).expect("audited");
        let mut conn = shared.warehouse.conn().await?;
        let claim = match claim {
            Some(c) => {
                c.fence(&**conn).await?;
                Some(&*c)
            }
            None => None,
        };
        let tx = conn
            .transaction()
            .await
            .map_err(WarehouseError::query("starting the audit's transaction"))?;
        if let Some(p) = stream.privacy()
            && !crate::privacy::warehouse::prepare_write(&*tx, p.privacy, seen).await?
        {
            return Ok(false);
        }
        let mut written = None;
        if claim.is_some() {
            let mut pushed = pushed.unwrap_or_else(|| Pushed {
                batch: Batch::new(NoRows),
                update_state: Box::new(|s| Ok(s.clone())),
            });
            pushed.batch.gone.extend(gone.iter().copied());
            let w = write_pushed(&tx, key, pushed, stream.privacy()).await?;
            audits::restore(&*tx, table, &key.account, restored).await?;
            if let Some(c) = claim
                && !c.holds(&*tx, shared.warehouse.schema()).await?
            {
                return Err(AuditError::LostClaim {
                    stream: key.to_string(),
                });
            }
            written = Some(w);
        }
        let window = days.window();
        for d in per_day.values_mut() {
            d.stored = 0;
        }
        for s in audits::stored_sessions(&*tx, table, &key.account, window.start, window.end)
            .await?
            .iter()
            .filter(|s| !s.deleted)
        {
            if let Some(d) = per_day.get_mut(&s.start.date_naive()) {
                d.stored += 1;
            }
        }
        if let Some(run_id) = run_id {
            let rows: Vec<DayAudit> = per_day.values().cloned().collect();
            audits::insert_audits(&*tx, key.source, &key.account, run_id, &rows).await?;
        }
        tx.commit()
            .await
            .map_err(WarehouseError::query("committing the audit"))?;
        if let Some(w) = written {
            w.emit(key, &shared.metrics);
            report.totals.written += w.counts.written;
            report.totals.unchanged += w.counts.unchanged;
            report.totals.rejected += w.rejected.len() as u64;
        }
        Ok(true)
    }
}

/// The listing of `days`: in one query, or, when that fails, each day on its own; the days whose
/// listing failed, with why (and whether the vendor said the tenant is down).
async fn list_days(
    audit: &dyn Audit,
    days: Days,
    key: &StreamKey,
    keep_row: &super::audit::KeepRow<'_>,
) -> Result<(Listing, BTreeMap<NaiveDate, (String, bool)>), AuditError> {
    let mut failed = BTreeMap::new();
    let e = match audit.list(&days.window(), keep_row).await {
        Ok(listing) => return Ok((listing, failed)),
        Err(e) => e,
    };
    let down = matches!(e, SourceError::Unavailable { .. });
    if days.len() == 1 || down {
        for day in days.each() {
            failed.insert(day, (e.of(key), down));
        }
        return Ok((Listing::default(), failed));
    }
    tracing::warn!(source = key.source, account = %key.account, error = %e.of(key), "listing the audited days at once failed; listing each day on its own");
    let mut listing = Listing::default();
    for day in days.each() {
        let one = Days {
            from: day,
            to: day + TimeDelta::days(1),
        };
        match audit.list(&one.window(), keep_row).await {
            Ok(l) => listing.extend(l),
            Err(e) => {
                let down = matches!(e, SourceError::Unavailable { .. });
                failed.insert(day, (e.of(key), down));
            }
        }
    }
    Ok((listing, failed))
}

/// `f`, unless `cancel` comes first.
async fn cancellable<T, E: Into<AuditError>>(
    cancel: &CancellationToken,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, AuditError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(AuditError::Stopped),
        r = f => r.map_err(Into::into),
    }
}
