//! The source systems. Each is one folder implementing [`crate::engine::Source`]; adding a
//! system means a folder here, a migration in `sql/`, and its section in the config.

pub mod lenient;
pub mod mluvii;
pub mod superoffice;
pub mod takecontrol;
pub mod xml;

use std::sync::Arc;

use crate::config::{AccountSettings, Settings, SourceConfig};
use crate::engine::Source;
use crate::privacy::{Erasures, Privacy};
use crate::telemetry::Metrics;

/// `path` under an account's `base_url` (which may carry a path of its own, such as a tenant).
pub fn endpoint_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let base = base.as_str().trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}{path}")).expect("base_url was validated")
}

/// A source system: how its config entries are read ([`SourceConfig`], in its folder's
/// `config.rs`) and how one of its accounts becomes a stream.
pub trait SourceKind: SourceConfig {
    /// The stream of `account` (one of this source's: `None` otherwise), reading its records
    /// under `privacy` (the `[privacy]` policies with the entry's overrides).
    fn build(
        &self,
        account: &dyn AccountSettings,
        metrics: &Arc<Metrics>,
        privacy: Privacy,
    ) -> Option<Arc<dyn Source>>;

    /// Where its records and tables hold personal data (its `personal.rs`); `None` for a
    /// source that stores none.
    fn inventory(&self) -> Option<&'static crate::privacy::Inventory> {
        None
    }
}

/// The stream `new` makes of `account`'s settings when they are a `S` (the source's own
/// settings type), for [`SourceKind::build`].
pub fn build_as<S: Clone + 'static, T: Source + 'static>(
    account: &dyn AccountSettings,
    new: impl FnOnce(S) -> T,
) -> Option<Arc<dyn Source>> {
    let s = account.as_any().downcast_ref::<S>()?;
    Some(Arc::new(new(s.clone())))
}

/// Every source system. Adding one is its folder, its migration, and a line here.
pub const KINDS: &[&dyn SourceKind] = &[
    &takecontrol::config::Kind,
    &mluvii::config::Kind,
    &superoffice::config::Kind,
];

/// The registry as the config file reader takes it.
pub fn configs() -> Vec<&'static dyn SourceConfig> {
    KINDS.iter().map(|k| *k as &dyn SourceConfig).collect()
}

/// The names `--source` accepts.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// Reads and validates the config file at `path` with every registered source.
pub fn load_settings(path: &std::path::Path) -> Result<Settings, crate::config::ConfigError> {
    Settings::load(path, &configs())
}

/// Every enabled stream of the configuration, optionally only one source and/or account.
pub fn build(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    only_source: Option<&str>,
    only_account: Option<&str>,
) -> Vec<Arc<dyn Source>> {
    build_with(KINDS, settings, metrics, only_source, only_account)
}

/// As [`build`], with the sources of `kinds` (a test's own registry).
pub fn build_with(
    kinds: &[&dyn SourceKind],
    settings: &Settings,
    metrics: &Arc<Metrics>,
    only_source: Option<&str>,
    only_account: Option<&str>,
) -> Vec<Arc<dyn Source>> {
    // One set of recorded erasures for every stream of the process.
    let erasures = Arc::new(Erasures::new(&settings.privacy));
    settings
        .enabled()
        .filter(|a| only_source.is_none_or(|x| a.source() == x))
        .filter(|a| only_account.is_none_or(|x| a.stream().account == x))
        .filter_map(|a| {
            let kind = kinds.iter().find(|k| k.name() == a.source())?;
            let privacy = Privacy::new(&settings.privacy, &a.stream().privacy, erasures.clone());
            kind.build(a, metrics, privacy)
        })
        .collect()
}
