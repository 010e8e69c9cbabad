//! The completeness audit's SQL (sources.md section 5): the sessions a stream stored for a range
//! of days, sessions restored at the source, the `audits` rows, and what `status` and the
//! daemon read back. Every statement is bounded by the range or probes keys, whatever the
//! planner's statistics say (`tests/it/plans.rs`).

use chrono::{DateTime, NaiveDate, Utc};
use tokio_postgres::GenericClient;

use super::WarehouseError;
use crate::model::SessionId;
use crate::model::SessionTable;

/// A session the warehouse holds, as an audit compares it.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub id: SessionId,
    pub start: DateTime<Utc>,
    /// Flagged deleted at the source (`source_deleted_at`).
    pub deleted: bool,
    pub first_synced_at: DateTime<Utc>,
}

/// The sessions of `account` in `t` that started in `[from, to)`: a range scan of the table's
/// audit index (`account` under collation "C", then the start: migration 0022), never a walk of
/// the account's rows nor of every account's rows of those days.
pub async fn stored_sessions(
    c: &impl GenericClient,
    t: SessionTable,
    account: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<StoredSession>, WarehouseError> {
    let rows = c
        .query(&stored_sql(t), &[&account, &from, &to])
        .await
        .map_err(WarehouseError::query(
            "reading the stored sessions of the audited days",
        ))?;
    Ok(rows
        .iter()
        .map(|r| StoredSession {
            id: r.get(0),
            start: r.get(1),
            deleted: r.get(2),
            first_synced_at: r.get(3),
        })
        .collect())
}

/// [`stored_sessions`]' statement: `$1` account, `$2`..`$3` the range.
pub fn stored_sql(t: SessionTable) -> String {
    format!(
        "SELECT {id}::bigint, {start}, source_deleted_at IS NOT NULL, first_synced_at FROM {table}
          WHERE account COLLATE \"C\" = $1 AND {start} >= $2 AND {start} < $3",
        id = t.id,
        start = t.start,
        table = t.table
    )
}

/// Of `ids`, those `account` holds in `t` (flagged deleted or not): one probe of the key each.
pub async fn held(
    c: &impl GenericClient,
    t: SessionTable,
    account: &str,
    ids: &[SessionId],
) -> Result<Vec<(SessionId, bool)>, WarehouseError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(&held_sql(t), &[&account, &ids])
        .await
        .map_err(WarehouseError::query("looking up listed sessions by id"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// [`held`]'s statement: `$1` account, `$2` the ids (bigint[]).
pub fn held_sql(t: SessionTable) -> String {
    format!(
        "SELECT x.id, x.deleted FROM unnest($2::bigint[]) AS u(id)
         CROSS JOIN LATERAL (SELECT s.{id}::bigint AS id, s.source_deleted_at IS NOT NULL AS deleted
                               FROM {table} s WHERE s.account = $1 AND s.{id} = u.id OFFSET 0) AS x",
        id = t.id,
        table = t.table
    )
}

/// Sessions the vendor lists again after they were flagged deleted (a restore): no longer
/// flagged. Their personal data stays as the erasure at the deletion left it.
pub async fn restore(
    c: &impl GenericClient,
    t: SessionTable,
    account: &str,
    ids: &[SessionId],
) -> Result<u64, WarehouseError> {
    if ids.is_empty() {
        return Ok(0);
    }
    c.execute(&restore_sql(t), &[&account, &ids])
        .await
        .map_err(WarehouseError::query(
            "clearing source_deleted_at of sessions listed again",
        ))
}

/// [`restore`]'s statement.
pub fn restore_sql(t: SessionTable) -> String {
    format!(
        "UPDATE {table} SET source_deleted_at = NULL
          WHERE ctid = ANY(ARRAY(SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
                 CROSS JOIN LATERAL (SELECT s.ctid FROM {table} s
                                     WHERE s.account = $1 AND s.{id} = u.id OFFSET 0) AS x))
            AND source_deleted_at IS NOT NULL",
        id = t.id,
        table = t.table
    )
}

/// One `audits` row: what an audit found for one account and day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DayAudit {
    pub day: NaiveDate,
    /// Sessions the vendor lists for the day as live.
    pub listed: u64,
    /// The day's sessions in the warehouse after the audit, not flagged deleted.
    pub stored: u64,
    /// Listed but absent from the warehouse before (stored by this audit).
    pub missing: u64,
    /// Flagged deleted at the source by this audit.
    pub gone: u64,
    /// Every page of the day's listing answered (otherwise nothing of it was flagged).
    pub complete: bool,
    /// Why the day is not complete.
    pub error: Option<String>,
}

/// Records `days` of one audit run.
pub async fn insert_audits(
    c: &impl GenericClient,
    source: &str,
    account: &str,
    run_id: i64,
    days: &[DayAudit],
) -> Result<(), WarehouseError> {
    let n = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
    let day: Vec<NaiveDate> = days.iter().map(|d| d.day).collect();
    let listed: Vec<i32> = days.iter().map(|d| n(d.listed)).collect();
    let stored: Vec<i32> = days.iter().map(|d| n(d.stored)).collect();
    let missing: Vec<i32> = days.iter().map(|d| n(d.missing)).collect();
    let gone: Vec<i32> = days.iter().map(|d| n(d.gone)).collect();
    let complete: Vec<bool> = days.iter().map(|d| d.complete).collect();
    let error: Vec<Option<String>> = days.iter().map(|d| d.error.clone()).collect();
    c.execute(
        "INSERT INTO audits (source, account, run_id, day, listed, stored, missing, gone, complete, error)
         SELECT $1, $2, $3, * FROM unnest($4::date[], $5::int[], $6::int[], $7::int[], $8::int[], $9::bool[], $10::text[])",
        &[&source, &account, &run_id, &day, &listed, &stored, &missing, &gone, &complete, &error],
    )
    .await
    .map_err(WarehouseError::query("recording the audit's days"))?;
    Ok(())
}

/// The audit of one account as `status` shows it: when its last complete audit finished, and
/// what its latest audit found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuditStatus {
    /// When the last audit whose every day's listing completed finished.
    pub last_complete_at: Option<DateTime<Utc>>,
    /// The latest audit run: when it finished, and what it found.
    pub last_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_missing: Option<i64>,
    pub last_gone: Option<i64>,
}

/// The last audit of `$1`/`$2` that completed: among the account's audit runs (few: one a day),
/// through `sync_runs_stream_idx` (`run_id + 0`: the primary key, walked backwards, would read
/// every later run of every stream until it met one).
pub const LAST_COMPLETE_SQL: &str = "SELECT finished_at FROM sync_runs
  WHERE source = $1 AND account = $2 AND stream = 'audit' AND status = 'succeeded'
  ORDER BY run_id + 0 DESC LIMIT 1";
/// The latest finished audit run of `$1`/`$2`, as [`LAST_COMPLETE_SQL`].
pub const LAST_RUN_SQL: &str = "SELECT run_id, finished_at, status FROM sync_runs
  WHERE source = $1 AND account = $2 AND stream = 'audit' AND status <> 'running'
  ORDER BY run_id + 0 DESC LIMIT 1";
/// What audit run `$3` of `$1`/`$2` found (`audits_run_idx`).
pub const RUN_FOUND_SQL: &str = "SELECT sum(missing)::bigint, sum(gone)::bigint FROM audits
  WHERE source = $1 AND account = $2 AND run_id = $3";
/// When stream `$3` of `$1`/`$2` first ran: one step down `sync_runs_stream_idx` (`min`).
pub const FIRST_RUN_SQL: &str = "SELECT started_at FROM sync_runs WHERE run_id =
  (SELECT min(run_id) FROM sync_runs WHERE source = $1 AND account = $2 AND stream = $3)";

/// [`AuditStatus`] of `source`/`account`.
pub async fn audit_status(
    c: &impl GenericClient,
    source: &str,
    account: &str,
) -> Result<AuditStatus, WarehouseError> {
    let fail = WarehouseError::query("reading the account's audits");
    let last_complete_at = c
        .query_opt(LAST_COMPLETE_SQL, &[&source, &account])
        .await
        .map_err(fail)?
        .map(|r| r.get(0));
    let Some(last) = c
        .query_opt(LAST_RUN_SQL, &[&source, &account])
        .await
        .map_err(WarehouseError::query("reading the account's audits"))?
    else {
        return Ok(AuditStatus {
            last_complete_at,
            ..AuditStatus::default()
        });
    };
    let run_id: i64 = last.get(0);
    let found = c
        .query_one(RUN_FOUND_SQL, &[&source, &account, &run_id])
        .await
        .map_err(WarehouseError::query("reading the account's audits"))?;
    Ok(AuditStatus {
        last_complete_at,
        last_at: last.get(1),
        last_status: last.get(2),
        last_missing: found.get(0),
        last_gone: found.get(1),
    })
}

/// Since when an account has gone without a complete audit, for the daemon's gauge at start:
/// its last complete audit, else its stream's first run (an account never audited is stale
/// from when it began), else `None`.
pub async fn audited_since(
    c: &impl GenericClient,
    source: &str,
    account: &str,
    stream: &str,
) -> Result<Option<DateTime<Utc>>, WarehouseError> {
    let fail = || WarehouseError::query("reading when the account was last audited");
    if let Some(r) = c
        .query_opt(LAST_COMPLETE_SQL, &[&source, &account])
        .await
        .map_err(fail())?
    {
        return Ok(r.get(0));
    }
    Ok(c.query_opt(FIRST_RUN_SQL, &[&source, &account, &stream])
        .await
        .map_err(fail())?
        .map(|r| r.get(0)))
}

/// The database's clock now (not the transaction's start): what `first_synced_at` is compared
/// with.
pub async fn clock(c: &impl GenericClient) -> Result<DateTime<Utc>, WarehouseError> {
    Ok(c.query_one("SELECT clock_timestamp()", &[])
        .await
        .map_err(WarehouseError::query("reading the database clock"))?
        .get(0))
}
