//! Configuration: the TOML file of `operations.md`, read and validated once at start.
//!
//! Loading happens in three steps so that an error can never echo a secret:
//! 1. the file is parsed as TOML as written (it holds `${VAR}` placeholders, not their values);
//! 2. `${VAR}` is replaced inside string values only, from the environment;
//! 3. the tree is deserialized into the raw structs (unknown keys are errors, with their path),
//!    then validated into [`Settings`], whose secrets are [`Secret`]s.

mod secret;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

pub use secret::Secret;

/// Where the config file is looked for when neither `--config` nor `$SESSIONSYNC_CONFIG` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/sessionsync.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {file}: {source} (pass --config FILE or set SESSIONSYNC_CONFIG)"
    )]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {file} is not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config file {file}, key `{key}`: {problem}")]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub file: PathBuf,
    pub warehouse: WarehouseSettings,
    pub server: ServerSettings,
    pub engine: EngineSettings,
    /// The webhook listener; `None` when `[webhooks]` is absent (webhooks off).
    pub webhooks: Option<WebhookSettings>,
    pub takecontrol: Vec<TakeControlSettings>,
    pub mluvii: Vec<MluviiSettings>,
    pub superoffice: Vec<SuperOfficeSettings>,
}

#[derive(Debug, Clone)]
pub struct WarehouseSettings {
    /// Connection URL; a secret because it may carry a password.
    pub url: Secret,
    /// Schema holding every table; validated as `[a-z_][a-z0-9_]*`.
    pub schema: String,
    pub pool_size: usize,
    /// Wait for each window's commit to reach disk (default false: see the README).
    pub synchronous_commit: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
}

/// `[webhooks]`: where vendor events are received (plain HTTP, behind a TLS proxy).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
}

/// HTTP Basic credentials a vendor sends with its webhook requests.
#[derive(Debug, Clone)]
pub struct BasicCredentials {
    pub user: String,
    pub password: Secret,
}

/// How the daemon, `sync` and `backfill` share the machine between streams.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Streams that run at once; the others wait their turn, served in the order they became
    /// due. Each running stream holds one warehouse connection.
    pub max_concurrent_streams: usize,
}

/// Streams that run at once unless configured: enough to overlap several accounts' API waits
/// on a 2-core machine without queueing PostgreSQL.
pub const DEFAULT_CONCURRENT_STREAMS: usize = 4;

/// What every stream of every source takes.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub account: String,
    pub enabled: bool,
    pub schedule: Schedule,
    pub start: DateTime<Utc>,
    pub lookback: Duration,
    pub window: Duration,
}

/// What every account's HTTP client takes.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub timeout: Duration,
    pub max_retries: usize,
    pub max_retry_wait: Duration,
    pub requests_per_second: f64,
    /// The largest response body read, in MiB (a window answering more is split).
    pub max_response_mb: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeControlApi {
    Rest,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Xml,
    Json,
}

#[derive(Debug, Clone)]
pub struct TakeControlSettings {
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub api: TakeControlApi,
    pub base_url: reqwest::Url,
    pub api_key: Secret,
    pub timezone: Tz,
    /// Legacy API only: ask for XML (default) or JSON output.
    pub output_format: OutputFormat,
}

#[derive(Debug, Clone)]
pub struct MluviiSettings {
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub base_url: reqwest::Url,
    /// The API user (OAuth client id).
    pub client_id: String,
    pub client_secret: Secret,
    /// Detail/routing requests in flight at once.
    pub concurrency: usize,
    /// `limit` of the list requests.
    pub page_size: usize,
    /// A session not CLOSED after this long (from `created`) is no longer re-polled.
    pub max_open_age: Duration,
    /// Accept `POST /webhooks/mluvii/{account}` with these Basic credentials.
    pub webhook: Option<BasicCredentials>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuperOfficeMode {
    /// List changed sessions in the ChatSession archive, then read each.
    Archive,
    /// `ChatSessionsForUser`: the whole list of the API user's sessions, every time.
    ForUser,
}

/// How a SuperOffice request authenticates.
#[derive(Debug, Clone)]
pub enum SuperOfficeAuth {
    /// `Authorization: SOTICKET <ticket>` plus `SO-AppToken`.
    Ticket { ticket: Secret, app_token: Secret },
    /// `Authorization: Bearer <token>` (plus `SO-AppToken` when given).
    Bearer {
        token: Secret,
        app_token: Option<Secret>,
    },
}

#[derive(Debug, Clone)]
pub struct SuperOfficeSettings {
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub base_url: reqwest::Url,
    pub auth: SuperOfficeAuth,
    pub mode: SuperOfficeMode,
    pub messages: bool,
    /// Entity and message requests in flight at once.
    pub concurrency: usize,
    /// `$top` of the archive list.
    pub page_size: usize,
    /// Accept `POST /webhooks/superoffice/{account}` signed with this secret.
    pub webhook_secret: Option<Secret>,
}

/// A standard 5-field crontab expression (an optional leading seconds field is accepted), in UTC.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "`{expr}` has {fields} fields; use standard 5-field crontab syntax such as \"*/5 * * * *\" (minute hour day-of-month month day-of-week)"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("`{expr}` is not a valid cron expression: {e}"))?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    /// The first scheduled instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw file shape (what serde reads); every struct refuses unknown keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    warehouse: RawWarehouse,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    engine: RawEngine,
    webhooks: Option<RawWebhooks>,
    #[serde(default)]
    takecontrol: Vec<RawTakeControl>,
    #[serde(default)]
    mluvii: Vec<RawMluvii>,
    #[serde(default)]
    superoffice: Vec<RawSuperOffice>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWarehouse {
    url: Option<String>,
    schema: Option<String>,
    pool_size: Option<usize>,
    synchronous_commit: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    max_concurrent_streams: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTakeControl {
    account: String,
    #[serde(default)]
    enabled: Option<bool>,
    api: Option<TakeControlApi>,
    base_url: String,
    api_key: Secret,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    timezone: Option<String>,
    output_format: Option<OutputFormat>,
    requests_per_second: Option<f64>,
    timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_wait: Option<String>,
    max_response_mb: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMluvii {
    account: String,
    #[serde(default)]
    enabled: Option<bool>,
    base_url: Option<String>,
    client_id: String,
    client_secret: Secret,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    concurrency: Option<usize>,
    page_size: Option<usize>,
    max_open_age: Option<String>,
    webhook_user: Option<String>,
    webhook_password: Option<Secret>,
    requests_per_second: Option<f64>,
    timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_wait: Option<String>,
    max_response_mb: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuperOffice {
    account: String,
    #[serde(default)]
    enabled: Option<bool>,
    base_url: String,
    ticket: Option<Secret>,
    bearer: Option<Secret>,
    app_token: Option<Secret>,
    mode: Option<SuperOfficeMode>,
    messages: Option<bool>,
    webhook_secret: Option<Secret>,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    concurrency: Option<usize>,
    page_size: Option<usize>,
    requests_per_second: Option<f64>,
    timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_wait: Option<String>,
    max_response_mb: Option<usize>,
}

// ---------------------------------------------------------------------------------------------

/// Which file to read: `--config`, else `$SESSIONSYNC_CONFIG`, else [`DEFAULT_CONFIG_PATH`].
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os("SESSIONSYNC_CONFIG") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

impl Settings {
    /// Reads, substitutes, deserializes and validates `file`, taking `${VAR}` values and
    /// `DATABASE_URL` from the process environment.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_toml(file, &text, &|name| std::env::var(name).ok())
    }

    /// As [`Settings::load`], from text and an explicit environment (tests use this).
    pub fn from_toml(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem,
        };
        let mut tree: toml::Value = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Syntax {
                file: file.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        substitute(&mut tree, String::new(), env).map_err(|(key, var)| {
            invalid(
                &key,
                format!("environment variable {var} is not set (export it, or write the value in the file)"),
            )
        })?;
        let raw: RawFile = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            invalid(&key, e.into_inner().to_string())
        })?;
        validate(file, raw, env)
    }

    /// The mluvii accounts that are enabled.
    pub fn enabled_mluvii(&self) -> impl Iterator<Item = &MluviiSettings> {
        self.mluvii.iter().filter(|t| t.stream.enabled)
    }

    /// The SuperOffice tenants that are enabled.
    pub fn enabled_superoffice(&self) -> impl Iterator<Item = &SuperOfficeSettings> {
        self.superoffice.iter().filter(|t| t.stream.enabled)
    }

    /// The Take Control accounts that are enabled.
    pub fn enabled_takecontrol(&self) -> impl Iterator<Item = &TakeControlSettings> {
        self.takecontrol.iter().filter(|t| t.stream.enabled)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Replaces `${VAR}` in every string value; on an unset variable returns `(key path, VAR)`.
fn substitute(
    v: &mut toml::Value,
    path: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match v {
        toml::Value::String(s) if s.contains("${") => {
            *s = expand(s, env).map_err(|var| (path, var))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                substitute(item, p, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                let name = &after[..j];
                match env(name) {
                    Some(val) if !val.is_empty() => out.push_str(&val),
                    _ => return Err(name.to_string()),
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_duration(key: &str, v: Option<&str>, default: &str) -> Result<Duration, (String, String)> {
    let s = v.unwrap_or(default);
    humantime::parse_duration(s).map_err(|e| {
        (
            key.to_string(),
            format!(
                "`{s}` is not a duration ({e}); write e.g. \"30s\", \"15m\", \"24h\" or \"1d\""
            ),
        )
    })
}

/// The stream and HTTP settings every source entry has, read from its raw struct.
macro_rules! common_settings {
    ($k:expr, $raw:expr, $default_lookback:expr) => {
        stream_settings(
            $k,
            StreamFields {
                account: &$raw.account,
                enabled: $raw.enabled,
                schedule: $raw.schedule.as_deref(),
                start: &$raw.start,
                lookback: $raw.lookback.as_deref(),
                window: $raw.window.as_deref(),
            },
            $default_lookback,
        )
        .and_then(|stream| {
            http_settings(
                $k,
                $raw.timeout.as_deref(),
                $raw.max_retries,
                $raw.max_retry_wait.as_deref(),
                $raw.requests_per_second,
                $raw.max_response_mb,
            )
            .map(|http| (stream, http))
        })
    };
}

fn validate(
    file: &Path,
    raw: RawFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let fail = |(key, problem): (String, String)| ConfigError::Invalid {
        file: file.to_path_buf(),
        key,
        problem,
    };

    let url = match env("DATABASE_URL").filter(|s| !s.is_empty()) {
        Some(u) => u,
        None => raw.warehouse.url.clone().ok_or_else(|| {
            fail((
                "warehouse.url".into(),
                "missing: set it in the file or export DATABASE_URL (postgres://user@host:5432/db)"
                    .into(),
            ))
        })?,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(fail((
            "warehouse.url".into(),
            "must be a postgres:// or postgresql:// URL".into(),
        )));
    }
    let schema = raw.warehouse.schema.unwrap_or_else(|| "sessionsync".into());
    validate_identifier(&schema).map_err(|p| fail(("warehouse.schema".into(), p)))?;
    // Each running stream holds one connection for its whole run, and one more is kept for
    // /readyz and the bookkeeping around runs: the pool always fits the concurrency.
    let max_concurrent_streams = match (raw.engine.max_concurrent_streams, raw.warehouse.pool_size)
    {
        (Some(n), _) => n,
        (None, Some(p)) => DEFAULT_CONCURRENT_STREAMS.min(p.saturating_sub(1)).max(1),
        (None, None) => DEFAULT_CONCURRENT_STREAMS,
    };
    if !(1..=256).contains(&max_concurrent_streams) {
        return Err(fail((
            "engine.max_concurrent_streams".into(),
            format!("is {max_concurrent_streams}; use 1 to 256"),
        )));
    }
    let pool_size = raw
        .warehouse
        .pool_size
        .unwrap_or(max_concurrent_streams + 2);
    if pool_size <= max_concurrent_streams {
        return Err(fail((
            "warehouse.pool_size".into(),
            format!(
                "is {pool_size}, but engine.max_concurrent_streams is {max_concurrent_streams}: each running stream holds a connection and one more is needed for health checks; set pool_size to at least {} or remove it",
                max_concurrent_streams + 1
            ),
        )));
    }

    let listen_s = raw.server.listen.unwrap_or_else(|| "127.0.0.1:9898".into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        fail((
            "server.listen".into(),
            format!("`{listen_s}` is not an address:port such as 127.0.0.1:9898"),
        ))
    })?;
    let server = ServerSettings { listen };

    let takecontrol = takecontrol_settings(raw.takecontrol).map_err(fail)?;
    let mluvii = mluvii_settings(raw.mluvii).map_err(fail)?;
    let superoffice = superoffice_settings(raw.superoffice).map_err(fail)?;
    let webhooks = raw
        .webhooks
        .map(|w| webhook_settings(w, &server))
        .transpose()
        .map_err(fail)?;

    Ok(Settings {
        file: file.to_path_buf(),
        warehouse: WarehouseSettings {
            url: Secret::new(url),
            schema,
            pool_size,
            synchronous_commit: raw.warehouse.synchronous_commit.unwrap_or(false),
        },
        server,
        webhooks,
        engine: EngineSettings {
            max_concurrent_streams,
        },
        takecontrol,
        mluvii,
        superoffice,
    })
}

type KeyProblem = (String, String);

/// The `[[takecontrol]]` entries.
fn takecontrol_settings(
    entries: Vec<RawTakeControl>,
) -> Result<Vec<TakeControlSettings>, KeyProblem> {
    let mut seen = HashSet::new();
    let mut takecontrol = Vec::new();
    for (i, t) in entries.into_iter().enumerate() {
        let k = |name: &str| format!("takecontrol[{i}].{name}");
        let (stream, http) = common_settings!(&k, t, "24h")?;
        unique_account(&mut seen, &k, &t.account)?;
        let base_url = parse_base_url(&k("base_url"), &t.base_url)?;
        if t.api_key.is_empty() {
            return Err((k("api_key"), "is empty".into()));
        }
        let tz_s = t.timezone.unwrap_or_else(|| "UTC".into());
        let timezone: Tz = tz_s.parse().map_err(|_| {
            (
                k("timezone"),
                format!("`{tz_s}` is not an IANA time zone such as \"UTC\" or \"Europe/Prague\""),
            )
        })?;
        takecontrol.push(TakeControlSettings {
            stream,
            http,
            api: t.api.unwrap_or(TakeControlApi::Rest),
            base_url,
            api_key: t.api_key,
            timezone,
            output_format: t.output_format.unwrap_or(OutputFormat::Xml),
        });
    }
    Ok(takecontrol)
}

/// The `[[mluvii]]` entries.
fn mluvii_settings(entries: Vec<RawMluvii>) -> Result<Vec<MluviiSettings>, KeyProblem> {
    let mut seen = HashSet::new();
    let mut mluvii = Vec::new();
    for (i, m) in entries.into_iter().enumerate() {
        let k = |name: &str| format!("mluvii[{i}].{name}");
        let (stream, http) = common_settings!(&k, m, "1h")?;
        unique_account(&mut seen, &k, &m.account)?;
        let base_url = parse_base_url(
            &k("base_url"),
            m.base_url.as_deref().unwrap_or("https://app.mluvii.com"),
        )?;
        if m.client_id.trim().is_empty() {
            return Err((k("client_id"), "is empty".into()));
        }
        if m.client_secret.is_empty() {
            return Err((k("client_secret"), "is empty".into()));
        }
        let concurrency = in_range(&k, "concurrency", m.concurrency, 4, 1..=64)?;
        let page_size = in_range(&k, "page_size", m.page_size, 1000, 1..=5000)?;
        let max_open_age = parse_duration(&k("max_open_age"), m.max_open_age.as_deref(), "7d")?;
        let user = m.webhook_user.filter(|u| !u.trim().is_empty());
        let password = m.webhook_password.filter(|p| !p.is_empty());
        let webhook = match (user, password) {
            (Some(user), Some(password)) if !user.contains(':') => {
                Some(BasicCredentials { user, password })
            }
            (Some(_), Some(_)) => {
                return Err((
                    k("webhook_user"),
                    "must not contain `:` (HTTP Basic separates user and password with it)".into(),
                ));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err((
                    k("webhook_password"),
                    "missing: `webhook_user` and `webhook_password` go together (or give neither)"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    k("webhook_user"),
                    "missing: `webhook_user` and `webhook_password` go together (or give neither)"
                        .into(),
                ));
            }
        };
        mluvii.push(MluviiSettings {
            stream,
            http,
            base_url,
            client_id: m.client_id,
            client_secret: m.client_secret,
            concurrency,
            page_size,
            max_open_age,
            webhook,
        });
    }
    Ok(mluvii)
}

/// The `[[superoffice]]` entries.
fn superoffice_settings(
    entries: Vec<RawSuperOffice>,
) -> Result<Vec<SuperOfficeSettings>, KeyProblem> {
    let mut seen = HashSet::new();
    let mut superoffice = Vec::new();
    for (i, m) in entries.into_iter().enumerate() {
        let k = |name: &str| format!("superoffice[{i}].{name}");
        let (stream, http) = common_settings!(&k, m, "1h")?;
        unique_account(&mut seen, &k, &m.account)?;
        let base_url = parse_base_url(&k("base_url"), &m.base_url)?;
        let nonempty = |s: Option<Secret>| s.filter(|s| !s.is_empty());
        let auth = match (
            nonempty(m.ticket),
            nonempty(m.bearer),
            nonempty(m.app_token),
        ) {
            (Some(_), Some(_), _) => {
                return Err((
                    k("ticket"),
                    "give either `ticket` (with `app_token`) or `bearer`, not both".into(),
                ));
            }
            (Some(ticket), None, Some(app_token)) => SuperOfficeAuth::Ticket { ticket, app_token },
            (Some(_), None, None) => {
                return Err((
                    k("app_token"),
                    "is required with `ticket` (the application secret sent as SO-AppToken)".into(),
                ));
            }
            (None, Some(token), app_token) => SuperOfficeAuth::Bearer { token, app_token },
            (None, None, _) => {
                return Err((
                    k("ticket"),
                    "missing: give `ticket` and `app_token`, or `bearer`".into(),
                ));
            }
        };
        let concurrency = in_range(&k, "concurrency", m.concurrency, 4, 1..=64)?;
        let page_size = in_range(&k, "page_size", m.page_size, 1000, 1..=5000)?;
        superoffice.push(SuperOfficeSettings {
            stream,
            http,
            base_url,
            auth,
            mode: m.mode.unwrap_or(SuperOfficeMode::Archive),
            messages: m.messages.unwrap_or(true),
            concurrency,
            page_size,
            webhook_secret: nonempty(m.webhook_secret),
        });
    }
    Ok(superoffice)
}

/// `[webhooks]`: the listener's own address, never the metrics server's.
fn webhook_settings(
    w: RawWebhooks,
    server: &ServerSettings,
) -> Result<WebhookSettings, KeyProblem> {
    let listen_s = w.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        (
            "webhooks.listen".into(),
            format!("`{listen_s}` is not an address:port such as 0.0.0.0:8080"),
        )
    })?;
    if listen == server.listen
        || (listen.port() == server.listen.port()
            && listen.port() != 0
            && (listen.ip().is_unspecified() || server.listen.ip().is_unspecified()))
    {
        return Err((
            "webhooks.listen".into(),
            format!(
                "`{listen}` is the metrics server's address (server.listen); the webhook listener needs its own port"
            ),
        ));
    }
    Ok(WebhookSettings { listen })
}

/// The keys every stream takes, as written in the file.
struct StreamFields<'a> {
    account: &'a str,
    enabled: Option<bool>,
    schedule: Option<&'a str>,
    start: &'a str,
    lookback: Option<&'a str>,
    window: Option<&'a str>,
}

fn stream_settings(
    k: &dyn Fn(&str) -> String,
    f: StreamFields<'_>,
    default_lookback: &str,
) -> Result<StreamSettings, KeyProblem> {
    let StreamFields {
        account,
        enabled,
        schedule,
        start,
        lookback,
        window,
    } = f;
    if account.is_empty()
        || account.len() > 64
        || !account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err((
            k("account"),
            format!("`{account}` must be 1–64 characters of letters, digits, '-', '_' or '.'"),
        ));
    }
    let schedule =
        Schedule::parse(schedule.unwrap_or("*/5 * * * *")).map_err(|p| (k("schedule"), p))?;
    let start = DateTime::parse_from_rfc3339(start)
        .map_err(|e| {
            (
                k("start"),
                format!(
                    "`{start}` is not an RFC 3339 timestamp such as 2024-01-01T00:00:00Z ({e})"
                ),
            )
        })?
        .with_timezone(&Utc);
    let lookback = parse_duration(&k("lookback"), lookback, default_lookback)?;
    let window = parse_duration(&k("window"), window, "1d")?;
    if window < Duration::from_secs(60) {
        return Err((k("window"), "must be at least 1m".into()));
    }
    Ok(StreamSettings {
        account: account.to_string(),
        enabled: enabled.unwrap_or(true),
        schedule,
        start,
        lookback,
        window,
    })
}

/// Account names are unique per source.
fn unique_account(
    seen: &mut HashSet<String>,
    k: &dyn Fn(&str) -> String,
    account: &str,
) -> Result<(), KeyProblem> {
    if seen.insert(account.to_string()) {
        Ok(())
    } else {
        Err((
            k("account"),
            format!("account `{account}` appears twice; names must be unique per source"),
        ))
    }
}

/// An optional count with a default, held to a range.
fn in_range(
    k: &dyn Fn(&str) -> String,
    key: &str,
    value: Option<usize>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, KeyProblem> {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err((
            k(key),
            format!("{v} must be between {} and {}", range.start(), range.end()),
        ))
    }
}

fn http_settings(
    k: &dyn Fn(&str) -> String,
    timeout: Option<&str>,
    max_retries: Option<usize>,
    max_retry_wait: Option<&str>,
    rps: Option<f64>,
    max_response_mb: Option<usize>,
) -> Result<HttpSettings, KeyProblem> {
    let max_response_mb = in_range(k, "max_response_mb", max_response_mb, 256, 1..=4096)?;
    let timeout = parse_duration(&k("timeout"), timeout, "30s")?;
    if timeout.is_zero() {
        return Err((k("timeout"), "must be greater than zero".into()));
    }
    let max_retry_wait = parse_duration(&k("max_retry_wait"), max_retry_wait, "5m")?;
    let requests_per_second = rps.unwrap_or(5.0);
    if !(requests_per_second.is_finite()
        && requests_per_second > 0.0
        && requests_per_second <= 10_000.0)
    {
        return Err((
            k("requests_per_second"),
            format!("{requests_per_second} must be a number above 0 and at most 10000"),
        ));
    }
    Ok(HttpSettings {
        timeout,
        max_retries: max_retries.unwrap_or(5),
        max_retry_wait,
        requests_per_second,
        max_response_mb,
    })
}

fn parse_base_url(key: &str, s: &str) -> Result<reqwest::Url, KeyProblem> {
    let url = reqwest::Url::parse(s)
        .map_err(|e| (key.to_string(), format!("`{s}` is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err((
            key.to_string(),
            format!("`{s}` must be an http:// or https:// URL with a host"),
        ));
    }
    Ok(url)
}

/// Schema names go into SQL as identifiers, so they are held to a strict shape.
pub fn validate_identifier(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` must be 1–63 characters of a–z, 0–9 and '_', not starting with a digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[warehouse]
url = "${DATABASE_URL}"
[[takecontrol]]
account = "acme-us"
base_url = "https://api.us0.swi-rc.com"
api_key = "${TAKECONTROL_KEY}"
start = "2024-01-01T00:00:00Z"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "DATABASE_URL" => Some("postgres://postgres@127.0.0.1/x".into()),
            "TAKECONTROL_KEY" => Some("very-secret-key".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(Path::new("t.toml"), text, &env)
    }

    #[test]
    fn good_config_loads_with_defaults_and_redacts() {
        let s = load(GOOD).unwrap();
        let t = &s.takecontrol[0];
        assert_eq!(t.api, TakeControlApi::Rest);
        assert_eq!(t.stream.lookback, Duration::from_secs(86400));
        assert_eq!(t.stream.window, Duration::from_secs(86400));
        assert_eq!(t.api_key.expose(), "very-secret-key");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("very-secret-key"), "{dbg}");
        assert!(!dbg.contains("postgres://"), "{dbg}");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                GOOD.replace("account = \"acme-us\"\n", ""),
                "takecontrol[0]",
                "account",
            ),
            (
                GOOD.replace("start = ", "schedule = \"61 * * * *\"\nstart = "),
                "takecontrol[0].schedule",
                "cron",
            ),
            (
                GOOD.replace("start = ", "colour = \"red\"\nstart = "),
                "takecontrol[0]",
                "colour",
            ),
            (
                GOOD.replace("${TAKECONTROL_KEY}", "${NOPE_KEY}"),
                "takecontrol[0].api_key",
                "NOPE_KEY",
            ),
            (
                GOOD.replace("start = ", "lookback = \"a while\"\nstart = "),
                "takecontrol[0].lookback",
                "duration",
            ),
        ];
        for (text, key, word) in cases {
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(word), "{e}");
            assert!(e.contains("t.toml"), "{e}");
        }
    }

    #[test]
    fn webhook_settings_are_checked_and_never_shown() {
        const ML: &str = "[[mluvii]]\naccount = \"main\"\nclient_id = \"u\"\nclient_secret = \"s\"\nstart = \"2024-01-01T00:00:00Z\"\n";
        let s = load(&format!(
            "{GOOD}[webhooks]\n{ML}webhook_user = \"hook\"\nwebhook_password = \"hook-pw-1\"\n"
        ))
        .unwrap();
        assert_eq!(s.webhooks.as_ref().unwrap().listen.port(), 8080);
        let creds = s.mluvii[0].webhook.as_ref().unwrap();
        assert_eq!(creds.user, "hook");
        assert!(!format!("{s:?}").contains("hook-pw-1"), "Debug redacts it");
        let cases = [
            (
                format!("{GOOD}{ML}webhook_user = \"hook\"\n"),
                "mluvii[0].webhook_password",
                "go together",
            ),
            (
                format!("{GOOD}{ML}webhook_password = \"pw\"\n"),
                "mluvii[0].webhook_user",
                "go together",
            ),
            (
                format!("{GOOD}{ML}webhook_user = \"a:b\"\nwebhook_password = \"pw\"\n"),
                "mluvii[0].webhook_user",
                "`:`",
            ),
            (
                format!(
                    "{GOOD}[server]\nlisten = \"0.0.0.0:9000\"\n[webhooks]\nlisten = \"127.0.0.1:9000\"\n"
                ),
                "webhooks.listen",
                "its own port",
            ),
            (
                format!("{GOOD}[webhooks]\nlisten = \"everywhere\"\n"),
                "webhooks.listen",
                "address:port",
            ),
        ];
        for (text, key, word) in cases {
            let e = load(&text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(word), "{e}");
            assert!(!e.contains("hook-pw") && !e.contains("pw\""), "{e}");
        }
    }

    #[test]
    fn syntax_error_does_not_echo_values() {
        let e = load("[warehouse]\nurl = \"postgres://u:pw@h/db\" junk\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("pw@h"), "{e}");
    }

    #[test]
    fn schedule_accepts_five_fields_and_optional_seconds() {
        assert!(Schedule::parse("*/5 * * * *").is_ok());
        assert!(Schedule::parse("0 */5 * * * *").is_ok());
        assert!(Schedule::parse("* * *").is_err());
        let s = Schedule::parse("0 * * * *").unwrap();
        let t = DateTime::parse_from_rfc3339("2024-01-01T10:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            s.next_after(t).unwrap().to_rfc3339(),
            "2024-01-01T11:00:00+00:00"
        );
    }
}
