//! Storage limits (docs/privacy.md section 5): sessions (with their children) that started
//! longer ago than `retain_sessions` are deleted, transcripts of those older than
//! `retain_transcripts` removed; in batches of at most [`BATCH`] rows per transaction, each
//! found through the time-first index of the session's start (migration 0009), so that no
//! statement reads more than its batch whatever the planner's statistics say.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::privacy::{Inventory, PrivacySettings};
use crate::warehouse::WarehouseError;

/// The most rows one retention transaction deletes or changes.
pub const BATCH: i64 = 10_000;

pub use crate::privacy::cutoff;

/// What a retention pass removed (or, dry, would remove), per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub rows: BTreeMap<String, u64>,
    pub dry_run: bool,
    /// Rows deleted or changed by each transaction, in order (each at most [`BATCH`]).
    pub batches: Vec<u64>,
}

impl Removed {
    pub fn total(&self) -> u64 {
        self.rows.values().sum()
    }
}

/// One pass of both limits over every source, each batch its own transaction.
pub async fn run(
    c: &mut tokio_postgres::Client,
    settings: &PrivacySettings,
    inventories: &[&'static crate::privacy::Inventory],
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Removed, WarehouseError> {
    let mut out = Removed {
        dry_run,
        ..Removed::default()
    };
    for inv in inventories {
        if let Some(d) = settings.retain_transcripts {
            transcripts(c, inv, cutoff(d, now), dry_run, &mut out).await?;
        }
        if let Some(d) = settings.retain_sessions {
            // A dry run counts what the real run removes: the transcript rows of sessions past
            // `retain_transcripts` were counted by its pass, and the real run has removed them
            // before this one.
            let counted = settings
                .retain_transcripts
                .filter(|_| dry_run)
                .map(|t| cutoff(t, now));
            sessions(c, inv, cutoff(d, now), dry_run, counted, &mut out).await?;
        }
    }
    if let Some(d) = settings.retain_sessions {
        // What was set aside is kept no longer than the sessions.
        let n = batched(
            c,
            dry_run,
            "rejected_records",
            "SELECT ctid FROM rejected_records WHERE last_seen_at < $1",
            cutoff(d, now),
            &mut out.batches,
        )
        .await?;
        add(&mut out, "rejected_records", n);
    }
    Ok(out)
}

fn add(out: &mut Removed, table: &str, n: u64) {
    if n > 0 {
        *out.rows.entry(table.to_string()).or_default() += n;
    }
}

/// Deletes, batch by batch, the rows of `table` whose addresses `select` (taking the cutoff as
/// `$1`) lists; with `dry_run`, counts them.
async fn batched(
    c: &mut tokio_postgres::Client,
    dry_run: bool,
    table: &str,
    select: &str,
    cut: DateTime<Utc>,
    batches: &mut Vec<u64>,
) -> Result<u64, WarehouseError> {
    if dry_run {
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM ({select}) AS x"), &[&cut])
            .await
            .map_err(WarehouseError::query(
                "counting rows over the storage limit",
            ))?
            .get(0);
        return Ok(n as u64);
    }
    let sql = format!("DELETE FROM {table} WHERE ctid = ANY(ARRAY({select} LIMIT {BATCH}))");
    delete_in_batches(c, &sql, &[&cut], batches).await
}

/// Runs `delete` (which deletes at most [`BATCH`] rows, each run its own transaction) until it
/// deletes fewer; the rows of each run go to `batches`.
async fn delete_in_batches(
    c: &tokio_postgres::Client,
    delete: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    batches: &mut Vec<u64>,
) -> Result<u64, WarehouseError> {
    let mut total = 0u64;
    loop {
        let n = c
            .execute(delete, params)
            .await
            .map_err(WarehouseError::query(
                "deleting rows over the storage limit",
            ))?;
        total += n;
        if n > 0 {
            batches.push(n);
        }
        if n < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Sessions started before `cut`, after the keyset `after` (start, account, id), in start
/// order, at most `SESSIONS_PER_STEP` of them: through the time-first index, so each step reads
/// only its own sessions.
async fn old_sessions(
    c: &tokio_postgres::Client,
    inv: &Inventory,
    cut: DateTime<Utc>,
    after: &(DateTime<Utc>, String, i64),
) -> Result<Vec<(DateTime<Utc>, String, i64)>, WarehouseError> {
    let rows = c
        .query(
            &format!(
                "SELECT {start}, account, {id}::bigint FROM {s}
                 WHERE {start} < $1 AND ({start}, account, {id}) > ($2, $3, $4::bigint)
                 ORDER BY {start}, account, {id} LIMIT {SESSIONS_PER_STEP}",
                s = inv.sessions,
                id = inv.id_column,
                start = inv.start_column,
            ),
            &[&cut, &after.0, &after.1, &after.2],
        )
        .await
        .map_err(WarehouseError::query(
            "finding sessions over the storage limit",
        ))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// A step's sessions, by account.
fn by_account(step: &[(DateTime<Utc>, String, i64)]) -> BTreeMap<&str, Vec<i64>> {
    let mut out: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (_, account, id) in step {
        out.entry(account.as_str()).or_default().push(*id);
    }
    out
}

/// Sessions looked at per step of a child pass.
const SESSIONS_PER_STEP: i64 = 1_000;

/// Deletes the rows of `child` (keyed to their session by `key`) of every session started
/// before `cut`, at most [`BATCH`] rows per transaction; with `dry_run`, counts them.
async fn children_of_old(
    c: &mut tokio_postgres::Client,
    inv: &Inventory,
    (child, key): (&str, &str),
    (cut, from): (DateTime<Utc>, Option<DateTime<Utc>>),
    dry_run: bool,
    batches: &mut Vec<u64>,
) -> Result<u64, WarehouseError> {
    let mut after = (before_everything(), String::new(), i64::MIN);
    let mut total = 0u64;
    let probe = |what: &str| {
        format!(
            "SELECT {what} FROM unnest($2::bigint[]) AS u(id)
             CROSS JOIN LATERAL (SELECT t.ctid FROM {child} t
                 WHERE t.account = $1 AND t.{key} = u.id OFFSET 0) AS x"
        )
    };
    let count = format!("SELECT count(*) FROM ({}) AS y", probe("x.ctid"));
    let delete = format!(
        "DELETE FROM {child} WHERE ctid = ANY(ARRAY({} LIMIT {BATCH}))",
        probe("x.ctid")
    );
    loop {
        let step = old_sessions(c, inv, cut, &after).await?;
        let Some(last) = step.last().cloned() else {
            return Ok(total);
        };
        // Only the sessions started at or after `from` (those before were counted already).
        let kept: Vec<_> = step
            .iter()
            .filter(|(start, _, _)| from.is_none_or(|f| *start >= f))
            .cloned()
            .collect();
        let by_account = by_account(&kept);
        for (account, ids) in by_account {
            if dry_run {
                let n: i64 = c
                    .query_one(&count, &[&account, &ids])
                    .await
                    .map_err(WarehouseError::query(
                        "counting rows over the storage limit",
                    ))?
                    .get(0);
                total += n as u64;
                continue;
            }
            total += delete_in_batches(c, &delete, &[&account, &ids], batches).await?;
        }
        after = last;
    }
}

/// Children first (so that no transaction holds more than a batch), then the sessions. With
/// `transcripts_counted`, the transcript rows of sessions started before it are not counted
/// again (a dry run after the transcripts pass).
async fn sessions(
    c: &mut tokio_postgres::Client,
    inv: &Inventory,
    cut: DateTime<Utc>,
    dry_run: bool,
    transcripts_counted: Option<DateTime<Utc>>,
    out: &mut Removed,
) -> Result<(), WarehouseError> {
    for (child, key) in inv.children {
        let from = transcripts_counted.filter(|_| inv.transcripts.iter().any(|(t, _)| t == child));
        let n =
            children_of_old(c, inv, (child, key), (cut, from), dry_run, &mut out.batches).await?;
        add(out, child, n);
    }
    let select = format!(
        "SELECT ctid FROM {} WHERE {} < $1",
        inv.sessions, inv.start_column
    );
    let n = batched(c, dry_run, inv.sessions, &select, cut, &mut out.batches).await?;
    add(out, inv.sessions, n);
    Ok(())
}

/// Transcript rows deleted, and the transcript keys of `raw` removed, for sessions that started
/// before `cut`, step by step through the start index.
async fn transcripts(
    c: &mut tokio_postgres::Client,
    inv: &Inventory,
    cut: DateTime<Utc>,
    dry_run: bool,
    out: &mut Removed,
) -> Result<(), WarehouseError> {
    for (child, key) in inv.transcripts {
        let n =
            children_of_old(c, inv, (child, key), (cut, None), dry_run, &mut out.batches).await?;
        add(out, child, n);
    }
    if inv.transcript_keys.is_empty() {
        return Ok(());
    }
    let (has, strip) = crate::privacy::warehouse::transcript_keys_sql(inv);
    let sql = if dry_run {
        format!(
            "SELECT count(*) FROM {s} WHERE account = $1 AND {id} = ANY($2::bigint[]) AND ({has})",
            s = inv.sessions,
            id = inv.id_column
        )
    } else {
        format!(
            "WITH done AS (UPDATE {s} SET raw = raw{strip}
                 WHERE ctid = ANY(ARRAY(SELECT x.ctid FROM unnest($2::bigint[]) AS u(id)
                     CROSS JOIN LATERAL (SELECT t.ctid FROM {s} t
                         WHERE t.account = $1 AND t.{id} = u.id OFFSET 0) AS x))
                   AND ({has})
                 RETURNING 1)
             SELECT count(*) FROM done",
            s = inv.sessions,
            id = inv.id_column
        )
    };
    let mut after = (before_everything(), String::new(), i64::MIN);
    loop {
        let step = old_sessions(c, inv, cut, &after).await?;
        let Some(last) = step.last().cloned() else {
            return Ok(());
        };
        let by_account = by_account(&step);
        for (account, ids) in by_account {
            let n: i64 = c
                .query_one(&sql, &[&account, &ids])
                .await
                .map_err(WarehouseError::query(
                    "removing transcripts over the storage limit",
                ))?
                .get(0);
            add(out, &format!("{} (raw)", inv.sessions), n as u64);
            if !dry_run && n > 0 {
                out.batches.push(n as u64);
            }
        }
        after = last;
    }
}

/// The daemon's storage limits: one pass at start and then once a day, until `shutdown`.
/// Counts what it removed in `sessionsync_retention_deleted_rows_total{table}`.
pub fn spawn_daily(
    wh: crate::warehouse::Warehouse,
    settings: PrivacySettings,
    inventories: Vec<&'static crate::privacy::Inventory>,
    metrics: std::sync::Arc<crate::telemetry::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if settings.retain_sessions.is_none() && settings.retain_transcripts.is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let pass = async {
                let mut conn = wh.conn().await?;
                run(&mut conn, &settings, &inventories, Utc::now(), false).await
            };
            match pass.await {
                Ok(removed) => {
                    crate::events::RetentionApplied {
                        rows: &removed.rows,
                    }
                    .emit(&metrics);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not apply the storage limits; trying again in an hour");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(3600)) => continue,
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(86_400)) => {}
            }
        }
    }))
}

/// Earlier than any stored start (and within PostgreSQL's range, unlike chrono's minimum).
fn before_everything() -> DateTime<Utc> {
    "0001-01-01T00:00:00Z".parse().expect("a constant date")
}
