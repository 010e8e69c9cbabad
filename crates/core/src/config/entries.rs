//! The `[[source]]` entries: what every entry takes ([`Common`], read here with the source's
//! defaults), what a source declares to read the rest ([`SourceKind`], over its own
//! [`SourceSettings`]), and what a parsed account is ([`Account`]: it builds its own source).

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use super::{
    HttpSettings, KeyProblem, StreamFields, StreamSettings, http_settings, stream_settings,
};
use crate::engine::{Source, SourceContext};
use crate::model::StreamKey;

/// A source system as the config file and the engine know it: the name of its `[[name]]`
/// entries and of its stream, its defaults for the keys every entry takes, its inventory of
/// personal data, and the type of its own settings. Each source declares one, in its folder's
/// `mod.rs` (`pub const KIND`), and the list of sources (`sources::SOURCES`) holds them.
pub struct SourceKind {
    /// The name of its `[[name]]` entries (and of `--source`).
    pub name: &'static str,
    /// The name of its stream (`sync_state.stream`, `sync_runs.stream`).
    pub stream: &'static str,
    /// Its defaults for the keys every entry takes.
    pub defaults: CommonDefaults,
    /// Where its records and tables hold personal data (its `personal.rs`); `None` for a
    /// source that stores none.
    pub inventory: Option<&'static crate::privacy::Inventory>,
    /// The keys of its entries that turn on its webhook (as a sentence names them, e.g.
    /// "`webhook_secret`"); `None` for a source that sends none.
    pub webhook_keys: Option<&'static str>,
    read: ReadSettings,
}

/// Reads a source's own keys of one entry (its [`SourceSettings::read`]).
type ReadSettings = fn(toml::Value, &str) -> Result<Arc<dyn SourceSettings>, KeyProblem>;

impl SourceKind {
    /// Source `name`, whose own keys are read into `S`; stream `sessions`, the common
    /// defaults, no personal data until said otherwise.
    pub const fn new<S: SourceSettings>(name: &'static str) -> Self {
        SourceKind {
            name,
            stream: "sessions",
            defaults: CommonDefaults {
                lookback: "1h",
                window: "1d",
            },
            inventory: None,
            webhook_keys: None,
            read: read_settings::<S>,
        }
    }

    pub const fn stream(self, stream: &'static str) -> Self {
        SourceKind { stream, ..self }
    }

    pub const fn defaults(self, lookback: &'static str, window: &'static str) -> Self {
        SourceKind {
            defaults: CommonDefaults { lookback, window },
            ..self
        }
    }

    pub const fn inventory(self, inventory: &'static crate::privacy::Inventory) -> Self {
        SourceKind {
            inventory: Some(inventory),
            ..self
        }
    }

    /// It sends webhooks, turned on per entry by `keys`.
    pub const fn webhooks(self, keys: &'static str) -> Self {
        SourceKind {
            webhook_keys: Some(keys),
            ..self
        }
    }
}

impl std::fmt::Debug for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.stream)
    }
}

fn read_settings<S: SourceSettings>(
    entry: toml::Value,
    prefix: &str,
) -> Result<Arc<dyn SourceSettings>, KeyProblem> {
    Ok(Arc::new(S::read(entry, prefix)?))
}

/// A source's own settings: read from the keys of its entry that are its own, and the one
/// thing that builds its source (as a Vector component's config builds the component).
pub trait SourceSettings: std::fmt::Debug + Send + Sync + 'static {
    /// Reads and checks its own keys of one entry (its `${VAR}`s already replaced; the keys
    /// every entry takes already taken out). Errors name a key under `prefix` (e.g.
    /// `mluvii[0]`). Read the entry with [`entry`].
    fn read(entry: toml::Value, prefix: &str) -> Result<Self, KeyProblem>
    where
        Self: Sized;

    /// The source of one account's stream, over the context the engine built for it.
    fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source>;
}

/// One configured account: its source, what every account has (its stream's and its HTTP
/// client's settings), and its source's own settings.
#[derive(Debug, Clone)]
pub struct Account {
    pub kind: &'static SourceKind,
    pub stream: StreamSettings,
    pub http: HttpSettings,
    pub settings: Arc<dyn SourceSettings>,
}

impl Account {
    /// The name of its source.
    pub fn source(&self) -> &'static str {
        self.kind.name
    }

    /// Its stream's key.
    pub fn key(&self) -> StreamKey {
        StreamKey {
            source: self.kind.name,
            account: self.stream.account.clone(),
            stream: self.kind.stream,
        }
    }

    /// Its source, over the context the engine built for it.
    pub fn build(&self, cx: Arc<SourceContext>) -> Box<dyn Source> {
        self.settings.build(cx)
    }
}

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
    audit: Option<bool>,
}

/// The names of [`RawCommon`]'s keys.
const COMMON_KEYS: [&str; 14] = [
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
    "audit",
];

/// Takes the keys every entry has out of `entry` and reads them with `source`'s defaults;
/// what is left is the source's own.
fn read_common(
    source: &SourceKind,
    entry: &mut toml::Value,
    prefix: &str,
) -> Result<(StreamSettings, HttpSettings), KeyProblem> {
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
    let defaults = source.defaults;
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
            audit: raw.audit,
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
    Ok((stream, http))
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
    entries: Vec<(&'static SourceKind, Vec<toml::Value>)>,
) -> Result<Vec<Account>, KeyProblem> {
    let mut out = Vec::new();
    for (source, list) in entries {
        let mut seen = HashSet::new();
        for (i, e) in list.into_iter().enumerate() {
            let prefix = format!("{}[{i}]", source.name);
            let mut e = e;
            let (stream, http) = read_common(source, &mut e, &prefix)?;
            let settings = (source.read)(e, &prefix)
                .map_err(|(key, problem)| (key, with_common_keys(source.name, problem)))?;
            let account = Account {
                kind: source,
                stream,
                http,
                settings,
            };
            let name = &account.stream.account;
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
    let split = problem
        .split_once(", expected one of ")
        .or_else(|| problem.split_once(", expected "));
    match split {
        Some((unknown, own)) if unknown.starts_with("unknown field") => format!(
            "{unknown}; a [[{source}]] entry takes {}, {own}",
            COMMON_KEYS.map(|k| format!("`{k}`")).join(", ")
        ),
        _ => problem,
    }
}

/// One `[[name]]` entry of `source` written as `text` (TOML keys), split as the file reader
/// splits it: the keys every entry takes, read, and the rest (a source's tests read the rest
/// with its own reader, `S::read`). For the sources' unit tests (another crate, so not behind
/// `cfg(test)`); nothing else calls it.
#[doc(hidden)]
pub fn test_entry(
    source: &SourceKind,
    text: &str,
) -> (toml::Value, (StreamSettings, HttpSettings)) {
    let mut entry: toml::Value = toml::from_str(text).expect("a test entry is TOML");
    let prefix = format!("{}[0]", source.name);
    let common = read_common(source, &mut entry, &prefix).unwrap_or_else(|e| panic!("{e:?}"));
    (entry, common)
}
