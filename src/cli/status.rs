//! `sessionsync status`: per stream its watermark, lag, newest record, last run, outcome, rows, instants missed
//! (`BEHIND`), back-off, its account's completeness audit (`AUDITED`) and last error, as a table or JSON.

use std::path::PathBuf;

use super::{Failure, load};
use crate::warehouse::{StreamStatus, Warehouse};

pub(super) async fn status(path: Option<PathBuf>, json: bool) -> Result<u8, Failure> {
    let settings = load(path)?;
    let wh = Warehouse::new(&settings.warehouse)?;
    wh.migrate().await?;
    let conn = wh.conn().await?;
    let mut rows = crate::warehouse::stream_statuses(&conn).await?;
    let schedules: std::collections::HashMap<String, crate::config::Schedule> =
        crate::sources::stream_settings(&settings)
            .into_iter()
            .map(|(key, s)| (key.to_string(), s.schedule.clone()))
            .collect();
    let due = crate::warehouse::renormalize_due(&**conn).await?;
    let now = chrono::Utc::now();
    for r in &mut rows {
        r.renormalize_due = due
            .iter()
            .find(|d| d.source == r.source)
            .map(|d| d.describe());
        r.audit =
            Some(crate::warehouse::audits::audit_status(&**conn, &r.source, &r.account).await?);
        let key = format!("{}/{}/{}", r.source, r.account, r.stream);
        if let (Some(schedule), Some(started)) = (schedules.get(&key), r.last_run_started_at) {
            let f = crate::engine::freshness(
                schedule,
                started,
                r.last_finished_at,
                r.failures_in_a_row,
                now,
            );
            r.missed_instants = Some(f.missed);
            r.backoff_until = f.backoff_until;
        }
    }
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        crate::out!("{}", status_table(&rows, now));
        for d in &due {
            crate::outln!("renormalize due for {}: {}", d.source, d.describe());
        }
    }
    Ok(0)
}

fn status_table(rows: &[StreamStatus], now: chrono::DateTime<chrono::Utc>) -> String {
    if rows.is_empty() {
        return "no stream has run yet\n".into();
    }
    let header = [
        "STREAM",
        "WATERMARK",
        "LAG",
        "NEWEST",
        "LAST RUN",
        "OUTCOME",
        "WRITTEN",
        "UNCHANGED",
        "REJECTED",
        "BEHIND",
        "BACKOFF",
        "AUDITED",
        "LAST ERROR",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        table.push(vec![
            format!("{}/{}/{}", r.source, r.account, r.stream),
            opt(r
                .watermark
                .map(|w| w.format("%Y-%m-%d %H:%M:%SZ").to_string())),
            opt(r.lag_seconds.map(human_secs)),
            // How old the newest stored session is: a stream that stays silent shows here.
            opt(r
                .newest_record_at
                .map(|t| format!("{} ago", human_secs((now - t).num_seconds().max(0))))),
            opt(r
                .last_run_started_at
                .map(|w| w.format("%Y-%m-%d %H:%M:%SZ").to_string())),
            opt(r.last_run_status.clone()),
            opt(r.last_run_rows_written.map(|v| v.to_string())),
            opt(r.last_run_rows_unchanged.map(|v| v.to_string())),
            opt(r.last_run_rows_rejected.map(|v| v.to_string())),
            opt(r.missed_instants.map(|n| match n {
                0 => "on time".to_string(),
                1 => "1 instant".to_string(),
                n => format!("{n} instants"),
            })),
            opt(r.backoff_until.map(|u| {
                format!(
                    "until {} ({} failed)",
                    u.format("%H:%M:%SZ"),
                    r.failures_in_a_row
                )
            })),
            audited(r.audit.as_ref(), now),
            opt(r.last_error.as_ref().map(|e| e.chars().take(80).collect())),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The AUDITED column: how long ago the last complete audit finished, and what the latest audit
/// found when it repaired or flagged anything, or did not complete.
fn audited(
    a: Option<&crate::warehouse::audits::AuditStatus>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let Some(a) = a.filter(|a| a.last_at.is_some()) else {
        return "never".into();
    };
    let ago = |t: chrono::DateTime<chrono::Utc>| {
        format!("{} ago", human_secs((now - t).num_seconds().max(0)))
    };
    let mut s = a
        .last_complete_at
        .map_or_else(|| "never complete".to_string(), ago);
    match a.last_status.as_deref() {
        Some("succeeded") => {}
        Some(other) => s.push_str(&format!(", last {other}")),
        None => {}
    }
    let (missing, gone) = (a.last_missing.unwrap_or(0), a.last_gone.unwrap_or(0));
    if missing > 0 || gone > 0 {
        s.push_str(&format!(" (missing {missing}, gone {gone})"));
    }
    s
}

fn human_secs(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
