//! The `[[source]]` entries: what every entry takes ([`Common`], read here with the source's
//! defaults), the seam a source implements to read the rest ([`SourceConfig`]), and what a parsed
//! account is ([`AccountSettings`]: it builds its own source).

use std::collections::HashSet;

use serde::Deserialize;

use super::{
    HttpSettings, KeyProblem, StreamFields, StreamSettings, http_settings, stream_settings,
};

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

/// A source's parsed settings as the config reader keeps them (for `SourceConfig::account`).
pub fn boxed<S: AccountSettings + 'static>(settings: S) -> Box<dyn AccountSettings> {
    Box::new(settings)
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
    expect_data_within: Option<String>,
}

/// The names of [`RawCommon`]'s keys.
const COMMON_KEYS: [&str; 13] = [
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
    "expect_data_within",
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
            expect_data_within: raw.expect_data_within.as_deref(),
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

/// Every source's entries, read by the source; account names are unique per source.
pub(super) fn accounts(
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
