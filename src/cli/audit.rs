//! `sessionsync audit`: compare the warehouse with each selected account's own vendor list
//! (sources.md section 5), a line per account as it finishes and, on a terminal, a live line per
//! account while it runs.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDate, TimeDelta, Utc};

use super::lines::Lines;
use super::{Failure, load, select};
use crate::engine::{AuditOptions, AuditReport, AuditStep, Days, Outcome, Slots};
use crate::shutdown::shutdown_on_signals;
use crate::telemetry::Metrics;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Only this source (takecontrol, superoffice, mluvii)
    #[arg(long)]
    source: Option<String>,
    /// Only this account (also one with `audit = false`, which the daemon leaves out)
    #[arg(long)]
    account: Option<String>,
    /// First UTC day to compare (default: `audit.days` closed days before today)
    #[arg(long, value_parser = parse_day)]
    from: Option<NaiveDate>,
    /// Day after the last one compared (exclusive; default: today)
    #[arg(long, value_parser = parse_day)]
    to: Option<NaiveDate>,
    /// Report what differs without changing anything (no repair, no flag, no audit recorded)
    #[arg(long)]
    dry_run: bool,
}

fn parse_day(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date such as 2024-01-01"))
}

/// The days `args` asks for: `--from`..`--to`, else the last `days` closed days before `--to`.
fn days(args: &AuditArgs, default_days: u32, today: NaiveDate) -> Result<Days, Failure> {
    let to = args.to.unwrap_or(today);
    if to > today {
        return Err(Failure::usage(format!(
            "--to {to} is after today ({today}, UTC): an audit compares closed days; use --to {today} or earlier"
        )));
    }
    let from = args
        .from
        .unwrap_or(to - TimeDelta::days(i64::from(default_days)));
    if from >= to {
        return Err(Failure::usage(format!(
            "--from {from} is not before --to {to} (--to is exclusive: --from 2024-01-01 --to 2024-01-02 is one day)"
        )));
    }
    Ok(Days { from, to })
}

pub(super) async fn audit_command(path: Option<PathBuf>, args: AuditArgs) -> Result<u8, Failure> {
    let settings = load(path)?;
    let today = Utc::now().date_naive();
    let days = days(&args, settings.audit.days, today)?;
    let metrics = Arc::new(Metrics::new());
    let streams = select(
        &settings,
        &metrics,
        args.source.as_deref(),
        args.account.as_deref(),
    )?;
    // Without --account, the accounts that opted out (`audit = false`) are left out.
    let (streams, left_out): (Vec<_>, Vec<_>) = streams
        .into_iter()
        .partition(|s| s.audit().is_some() && (args.account.is_some() || s.settings().audit));
    for s in &left_out {
        let why = match s.audit() {
            None => "its source has no completeness audit",
            Some(_) => "it has `audit = false` (name it with --account to audit it anyway)",
        };
        eprintln!("{}/{}: not audited: {why}", s.key().source, s.key().account);
    }
    if streams.is_empty() {
        return Err(Failure::usage(format!(
            "no account in {} to audit: every selected account has `audit = false` or a source without an audit",
            settings.file.display()
        )));
    }
    let slots = &Slots::new(settings.engine.max_concurrent_streams, metrics.clone());
    let crate::startup::Pipeline {
        engine, sources, ..
    } = crate::startup::start(&settings, metrics, streams).await?;
    let shutdown = &shutdown_on_signals();
    let lines = &Lines::new(
        sources
            .iter()
            .map(|s| format!("{}/{}", s.key().source, s.key().account)),
    );
    let options = AuditOptions {
        days,
        dry_run: args.dry_run,
    };
    if args.dry_run {
        crate::outln!("dry run: nothing is stored, flagged or recorded");
    }
    let engine = &engine;
    let mut running: futures::stream::FuturesUnordered<_> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| async move {
            let Some(slot) = slots.acquire(s.key(), shutdown).await else {
                return (i, None);
            };
            let show = move |step: AuditStep| lines.show(i, describe_step(step));
            let r = engine.audit(s, options, shutdown, &show).await;
            lines.finish(i);
            drop(slot);
            (i, Some(r))
        })
        .collect();
    let mut code = 0u8;
    while let Some((i, result)) = futures::StreamExt::next(&mut running).await {
        let name = &lines.names[i];
        match result {
            None => {
                lines.println(&format!("{name}: not started — stopped by shutdown"));
                code = code.max(1);
            }
            Some(Err(e)) => {
                lines.println(&format!("{name}: failed — {e}"));
                code = code.max(1);
            }
            Some(Ok(r)) => {
                lines.println(&crate::report::describe_audit(&r));
                code = code.max(exit_code(&r));
            }
        }
    }
    // 1 outranks 3.
    Ok(if code == 3 || code == 0 { code } else { 1 })
}

/// What the live line of an account says while its audit runs.
fn describe_step(step: AuditStep) -> String {
    match step {
        AuditStep::Listing { days } => format!("listing {days} day(s) at the vendor"),
        AuditStep::Confirming { sessions } => {
            format!("reading {sessions} stored session(s) the list no longer shows, by id")
        }
        AuditStep::Reading { sessions } => format!("reading {sessions} missing session(s)"),
        AuditStep::Writing => "writing".to_string(),
    }
}

/// 0 every day's listing completed; 3 some did not; 1 the audit failed.
fn exit_code(r: &AuditReport) -> u8 {
    match r.outcome {
        Outcome::Failed => 1,
        Outcome::Partial | Outcome::Unavailable => 3,
        Outcome::Succeeded | Outcome::Skipped => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_default_to_closed_days_and_refuse_an_open_one() {
        let today: NaiveDate = "2026-12-07".parse().unwrap();
        let args = |from: Option<&str>, to: Option<&str>| AuditArgs {
            source: None,
            account: None,
            from: from.map(|s| s.parse().unwrap()),
            to: to.map(|s| s.parse().unwrap()),
            dry_run: false,
        };
        let d = days(&args(None, None), 7, today).unwrap();
        assert_eq!(d.to_string(), "2026-11-30..2026-12-06");
        let d = days(&args(Some("2026-12-01"), Some("2026-12-02")), 7, today).unwrap();
        assert_eq!(d.len(), 1);
        let d = days(&args(None, Some("2026-12-05")), 3, today).unwrap();
        assert_eq!(d.to_string(), "2026-12-02..2026-12-04");
        let e = days(&args(None, Some("2026-12-08")), 7, today).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.error.to_string().contains("closed days"), "{}", e.error);
        let e = days(&args(Some("2026-12-03"), Some("2026-12-03")), 7, today).unwrap_err();
        assert!(e.error.to_string().contains("exclusive"), "{}", e.error);
    }
}
