//! The personal-data commands (docs/privacy.md): `erase`, `privacy check|apply|inventory` and
//! `retention`. Nothing they print carries a personal value: counts, tables, sources, accounts.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Failure, load};
use crate::privacy::Selector;
use crate::privacy::apply;
use crate::privacy::erase::{self, EraseError, Target};
use crate::privacy::retention;
use crate::warehouse::Warehouse;

#[derive(Args, Debug)]
pub struct EraseArgs {
    /// A customer's e-mail address (matched normalized: trimmed, lower-cased; in clear or hashed)
    #[arg(long)]
    pub email: Vec<String>,
    /// A phone number (matched on `+` and digits)
    #[arg(long)]
    pub phone: Vec<String>,
    /// A customer's name (matched trimmed, white space collapsed, lower-cased)
    #[arg(long = "customer-name")]
    pub customer_name: Vec<String>,
    /// One session: SOURCE/ACCOUNT/ID (e.g. superoffice/cust1/195)
    #[arg(long)]
    pub session: Vec<String>,
    /// Only count what would be erased
    #[arg(long)]
    pub dry_run: bool,
    /// Why (kept with the erasure, e.g. a request's reference; not personal data itself)
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PrivacyCommand {
    /// Count the session rows stored under another policy than the configured one
    #[command(after_help = super::exits::PRIVACY_CHECK)]
    Check,
    /// Bring every stored row under the configured policy (batches; resumable; beside a daemon)
    #[command(after_help = super::exits::PRIVACY_APPLY)]
    Apply {
        /// Only count the rows that would be rewritten (as `check` does)
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the inventory of personal fields (docs/privacy.md is generated from it)
    #[command(after_help = super::exits::PRIVACY_INVENTORY)]
    Inventory,
}

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// Only count what the storage limits would remove
    #[arg(long)]
    pub dry_run: bool,
}

async fn client(settings: &crate::config::Settings) -> Result<deadpool_postgres::Object, Failure> {
    let wh = Warehouse::new(&settings.warehouse)?;
    wh.migrate().await?;
    Ok(wh.conn().await?)
}

pub async fn erase_command(path: Option<PathBuf>, a: EraseArgs) -> Result<u8, Failure> {
    let settings = load(path)?;
    let mut targets: Vec<Target> = Vec::new();
    for (selector, values) in [
        (Selector::Email, &a.email),
        (Selector::Phone, &a.phone),
        (Selector::Name, &a.customer_name),
    ] {
        for v in values {
            let n = crate::privacy::fields::normalize(selector.kind(), v);
            if n.is_empty() {
                return Err(Failure::usage(format!(
                    "--{} is empty once normalized; give a value",
                    selector.name().replace('_', "-")
                )));
            }
            targets.push(Target::Value(selector, v.clone()));
        }
    }
    for s in &a.session {
        targets.push(Target::session(s, &crate::sources::inventories()).map_err(Failure::usage)?);
    }
    if targets.is_empty() {
        return Err(Failure::usage(
            "erase needs a selector: --email, --phone, --customer-name or --session SOURCE/ACCOUNT/ID",
        ));
    }
    if settings.privacy.hash_key.is_none() {
        return Err(Failure::usage(EraseError::NoKey));
    }
    let mut conn = client(&settings).await?;
    let done = erase::erase(
        &mut conn,
        &settings.privacy,
        &crate::sources::inventories(),
        &targets,
        a.dry_run,
        a.reason.as_deref(),
    )
    .await
    .map_err(|e| match e {
        EraseError::Usage(_) | EraseError::NoKey => Failure::usage(e),
        EraseError::Warehouse(w) => Failure::from(w),
    })?;
    let verb = if a.dry_run { "would erase" } else { "erased" };
    crate::outln!(
        "{verb} {} session(s) matching {} selector(s)",
        done.total_sessions(),
        targets.len()
    );
    for (source, n) in &done.sessions {
        crate::outln!("  {source:<12} {n} session(s)");
    }
    for (table, n) in &done.tables {
        crate::outln!("  {table:<40} {n} row(s)");
    }
    if a.dry_run {
        crate::outln!("(dry run: nothing was changed or recorded)");
    } else {
        crate::outln!(
            "recorded in `erasures` as keyed hashes; later syncs, backfills and webhooks write matching records erased"
        );
    }
    Ok(0)
}

pub async fn privacy_command(path: Option<PathBuf>, cmd: PrivacyCommand) -> Result<u8, Failure> {
    if let PrivacyCommand::Inventory = cmd {
        crate::out!(
            "{}",
            crate::privacy::inventory::markdown(&crate::sources::inventories())
        );
        return Ok(0);
    }
    let settings = load(path)?;
    let want = crate::sources::expected_privacy(&settings);
    let mut conn = client(&settings).await?;
    // A hash key the warehouse still depends on must not have been dropped (exit 2).
    crate::privacy::keys::check_keys(&**conn, &settings.privacy, &crate::sources::inventories())
        .await?;
    match cmd {
        PrivacyCommand::Check | PrivacyCommand::Apply { dry_run: true } => {
            let drift = apply::check(&**conn, &want).await?;
            if drift.total() == 0 {
                crate::outln!(
                    "every stored session is under the configured policy ({})",
                    settings.privacy.policies.describe()
                );
                return Ok(0);
            }
            crate::outln!(
                "{} stored session(s) were written under another policy; `sessionsync privacy apply` brings them under this one",
                drift.total()
            );
            for ((source, account), list) in &drift.rows {
                for (tag, n) in list {
                    crate::outln!("  {source}/{account:<20} {n} row(s) stored as {tag}");
                }
            }
            Ok(3)
        }
        PrivacyCommand::Apply { dry_run: false } => {
            let started = std::time::Instant::now();
            // Two connections, each converting its own part of every account at once.
            let wh = Warehouse::new(&settings.warehouse)?;
            let mut second = wh.conn().await?;
            let done = apply::apply(vec![&mut **conn, &mut **second], &want, |_| {}).await?;
            let total: u64 = done.sessions.values().sum();
            crate::outln!(
                "brought {total} session(s) under the configured policy in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            for (source, n) in &done.sessions {
                crate::outln!("  {source:<12} {n} session(s)");
            }
            for (table, n) in &done.children {
                crate::outln!("  {table:<40} {n} child row(s)");
            }
            if done.need_reread_total() == 0 {
                return Ok(0);
            }
            crate::outln!(
                "{} session(s) cannot be brought under the policy from what is stored (a class stored stricter than it is now, or hashed under another key): they keep the label of what they hold; reading them again from the source rewrites them:",
                done.need_reread_total()
            );
            for ((source, account), n) in &done.need_reread {
                crate::outln!(
                    "  {source}/{account:<20} {n} session(s): sessionsync backfill --source {source} --account {account} --from <the account's start>"
                );
            }
            Ok(3)
        }
        PrivacyCommand::Inventory => Ok(0),
    }
}

pub async fn retention_command(path: Option<PathBuf>, a: RetentionArgs) -> Result<u8, Failure> {
    let settings = load(path)?;
    if settings.privacy.retain_sessions.is_none() && settings.privacy.retain_transcripts.is_none() {
        crate::outln!(
            "no storage limit is configured ([privacy] retain_sessions, retain_transcripts): nothing to do"
        );
        return Ok(0);
    }
    let mut conn = client(&settings).await?;
    let removed = retention::run(
        &mut conn,
        &settings.privacy,
        &crate::sources::inventories(),
        chrono::Utc::now(),
        a.dry_run,
    )
    .await?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    crate::outln!("{verb} {} row(s) past the storage limits", removed.total());
    for (table, n) in &removed.rows {
        crate::outln!("  {table:<40} {n} row(s)");
    }
    Ok(0)
}
