//! The command line of `operations.md`. Exit codes: 0 success; 1 failure; 2 usage or
//! configuration error; 3 partial (some records rejected or retries exhausted, progress kept).

mod audit;
mod check;
pub mod exits;
mod lines;
mod privacy;
mod renormalize;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::config::{self, Settings};
use crate::engine::{Outcome, Progress, Range, RunReport, Slots};
use crate::report::{StreamBars, describe, exit_code};
use crate::shutdown::shutdown_on_signals;
use crate::telemetry::{LogFormat, Metrics};
use crate::warehouse::Warehouse;

#[derive(Parser, Debug)]
#[command(
    name = "sessionsync",
    version,
    about = "Keeps a PostgreSQL warehouse in step with Take Control, SuperOffice and mluvii support sessions"
)]
pub struct Cli {
    /// Config file (default: $SESSIONSYNC_CONFIG, else config/sessionsync.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on stderr: auto (text on a terminal, JSON otherwise), text or json
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: migrate, then run every stream on its schedule until SIGTERM/SIGINT
    #[command(after_help = exits::RUN)]
    Run,
    /// Run each selected stream once, now, and exit
    #[command(after_help = exits::SYNC)]
    Sync {
        /// Only this source (takecontrol, superoffice, mluvii)
        #[arg(long)]
        source: Option<String>,
        /// Only this account
        #[arg(long)]
        account: Option<String>,
    },
    /// Re-read a past range without moving the regular watermark
    #[command(after_help = exits::BACKFILL)]
    Backfill {
        /// The source (takecontrol, superoffice, mluvii)
        #[arg(long)]
        source: String,
        /// Only this account
        #[arg(long)]
        account: Option<String>,
        /// Start of the range: RFC 3339 (2024-01-01T00:00:00Z) or a date (2024-01-01, UTC)
        #[arg(long, value_parser = parse_instant)]
        from: DateTime<Utc>,
        /// End of the range (exclusive; default: now)
        #[arg(long, value_parser = parse_instant)]
        to: Option<DateTime<Utc>>,
    },
    /// Compare the warehouse with each account's own vendor list, day by day: store what is missing, flag what the vendor deleted
    #[command(after_help = exits::AUDIT)]
    Audit(audit::AuditArgs),
    /// Rebuild stored rows from what the warehouse holds (raw), with no vendor request: how a fix or a new column reaches old rows
    #[command(after_help = exits::RENORMALIZE)]
    Renormalize(renormalize::RenormalizeArgs),
    /// Validate the config, reach the database and every account's API; say what is wrong
    #[command(after_help = exits::CHECK)]
    Check,
    /// Create or upgrade the warehouse schema and exit
    #[command(after_help = exits::MIGRATE)]
    Migrate,
    /// Per stream: watermark, lag, newest record, last run, rows, last error
    #[command(after_help = exits::STATUS)]
    Status {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// The whole pipeline with no credentials: built-in simulators, a local PostgreSQL
    #[cfg(feature = "demo")]
    #[command(after_help = exits::DEMO)]
    Demo(crate::demo::DemoArgs),
    /// Serve one built-in simulator until Ctrl-C (to try a config, or for benchmarks)
    #[cfg(feature = "demo")]
    #[command(after_help = exits::SIMULATE)]
    Simulate(crate::simulate::SimulateArgs),
    /// Vendor webhooks: register the listener with a vendor
    Webhooks {
        #[command(subcommand)]
        action: WebhooksCommand,
    },
    /// Erase a person's data (and remember it): every session matching a selector
    #[command(after_help = exits::ERASE)]
    Erase(privacy::EraseArgs),
    /// Personal data: check or apply the `[privacy]` policy on stored rows
    Privacy {
        #[command(subcommand)]
        action: privacy::PrivacyCommand,
    },
    /// Apply the storage limits (`retain_sessions`, `retain_transcripts`) now
    #[command(after_help = exits::RETENTION)]
    Retention(privacy::RetentionArgs),
    /// Ask a running daemon's /healthz: the container health check
    #[command(after_help = exits::HEALTHCHECK)]
    Healthcheck {
        /// The daemon's health URL (its `[server] listen` address, or `demo --listen`)
        #[arg(
            long,
            env = "SESSIONSYNC_HEALTH_URL",
            default_value = "http://127.0.0.1:9898/healthz"
        )]
        url: reqwest::Url,
        /// Give up after this long (humantime: 3s, 500ms)
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// A production build's answer to `demo` and `simulate`: it carries no simulator.
    #[cfg(not(feature = "demo"))]
    #[command(
        name = "demo",
        hide = true,
        alias = "simulate",
        disable_help_flag = true
    )]
    WithoutSimulators {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Register (or update) the account's webhook with the vendor, with the configured secret
    /// or credentials, delivering to PUBLIC_URL/webhooks/SOURCE/ACCOUNT
    #[command(after_help = exits::WEBHOOKS_REGISTER)]
    Register {
        /// superoffice or mluvii
        #[arg(long)]
        source: String,
        #[arg(long)]
        account: String,
        /// Where the vendor reaches the listener: the HTTPS address of the TLS proxy in front
        /// of `[webhooks] listen`, e.g. https://hooks.example.com
        #[arg(long)]
        public_url: reqwest::Url,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = match cli.command {
        Command::Run => crate::telemetry::LogMode::Daemon,
        Command::Check => crate::telemetry::LogMode::Lines,
        _ => crate::telemetry::LogMode::OneShot,
    };
    crate::telemetry::init_logging(cli.log_format, mode);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(dispatch(cli))
}

/// Why a command ended badly, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Exit 2: the command line or the config asks for something that cannot be done.
    pub fn usage(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: 2,
            error: anyhow::anyhow!("{message}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    /// Exit 1, or 2 for an error of the configuration found against the warehouse (a hash key
    /// it still depends on was removed).
    fn from(e: E) -> Self {
        let error: anyhow::Error = e.into();
        let config = error.chain().any(|c| {
            c.downcast_ref::<crate::warehouse::WarehouseError>()
                .is_some_and(|w| w.is_config())
        });
        Failure {
            code: if config { 2 } else { 1 },
            error,
        }
    }
}

fn config_failure(e: config::ConfigError) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

async fn dispatch(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run => run(cli.config).await,
        Command::Sync { source, account } => sync(cli.config, source, account).await,
        Command::Migrate => migrate(cli.config).await,
        Command::Backfill {
            source,
            account,
            from,
            to,
        } => backfill(cli.config, source, account, from, to).await,
        Command::Audit(args) => audit::audit_command(cli.config, args).await,
        Command::Renormalize(args) => renormalize::renormalize_command(cli.config, args).await,
        Command::Check => check::check(cli.config).await,
        Command::Erase(args) => privacy::erase_command(cli.config, args).await,
        Command::Privacy { action } => privacy::privacy_command(cli.config, action).await,
        Command::Retention(args) => privacy::retention_command(cli.config, args).await,
        Command::Status { json } => status::status(cli.config, json).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => crate::demo::run(args).await.map_err(Failure::from),
        #[cfg(feature = "demo")]
        Command::Simulate(args) => crate::simulate::simulate(args).await.map_err(Failure::from),
        Command::Healthcheck { url, timeout } => healthcheck(url, timeout).await,
        #[cfg(not(feature = "demo"))]
        Command::WithoutSimulators { .. } => Err(Failure::usage(
            "this sessionsync is a production build: it carries no simulator, so it has no \
             `demo` or `simulate` (built with --no-default-features). Try them with a build \
             that keeps the default features: `cargo run --release -- demo --once` in a clone \
             of the repository",
        )),
        Command::Webhooks {
            action:
                WebhooksCommand::Register {
                    source,
                    account,
                    public_url,
                },
        } => register_webhook(cli.config, source, account, public_url).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn load(path: Option<PathBuf>) -> Result<Settings, Failure> {
    crate::sources::load_configured(path.as_deref()).map_err(config_failure)
}

async fn migrate(path: Option<PathBuf>) -> Result<u8, Failure> {
    let settings = load(path)?;
    let wh = Warehouse::new(&settings.warehouse)?;
    let applied = wh.migrate().await?;
    if applied.is_empty() {
        crate::outln!("schema `{}` is up to date", wh.schema());
    } else {
        crate::outln!("schema `{}`: applied {}", wh.schema(), applied.join(", "));
    }
    Ok(0)
}

/// An instant on the command line: RFC 3339, or a date (midnight UTC).
fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| {
            format!("`{s}` is not a date (2024-01-01) or RFC 3339 time (2024-01-01T00:00:00Z)")
        })
}

/// The enabled streams matching `--source`/`--account`; a usage error if there are none.
fn select(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    source: Option<&str>,
    account: Option<&str>,
) -> Result<Vec<Arc<crate::engine::Stream>>, Failure> {
    if let Some(s) = source
        && !crate::sources::names().contains(&s)
    {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "--source {s}: unknown source; known: {}",
                crate::sources::names().join(", ")
            ),
        });
    }
    let sources = crate::sources::build(settings, metrics, source, account);
    if sources.is_empty() {
        return Err(empty_selection(settings, source, account));
    }
    Ok(sources)
}

/// What `sync`, `backfill`, `audit` and `check` say, alike, when nothing is selected: what the
/// config holds and what to add (exit 2).
pub(crate) fn empty_selection(
    settings: &Settings,
    source: Option<&str>,
    account: Option<&str>,
) -> Failure {
    let file = settings.file.display();
    let enabled: Vec<String> = settings
        .enabled()
        .map(|a| format!("{}/{}", a.source(), a.stream.account))
        .collect();
    let entries = crate::sources::names()
        .iter()
        .map(|n| format!("[[{n}]]"))
        .collect::<Vec<_>>()
        .join(", ");
    let error = if enabled.is_empty() {
        anyhow::anyhow!(
            "{file} has no enabled stream: add an account entry ({entries}; config/sessionsync.example.toml has one of each), or set `enabled = true` on one"
        )
    } else {
        let mut asked = Vec::new();
        if let Some(s) = source {
            asked.push(format!("--source {s}"));
        }
        if let Some(a) = account {
            asked.push(format!("--account {a}"));
        }
        anyhow::anyhow!(
            "no enabled stream in {file} matches {}; enabled: {}",
            asked.join(" "),
            enabled.join(", ")
        )
    };
    Failure { code: 2, error }
}

async fn sync(
    path: Option<PathBuf>,
    source: Option<String>,
    account: Option<String>,
) -> Result<u8, Failure> {
    let settings = load(path)?;
    run_selected(
        &settings,
        source.as_deref(),
        account.as_deref(),
        Range::Regular,
    )
    .await
}

async fn backfill(
    path: Option<PathBuf>,
    source: String,
    account: Option<String>,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> Result<u8, Failure> {
    let settings = load(path)?;
    let to = to.unwrap_or_else(Utc::now);
    if from >= to {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!("--from {from} is not before --to {to}"),
        });
    }
    run_selected(
        &settings,
        Some(&source),
        account.as_deref(),
        Range::Backfill { from, to },
    )
    .await
}

/// `sync` and `backfill`: runs each selected stream once over `range`, at most
/// `engine.max_concurrent_streams` at once (the others wait their turn in order), with a live
/// bar per running stream on a terminal (a backfill also logs its progress elsewhere), printing
/// each stream's line as it finishes. A warehouse failure of one stream is printed and fails the
/// command once every stream has ended.
async fn run_selected(
    settings: &Settings,
    source: Option<&str>,
    account: Option<&str>,
    range: Range,
) -> Result<u8, Failure> {
    let metrics = Arc::new(Metrics::new());
    let sources = select(settings, &metrics, source, account)?;
    let slots = &Slots::new(settings.engine.max_concurrent_streams, metrics.clone());
    let crate::startup::Pipeline {
        engine, sources, ..
    } = crate::startup::start(settings, metrics, sources).await?;
    let shutdown = &shutdown_on_signals();
    let bars = &StreamBars::new(&sources);
    let log_progress = matches!(range, Range::Backfill { .. });
    let engine = &engine;
    let mut running: futures::stream::FuturesUnordered<_> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| async move {
            let key = s.key();
            let Some(slot) = slots.acquire(key, shutdown).await else {
                return (key, Ok(None));
            };
            let show = move |p: &Progress| bars.show(i, p, log_progress);
            bars.start(i, s.requests().requests);
            let r = engine.run(s, range, shutdown, &show).await;
            bars.finish(i);
            drop(slot);
            (key, r.map(Some))
        })
        .collect();
    let mut reports = Vec::new();
    let mut failed = None;
    // Off a terminal, a line per running stream every PROGRESS_EVERY: a long run never looks hung.
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + crate::report::PROGRESS_EVERY,
        crate::report::PROGRESS_EVERY,
    );
    loop {
        let next = tokio::select! {
            next = futures::StreamExt::next(&mut running) => next,
            _ = progress.tick(), if !bars.tty() => {
                for line in bars.progress_lines(|i| sources[i].requests().requests) {
                    crate::outln!("{line}");
                }
                continue;
            }
        };
        let Some((key, result)) = next else { break };
        match result {
            Ok(Some(report)) => {
                bars.println(&describe(&report));
                reports.push(report);
            }
            Ok(None) => {
                bars.println(&format!(
                    "{key}: not started — stopped by shutdown while waiting for a slot"
                ));
                reports.push(RunReport::not_run(
                    key,
                    Outcome::Failed,
                    Some("stopped by shutdown before it started".into()),
                ));
            }
            Err(e) => {
                bars.println(&format!("{key}: failed — {e}"));
                failed.get_or_insert(anyhow::Error::from(e).context(format!("syncing {key}")));
            }
        }
    }
    match failed {
        Some(error) => Err(Failure { code: 1, error }),
        None => Ok(exit_code(&reports)),
    }
}

/// `sessionsync webhooks register`.
async fn register_webhook(
    path: Option<PathBuf>,
    source: String,
    account: String,
    public_url: reqwest::Url,
) -> Result<u8, Failure> {
    let mut settings = load(path)?;
    for h in settings.accounts.iter_mut().map(|a| &mut a.http) {
        h.max_retries = h.max_retries.min(2);
    }
    let metrics = Arc::new(Metrics::new());
    let sources = crate::sources::build(&settings, &metrics, Some(&source), Some(&account));
    let Some(s) = sources.first() else {
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "no enabled {source} account `{account}` in {}",
                settings.file.display()
            ),
        });
    };
    let Some(hook) = s.webhook() else {
        let kind = crate::sources::SOURCES.iter().find(|k| k.name == source);
        let what = match kind.and_then(|k| k.webhook_keys) {
            Some(keys) => keys.to_string(),
            None => format!(
                "webhook: {source} sends none (the sources that do, and their keys: {})",
                crate::sources::webhook_keys()
            ),
        };
        return Err(Failure {
            code: 2,
            error: anyhow::anyhow!(
                "{source} account `{account}` has no {what} in {}: set it first, so that the listener can check what the vendor sends",
                settings.file.display()
            ),
        });
    };
    let target = crate::webhooks::target_url(&public_url, &source, &account);
    if target.scheme() != "https" {
        eprintln!(
            "warning: {target} is not HTTPS; the vendors deliver only to HTTPS with a valid certificate (put a TLS proxy in front of the listener)"
        );
    }
    let done = hook
        .register(&target)
        .await
        .map_err(|e| anyhow::anyhow!(e.of(s.key())))?;
    crate::outln!("{source}/{account}: {done}");
    if settings.webhooks.is_none() {
        eprintln!(
            "warning: {} has no `[webhooks] listen`: the daemon does not receive these events until it has one",
            settings.file.display()
        );
    }
    Ok(0)
}

/// GET `url`; healthy only on a 2xx answer within `timeout`.
async fn healthcheck(url: reqwest::Url, timeout: Duration) -> Result<u8, Failure> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .context("building the HTTP client for the health check")?;
    let shown = crate::http::origin(&url);
    let answer = match client.get(url.clone()).send().await {
        Ok(a) => a,
        Err(e) if e.is_timeout() => {
            return Err(anyhow::anyhow!(
                "{shown}{} did not answer within {}: the daemon is there but hung or overloaded (a longer --timeout waits more)",
                url.path(),
                humantime::format_duration(timeout)
            )
            .into());
        }
        Err(e) if e.is_connect() => {
            return Err(anyhow::anyhow!(
                "{shown} refused the connection at once: nothing listens there. Is the daemon running, and is this its `[server] listen` address (or `demo --listen`)?"
            )
            .into());
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "{shown}{}: the request failed ({}): is this the daemon's health URL?",
                url.path(),
                crate::http::transport_words(&e)
            )
            .into());
        }
    };
    let status = answer.status();
    if status.is_success() {
        crate::outln!("{url}: {status}");
        Ok(0)
    } else {
        Err(anyhow::anyhow!("{url} answered {status}: the daemon is up but not healthy").into())
    }
}

async fn run(path: Option<PathBuf>) -> Result<u8, Failure> {
    let settings = load(path)?;
    let metrics = Arc::new(Metrics::new());
    let sources = crate::sources::build(&settings, &metrics, None, None);
    let shutdown = shutdown_on_signals();
    let daemon =
        crate::daemon::Daemon::build(&settings, metrics, sources, shutdown.clone()).await?;
    tokio::select! {
        stopped = daemon.run_until_stopped() => {
            stopped?;
            Ok(0)
        }
        _ = crate::shutdown::deadline_passed(&shutdown) => {
            tracing::error!(
                deadline_s = crate::shutdown::STOP_DEADLINE.as_secs(),
                "did not stop within the deadline after the signal; exiting now: open transactions roll back as their connections close and the next run redoes them from the committed watermarks"
            );
            Ok(1)
        }
    }
}
