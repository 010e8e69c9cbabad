//! `sessionsync renormalize`: every selected account's stored rows rebuilt from what the
//! warehouse holds (`raw`), with no vendor request; a line per account as it finishes, a live
//! line on a terminal while it runs, and the renormalize a migration said was due cleared once
//! every account of its source is rebuilt.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::lines::Lines;
use super::{Failure, load, parse_instant, select};
use crate::engine::{RenormalizeOptions, RenormalizeReport};
use crate::shutdown::shutdown_on_signals;
use crate::telemetry::Metrics;

/// Sessions per transaction: a batch is a key range of the session table.
pub const BATCH: i64 = 1000;

#[derive(clap::Args, Debug)]
pub struct RenormalizeArgs {
    /// Only this source (takecontrol, superoffice, mluvii)
    #[arg(long)]
    source: Option<String>,
    /// Only this account
    #[arg(long)]
    account: Option<String>,
    /// Only sessions that started at or after this instant: RFC 3339 or a date (UTC)
    #[arg(long, value_parser = parse_instant)]
    from: Option<DateTime<Utc>>,
    /// Count what would change, and change nothing
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn renormalize_command(
    path: Option<PathBuf>,
    args: RenormalizeArgs,
) -> Result<u8, Failure> {
    let settings = load(path)?;
    let metrics = Arc::new(Metrics::new());
    let streams = select(
        &settings,
        &metrics,
        args.source.as_deref(),
        args.account.as_deref(),
    )?;
    let crate::startup::Pipeline {
        engine,
        sources,
        warehouse,
        ..
    } = crate::startup::start(&settings, metrics, streams).await?;
    let shutdown = &shutdown_on_signals();
    let lines = &Lines::new(
        sources
            .iter()
            .map(|s| format!("{}/{}", s.key().source, s.key().account)),
    );
    let options = RenormalizeOptions {
        from: args.from,
        dry_run: args.dry_run,
        batch: BATCH,
    };
    if args.dry_run {
        crate::outln!("dry run: nothing is changed (each batch is rolled back)");
    }
    let engine = &engine;
    let running = sources.iter().enumerate().map(|(i, s)| async move {
        let show = move |r: &RenormalizeReport| {
            lines.show(
                i,
                format!(
                    "{} session(s) read, {} {}",
                    r.read,
                    r.rewritten,
                    if r.dry_run { "to rebuild" } else { "rebuilt" }
                ),
            )
        };
        let r = engine.renormalize(s, options, shutdown, &show).await;
        lines.finish(i);
        (i, r)
    });
    // Streams of different accounts at once, as many as the engine runs streams at once.
    let mut running = futures::StreamExt::buffer_unordered(
        futures::stream::iter(running),
        settings.engine.max_concurrent_streams.max(1),
    );
    let mut code = 0u8;
    // Per source: whether every selected account's rebuild went through its whole range.
    let mut complete: BTreeMap<&'static str, (bool, Vec<String>)> = BTreeMap::new();
    while let Some((i, result)) = futures::StreamExt::next(&mut running).await {
        let name = &lines.names[i];
        let key = sources[i].key();
        let entry = complete.entry(key.source).or_insert((true, Vec::new()));
        entry.1.push(key.account.clone());
        match result {
            Err(e) => {
                lines.println(&format!("{name}: failed — {e}"));
                entry.0 = false;
                code = code.max(1);
            }
            Ok(r) => {
                lines.println(&describe(&r, sources[i].rebuild().is_some()));
                entry.0 &= r.complete;
            }
        }
    }
    drop(running);
    // A whole source rebuilt (no --account or --from, not a dry run): what was due is done,
    // unless the warehouse holds accounts of it this config does not name.
    if args.account.is_none() && args.from.is_none() && !args.dry_run {
        let conn = warehouse.conn().await?;
        for (source, (done, accounts)) in complete {
            if !done {
                continue;
            }
            let left: Vec<String> = crate::warehouse::synced_accounts(&**conn, source)
                .await?
                .into_iter()
                .filter(|a| !accounts.contains(a))
                .collect();
            if !left.is_empty() {
                crate::outln!(
                    "{source}: the warehouse also holds account(s) {} that this config does not enable: not rebuilt (enable them to renormalize them); the renormalize due stays",
                    left.join(", ")
                );
            } else if crate::warehouse::clear_renormalize_due(&**conn, source).await? {
                crate::outln!("{source}: every account rebuilt; the renormalize due is done");
            }
        }
    }
    Ok(code)
}

/// One account's line: what was read, rebuilt, left unchanged, and why anything was left.
fn describe(r: &RenormalizeReport, can: bool) -> String {
    let name = r
        .key
        .as_ref()
        .map(|k| format!("{}/{}", k.source, k.account))
        .unwrap_or_default();
    if !can {
        return format!("{name}: its source keeps nothing to rebuild from; nothing to do");
    }
    let verb = if r.dry_run {
        "would rebuild"
    } else {
        "rebuilt"
    };
    let mut s = format!(
        "{name}: {} session(s) read in {:.1}s — {}: {verb} {}, unchanged {}",
        r.read,
        r.elapsed.as_secs_f64(),
        r.table,
        r.rewritten,
        r.unchanged
    );
    for (table, n) in &r.children {
        s.push_str(&format!("; {table}: {n} row(s) with them"));
    }
    if r.other_policy > 0 {
        s.push_str(&format!(
            "; {} stored under another privacy policy left as they are (`sessionsync privacy apply` first)",
            r.other_policy
        ));
    }
    if r.rejected > 0 {
        s.push_str(&format!(
            "; {} no longer make a row: set aside in rejected_records with the reason",
            r.rejected
        ));
    }
    if r.read == 0 {
        s.push_str(" (nothing stored in this range)");
    }
    s
}
