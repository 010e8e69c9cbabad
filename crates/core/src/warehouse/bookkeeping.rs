//! Reads and writes of `sync_state`, `sync_runs` and `rejected_records`, and the per-stream
//! advisory lock.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

use super::WarehouseError;
use super::migrate::LOCK_CLASS;
use crate::model::{Outcome, Rejected, RunTotals, StreamKey, StreamState};

fn lock_name(schema: &str, k: &StreamKey) -> String {
    format!("{schema}/{}/{}/{}", k.source, k.account, k.stream)
}

/// Takes the stream's session-level advisory lock if free; true when taken.
pub async fn try_lock_stream(
    c: &Client,
    schema: &str,
    k: &StreamKey,
) -> Result<bool, WarehouseError> {
    let row = c
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &lock_name(schema, k)],
        )
        .await
        .map_err(WarehouseError::query("taking the stream lock"))?;
    Ok(row.get(0))
}

pub async fn unlock_stream(c: &Client, schema: &str, k: &StreamKey) -> Result<(), WarehouseError> {
    c.execute(
        "SELECT pg_advisory_unlock($1, hashtext($2))",
        &[&LOCK_CLASS, &lock_name(schema, k)],
    )
    .await
    .map_err(WarehouseError::query("releasing the stream lock"))?;
    Ok(())
}

/// The server process id of connection `c` (what `pg_locks.pid` shows for its locks).
pub async fn backend_pid(c: &Client) -> Result<i32, WarehouseError> {
    let row = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(WarehouseError::query(
            "reading the lock connection's process id",
        ))?;
    Ok(row.get(0))
}

/// Bumps the stream's fencing token (`sync_state.claim`) and returns it; called by the holder
/// of the stream's lock before it reads the state. Waits for a commit of the previous holder
/// still in flight (it holds the row lock), so every later commit of that holder is fenced.
pub async fn bump_claim(c: &impl GenericClient, k: &StreamKey) -> Result<i64, WarehouseError> {
    let row = c
        .query_one(
            "INSERT INTO sync_state AS s (source, account, stream, claim) VALUES ($1, $2, $3, 1)
             ON CONFLICT (source, account, stream) DO UPDATE SET claim = s.claim + 1
             RETURNING claim",
            &[&k.source, &k.account, &k.stream],
        )
        .await
        .map_err(WarehouseError::query(
            "claiming the stream (sync_state.claim)",
        ))?;
    Ok(row.get(0))
}

/// True when, inside the caller's transaction, the stream is still claimed by `token` and its
/// lock is still held by backend `pid`; the stream's `sync_state` row stays locked until the
/// transaction ends, so no other process can claim the stream before it commits.
pub async fn still_claimed(
    c: &impl GenericClient,
    schema: &str,
    k: &StreamKey,
    token: i64,
    pid: i32,
) -> Result<bool, WarehouseError> {
    let row = c
        .query_opt(
            "SELECT s.claim = $4 AND EXISTS (
                    SELECT 1 FROM pg_locks l
                     WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $5
                       AND l.classid = $6::int4::oid AND l.objid = hashtext($7)::oid AND l.objsubid = 2
                       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
               FROM sync_state s
              WHERE s.source = $1 AND s.account = $2 AND s.stream = $3
                FOR UPDATE OF s",
            &[
                &k.source,
                &k.account,
                &k.stream,
                &token,
                &pid,
                &LOCK_CLASS,
                &lock_name(schema, k),
            ],
        )
        .await
        .map_err(WarehouseError::query("checking the stream's claim"))?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// [`last_run_started`]'s statement: `max(run_id)` is one step down `sync_runs_stream_idx`
/// whatever the statistics say (an `ORDER BY run_id DESC LIMIT 1` may walk the primary key
/// backwards through every later run of every stream instead).
pub const LAST_RUN_STARTED_SQL: &str = "SELECT started_at FROM sync_runs WHERE run_id =
  (SELECT max(run_id) FROM sync_runs WHERE source = $1 AND account = $2 AND stream = $3)";

/// When the stream's latest run started (the server's clock), if it ever ran: one step down
/// `sync_runs_stream_idx`, however many runs the stream has.
pub async fn last_run_started(
    c: &impl GenericClient,
    k: &StreamKey,
) -> Result<Option<DateTime<Utc>>, WarehouseError> {
    let row = c
        .query_opt(LAST_RUN_STARTED_SQL, &[&k.source, &k.account, &k.stream])
        .await
        .map_err(WarehouseError::query("reading the stream's last run"))?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn load_state(
    c: &impl GenericClient,
    k: &StreamKey,
) -> Result<StreamState, WarehouseError> {
    let row = c
        .query_opt(
            "SELECT watermark, state, window_seconds, newest_record_at FROM sync_state WHERE source = $1 AND account = $2 AND stream = $3",
            &[&k.source, &k.account, &k.stream],
        )
        .await
        .map_err(WarehouseError::query("reading sync_state"))?;
    Ok(row
        .map(|r| StreamState {
            watermark: r.get(0),
            state: r.get(1),
            window_seconds: r.get(2),
            newest: r.get(3),
        })
        .unwrap_or_default())
}

/// The stream's `state` as committed, its row locked until the transaction ends (created
/// empty if the stream has none yet).
pub async fn lock_state(
    c: &impl GenericClient,
    k: &StreamKey,
) -> Result<serde_json::Value, WarehouseError> {
    c.execute(
        "INSERT INTO sync_state (source, account, stream) VALUES ($1, $2, $3)
         ON CONFLICT (source, account, stream) DO NOTHING",
        &[&k.source, &k.account, &k.stream],
    )
    .await
    .map_err(WarehouseError::query("creating the sync_state row"))?;
    let row = c
        .query_one(
            "SELECT state FROM sync_state WHERE source = $1 AND account = $2 AND stream = $3 FOR UPDATE",
            &[&k.source, &k.account, &k.stream],
        )
        .await
        .map_err(WarehouseError::query("locking sync_state"))?;
    Ok(row.get(0))
}

/// Moves the watermark forward (never back) and replaces `state` and `window_seconds` when
/// given.
/// What a write leaves in the stream's `sync_state`: its watermark and the newest session time
/// stored.
pub struct Saved {
    pub watermark: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

pub async fn save_state(
    c: &impl GenericClient,
    k: &StreamKey,
    watermark: Option<DateTime<Utc>>,
    state: Option<&serde_json::Value>,
    window_seconds: Option<i32>,
    newest: Option<DateTime<Utc>>,
) -> Result<Saved, WarehouseError> {
    let row = c
        .query_one(
            "INSERT INTO sync_state AS s (source, account, stream, watermark, state, window_seconds, newest_record_at)
             VALUES ($1, $2, $3, $4, coalesce($5, '{}'::jsonb), $6, $7)
             ON CONFLICT (source, account, stream) DO UPDATE
                SET watermark = coalesce(greatest(s.watermark, EXCLUDED.watermark), s.watermark),
                    state = coalesce($5, s.state),
                    window_seconds = coalesce($6, s.window_seconds),
                    newest_record_at = greatest(s.newest_record_at, EXCLUDED.newest_record_at),
                    updated_at = now()
             RETURNING watermark, newest_record_at",
            &[&k.source, &k.account, &k.stream, &watermark, &state, &window_seconds, &newest],
        )
        .await
        .map_err(WarehouseError::query("writing sync_state"))?;
    Ok(Saved {
        watermark: row.get(0),
        newest: row.get(1),
    })
}

/// Replaces the `state` of stream `k` (a checkpoint: the renormalize's), creating its row.
pub async fn save_checkpoint(
    c: &impl GenericClient,
    k: &StreamKey,
    state: &serde_json::Value,
) -> Result<(), WarehouseError> {
    c.execute(
        "INSERT INTO sync_state AS s (source, account, stream, state) VALUES ($1, $2, $3, $4)
         ON CONFLICT (source, account, stream) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
        &[&k.source, &k.account, &k.stream, state],
    )
    .await
    .map_err(WarehouseError::query("saving the renormalize checkpoint"))?;
    Ok(())
}

/// Opens a run row; first closes any `running` row of the stream left by a process that died
/// (the caller holds the stream lock, so no live process owns it).
pub async fn start_run(c: &Client, k: &StreamKey) -> Result<i64, WarehouseError> {
    c.execute(
        "UPDATE sync_runs SET status = 'failed', finished_at = now(),
                error = 'interrupted: the process running it stopped before it finished; the next run resumed from the committed watermark'
         WHERE source = $1 AND account = $2 AND stream = $3 AND status = 'running'",
        &[&k.source, &k.account, &k.stream],
    )
    .await
    .map_err(WarehouseError::query("closing interrupted runs"))?;
    let row = c
        .query_one(
            "INSERT INTO sync_runs (source, account, stream) VALUES ($1, $2, $3) RETURNING run_id",
            &[&k.source, &k.account, &k.stream],
        )
        .await
        .map_err(WarehouseError::query("recording the run start"))?;
    Ok(row.get(0))
}

pub async fn finish_run(
    c: &Client,
    run_id: i64,
    outcome: Outcome,
    t: &RunTotals,
    error: Option<&str>,
) -> Result<(), WarehouseError> {
    let n = |v: u64| v as i64;
    c.execute(
        "UPDATE sync_runs SET finished_at = now(), status = $2, rows_written = $3, rows_unchanged = $4,
                rows_rejected = $5, requests = $6, retries = $7, error = $8
         WHERE run_id = $1",
        &[&run_id, &outcome.as_str(), &n(t.written), &n(t.unchanged), &n(t.rejected), &n(t.requests), &n(t.retries), &error],
    )
    .await
    .map_err(WarehouseError::query("recording the run result"))?;
    Ok(())
}

/// Stores rejected records; returns how many were not already known (same key and reason).
pub async fn put_rejects(
    c: &impl GenericClient,
    k: &StreamKey,
    rejects: &[Rejected],
) -> Result<u64, WarehouseError> {
    if rejects.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&str> = rejects.iter().map(|r| r.record_key.as_str()).collect();
    let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
    let payloads: Vec<&serde_json::Value> = rejects.iter().map(|r| &r.payload).collect();
    let rows = c
        .query(
            "INSERT INTO rejected_records AS r (source, account, stream, record_key, reason, payload)
             SELECT DISTINCT ON (k, why) $1, $2, $3, k, why, p
               FROM unnest($4::text[], $5::text[], $6::jsonb[]) AS u(k, why, p)
             ON CONFLICT (source, account, stream, record_key, reason) DO UPDATE
                SET last_seen_at = now(), payload = EXCLUDED.payload
             RETURNING (xmax = 0) AS inserted",
            &[&k.source, &k.account, &k.stream, &keys, &reasons, &payloads],
        )
        .await
        .map_err(WarehouseError::query("writing rejected_records"))?;
    Ok(rows.iter().filter(|r| r.get::<_, bool>(0)).count() as u64)
}

/// Forgets earlier rejections of records that now parsed.
pub async fn clear_rejects(
    c: &impl GenericClient,
    k: &StreamKey,
    keys: &[crate::model::SessionId],
) -> Result<(), WarehouseError> {
    if keys.is_empty() {
        return Ok(());
    }
    // record_key is text: a record without a readable id is set aside under a key of its own.
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    c.execute(
        "DELETE FROM rejected_records WHERE source = $1 AND account = $2 AND stream = $3 AND record_key = ANY($4)",
        &[&k.source, &k.account, &k.stream, &keys],
    )
    .await
    .map_err(WarehouseError::query("clearing rejected_records"))?;
    Ok(())
}

/// One line of `sessionsync status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamStatus {
    pub source: String,
    pub account: String,
    pub stream: String,
    pub watermark: Option<DateTime<Utc>>,
    pub lag_seconds: Option<i64>,
    pub last_run_id: Option<i64>,
    pub last_run_started_at: Option<DateTime<Utc>>,
    pub last_run_status: Option<String>,
    pub last_run_rows_written: Option<i64>,
    pub last_run_rows_unchanged: Option<i64>,
    pub last_run_rows_rejected: Option<i64>,
    pub last_error: Option<String>,
    /// Finished runs that failed in a row, the latest first (up to 16).
    pub failures_in_a_row: u32,
    /// When the latest finished run finished.
    pub last_finished_at: Option<DateTime<Utc>>,
    /// The newest session time the stream has stored (a stream that stays silent shows here).
    pub newest_record_at: Option<DateTime<Utc>>,
    /// Instants of its schedule missed since its latest run started (filled in by `status`
    /// from the configured schedule; `None` for a stream no longer configured).
    pub missed_instants: Option<u64>,
    /// Until when it backs off after failing several runs in a row (filled in by `status`).
    pub backoff_until: Option<DateTime<Utc>>,
    /// Its account's completeness audits (filled in by `status`).
    pub audit: Option<super::audits::AuditStatus>,
    /// A migration gave its source's stored rows new derived columns: what `sessionsync
    /// renormalize` would bring them (filled in by `status`; `None` when nothing is due).
    pub renormalize_due: Option<String>,
}

/// A source whose stored rows a migration gave new derived columns (`renormalize_due`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenormalizeDue {
    pub source: String,
    pub migration: String,
    pub reason: String,
    pub since: DateTime<Utc>,
}

impl RenormalizeDue {
    /// What an operator reads: the migration, what it brings and the command.
    pub fn describe(&self) -> String {
        format!(
            "migration {} added columns derived from stored data ({}); rows stored before it have them once `sessionsync renormalize --source {}` ran (no vendor request)",
            self.migration, self.reason, self.source
        )
    }
}

/// The sources a renormalize is due for (a handful of rows).
pub async fn renormalize_due(
    c: &impl GenericClient,
) -> Result<Vec<RenormalizeDue>, WarehouseError> {
    let rows = c
        .query(
            "SELECT source, migration, reason, since FROM renormalize_due ORDER BY source",
            &[],
        )
        .await
        .map_err(WarehouseError::query("reading the renormalizes due"))?;
    Ok(rows
        .iter()
        .map(|r| RenormalizeDue {
            source: r.get(0),
            migration: r.get(1),
            reason: r.get(2),
            since: r.get(3),
        })
        .collect())
}

/// A renormalize rebuilt every account of `source`: nothing is due for it any more.
pub async fn clear_renormalize_due(
    c: &impl GenericClient,
    source: &str,
) -> Result<bool, WarehouseError> {
    let n = c
        .execute("DELETE FROM renormalize_due WHERE source = $1", &[&source])
        .await
        .map_err(WarehouseError::query("clearing the renormalize due"))?;
    Ok(n > 0)
}

/// The accounts of `source` the warehouse has synced (its `sync_state`), configured or not.
pub async fn synced_accounts(
    c: &impl GenericClient,
    source: &str,
) -> Result<Vec<String>, WarehouseError> {
    let rows = c
        .query(
            "SELECT DISTINCT account FROM sync_state WHERE source = $1 AND stream NOT IN ('audit', 'renormalize') ORDER BY 1",
            &[&source],
        )
        .await
        .map_err(WarehouseError::query("listing the synced accounts"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn stream_statuses(c: &Client) -> Result<Vec<StreamStatus>, WarehouseError> {
    let rows = c
        .query(
            "WITH streams AS (
                 SELECT source, account, stream FROM sync_state WHERE stream NOT IN ('audit', 'renormalize')
                 UNION SELECT source, account, stream FROM sync_runs WHERE stream <> 'audit')
             SELECT s.source, s.account, s.stream, st.watermark,
                    extract(epoch FROM now() - st.watermark)::bigint,
                    r.run_id, r.started_at, r.status, r.rows_written, r.rows_unchanged, r.rows_rejected,
                    (SELECT e.error FROM sync_runs e
                      WHERE (e.source, e.account, e.stream) = (s.source, s.account, s.stream) AND e.error IS NOT NULL
                      ORDER BY e.run_id DESC LIMIT 1),
                    ARRAY(SELECT f.status FROM sync_runs f
                           WHERE (f.source, f.account, f.stream) = (s.source, s.account, s.stream) AND f.status <> 'running'
                           ORDER BY f.run_id DESC LIMIT 16),
                    (SELECT f.finished_at FROM sync_runs f
                      WHERE (f.source, f.account, f.stream) = (s.source, s.account, s.stream) AND f.status <> 'running'
                      ORDER BY f.run_id DESC LIMIT 1),
                    st.newest_record_at
               FROM streams s
               LEFT JOIN sync_state st USING (source, account, stream)
               LEFT JOIN LATERAL (
                    SELECT * FROM sync_runs x
                     WHERE (x.source, x.account, x.stream) = (s.source, s.account, s.stream)
                     ORDER BY x.run_id DESC LIMIT 1) r ON true
              ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .map_err(WarehouseError::query("reading stream status"))?;
    Ok(rows
        .iter()
        .map(|r| StreamStatus {
            source: r.get(0),
            account: r.get(1),
            stream: r.get(2),
            watermark: r.get(3),
            lag_seconds: r.get(4),
            last_run_id: r.get(5),
            last_run_started_at: r.get(6),
            last_run_status: r.get(7),
            last_run_rows_written: r.get(8),
            last_run_rows_unchanged: r.get(9),
            last_run_rows_rejected: r.get(10),
            last_error: r.get(11),
            failures_in_a_row: r
                .get::<_, Vec<String>>(12)
                .iter()
                // A run the vendor's maintenance ended neither adds to the streak nor ends it.
                .filter(|s| s.as_str() != "unavailable")
                .take_while(|s| s.as_str() == "failed")
                .count() as u32,
            last_finished_at: r.get(13),
            newest_record_at: r.get(14),
            missed_instants: None,
            backoff_until: None,
            audit: None,
            renormalize_due: None,
        })
        .collect())
}

/// Analyzes the schema's tables that changed by more than a tenth (and over 1,000 rows) since
/// PostgreSQL last gathered their statistics, and returns their names. After a backfill the
/// planner then knows how large the tables are (for BI's queries and for the per-key lookups
/// of the next windows), even where autovacuum is off or has not caught up yet.
pub async fn analyze_stale(c: &Client, schema: &str) -> Result<Vec<String>, WarehouseError> {
    let stale: Vec<String> = c
        .query(
            "SELECT relname::text FROM pg_stat_user_tables
             WHERE schemaname = $1 AND n_mod_since_analyze > 1000
               AND n_mod_since_analyze > 0.1 * n_live_tup
             ORDER BY relname",
            &[&schema],
        )
        .await
        .map_err(WarehouseError::query("looking for tables to analyze"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in &stale {
        // Both are identifiers PostgreSQL returned; quoted, with any quote doubled.
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        c.batch_execute(&format!("ANALYZE {}.{}", q(schema), q(table)))
            .await
            .map_err(WarehouseError::query("analyzing a table"))?;
    }
    Ok(stale)
}
