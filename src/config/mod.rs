//! Configuration: the TOML file of `operations.md`, read and validated once at start.
//!
//! Loading happens in three steps so that an error can never echo a secret:
//! 1. the file is parsed as TOML as written (it holds `${VAR}` placeholders, not their values);
//! 2. `${VAR}` is replaced inside string values only, from the environment;
//! 3. the tree is deserialized into the raw structs (unknown keys are errors, with their path),
//!    then validated into [`Settings`], whose secrets are [`Secret`]s.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::secret::Secret;
pub use crate::settings::*;

mod fields;
mod substitute;

pub use fields::*;
use substitute::{line_col, substitute};

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
    /// `[privacy]`: the policy per class of personal data, the hash key, the storage limits.
    pub privacy: crate::privacy::PrivacySettings,
    /// Every configured account of every source, in the order of the sources' registry and
    /// then of the file.
    pub accounts: Vec<Box<dyn AccountSettings>>,
}

/// A source system's part of the config file: the `[[name]]` entries it reads. Each source
/// implements it in its own folder (`sources/<name>/config.rs`); the list of sources
/// (`sources::SOURCES`) hands it to [`Settings::load`].
pub trait SourceConfig: Sync {
    /// The name of its `[[name]]` entries (and of `--source`).
    fn name(&self) -> &'static str;
    /// The name of its stream (`sync_state.stream`, `sync_runs.stream`).
    fn stream(&self) -> &'static str {
        "sessions"
    }
    /// Its defaults for the keys every entry takes.
    fn defaults(&self) -> CommonDefaults {
        CommonDefaults::default()
    }
    /// Reads and checks its own keys of one entry (its `${VAR}`s already replaced; the keys
    /// every entry takes already read into `common`, and taken out). Errors name a key under
    /// `prefix` (e.g. `mluvii[0]`). Read the entry with [`entry`].
    fn account(
        &self,
        entry: toml::Value,
        prefix: &str,
        common: Common,
    ) -> Result<Box<dyn AccountSettings>, KeyProblem>;
    /// Where its records and tables hold personal data (its `personal.rs`); `None` for a
    /// source that stores none.
    fn inventory(&self) -> Option<&'static crate::privacy::Inventory> {
        None
    }
}

/// One configured account of some source: what every account has, and how its stream's
/// source part is built from the source's own settings.
pub trait AccountSettings: std::fmt::Debug + Send + Sync {
    fn source(&self) -> &'static str;
    fn stream(&self) -> &StreamSettings;
    fn http(&self) -> &HttpSettings;
    fn http_mut(&mut self) -> &mut HttpSettings;
    fn clone_box(&self) -> Box<dyn AccountSettings>;
    /// The source's part of this account's stream, over the context the engine built for it.
    fn build(
        &self,
        cx: std::sync::Arc<crate::engine::SourceContext>,
    ) -> Box<dyn crate::engine::Source>;
}

impl Clone for Box<dyn AccountSettings> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Implements [`AccountSettings`] for a source's settings struct (with `stream` and `http`
/// fields), named `source`, whose stream's source part `build(settings, cx)` makes.
#[macro_export]
macro_rules! impl_account_settings {
    ($ty:ty, $source:expr, $build:expr) => {
        impl $crate::config::AccountSettings for $ty {
            fn source(&self) -> &'static str {
                $source
            }
            fn stream(&self) -> &$crate::config::StreamSettings {
                &self.stream
            }
            fn http(&self) -> &$crate::config::HttpSettings {
                &self.http
            }
            fn http_mut(&mut self) -> &mut $crate::config::HttpSettings {
                &mut self.http
            }
            fn clone_box(&self) -> Box<dyn $crate::config::AccountSettings> {
                Box::new(self.clone())
            }
            fn build(
                &self,
                cx: std::sync::Arc<$crate::engine::SourceContext>,
            ) -> Box<dyn $crate::engine::Source> {
                Box::new(($build)(self.clone(), cx))
            }
        }
    };
}
pub use crate::impl_account_settings;

/// A source's defaults for the keys every entry takes.
#[derive(Debug, Clone, Copy)]
pub struct CommonDefaults {
    pub lookback: &'static str,
    pub window: &'static str,
}

impl Default for CommonDefaults {
    fn default() -> Self {
        CommonDefaults {
            lookback: "1h",
            window: "1d",
        }
    }
}

/// The keys every entry takes, read and checked by the config reader before the source reads
/// the rest: its stream's settings and its HTTP client's.
#[derive(Debug, Clone)]
pub struct Common {
    pub stream: StreamSettings,
    pub http: HttpSettings,
}

/// The keys every `[[source]]` entry takes, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    account: String,
    enabled: Option<bool>,
    schedule: Option<String>,
    start: String,
    lookback: Option<String>,
    window: Option<String>,
    requests_per_second: Option<f64>,
    timeout: Option<String>,
    max_retries: Option<usize>,
    max_retry_wait: Option<String>,
    max_response_mb: Option<usize>,
    privacy: Option<crate::privacy::Overrides>,
}

/// The names of [`RawCommon`]'s keys.
const COMMON_KEYS: [&str; 12] = [
    "account",
    "enabled",
    "schedule",
    "start",
    "lookback",
    "window",
    "requests_per_second",
    "timeout",
    "max_retries",
    "max_retry_wait",
    "max_response_mb",
    "privacy",
];

/// Takes the keys every entry has out of `entry` and reads them with `source`'s defaults;
/// what is left is the source's own.
pub fn read_common(
    source: &dyn SourceConfig,
    entry: &mut toml::Value,
    prefix: &str,
) -> Result<Common, KeyProblem> {
    let toml::Value::Table(t) = entry else {
        return Err((prefix.to_string(), "must be a table of keys".into()));
    };
    let mut taken = toml::map::Map::new();
    for key in COMMON_KEYS {
        if let Some(v) = t.remove(key) {
            taken.insert(key.to_string(), v);
        }
    }
    let raw: RawCommon = self::entry(toml::Value::Table(taken), prefix)?;
    let k = |name: &str| format!("{prefix}.{name}");
    let defaults = source.defaults();
    let stream = stream_settings(
        &k,
        StreamFields {
            account: &raw.account,
            enabled: raw.enabled,
            schedule: raw.schedule.as_deref(),
            start: &raw.start,
            lookback: raw.lookback.as_deref(),
            window: raw.window.as_deref(),
            privacy: raw.privacy,
        },
        defaults,
    )?;
    let http = http_settings(
        &k,
        raw.timeout.as_deref(),
        raw.max_retries,
        raw.max_retry_wait.as_deref(),
        raw.requests_per_second,
        raw.max_response_mb,
    )?;
    Ok(Common { stream, http })
}

/// Deserializes one `[[name]]` entry into a source's raw struct; an error names the key under
/// `prefix` (unknown keys are errors: raw structs deny them).
pub fn entry<T: serde::de::DeserializeOwned>(
    entry: toml::Value,
    prefix: &str,
) -> Result<T, KeyProblem> {
    serde_path_to_error::deserialize(entry).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        (key, e.into_inner().to_string())
    })
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
    privacy: RawPrivacy,
}

/// The sections of the file that are not a source's.
const SECTIONS: [&str; 5] = ["warehouse", "server", "engine", "webhooks", "privacy"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrivacy {
    customer_identity: Option<crate::privacy::Policy>,
    network: Option<crate::privacy::Policy>,
    free_text: Option<crate::privacy::Policy>,
    transcripts: Option<crate::privacy::Policy>,
    agent_identity: Option<crate::privacy::Policy>,
    hash_key: Option<Secret>,
    previous_hash_keys: Option<Vec<Secret>>,
    retain_sessions: Option<String>,
    retain_transcripts: Option<String>,
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
    /// `DATABASE_URL` from the process environment; `sources` reads the sources' entries
    /// (`crate::sources::configs()`).
    pub fn load(file: &Path, sources: &[&dyn SourceConfig]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_toml(file, &text, &|name| std::env::var(name).ok(), sources)
    }

    /// As [`Settings::load`], from text and an explicit environment (tests use this).
    pub fn from_toml(
        file: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        sources: &[&dyn SourceConfig],
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
        let mut substituted = Vec::new();
        substitute(&mut tree, String::new(), env, &mut substituted)
            .map_err(|(key, why)| invalid(&key, why.explain()))?;
        // An error about a value that came from the environment names the key and the
        // variable, never the value (substitute::without_values).
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem: substitute::without_values(key, problem, &substituted),
        };
        // The sources' entries are read by the sources; the rest is the file's own sections.
        let mut entries = Vec::new();
        if let toml::Value::Table(t) = &mut tree {
            for source in sources {
                match t.remove(source.name()) {
                    None => {}
                    Some(toml::Value::Array(list)) => entries.push((*source, list)),
                    Some(_) => {
                        return Err(invalid(
                            source.name(),
                            format!("write each account as a [[{}]] entry", source.name()),
                        ));
                    }
                }
            }
            if let Some(unknown) = t.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
                let known: Vec<&str> = SECTIONS
                    .iter()
                    .copied()
                    .chain(sources.iter().map(|s| s.name()))
                    .collect();
                return Err(invalid(
                    unknown,
                    format!("unknown section; the file knows {}", known.join(", ")),
                ));
            }
        }
        let raw: RawFile = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            invalid(&key, e.into_inner().to_string())
        })?;
        validate(file, raw, env, entries).map_err(|e| match e {
            ConfigError::Invalid { key, problem, .. } => invalid(&key, problem),
            other => other,
        })
    }

    /// The accounts that are enabled.
    pub fn enabled(&self) -> impl Iterator<Item = &dyn AccountSettings> {
        self.accounts
            .iter()
            .map(|a| &**a)
            .filter(|a| a.stream().enabled)
    }
}

fn validate(
    file: &Path,
    raw: RawFile,
    env: &dyn Fn(&str) -> Option<String>,
    entries: Vec<(&dyn SourceConfig, Vec<toml::Value>)>,
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
    // The key the URL came from: DATABASE_URL overrides the file.
    let url_key = if env("DATABASE_URL").is_some_and(|s| !s.is_empty()) {
        "warehouse.url (from DATABASE_URL)"
    } else {
        "warehouse.url"
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(fail((
            url_key.into(),
            "must be a postgres:// or postgresql:// URL".into(),
        )));
    }
    check_url_options(&url).map_err(|p| fail((url_key.into(), p)))?;
    let schema = raw.warehouse.schema.unwrap_or_else(|| "sessionsync".into());
    validate_identifier(&schema).map_err(|p| fail(("warehouse.schema".into(), p)))?;
    // The two are independent: a running stream holds no connection while it waits on its
    // vendor (engine::claims). One connection keeps the running streams' locks, so a pool
    // needs at least one more for commits.
    let max_concurrent_streams = raw
        .engine
        .max_concurrent_streams
        .unwrap_or(DEFAULT_CONCURRENT_STREAMS);
    if !(1..=MAX_CONCURRENT_STREAMS).contains(&max_concurrent_streams) {
        return Err(fail((
            "engine.max_concurrent_streams".into(),
            format!("is {max_concurrent_streams}; use 1 to {MAX_CONCURRENT_STREAMS}"),
        )));
    }
    let pool_size = raw.warehouse.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(2..=1000).contains(&pool_size) {
        return Err(fail((
            "warehouse.pool_size".into(),
            format!(
                "is {pool_size}; use 2 to 1000 (one connection keeps the running streams' locks, the others serve commits), or remove it for the default {DEFAULT_POOL_SIZE}"
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

    let accounts = accounts(entries).map_err(fail)?;
    let privacy = privacy_settings(raw.privacy, &accounts).map_err(fail)?;
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
        privacy,
        engine: EngineSettings {
            max_concurrent_streams,
        },
        accounts,
    })
}

/// The warehouse URL's TLS options, as libpq reads them (`warehouse::tls` applies them): an
/// unknown `sslmode` is a configuration error, found at load. The URL itself, which may carry a
/// password, is never part of the message.
fn check_url_options(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("is not a URL ({e}); expected postgres://user[:password]@host:port/database[?sslmode=require]"))?;
    for (k, v) in parsed.query_pairs() {
        if k == "sslmode" && !SSL_MODES.contains(&v.as_ref()) {
            return Err(format!(
                "sslmode `{v}` is not one of {}",
                SSL_MODES.join(", ")
            ));
        }
    }
    Ok(())
}

/// Every source's entries, read by the source; account names are unique per source.
fn accounts(
    entries: Vec<(&dyn SourceConfig, Vec<toml::Value>)>,
) -> Result<Vec<Box<dyn AccountSettings>>, KeyProblem> {
    let mut out = Vec::new();
    for (source, list) in entries {
        let mut seen = HashSet::new();
        for (i, e) in list.into_iter().enumerate() {
            let prefix = format!("{}[{i}]", source.name());
            let mut e = e;
            let common = read_common(source, &mut e, &prefix)?;
            let account = source
                .account(e, &prefix, common)
                .map_err(|(key, problem)| (key, with_common_keys(source.name(), problem)))?;
            let name = &account.stream().account;
            if !seen.insert(name.clone()) {
                return Err((
                    format!("{prefix}.account"),
                    format!("account `{name}` appears twice; names must be unique per source"),
                ));
            }
            out.push(account);
        }
    }
    Ok(out)
}

/// serde's "unknown field `x`, expected one of …" names only a source's own keys: the keys
/// every entry takes are added, so that the list is whole.
fn with_common_keys(source: &str, problem: String) -> String {
    match problem.split_once(", expected one of ") {
        Some((unknown, own)) if unknown.starts_with("unknown field") => format!(
            "{unknown}; a [[{source}]] entry takes {}, {own}",
            COMMON_KEYS.map(|k| format!("`{k}`")).join(", ")
        ),
        _ => problem,
    }
}

/// A key of the file (e.g. `mluvii[0].page_size`) and what is wrong with it.
pub type KeyProblem = (String, String);

/// `[privacy]` (docs/privacy.md section 2): a key is required, and at least 32 bytes long, when
/// any class of `[privacy]` or of an entry's overrides hashes.
fn privacy_settings(
    p: RawPrivacy,
    accounts: &[Box<dyn AccountSettings>],
) -> Result<crate::privacy::PrivacySettings, KeyProblem> {
    use crate::privacy::{Class, Policies};
    let mut policies = Policies::default();
    for (c, v) in [
        (Class::CustomerIdentity, p.customer_identity),
        (Class::Network, p.network),
        (Class::FreeText, p.free_text),
        (Class::Transcripts, p.transcripts),
        (Class::AgentIdentity, p.agent_identity),
    ] {
        if let Some(v) = v {
            policies.set(c, v);
        }
    }
    let hash_key = p.hash_key.filter(|k| !k.is_empty());
    let hashing = policies.needs_key()
        || accounts
            .iter()
            .any(|a| policies.with(&a.stream().privacy).needs_key());
    match &hash_key {
        None if hashing => {
            return Err((
                "privacy.hash_key".into(),
                "missing: a class is \"hash\", which needs a secret key of at least 32 bytes (for example hash_key = \"${SESSIONSYNC_HASH_KEY}\" with the output of `openssl rand -hex 32`)".into(),
            ));
        }
        Some(k) if k.expose().len() < crate::privacy::MIN_KEY_BYTES => {
            return Err((
                "privacy.hash_key".into(),
                format!(
                    "is {} bytes long; use at least {} (for example the output of `openssl rand -hex 32`)",
                    k.expose().len(),
                    crate::privacy::MIN_KEY_BYTES
                ),
            ));
        }
        _ => {}
    }
    let previous_hash_keys = p.previous_hash_keys.unwrap_or_default();
    if !previous_hash_keys.is_empty() && hash_key.is_none() {
        return Err((
            "privacy.previous_hash_keys".into(),
            "needs hash_key: the previous keys are the ones hash_key replaced".into(),
        ));
    }
    for (i, k) in previous_hash_keys.iter().enumerate() {
        if k.expose().len() < crate::privacy::MIN_KEY_BYTES {
            return Err((
                format!("privacy.previous_hash_keys[{i}]"),
                format!(
                    "is {} bytes long; a hash key has at least {} (is it the right value?)",
                    k.expose().len(),
                    crate::privacy::MIN_KEY_BYTES
                ),
            ));
        }
        if hash_key.as_ref().is_some_and(|h| h.expose() == k.expose()) {
            return Err((
                format!("privacy.previous_hash_keys[{i}]"),
                "is hash_key itself; list only the keys used before it".into(),
            ));
        }
    }
    let limit = |key: &str, v: Option<String>| -> Result<Option<Duration>, KeyProblem> {
        v.map(|s| {
            let d = parse_duration(&format!("privacy.{key}"), Some(&s), "0s")?;
            if d < Duration::from_secs(86_400) {
                return Err((
                    format!("privacy.{key}"),
                    format!("`{s}` is under a day; write e.g. \"730d\""),
                ));
            }
            Ok(d)
        })
        .transpose()
    };
    Ok(crate::privacy::PrivacySettings {
        policies,
        hash_key,
        previous_hash_keys,
        retain_sessions: limit("retain_sessions", p.retain_sessions)?,
        retain_transcripts: limit("retain_transcripts", p.retain_transcripts)?,
    })
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

/// One `[[name]]` entry of `source` written as `text` (TOML keys), split as the file reader
/// splits it: the keys every entry takes, read, and the rest (a source's tests read the rest
/// with their own reader).
#[cfg(test)]
pub fn test_entry(source: &dyn SourceConfig, text: &str) -> (toml::Value, Common) {
    let mut entry: toml::Value = toml::from_str(text).expect("a test entry is TOML");
    let prefix = format!("{}[0]", source.name());
    let common = read_common(source, &mut entry, &prefix).unwrap_or_else(|e| panic!("{e:?}"));
    (entry, common)
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
        // The file reader with every registered source, as the binary runs it.
        Settings::from_toml(Path::new("t.toml"), text, &env, &crate::sources::configs())
    }

    #[test]
    fn good_config_loads_with_defaults_and_redacts() {
        let s = load(GOOD).unwrap();
        // The source's own defaults for the keys every entry takes (Take Control: 24h).
        let t = s.accounts[0].stream();
        assert_eq!(t.lookback, Duration::from_secs(86400));
        assert_eq!(t.window, Duration::from_secs(86400));
        assert_eq!(s.accounts[0].http().requests_per_second, 5.0);
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
            (
                format!("{GOOD}[[zendesk]]\naccount = \"z\"\n"),
                "zendesk",
                "unknown section; the file knows warehouse, server, engine, webhooks, privacy, takecontrol, mluvii, superoffice",
            ),
            (format!("mluvii = 5\n{GOOD}"), "mluvii", "[[mluvii]] entry"),
            (
                format!(
                    "{GOOD}[[takecontrol]]\naccount = \"acme-us\"\nbase_url = \"https://x.example\"\napi_key = \"k\"\nstart = \"2024-01-01T00:00:00Z\"\n"
                ),
                "takecontrol[1].account",
                "appears twice",
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
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-01T10:15:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            s.next_after(t).unwrap().to_rfc3339(),
            "2024-01-01T11:00:00+00:00"
        );
    }
}
